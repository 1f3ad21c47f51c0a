/**
 * Safe extraction of an image's flattened filesystem (see flatten.ts) into a directory.
 *
 * Nothing is ever written outside the directory: paths with `..` are refused (flatten reports them),
 * every parent of an entry is checked component by component with lstat and must be a real directory
 * (a symlink among them is refused, never followed), files are opened with O_NOFOLLOW|O_EXCL, and a
 * hard link's target must resolve the same way. What is refused or skipped is collected and returned;
 * everything else is extracted.
 *
 * Device nodes and fifos are never made (skipped, or refused with `devices: 'refuse'`); setuid and
 * setgid bits on files are kept as docker and umoci keep them, or cleared (`setuid: 'strip'`), or the
 * file refused (`setuid: 'refuse'`). Names the filesystem cannot hold (a component over 255 bytes, a
 * path over 4095) are skipped. Layers are read within the gzip bomb limits (see expansionLimits).
 *
 * Assumes nothing else writes into the directory meanwhile: a fresh directory is built under a
 * temporary name next to it and renamed into place, so others cannot see or race with it.
 */
import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { KilnContext } from '../context.js';
import { ioError, KilnError, unlessMissing } from '../errors.js';
import { type ExpansionLimits, expansionLimits } from '../layer/tar-reader.js';
import type { Platform } from '../oci/platform.js';
import type { Descriptor } from '../oci/types.js';
import type { ImageSource } from '../transport/types.js';
import { type FlatEntry, type FlatItem, flatPath, flattenLayers, shownPath, withImage } from './flatten.js';

/** An entry refused or skipped while unpacking: its path, why, and its layer. */
export interface UnpackIssue {
  path: string;
  reason: string;
  /** The layer (index in the manifest, 0 at the bottom) the entry came from. */
  layer: number;
}

/** What `extractFlat` wrote into a directory: the entries, and those refused or skipped. */
export interface ExtractResult {
  /** Entries written. */
  entries: number;
  /** Entries not written because they would have escaped the directory. */
  refused: UnpackIssue[];
  /** Entries not written for other reasons (device nodes, links to nothing...). */
  skipped: UnpackIssue[];
  /** Files written without their setuid/setgid bits (`setuid: 'strip'`). */
  stripped: UnpackIssue[];
}

/** What to do with setuid/setgid bits on files: keep them, clear them, or refuse the file. */
export type SetuidPolicy = 'keep' | 'strip' | 'refuse';
/** Device nodes and fifos are never created: skipped with a note, or refused. */
export type DevicePolicy = 'skip' | 'refuse';

export interface ExtractOptions {
  /** Mode for the root when the image has no entry for it. */
  rootMode?: number;
  /** Default `keep`, as docker and umoci do. */
  setuid?: SetuidPolicy;
  /** Default `skip`. */
  devices?: DevicePolicy;
}

/** Options of `unpackImage`: the image, the directory, the limits. */
export interface UnpackOptions {
  platform?: Platform;
  /** Extract into a directory that is not empty. */
  force?: boolean;
  /** Called before each layer is read (for progress). */
  onLayer?: (index: number, layer: Descriptor) => void;
  /** Default `keep`. */
  setuid?: SetuidPolicy;
  /** Default `skip`. */
  devices?: DevicePolicy;
  /** Gzip bomb limits; default from the environment (see expansionLimits). */
  limits?: Partial<ExpansionLimits>;
  /** Registry settings and connections, the abort signal; default: a context for this call. */
  context?: KilnContext;
}

/** What `unpackImage` wrote. */
export interface UnpackResult extends ExtractResult {
  source: string;
  /** The image manifest unpacked (chosen from an index by platform). */
  digest: string;
  dir: string;
  layers: number;
}

const OPEN_NEW_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const OPEN_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
/** Linux's NAME_MAX and PATH_MAX (less its NUL). */
const NAME_MAX = 255;
const PATH_MAX = 4095;
const SETUID_BITS = 0o6000;

/** An entry that cannot be written where it says, with the reason; `unsafe` for escapes. */
class Refusal {
  constructor(
    readonly reason: string,
    readonly unsafe: boolean,
  ) {}
}

/** Why `rel` (relative to a root) cannot be created on Linux, if it cannot. */
function nameTooLong(rel: string, what = 'name'): string | undefined {
  const bytes = Buffer.byteLength(rel);
  if (bytes > PATH_MAX) return `${what} is ${bytes} bytes long, over the ${PATH_MAX} a path may have`;
  for (const seg of rel.split('/'))
    if (Buffer.byteLength(seg) > NAME_MAX)
      return `${what} has a component of ${Buffer.byteLength(seg)} bytes, over the ${NAME_MAX} a file name may have`;
  return undefined;
}

function isNameTooLong(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } } | undefined;
  return e?.code === 'ENAMETOOLONG' || e?.cause?.code === 'ENAMETOOLONG';
}

/**
 * Writes flattened entries under `root` (an existing directory). Owners are kept when running as
 * root; modes (setuid & co. included unless `setuid` says otherwise), symlinks and mtimes always.
 * Directory modes and mtimes are set last, deepest first, so a read-only directory does not stop its
 * own contents from being written.
 */
export async function extractFlat(
  items: AsyncIterable<FlatItem>,
  root: string,
  options: ExtractOptions = {},
): Promise<ExtractResult> {
  const result: ExtractResult = { entries: 0, refused: [], skipped: [], stripped: [] };
  const setuid = options.setuid ?? 'keep';
  const devices = options.devices ?? 'skip';
  const owners = process.getuid?.() === 0;
  // Relative paths known to be real directories (not symlinks) under root: checked or made by us.
  const dirs = new Set<string>(['']);
  const dirMeta = new Map<string, FlatEntry>();
  const abs = (rel: string) => (rel === '' ? root : path.join(root, rel));

  /** Walks the parents of `rel` with lstat, creating missing ones when `create`; never follows a symlink. */
  async function parents(rel: string, create: boolean): Promise<Refusal | undefined> {
    for (let i = rel.indexOf('/'); i !== -1; i = rel.indexOf('/', i + 1)) {
      const dir = rel.slice(0, i);
      if (dirs.has(dir)) continue;
      const st = await lstat(abs(dir));
      if (st === undefined) {
        if (!create) return new Refusal(`${dir} does not exist`, false);
        await fs.mkdir(abs(dir), 0o755).catch((err) => {
          throw ioError(err, abs(dir));
        });
      } else if (st.isSymbolicLink()) {
        return new Refusal(`${dir} is a symlink; writing through it could leave the directory`, true);
      } else if (!st.isDirectory()) {
        return new Refusal(`${dir} is not a directory`, false);
      }
      dirs.add(dir);
    }
    return undefined;
  }

  /** Clears the way for a new entry at `rel`: whatever is there goes (a directory stays for a directory). */
  async function clear(rel: string, keepDir: boolean): Promise<boolean> {
    const full = abs(rel);
    const st = await lstat(full);
    if (st === undefined) return false;
    if (st.isDirectory()) {
      if (keepDir) return true;
      // fs.rm does not follow symlinks inside the tree it removes.
      await fs.rm(full, { recursive: true, force: true });
      for (const d of dirs) if (d === rel || d.startsWith(`${rel}/`)) dirs.delete(d);
      for (const d of dirMeta.keys()) if (d === rel || d.startsWith(`${rel}/`)) dirMeta.delete(d);
    } else {
      await fs.unlink(full);
    }
    return false;
  }

  async function write(
    entry: FlatEntry,
    content: AsyncIterable<Buffer> | undefined,
  ): Promise<Refusal | undefined> {
    const rel = entry.path;
    // Flatten never yields these; callers passing their own entries get the same guarantee.
    if (flatPath(rel) !== rel) return new Refusal('path leaves the root or is not normalised', true);
    if (rel === '') {
      dirMeta.set('', entry);
      return undefined;
    }
    const long = nameTooLong(rel);
    if (long) return new Refusal(`not created: the ${long}`, false);
    const refused = await parents(rel, true);
    if (refused) return refused;
    if (entry.type === 'char' || entry.type === 'block' || entry.type === 'fifo') {
      const what = entry.type === 'fifo' ? 'fifo' : 'device node';
      return devices === 'refuse'
        ? new Refusal(`${what} refused (--devices refuse)`, true)
        : new Refusal(`${what} not created (kiln does not make special files)`, false);
    }
    let mode = entry.mode;
    if (entry.type === 'file' && (mode & SETUID_BITS) !== 0 && setuid !== 'keep') {
      const bits = (mode & 0o4000 ? ['setuid'] : []).concat(mode & 0o2000 ? ['setgid'] : []).join('+');
      if (setuid === 'refuse') return new Refusal(`${bits} file refused (--setuid refuse)`, true);
      mode &= ~SETUID_BITS;
      result.stripped.push({ path: rel, reason: `${bits} bit cleared`, layer: entry.layer });
    }
    const full = abs(rel);
    switch (entry.type) {
      case 'dir': {
        if (!(await clear(rel, true))) await fs.mkdir(full, 0o700);
        dirs.add(rel);
        dirMeta.set(rel, entry);
        return undefined;
      }
      case 'file': {
        await clear(rel, false);
        const fh = await fs.open(full, OPEN_NEW_FILE, 0o600);
        try {
          for await (const chunk of content ?? []) await fh.write(chunk);
          if (owners) await fh.chown(entry.uid, entry.gid);
          // After chown, which clears setuid/setgid.
          await fh.chmod(mode);
          await fh.utimes(entry.mtime, entry.mtime);
        } finally {
          await fh.close();
        }
        return undefined;
      }
      case 'symlink': {
        const target = entry.linkname ?? '';
        if (target.includes('\0')) return new Refusal('symlink target contains a NUL byte', false);
        if (Buffer.byteLength(target) > PATH_MAX)
          return new Refusal(`symlink target is ${Buffer.byteLength(target)} bytes, over ${PATH_MAX}`, false);
        await clear(rel, false);
        await fs.symlink(target, full);
        if (owners) await fs.lchown(full, entry.uid, entry.gid);
        await fs.lutimes(full, entry.mtime, entry.mtime);
        return undefined;
      }
      case 'hardlink': {
        const target = entry.linkname ?? '';
        if (target === '' || flatPath(target) !== target)
          return new Refusal(`hard link target ${shownPath(target)} leaves the root`, true);
        const longTarget = nameTooLong(target, 'hard link target');
        if (longTarget) return new Refusal(`not created: the ${longTarget}`, false);
        const bad = await parents(target, false);
        if (bad) return new Refusal(`hard link target ${shownPath(target)}: ${bad.reason}`, bad.unsafe);
        const st = await lstat(abs(target));
        if (st === undefined)
          return new Refusal(`hard link target ${shownPath(target)} was not extracted`, false);
        if (st.isDirectory())
          return new Refusal(`hard link target ${shownPath(target)} is a directory`, false);
        await clear(rel, false);
        // link(2) does not follow a symlink target: the link is to the symlink itself, inside root.
        await fs.link(abs(target), full);
        return undefined;
      }
      default:
        return new Refusal(`${entry.type} entries are not created`, false);
    }
  }

  for await (const item of items) {
    if (item.kind === 'issue') {
      (item.unsafe ? result.refused : result.skipped).push({
        path: item.path,
        reason: item.reason,
        layer: item.layer,
      });
      continue;
    }
    const { entry } = item;
    let outcome: Refusal | undefined;
    try {
      outcome = await write(entry, item.content);
    } catch (err) {
      // A name within the limits above, but not under this root (deep in a long DIR) or this filesystem.
      if (isNameTooLong(err)) outcome = new Refusal('not created: the name is too long here', false);
      else if (err instanceof KilnError) throw err;
      else throw ioError(err, abs(shownPath(entry.path)));
    }
    if (outcome) {
      const issue = { path: shownPath(entry.path), reason: outcome.reason, layer: entry.layer };
      (outcome.unsafe ? result.refused : result.skipped).push(issue);
    } else result.entries++;
  }

  if (!dirMeta.has('') && options.rootMode !== undefined) await fs.chmod(root, options.rootMode);
  // Deepest first: a parent made read-only must not stop its children's metadata from being set.
  const order = [...dirMeta.keys()].sort((a, b) => depth(b) - depth(a));
  for (const rel of order) {
    const entry = dirMeta.get(rel)!;
    if (rel !== '' && (await parents(rel, false))) continue;
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(abs(rel), OPEN_DIR);
    } catch {
      continue; // replaced by a non-directory later in the stream
    }
    try {
      if (owners) await fh.chown(entry.uid, entry.gid);
      await fh.chmod(entry.mode);
      await fh.utimes(entry.mtime, entry.mtime);
    } catch (err) {
      throw ioError(err, abs(rel));
    } finally {
      await fh.close();
    }
  }
  return result;
}

function depth(rel: string): number {
  if (rel === '') return -1;
  let n = 0;
  for (const c of rel) if (c === '/') n++;
  return n;
}

function lstat(p: string): Promise<import('node:fs').Stats | undefined> {
  return unlessMissing(fs.lstat(p), p);
}

type Target =
  | { kind: 'fresh'; dir: string; tmp: string }
  | { kind: 'empty'; dir: string }
  | { kind: 'forced'; dir: string };

/** Checks `dir` before anything is read: absent, or an empty directory, or anything with `force`. */
async function prepare(dir: string, force: boolean): Promise<Target> {
  const full = path.resolve(dir);
  let st: import('node:fs').Stats | undefined;
  try {
    st = await fs.stat(full);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, dir);
  }
  if (st === undefined) {
    if (
      await fs.lstat(full).then(
        () => true,
        () => false,
      )
    )
      throw new KilnError('E_USAGE', `${dir} is a symlink to nothing`);
    const parent = path.dirname(full);
    try {
      const tmp = await fs.mkdtemp(path.join(parent, `.${path.basename(full)}.kiln-`));
      return { kind: 'fresh', dir: full, tmp };
    } catch (err) {
      throw ioError(err, parent);
    }
  }
  if (!st.isDirectory()) throw new KilnError('E_USAGE', `${dir} exists and is not a directory`);
  const real = await fs.realpath(full);
  const names = await fs.readdir(real).catch((err) => {
    throw ioError(err, dir);
  });
  if (names.length === 0) return { kind: 'empty', dir: real };
  if (!force)
    throw new KilnError('E_USAGE', `${dir} is not empty`, {
      hint: 'unpack into a new or empty directory, or pass --force to extract over what is there',
    });
  return { kind: 'forced', dir: real };
}

/**
 * Extracts the flattened filesystem of an image into `dir`, which must not exist or be empty (any
 * directory with `force`). On failure (a corrupt layer, a full disk) a directory kiln created is
 * removed and an empty one emptied again; refused entries are not failures, they are returned.
 */
export async function unpackImage(
  src: string | ImageSource,
  dir: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  const limits = expansionLimits(options.limits); // a bad KILN_MAX_* fails before DIR is touched
  const target = await prepare(dir, options.force ?? false);
  const root = target.kind === 'fresh' ? target.tmp : target.dir;
  try {
    const result = await withImage(src, options, async (source, image) => {
      const layers = image.manifest.layers;
      const items = flattenLayers(source, layers, { onLayer: options.onLayer, limits });
      const extracted = await extractFlat(items, root, {
        // mkdtemp made a fresh root 0700; without a root entry in the image it gets what mkdir gives.
        ...(target.kind === 'fresh' ? { rootMode: 0o755 } : {}),
        ...(options.setuid ? { setuid: options.setuid } : {}),
        ...(options.devices ? { devices: options.devices } : {}),
      });
      return {
        source: source.name,
        digest: image.descriptor.digest,
        dir: target.dir,
        layers: layers.length,
        ...extracted,
      };
    });
    if (target.kind === 'fresh') {
      await fs.rename(root, target.dir).catch((err) => {
        throw ioError(err, dir);
      });
    }
    return result;
  } catch (err) {
    if (target.kind === 'fresh') await fs.rm(root, { recursive: true, force: true }).catch(() => {});
    else if (target.kind === 'empty') {
      for (const name of await fs.readdir(root).catch(() => [] as string[]))
        await fs.rm(path.join(root, name), { recursive: true, force: true }).catch(() => {});
    }
    throw err;
  }
}
