/**
 * Istio's WasmPlugin image fetcher (and Envoy behind it): fetches the image for linux/amd64 with
 * go-containerregistry, then reads it as the Docker or OCI "compat" variant (plugin.wasm in the last
 * tar+gzip layer) or the "oci" variant (two layers, one of them the module).
 */
import { MediaType } from '../../oci/media-types.js';
import type { Platform } from '../../oci/platform.js';
import { definePullingConsumer, type Findings, matching, picked, type Rule } from '../consumer.js';
import type { SubjectImage } from '../subject.js';

const SOURCE = 'istio/istio pkg/wasm/imagefetcher.go';

const RULES: readonly Rule[] = [
  {
    id: 'istio.platform',
    severity: 'fail',
    says: "an index is resolved to linux/amd64 (go-containerregistry's default platform); without that entry the fetch fails",
    source: `${SOURCE} (PrepareFetch: desc.Image()); google/go-containerregistry pkg/v1/remote/descriptor.go`,
  },
  {
    id: 'istio.layout',
    severity: 'fail',
    says: 'compat: the last layer is application/vnd.docker.image.rootfs.diff.tar.gzip (Docker manifest) or application/vnd.oci.image.layer.v1.tar+gzip; oci: exactly 2 layers, one application/vnd.module.wasm.content.layer.v1+wasm',
    source: `${SOURCE} (extractDockerImage, extractOCIStandardImage, extractOCIArtifactImage)`,
  },
  {
    id: 'istio.plugin',
    severity: 'fail',
    says: 'compat: the last layer holds a file whose base name is plugin.wasm ("plugin.wasm not found in the archive")',
    source: `${SOURCE} (extractWasmPluginBinary)`,
  },
  {
    id: 'istio.module',
    severity: 'fail',
    says: 'Envoy runs proxy-wasm core modules, not components',
    source: 'envoyproxy/envoy source/extensions/common/wasm (proxy-wasm ABI: core modules)',
  },
];

const AMD64: Platform = { os: 'linux', architecture: 'amd64' };
const OCI_VARIANT_LAYER = MediaType.IstioOciLayer;

export const istio = definePullingConsumer({
  name: 'istio',
  title: 'Istio WasmPlugin (Envoy proxy-wasm)',
  rules: RULES,
  pull: {
    want: matching(AMD64),
    rule: 'istio.platform',
    why: (listed) => `Istio fetches an index for linux/amd64 and it lists only ${listed}`,
    fix: '--node-alias linux/amd64, or push the image itself rather than an index',
  },
  replay: (hit, f) => picked(hit.image, hit.platform, checkLayout(hit.image, f)),
});

/** Replays the fetcher's three readings in its order; returns the layer the module comes from. */
function checkLayout(image: SubjectImage, f: Findings): string | undefined {
  const last = image.layers[image.layers.length - 1];
  const compatType =
    image.mediaType === MediaType.DockerManifest ? MediaType.DockerLayerGzip : MediaType.OciLayerGzip;
  if (last && last.mediaType === compatType) {
    if (last.files && !last.files.some((x) => x.path === 'plugin.wasm' || x.path.endsWith('/plugin.wasm')))
      f.add(
        'istio.plugin',
        `the last layer has no plugin.wasm (it holds ${
          last.files
            .map((x) => x.path)
            .slice(0, 5)
            .join(', ') || 'no files'
        })`,
        '--format istio writes the module as plugin.wasm',
      );
    const plugin = last.files?.find((x) => x.path === 'plugin.wasm' || x.path.endsWith('/plugin.wasm'));
    if (plugin?.wasm === 'component')
      f.add(
        'istio.module',
        'plugin.wasm is a component; Envoy loads core modules',
        'package the proxy-wasm core module',
      );
    return last.digest;
  }
  if (image.mediaType !== MediaType.DockerManifest && image.layers.length === 2) {
    const wasm = image.layers.find((l) => l.mediaType === OCI_VARIANT_LAYER);
    if (wasm) {
      if (wasm.wasm === 'component')
        f.add(
          'istio.module',
          'the module layer is a component; Envoy loads core modules',
          'package the proxy-wasm core module',
        );
      return wasm.digest;
    }
  }
  f.add(
    'istio.layout',
    image.mediaType === MediaType.DockerManifest
      ? `the last layer is ${last?.mediaType ?? 'missing'}, not ${MediaType.DockerLayerGzip}`
      : `neither compat (last layer ${last?.mediaType ?? 'missing'}, want ${MediaType.OciLayerGzip}) nor oci (${image.layers.length} layer${image.layers.length === 1 ? '' : 's'}, want 2 with ${OCI_VARIANT_LAYER})`,
    '--format istio or --format istio-oci',
  );
  return undefined;
}
