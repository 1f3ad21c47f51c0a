/**
 * containerd 1.6/1.7 pulling a wasm image the way `ctr images pull --platform wasip1/wasm` and the
 * Go client do: the index entry matching the platform asked for, then every layer unpacked into a
 * snapshot by its media type.
 */
import { definePullingConsumer, type Findings, isWasmEntry, picked, type Rule } from '../consumer.js';
import { argvOf, fileIn, type SubjectFile, type SubjectImage } from '../subject.js';

const RULES: readonly Rule[] = [
  {
    id: 'containerd.platform',
    severity: 'fail',
    says: 'an index is narrowed to the platform asked for; with no wasm entry the pull fails ("no match for platform in manifest")',
    source: 'containerd/containerd images/handlers.go (LimitManifests), platforms/platforms.go',
  },
  ...unpackRules('containerd', 'unpacking'),
];

/**
 * The two rules of containerd's unpack, for every consumer that pulls through containerd (ctr, a
 * node's CRI, runwasi's shims): `<prefix>.diff-ids` and the `<prefix>.layers` version gate.
 */
export function unpackRules(prefix: string, who: string): Rule[] {
  return [
    {
      id: `${prefix}.diff-ids`,
      severity: 'fail',
      says: `${who}: the layers of a layer type (application/vnd.oci.image.layer.*, Docker rootfs diffs) must match the config's rootfs.diff_ids one to one ("mismatched image rootfs and manifest layers")`,
      source:
        'containerd/containerd images/image.go (getLayers), pkg/unpack/unpacker.go, images/mediatypes.go (IsLayerType)',
    },
    {
      id: `${prefix}.layers`,
      severity: 'gate',
      says: `${who}: layers of other types (application/wasm, runwasi's and Spin's) are left out of unpacking from 1.6.25 and 1.7.7 ("Allow for images with artifacts to pull"); older versions fail with "mismatched image rootfs and manifest layers"`,
      source:
        'containerd/containerd images/image.go (getLayers, v1.6.25, v1.7.7); containerd/runwasi docs/src/getting-started/demos.md',
    },
  ];
}

export const containerd = definePullingConsumer({
  name: 'containerd',
  title: 'containerd 1.6/1.7 (ctr, the Go client) pulling the wasm platform',
  rules: RULES,
  pull: {
    want: isWasmEntry,
    rule: 'containerd.platform',
    why: (listed) =>
      `the index has no wasm entry (it lists ${listed}); ctr images pull --platform wasip1/wasm finds no match`,
    fix: 'list a wasm image in the index (kiln index create ... with the wasm image)',
  },
  replay(hit, f) {
    checkUnpack(hit.image, f);
    return picked(hit.image, hit.platform);
  },
});

/** What unpacking the picked image meets: its layers against its diff_ids (shared with k8s and runwasi). */
export function checkUnpack(image: SubjectImage, f: Findings, prefix = 'containerd'): void {
  const layerType = image.layers.filter((l) => isLayerType(l.mediaType));
  const rootfs = image.config.json?.rootfs as { diff_ids?: unknown } | undefined;
  const diffIds = Array.isArray(rootfs?.diff_ids) ? rootfs.diff_ids.length : 0;
  if (layerType.length !== diffIds)
    f.add(
      `${prefix}.diff-ids`,
      `${layerType.length} tar layers but ${diffIds} rootfs.diff_ids: "mismatched image rootfs and manifest layers"`,
      '--format image, or --format runwasi (no tar layers, no diff_ids)',
    );
  const other = image.layers.filter((l) => !isLayerType(l.mediaType)).map((l) => l.mediaType);
  if (other.length > 0)
    f.add(
      `${prefix}.layers`,
      `layers of type ${[...new Set(other)].join(', ')} need containerd 1.6.25+ or 1.7.7+ (older versions fail to unpack the image)`,
      '--format image keeps the module in a tar layer every containerd unpacks',
    );
}

/** What a runtime running argv[0] from the unpacked root filesystem says when there is nothing to run. */
export interface RootfsMessages {
  rule: string;
  /** No tar layer (message, fix). */
  noRootfs: [string, string];
  /** No Entrypoint or Cmd (message). */
  noArgv: string;
}

/**
 * The file argv[0] names in the root filesystem unpacked from the tar layers (crun, runwasi without
 * wasm layers), with a finding under `m.rule` when there is none; `unknown` when the file list was not read.
 */
export function rootfsEntrypoint(
  image: SubjectImage,
  f: Findings,
  m: RootfsMessages,
): { path: string; file: SubjectFile | 'unknown' } | undefined {
  const argv = argvOf(image);
  if (!image.layers.some((l) => isLayerType(l.mediaType))) f.add(m.rule, ...m.noRootfs);
  else if (argv.length === 0) f.add(m.rule, m.noArgv, '--format image sets Entrypoint /<name>.wasm');
  else {
    const file = fileIn(image, argv[0]!);
    if (file !== undefined) return { path: argv[0]!, file };
    f.add(m.rule, `argv[0] ${argv[0]} is not a file in the image`, "set the entrypoint to the module's path");
  }
  return undefined;
}

/** containerd's images.IsLayerType: what unpacking applies as a layer (a tar stream, for crun and runwasi's rootfs too). */
export function isLayerType(mediaType: string): boolean {
  return (
    mediaType.startsWith('application/vnd.oci.image.layer.') ||
    mediaType.startsWith('application/vnd.docker.image.rootfs.diff.tar') ||
    mediaType === 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'
  );
}
