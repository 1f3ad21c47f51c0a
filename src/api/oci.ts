/** `kiln-oci/oci`: the OCI model, no I/O: digests, media types, platforms, references, manifest types, validation. */

export { hasAliases, type PlatformAliases, withPlatformAliases } from '../oci/aliases.js';
export { type Digest, parseDigest, sha256 } from '../oci/digest.js';
export { MANIFEST_FORMATS, type ManifestFormat } from '../oci/media-type-policy.js';
export { MediaType } from '../oci/media-types.js';
export {
  formatPlatform,
  hostPlatform,
  isWasmPlatform,
  type Platform,
  parsePlatform,
} from '../oci/platform.js';
export { familiarReference, formatReference, parseReference, type Reference } from '../oci/reference.js';
export type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from '../oci/types.js';
export { type ParsedManifest, parseConfig, parseManifest } from '../oci/validate.js';
