/** `kiln-oci/debian`: images from Debian packages (no daemon, no root), the packages lock file, Debian version comparison. */
export {
  DEFAULT_PACKAGE_LAYERS,
  debianPlatform,
  debianPurl,
  type FromPackagesEvent,
  type FromPackagesOptions,
  type FromPackagesResult,
  type ImagePackage,
  imageFromPackages,
} from '../debian/from-packages.js';
export type { ScriptEffect } from '../debian/layers.js';
export {
  type LockedPackage,
  PACKAGES_LOCK_FILE,
  type PackagesLock,
  readPackagesLock,
} from '../debian/lock.js';
export {
  compareVersions,
  type DebianVersion,
  parseVersion,
  satisfiesVersion,
  type VersionOperator,
} from '../debian/version.js';
