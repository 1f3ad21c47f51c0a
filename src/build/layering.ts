/**
 * How a native build's files are split into layers, within a budget (`image.layers`, default 3).
 * The binary changes on every edit; what else the build wrote under /out (`lib/`, `share/`, ...)
 * changes rarely. So the binary goes alone into the top layer, and the other files are grouped by
 * their top-level directory, largest group lowest: a rebuild that only changes the binary pushes one
 * new layer, and every other layer keeps its digest (layers are deterministic: same files, same bytes).
 *
 * With a budget of n: the binary takes the top layer and the groups share n - 1 layers, the
 * largest n - 2 groups each alone and the rest together in one (the smallest, least likely to be
 * worth caching apart). A budget of 1 puts everything in one layer.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ioError, KilnError } from '../errors.js';
import { compareBytes, type LayerEntry } from '../layer/entries.js';
import { hostTree } from '../layer/host-tree.js';

export const DEFAULT_LAYER_BUDGET = 3;
/** Where the native binary goes, and the prefix for the other files under /out (FHS: local software). */
export const NATIVE_PREFIX = 'usr/local';

export interface PlannedFile {
  /** Path in the image (relative, posix). */
  path: string;
  /** The file on the host. */
  source: string;
  size: number;
  /** Executable files keep their x bits (modes are otherwise normalised). */
  executable: boolean;
  /** A symlink's target (relative, inside the out directory); its size is 0. */
  linkname?: string;
}

/**
 * The layer entries for `files` (paths relative, posix): their parent directories (0755, as every
 * base has them, so the layer unpacks anywhere), files with normalised modes keeping the exec bit,
 * symlinks as they are; sorted by byte order, as kiln's layers always are.
 */
export function layerEntries(files: readonly PlannedFile[]): LayerEntry[] {
  const byPath = new Map<string, LayerEntry>();
  for (const f of files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!byPath.has(dir)) byPath.set(dir, { path: dir, type: 'dir', mode: 0o755 });
    }
    byPath.set(
      f.path,
      f.linkname !== undefined
        ? { path: f.path, type: 'symlink', linkname: f.linkname }
        : { path: f.path, type: 'file', mode: f.executable ? 0o755 : 0o644, source: f.source, size: f.size },
    );
  }
  return [...byPath.values()].sort((a, b) => compareBytes(a.path, b.path));
}

export interface PlannedLayer {
  /** The groups in this layer (top-level directories under /out, or `app` for the binary). */
  groups: string[];
  files: PlannedFile[];
  size: number;
}

export interface LayerGroup {
  name: string;
  files: PlannedFile[];
  size: number;
}

/** Groups files by the first segment of their path relative to the out directory. */
export function groupFiles(files: Array<PlannedFile & { rel: string }>): LayerGroup[] {
  const groups = new Map<string, LayerGroup>();
  for (const f of files) {
    const slash = f.rel.indexOf('/');
    const name = slash < 0 ? '.' : f.rel.slice(0, slash);
    let g = groups.get(name);
    if (!g) {
      g = { name, files: [], size: 0 };
      groups.set(name, g);
    }
    const { rel: _rel, ...planned } = f;
    g.files.push(planned);
    g.size += f.size;
  }
  return [...groups.values()];
}

/**
 * Plans the layers, bottom first: the groups (largest lowest, ties by name), then the app alone.
 * Deterministic: the same files give the same plan whatever order they are listed in.
 */
export function planLayers(
  groups: LayerGroup[],
  app: PlannedFile,
  budget = DEFAULT_LAYER_BUDGET,
): PlannedLayer[] {
  if (!Number.isInteger(budget) || budget < 1)
    throw new RangeError(`layer budget must be >= 1, got ${budget}`);
  const sorted = [...groups]
    .filter((g) => g.files.length > 0)
    .sort((a, b) => b.size - a.size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const layer = (gs: LayerGroup[], extra: PlannedFile[] = []): PlannedLayer => {
    const files = [...gs.flatMap((g) => g.files), ...extra].sort((a, b) =>
      a.path < b.path ? -1 : a.path > b.path ? 1 : 0,
    );
    return {
      groups: [...gs.map((g) => g.name), ...(extra.length ? ['app'] : [])],
      files,
      size: files.reduce((n, f) => n + f.size, 0),
    };
  };
  if (budget === 1) return [layer(sorted, [app])];
  const lower = budget - 1;
  const out: PlannedLayer[] = [];
  if (sorted.length <= lower) for (const g of sorted) out.push(layer([g]));
  else {
    for (const g of sorted.slice(0, lower - 1)) out.push(layer([g]));
    out.push(layer(sorted.slice(lower - 1)));
  }
  out.push(layer([], [app]));
  return out;
}

/**
 * The files a build left under its out directory, other than the artifact, as planned files under
 * `/usr/local/<rel>`: regular files and symlinks (directories only as their parents; an empty one is
 * not kept). A symlink must be relative and stay inside the directory, also when resolved for real
 * (`a -> b/..` with `b -> .`), and anything else (a device, fifo or socket) is refused: both
 * E_UNSAFE_PATH, as the docker runner refuses them when it copies /out back.
 */
export async function outFiles(
  outDir: string,
  artifactRel: string,
): Promise<Array<PlannedFile & { rel: string }>> {
  const out: Array<PlannedFile & { rel: string }> = [];
  const root = await fs.realpath(outDir).catch((err) => {
    throw ioError(err, outDir);
  });
  for await (const { full, rel, stat: st } of hostTree(outDir, ioError)) {
    if (st.isDirectory() || rel === artifactRel) continue;
    if (st.isFile())
      out.push({
        rel,
        path: `${NATIVE_PREFIX}/${rel}`,
        source: full,
        size: st.size,
        executable: (st.mode & 0o111) !== 0,
      });
    else if (st.isSymbolicLink()) {
      const linkname = await fs.readlink(full).catch((err) => {
        throw ioError(err, full);
      });
      await checkLink(root, full, rel, linkname);
      out.push({
        rel,
        path: `${NATIVE_PREFIX}/${rel}`,
        source: full,
        size: 0,
        executable: false,
        linkname,
      });
    } else
      throw new KilnError(
        'E_UNSAFE_PATH',
        `the build's /out/${rel} is a special file (device, fifo or socket)`,
        {
          hint: 'a build may leave files, directories and symlinks in /out',
        },
      );
  }
  return out;
}

/** Refuses a symlink that is absolute or leads outside `root` (lexically, then for real if it resolves). */
async function checkLink(root: string, full: string, rel: string, target: string): Promise<void> {
  const lexical = path.posix.normalize(path.posix.join(path.posix.dirname(rel), target));
  let escapes = target === '' || target.startsWith('/') || lexical === '..' || lexical.startsWith('../');
  if (!escapes) {
    // A dangling link stays where its text says; one that resolves must land inside.
    const real = await fs.realpath(full).catch(() => undefined);
    escapes = real !== undefined && real !== root && !real.startsWith(`${root}${path.sep}`);
  }
  if (escapes)
    throw new KilnError('E_UNSAFE_PATH', `the build's /out/${rel} is a symlink to ${target}, outside /out`, {
      hint: 'links in /out must be relative and stay inside it (ln -sr)',
    });
}
