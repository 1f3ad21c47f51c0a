/**
 * wkg (wasm-pkg-tools) and the oci-wasm crate: the CNCF "Wasm OCI Artifact" layout, one
 * application/wasm layer under an application/vnd.wasm.config.v0+json config.
 */
import { MediaType } from '../../oci/media-types.js';
import { defineConsumer, picked, type Rule } from '../consumer.js';

const OCI_WASM = 'bytecodealliance/rust-oci-wasm src/client.rs (WasmClient::pull, pull_manifest_and_config)';

const RULES: readonly Rule[] = [
  {
    id: 'wkg.manifest',
    severity: 'fail',
    says: 'the manifest names its mediaType application/vnd.oci.image.manifest.v1+json ("Wasm components must have a manifest of type ...")',
    source: OCI_WASM,
  },
  {
    id: 'wkg.config',
    severity: 'fail',
    says: 'the config is application/vnd.wasm.config.v0+json with created, architecture, os and layerDigests ("Wasm components must have a config of type ...")',
    source: `${OCI_WASM}; src/config.rs (WasmConfig)`,
  },
  {
    id: 'wkg.layer',
    severity: 'fail',
    says: 'exactly one layer, of type application/wasm ("Wasm components must have exactly one layer", "Incompatible layer media type")',
    source: `${OCI_WASM}; bytecodealliance/wasm-pkg-tools crates/wkg/src/oci.rs`,
  },
  {
    id: 'wkg.platform',
    severity: 'fail',
    says: 'wasm-pkg-client sets no platform resolver, so an index is refused ("Received Image Index/Manifest List, but platform_resolver was not defined")',
    source:
      'bytecodealliance/wasm-pkg-tools crates/wasm-pkg-client/src/oci/config.rs; oras-project/rust-oci-client src/client.rs',
  },
];

const CONFIG_FIELDS = ['created', 'architecture', 'os', 'layerDigests'] as const;

export const wkg = defineConsumer({
  name: 'wkg',
  title: 'wkg and oci-wasm (CNCF Wasm OCI Artifact)',
  rules: RULES,
  replay(subject, f) {
    if (subject.index) {
      f.add(
        'wkg.platform',
        'the reference names an index; wkg reads a manifest only',
        'push the artifact itself, not an index of it',
      );
      return undefined;
    }
    const image = subject.images[0];
    if (!image) return undefined;
    if (image.declaredMediaType !== MediaType.OciManifest)
      f.add(
        'wkg.manifest',
        image.declaredMediaType === undefined
          ? 'the manifest has no mediaType field'
          : `the manifest type is ${image.declaredMediaType}, not ${MediaType.OciManifest}`,
        '--format artifact',
      );
    if (image.config.mediaType !== MediaType.WasmConfigV0)
      f.add(
        'wkg.config',
        `the config is ${image.config.mediaType}, not ${MediaType.WasmConfigV0}`,
        '--format artifact',
      );
    else {
      const missing = CONFIG_FIELDS.filter((k) => image.config.json?.[k] === undefined);
      if (missing.length > 0)
        f.add('wkg.config', `the config lacks ${missing.join(', ')}`, '--format artifact writes every field');
    }
    if (image.layers.length !== 1 || image.layers[0]!.mediaType !== MediaType.WasmLayer)
      f.add(
        'wkg.layer',
        image.layers.length !== 1
          ? `${image.layers.length} layers; exactly one is read`
          : `the layer is ${image.layers[0]!.mediaType}, not ${MediaType.WasmLayer}`,
        '--format artifact',
      );
    return picked(image, undefined, image.layers[0]?.digest);
  },
});
