/**
 * Spin (`spin up --from REF`) and containerd-shim-spin (SpinKube): a Spin application is its locked
 * app (JSON naming each component by layer digest) plus the components and files as layers; a
 * single-layer wasm artifact is run as a one-component "package".
 */
import { MediaType } from '../../oci/media-types.js';
import type { Platform } from '../../oci/platform.js';
import { definePullingConsumer, matching, picked, type Rule } from '../consumer.js';

const RULES: readonly Rule[] = [
  {
    id: 'spin.platform',
    severity: 'fail',
    says: "an index is resolved to the host's os and architecture (oci-client's default resolver); a wasm-only index has no such entry",
    source:
      'oras-project/rust-oci-client src/client.rs (current_platform_resolver); spinframework/spin crates/oci/src/client.rs (pull)',
  },
  {
    id: 'spin.application',
    severity: 'fail',
    says: 'the locked app comes from a layer application/vnd.fermyon.spin.application.v1+config (or an old app\'s config blob); anything else must be a "package" of exactly one wasm layer ("expected single layer in OCI package")',
    source:
      'spinframework/spin crates/oci/src/client.rs (pull), crates/oci/src/loader.rs (load_from_cache); spinframework/containerd-shim-spin',
  },
  {
    id: 'spin.components',
    severity: 'fail',
    says: 'components are layers of type application/vnd.wasm.content.layer.v1+wasm or application/wasm, and are components, not core modules',
    source:
      'spinframework/spin crates/oci/src/client.rs (WASM_LAYER_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE_WKG), crates/oci/src/validate.rs',
  },
];

const COMPONENT_LAYERS: readonly string[] = [MediaType.WasmToOciLayer, MediaType.WasmLayer];
const HOST: Platform = { os: 'linux', architecture: 'amd64' };

export const spin = definePullingConsumer({
  name: 'spin',
  title: 'Spin (spin up --from, containerd-shim-spin)',
  rules: RULES,
  pull: {
    want: matching(HOST),
    rule: 'spin.platform',
    why: (listed) =>
      `Spin resolves an index to the host platform (linux/amd64 here) and it lists only ${listed}`,
    fix: 'push the image itself rather than an index, or --node-alias linux/amd64,linux/arm64',
  },
  replay(hit, f) {
    const image = hit.image;
    const locked = image.layers.find((l) => l.mediaType === MediaType.SpinLockedApp);
    const legacy = typeof image.config.json?.spin_lock_version === 'number';
    const components = image.layers.filter((l) => COMPONENT_LAYERS.includes(l.mediaType));
    if (!locked && !legacy && !(image.layers.length === 1 && components.length === 1))
      f.add(
        'spin.application',
        `no ${MediaType.SpinLockedApp} layer, and not a package of one wasm layer (${image.layers.length} layer${image.layers.length === 1 ? '' : 's'}: ${[...new Set(image.layers.map((l) => l.mediaType))].join(', ')})`,
        'kiln package spin.toml --format spin writes the application as spin registry push does; --format artifact (one application/wasm layer) runs as a one-component package',
      );
    else if (components.length === 0)
      f.add(
        'spin.components',
        `no component layer (${COMPONENT_LAYERS.join(' or ')})`,
        'kiln package spin.toml --format spin, or --format artifact for one component',
      );
    else if (components.some((c) => c.wasm === 'module'))
      f.add(
        'spin.components',
        'a component layer holds a core module; Spin runs components',
        'kiln package --component makes a preview 1 module a component',
      );
    return picked(image, hit.platform, (locked ?? components[0])?.digest);
  },
});
