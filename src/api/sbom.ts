/** `kiln-oci/sbom`: SPDX documents of images and projects, attached and found as OCI referrers. */
export { type ImageFilesOptions, imageFiles } from '../sbom/files.js';
export { lockfilePackages } from '../sbom/lockfiles.js';
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
} from '../sbom/referrers.js';
export { type SbomFile, type SbomInput, type SbomPackage, spdxDocument } from '../sbom/spdx.js';
