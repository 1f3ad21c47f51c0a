/** `kiln-oci/image`: reading and changing images: append, mutate, merge, rebase, flatten, unpack, diff, index create, inspect; layers and tars. */
export {
  type AppendedLayer,
  type AppendLayer,
  type AppendOptions,
  type AppendResult,
  appendLayers,
} from '../image/append.js';
export type { ComposeResult } from '../image/compose.js';
export {
  type DiffCounts,
  type DiffLayer,
  type DiffOptions,
  type DiffResult,
  diffImages,
} from '../image/diff.js';
export {
  type ExportOptions,
  type ExportResult,
  exportImage,
  type FlatEntry,
  type FlatIssue,
  type FlatItem,
  flattenLayers,
  writeFlatTar,
} from '../image/flatten.js';
export {
  type FlattenedImage,
  type FlattenImageOptions,
  type FlattenImageResult,
  flattenImage,
} from '../image/flatten-image.js';
export { type ConfigChanges, Image, type ImageLayer } from '../image/image.js';
export { createIndex, type IndexCreateOptions, type IndexCreateResult } from '../image/index-create.js';
export type { InspectedImage, InspectResult } from '../image/inspect.js';
export {
  type ConfigFrom,
  type MergedImage,
  type MergeOptions,
  type MergeResult,
  mergeImages,
} from '../image/merge.js';
export { type KeyChanges, type MutateOptions, type MutateResult, mutateImage } from '../image/mutate.js';
export {
  type RebasedImage,
  type RebaseOptions,
  type RebaseResult,
  rebaseImage,
} from '../image/rebase.js';
export {
  type ExtractResult,
  extractFlat,
  type UnpackIssue,
  type UnpackOptions,
  type UnpackResult,
  unpackImage,
} from '../image/unpack.js';
export {
  type CollectOptions,
  collectEntries,
  type LayerDevicePolicy,
  type LayerEntry,
  type LayerInput,
  type SkippedEntry,
} from '../layer/entries.js';
export {
  type ExpansionLimits,
  expansionLimits,
  listTar,
  parseByteSize,
  parseExpansion,
  type TarEntryInfo,
} from '../layer/tar-reader.js';
export { type WrittenLayer, writeLayer } from '../layer/write-layer.js';
