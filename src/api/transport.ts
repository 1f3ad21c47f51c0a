/** `kiln-oci/transport`: images by reference (`oci:`, archives, `docker-daemon:`, registries): open, copy (with referrers), inspect, tags. */
export {
  type ContextOption,
  type CopyCommandOptions,
  type CopyCommandResult,
  copy,
  digest,
  inspect,
  listTags,
} from '../operations.js';
export type { CopyEvent, CopyOptions, CopyResult } from '../transport/copy.js';
export type {
  CopiedReferrer,
  CopiedTag,
  ReferrersCopy,
  SkippedReferrer,
} from '../transport/copy-referrers.js';
export { type OpenOptions, openDestination, openSource } from '../transport/open.js';
export { type ImageLocation, parseLocation } from '../transport/parse.js';
export type { ImageDestination, ImageSource } from '../transport/types.js';
