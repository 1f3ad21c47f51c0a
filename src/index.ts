/**
 * kiln's library API. The CLI uses only what is exported here.
 */

export { isKilnError, KilnError, type KilnErrorCode, redact } from './errors.js';
export {
  type AppendedLayer,
  type AppendLayer,
  type AppendOptions,
  type AppendResult,
  appendLayers,
} from './image/append.js';
export { ComposedSource, type ComposeResult } from './image/compose.js';
export {
  type ExportOptions,
  type ExportResult,
  exportImage,
  type FlatEntry,
  type FlatIssue,
  type FlatItem,
  flattenLayers,
  writeFlatTar,
} from './image/flatten.js';
export { createIndex, type IndexCreateOptions, type IndexCreateResult } from './image/index-create.js';
export type { InspectedImage, InspectResult } from './image/inspect.js';
export { type KeyChanges, type MutateOptions, type MutateResult, mutateImage } from './image/mutate.js';
export {
  type ExtractResult,
  extractFlat,
  type UnpackIssue,
  type UnpackOptions,
  type UnpackResult,
  unpackImage,
} from './image/unpack.js';
export { collectEntries, type LayerEntry, type LayerInput } from './layer/entries.js';
export { listTar, type TarEntryInfo } from './layer/tar-reader.js';
export { type WrittenLayer, writeLayer } from './layer/write-layer.js';
export { type Digest, parseDigest, sha256 } from './oci/digest.js';
export { MediaType } from './oci/media-types.js';
export { formatPlatform, hostPlatform, type Platform, parsePlatform } from './oci/platform.js';
export { familiarReference, formatReference, parseReference, type Reference } from './oci/reference.js';
export type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from './oci/types.js';
export * from './operations.js';
export type { RegistryOptions } from './registry/registry.js';
export { type RunImageOptions, runWasm } from './run/run.js';
export { cacheDir, openCache } from './store/cache.js';
export { OciLayout } from './store/layout.js';
export type { CopyEvent, CopyOptions, CopyResult } from './transport/copy.js';
export { configureRegistries, type OpenOptions, openDestination, openSource } from './transport/open.js';
export { type ImageLocation, parseLocation } from './transport/parse.js';
export type { ImageDestination, ImageSource } from './transport/types.js';
export { inspectWasm, type WasmInfo } from './wasm/inspect.js';
export { isWasmFormat, WASM_FORMATS, type WasmFormat } from './wasm/package.js';
