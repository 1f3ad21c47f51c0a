/**
 * kiln's library API. The CLI uses only what is exported here.
 */

export {
  type BuildEvent,
  type BuildOptions,
  type BuildResult,
  type BuiltImage,
  type BuiltSbom,
  build,
} from './build/build.js';
export {
  buildWorkspace,
  findProjects,
  type ProjectEvent,
  type ProjectResult,
  type WorkspaceOptions,
  type WorkspaceResult,
} from './build/workspace.js';
/**
 * The context every operation runs with (`{ context }` in its options): registry settings and
 * credentials, the connection pool, kiln's store, an abort signal and an event sink. Make one with
 * createContext, pass it to any number of operations (concurrent ones too), close it when done.
 * Without one an operation makes its own for that call; two contexts share nothing.
 */
export {
  type ContextOptions,
  createContext,
  Interrupted,
  KilnContext,
  type KilnEvent,
} from './context.js';
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
  type DiffCounts,
  type DiffLayer,
  type DiffOptions,
  type DiffResult,
  diffImages,
} from './image/diff.js';
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
export {
  type FlattenedImage,
  type FlattenImageOptions,
  type FlattenImageResult,
  flattenImage,
} from './image/flatten-image.js';
export { createIndex, type IndexCreateOptions, type IndexCreateResult } from './image/index-create.js';
export type { InspectedImage, InspectResult } from './image/inspect.js';
export {
  type ConfigFrom,
  type MergedImage,
  type MergeOptions,
  type MergeResult,
  mergeImages,
} from './image/merge.js';
export { type KeyChanges, type MutateOptions, type MutateResult, mutateImage } from './image/mutate.js';
export {
  type RebasedImage,
  type RebaseOptions,
  type RebaseResult,
  rebaseImage,
} from './image/rebase.js';
export {
  type ExtractResult,
  extractFlat,
  type UnpackIssue,
  type UnpackOptions,
  type UnpackResult,
  unpackImage,
} from './image/unpack.js';
export {
  type CollectOptions,
  collectEntries,
  type LayerDevicePolicy,
  type LayerEntry,
  type LayerInput,
  type SkippedEntry,
} from './layer/entries.js';
export { listTar, type TarEntryInfo } from './layer/tar-reader.js';
export { type WrittenLayer, writeLayer } from './layer/write-layer.js';
export { type Digest, parseDigest, sha256 } from './oci/digest.js';
export { MANIFEST_FORMATS, type ManifestFormat } from './oci/media-type-policy.js';
export { MediaType } from './oci/media-types.js';
export { formatPlatform, hostPlatform, type Platform, parsePlatform } from './oci/platform.js';
export { familiarReference, formatReference, parseReference, type Reference } from './oci/reference.js';
export type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from './oci/types.js';
export * from './operations.js';
/** What a registry (or the network to it) did: status, the registry's error code, Retry-After, retryable. */
export { RegistryError } from './registry/errors.js';
export type { RegistryOptions } from './registry/registry.js';
export type { RetryPolicy } from './registry/retry.js';
export { type RunImageOptions, runWasm } from './run/run.js';
export { type ImageFilesOptions, imageFiles } from './sbom/files.js';
export { lockfilePackages } from './sbom/lockfiles.js';
export {
  type AttachOptions,
  type AttachResult,
  type AttachSbomOptions,
  type AttachSbomResult,
  attachReferrer,
  attachSbom,
  type FoundSbom,
  findSbom,
  listReferrers,
  readSbom,
  referrersTag,
  SPDX_MEDIA_TYPE,
} from './sbom/referrers.js';
export { type SbomFile, type SbomInput, type SbomPackage, spdxDocument } from './sbom/spdx.js';
export {
  generateKeys,
  type KeyPair,
  keyHint,
  loadPrivateKey,
  loadPublicKey,
  parsePrivateKey,
  parsePublicKey,
} from './sign/keys.js';
export {
  type Attestation,
  type AttestOptions,
  attestImage,
  type Check,
  type SignedManifest,
  type SignOptions,
  type SignResult,
  signatureTag,
  signImage,
  type VerifyOptions,
  type VerifyReport,
  verifyImage,
} from './sign/sign.js';
export { type ProvenanceInput, provenancePredicate, SLSA_PROVENANCE_V1 } from './sign/slsa.js';
export { cacheDir, openCache } from './store/cache.js';
export { OciLayout } from './store/layout.js';
export type { CopyEvent, CopyOptions, CopyResult } from './transport/copy.js';
export { type OpenOptions, openDestination, openSource } from './transport/open.js';
export { type ImageLocation, parseLocation } from './transport/parse.js';
export type { ImageDestination, ImageSource } from './transport/types.js';
export { inspectWasm, type WasmInfo } from './wasm/inspect.js';
export { isWasmFormat, WASM_FORMATS, type WasmFormat } from './wasm/package.js';
