/**
 * Docker Engine running wasm: `docker run --runtime io.containerd.wasmtime.v1 --platform wasi/wasm`.
 * Only the containerd image store takes wasm images; the classic store (Engine 20.10, and later
 * engines without the containerd snapshotter) refuses any os it does not know.
 */
import { formatPlatform, type Platform, platformMatches } from '../../oci/platform.js';
import { defineConsumer, picked, type Rule } from '../consumer.js';
import { configPlatformOf } from '../subject.js';

const RULES: readonly Rule[] = [
  {
    id: 'docker.platform',
    severity: 'fail',
    says: 'Docker names wasm wasi/wasm: --platform wasi/wasm needs an index entry wasi/wasm, or a single image whose config says os wasi',
    source:
      'moby/moby daemon/containerd/image_pull.go, daemon/images/image.go (platform match of the pulled image)',
  },
  {
    id: 'docker.classic-store',
    severity: 'gate',
    says: 'the classic image store (Engine 20.10) takes only os linux on Linux: pull says "operating system is not supported", load "unknown operating system or architecture"; configs and layers outside application/vnd.oci.image* and application/vnd.docker* are "unsupported media type"',
    source:
      'moby/moby v20.10 distribution/config.go (PlatformFromConfig), distribution/pull_v2.go (checkSupportedMediaType), image/tarexport/load.go; observed in test/integration/interop.test.ts',
  },
  {
    id: 'docker.zstd',
    severity: 'gate',
    says: 'zstd layers (application/vnd.oci.image.layer.v1.tar+zstd) unpack on Engine 23+ and with the containerd image store; Engine 20.10 cannot decompress them',
    source:
      'moby/moby pkg/archive/archive.go (DetectCompression: Zstd from v23.0), distribution/pull_v2.go (v20.10: no zstd layer type)',
  },
];

const WASI: Platform = { os: 'wasi', architecture: 'wasm' };

export const docker = defineConsumer({
  name: 'docker',
  title: 'Docker Engine (--platform wasi/wasm, the containerd image store)',
  rules: RULES,
  replay(subject, f) {
    let hit = subject.index
      ? subject.images.find((i) => i.entryPlatform && platformMatches(WASI, i.entryPlatform))
      : subject.images[0];
    let platform = hit?.entryPlatform ? formatPlatform(hit.entryPlatform) : undefined;
    if (hit && !subject.index) {
      const p = configPlatformOf(hit);
      if (!(p.os === 'wasi' && p.architecture === 'wasm')) {
        f.add(
          'docker.platform',
          `the image's platform is ${p.os || '?'}/${p.architecture || '?'}; docker run --platform wasi/wasm refuses an image that does not match`,
          '--wasi-alias (an index entry wasi/wasm) or --platform wasi/wasm',
        );
        hit = undefined;
      } else platform = 'wasi/wasm';
    } else if (!hit) {
      f.add(
        'docker.platform',
        'the index has no wasi/wasm entry, which docker run --platform wasi/wasm selects',
        '--wasi-alias lists the wasm image under wasi/wasm',
      );
    }
    const os = new Set(subject.images.map((i) => configPlatformOf(i).os).filter((o) => o !== ''));
    const foreign = [...os].filter((o) => o !== 'linux' && o !== 'windows');
    if (foreign.length > 0)
      f.add(
        'docker.classic-store',
        `os ${foreign.join(', ')} loads only into the containerd image store; Engine 20.10's classic store refuses it ("operating system is not supported")`,
        'use Docker Desktop, or an Engine with the containerd image store ("features": {"containerd-snapshotter": true})',
      );
    if (subject.images.some((i) => i.layers.some((l) => l.mediaType.endsWith('+zstd'))))
      f.add(
        'docker.zstd',
        "zstd layers: Engine 20.10 (the classic store) can't decompress them; Engine 23+ and the containerd image store can",
        '--compression gzip',
      );
    return hit && picked(hit, platform);
  },
});
