/**
 * runwasi's shims (io.containerd.wasmtime.v1, wasmedge, wasmer, wamr, spin): run under containerd,
 * they take the module from the image's wasm layers when the config says architecture wasm, else from
 * the root filesystem at argv[0].
 */
import { MediaType } from '../../oci/media-types.js';
import { definePullingConsumer, isWasmEntry, picked, type Rule } from '../consumer.js';
import { configPlatformOf } from '../subject.js';
import { checkUnpack, rootfsEntrypoint, unpackRules } from './containerd.js';

/** The layer types the shims keep by default (Shim::supported_layers_types). */
export const RUNWASI_LAYER_TYPES: readonly string[] = [MediaType.RunwasiLayer, MediaType.WasmLayer];

const RULES: readonly Rule[] = [
  {
    id: 'runwasi.platform',
    severity: 'fail',
    says: 'the config is read as a platform (os, architecture); only architecture wasm makes the shim use wasm layers',
    source: 'containerd/runwasi crates/containerd-shim-wasm/src/containerd/client.rs (load_modules)',
  },
  {
    id: 'runwasi.one-module',
    severity: 'fail',
    says: 'with wasm layers, exactly one is run: "only a single module is supported when using images with OCI layers"',
    source:
      'containerd/runwasi crates/containerd-shim-wasm/src/sandbox/context.rs; src/shim/shim.rs (supported_layers_types)',
  },
  {
    id: 'runwasi.entrypoint',
    severity: 'fail',
    says: 'without wasm layers the module is the file argv[0] names in the root filesystem: any name, a \\0asm header or wat text (ELF and #! run as Linux)',
    source:
      'containerd/runwasi crates/containerd-shim-wasm/src/sandbox/mod.rs (can_handle), sandbox/context.rs (entrypoint)',
  },
  {
    id: 'runwasi.index',
    severity: 'fail',
    says: "the shim reads the image's target as a manifest; behind an index it finds no wasm layers and falls back to files in the root filesystem",
    source:
      'containerd/runwasi crates/containerd-shim-wasm/src/containerd/client.rs (get_image_manifest_and_digest), src/sys/unix/container/instance.rs',
  },
  ...unpackRules('runwasi', 'containerd unpacks the image before the shim starts'),
];

export const runwasi = definePullingConsumer({
  name: 'runwasi',
  title: 'runwasi shims under containerd (io.containerd.wasmtime.v1, ...)',
  rules: RULES,
  pull: {
    want: isWasmEntry,
    rule: 'runwasi.platform',
    why: (listed) => `the index has no wasm entry (it lists ${listed})`,
    fix: 'list a wasm image in the index',
  },
  replay(hit, f, subject) {
    const image = hit.image;
    checkUnpack(image, f, 'runwasi');
    const { os, architecture } = configPlatformOf(image);
    if (os === '' || architecture === '') {
      f.add(
        'runwasi.platform',
        `the config (${image.config.mediaType}) has no os and architecture; the shim cannot read it as a platform`,
        '--format runwasi or --format image',
      );
      return picked(image, hit.platform);
    }
    const wasmLayers = image.layers.filter((l) => RUNWASI_LAYER_TYPES.includes(l.mediaType));
    if (architecture === 'wasm' && wasmLayers.length > 0) {
      if (subject.index)
        f.add(
          'runwasi.index',
          'the module is in wasm layers, but the reference names an index: the shim parses it as a manifest, fails, and looks for a file instead',
          'push the image itself (kiln package without --wasi-alias/--node-alias), or --format image',
        );
      if (wasmLayers.length > 1)
        f.add(
          'runwasi.one-module',
          `${wasmLayers.length} wasm layers; the shim runs exactly one`,
          'package one module per image',
        );
      return picked(image, hit.platform, wasmLayers[0]!.digest);
    }
    if (wasmLayers.length > 0)
      f.add(
        'runwasi.platform',
        `the config's architecture is ${architecture}, so the shim ignores the wasm layers`,
        '--platform wasip1/wasm (architecture wasm)',
      );
    const entry = rootfsEntrypoint(image, f, {
      rule: 'runwasi.entrypoint',
      noRootfs: [
        `no wasm layer of type ${RUNWASI_LAYER_TYPES.join(' or ')} and no root filesystem: nothing to run`,
        '--format runwasi or --format image',
      ],
      noArgv: 'no Entrypoint or Cmd: the shim has no module path',
    });
    if (entry && entry.file !== 'unknown' && entry.file.wasm === 'not-wasm')
      f.add(
        'runwasi.entrypoint',
        `argv[0] ${entry.path} is not a WebAssembly binary`,
        "set the entrypoint to the module's path",
      );
    return picked(image, hit.platform);
  },
});
