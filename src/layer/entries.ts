import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ioError, KilnError } from '../errors.js';
import type { EntryType } from './tar-header.js';

/** One entry of a layer to write. Content comes from a host file or from bytes in memory (small files only). */
export interface LayerEntry {
  path: string; // relative posix path inside the layer, no leading slash
  type: EntryType;
  mode?: number; // defaults by type; normalised unless the layer keeps modes
  uid?: number;
  gid?: number;
  linkname?: string; // symlink target, or for hard links the path of the first entry
  source?: string; // host file for the content
  content?: Uint8Array;
  size?: number;
  /** A char or block device's numbers. */
  devmajor?: number;
  devminor?: number;
}

/**
 * What a directory's device nodes and fifos become: entries of the layer, as GNU tar writes them
 * (`keep`, the default), nothing (`skip`, each named through `onSkip`), or an error (`refuse`).
 */
export type LayerDevicePolicy = 'keep' | 'skip' | 'refuse';

/** An entry of the input left out of the layer, and why. */
export interface SkippedEntry {
  path: string; // in the layer
  reason: string;
}

/** Options of `collectEntries`: ownership, modes, times and device files. */
export interface CollectOptions {
  /** Default `keep`. */
  devices?: LayerDevicePolicy;
  /** Told about each entry left out: sockets always (as tar does), devices and fifos with `skip`. */
  onSkip?: (skipped: SkippedEntry) => void;
}

/** One input of a layer: a host path (`source`) and where it goes in the layer (`dest`). */
export interface LayerInput {
  /** A file or directory on the host. */
  source: string;
  /** Where it goes in the layer: a directory's contents go under it, a file becomes this path. */
  dest: string;
}

/** Normalises a path inside a layer: posix, relative, no `.`/`..` segments. Throws on escape. */
export function layerPath(p: string): string {
  const parts: string[] = [];
  for (const seg of p.replace(/\\/g, '/').split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') throw new KilnError('E_UNSAFE_PATH', `path '${p}' leaves the layer root`);
    parts.push(seg);
  }
  return parts.join('/');
}

/**
 * Walks the inputs and returns entries sorted by path, with parent directories of each
 * destination added. Hard links inside one input are kept as links to the first path seen.
 */
export async function collectEntries(
  inputs: LayerInput[],
  options: CollectOptions = {},
): Promise<LayerEntry[]> {
  const ctx: Context = { devices: options.devices ?? 'keep', onSkip: options.onSkip ?? (() => {}) };
  const byPath = new Map<string, LayerEntry>();
  for (const input of inputs) {
    const dest = layerPath(input.dest);
    let st: import('node:fs').Stats;
    try {
      st = await fs.lstat(input.source);
    } catch (err) {
      throw ioError(err, input.source);
    }
    if (st.isDirectory()) {
      if (dest !== '') addParents(byPath, dest, true);
      await walk(input.source, dest, byPath, ctx);
    } else {
      if (dest === '')
        throw new KilnError('E_USAGE', `a file needs a destination path in the layer: ${input.source}`);
      const entry = await entryFor(input.source, dest, st, ctx);
      if (entry === undefined) continue;
      addParents(byPath, dest, false);
      byPath.set(dest, entry);
    }
  }
  const entries = [...byPath.values()].sort((a, b) => compareBytes(a.path, b.path));
  linkHardlinks(entries);
  return entries;
}

const inodes = new WeakMap<LayerEntry, string>();

interface Context {
  devices: LayerDevicePolicy;
  onSkip: (skipped: SkippedEntry) => void;
}

async function walk(dir: string, prefix: string, out: Map<string, LayerEntry>, ctx: Context): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    throw ioError(err, dir);
  }
  for (const name of names) {
    const full = path.join(dir, name);
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    let st: import('node:fs').Stats;
    try {
      st = await fs.lstat(full);
    } catch (err) {
      throw ioError(err, full);
    }
    const entry = await entryFor(full, rel, st, ctx);
    if (entry === undefined) continue;
    out.set(rel, entry);
    if (st.isDirectory()) await walk(full, rel, out, ctx);
  }
}

async function entryFor(
  full: string,
  rel: string,
  st: import('node:fs').Stats,
  ctx: Context,
): Promise<LayerEntry | undefined> {
  if (st.isDirectory()) return { path: rel, type: 'dir', mode: st.mode };
  if (st.isSymbolicLink()) {
    const target = await fs.readlink(full).catch((err) => {
      throw ioError(err, full);
    });
    return { path: rel, type: 'symlink', linkname: target, mode: 0o777 };
  }
  if (st.isFile()) {
    const entry: LayerEntry = { path: rel, type: 'file', mode: st.mode, source: full, size: st.size };
    if (st.nlink > 1) inodes.set(entry, `${st.dev}:${st.ino}`);
    return entry;
  }
  if (st.isSocket()) {
    // A socket is a live endpoint of some process, meaningless in an image; tar leaves them out too.
    ctx.onSkip({ path: rel, reason: 'socket left out (tar does the same)' });
    return undefined;
  }
  const type = st.isCharacterDevice()
    ? 'char'
    : st.isBlockDevice()
      ? 'block'
      : st.isFIFO()
        ? 'fifo'
        : undefined;
  if (type === undefined)
    throw new KilnError('E_UNSUPPORTED', `${full} is a file of a type kiln does not know`, {
      hint: 'remove it from the directory, or copy the directory without it',
    });
  const what = type === 'fifo' ? 'fifo' : 'device node';
  if (ctx.devices === 'skip') {
    ctx.onSkip({ path: rel, reason: `${what} left out (--devices skip)` });
    return undefined;
  }
  if (ctx.devices === 'refuse')
    throw new KilnError('E_UNSUPPORTED', `${full} is a ${what}, refused (--devices refuse)`, {
      hint: '--devices keep writes device nodes and fifos into the layer (as tar does), --devices skip leaves them out',
    });
  if (type === 'fifo') return { path: rel, type, mode: st.mode };
  return { path: rel, type, mode: st.mode, ...deviceNumbers(st.rdev) };
}

/** A Linux dev_t (fs.Stats' rdev) split into its major and minor numbers, as glibc's major()/minor() split it. */
export function deviceNumbers(rdev: number): { devmajor: number; devminor: number } {
  const d = BigInt(rdev);
  return {
    devmajor: Number(((d & 0xfff00n) >> 8n) | ((d & 0xfffff00000000000n) >> 32n)),
    devminor: Number((d & 0xffn) | ((d & 0xffffff00000n) >> 12n)),
  };
}

function addParents(out: Map<string, LayerEntry>, dest: string, includeSelf: boolean): void {
  const parts = dest.split('/');
  const upto = includeSelf ? parts.length : parts.length - 1;
  for (let i = 1; i <= upto; i++) {
    const p = parts.slice(0, i).join('/');
    if (!out.has(p)) out.set(p, { path: p, type: 'dir', mode: 0o755 });
  }
}

/** After sorting, the first path of each inode keeps the content; later ones become hard links to it. */
function linkHardlinks(entries: LayerEntry[]): void {
  const first = new Map<string, string>();
  for (const e of entries) {
    const key = inodes.get(e);
    if (key === undefined) continue;
    const target = first.get(key);
    if (target === undefined) first.set(key, e.path);
    else {
      e.type = 'hardlink';
      e.linkname = target;
      e.source = undefined;
      e.size = 0;
    }
  }
}

/** Byte-wise comparison of UTF-8 paths, so the order is the same in every locale. */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
