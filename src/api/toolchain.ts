/** `kiln-oci/toolchain`: language presets, toolchain images in the store, their root filesystems, the runners. */

export {
  forgetToolchains,
  type ResolvedToolchain,
  resolveToolchain,
  type StoredToolchain,
  storedToolchains,
  toolchainName,
} from '../toolchain/images.js';
export {
  detectLanguage,
  isLanguage,
  LANGUAGES,
  type Language,
  type Preset,
  preset,
} from '../toolchain/presets/index.js';
export { listRootfs, pruneRootfs, type RootfsEntry } from '../toolchain/rootfs.js';
export { RUNNER_NAMES, type RunnerName } from '../toolchain/runner.js';
