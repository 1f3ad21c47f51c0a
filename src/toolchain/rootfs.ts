/**
 * The unpacked root filesystems of toolchain images, for the sandbox runner: one directory per
 * image manifest digest under `<kiln cache>/rootfs/<hex>`, made once and then only read (the
 * sandbox binds it read-only at /).
 *
 * A rootfs is built and finished (mount points added) in a private staging directory next to the
 * others and renamed into place, so a `<hex>` directory that exists is always complete. Two kiln
 * processes unpacking the same image at once both succeed: the first rename wins and the other
 * discards its copy. A staging directory left by a killed kiln is named `.<hex>.tmp-*`; prune
 * removes such leftovers once they are a day old.
 */
import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ioError } from '../errors.js';
import { type UnpackIssue, unpackImage } from '../image/unpack.js';
import { parseDigest } from '../oci/digest.js';
import type { Descriptor } from '../oci/types.js';
import { storeDir } from '../store/kiln-store.js';
import { OciDirSource } from '../transport/oci-dir.js';
import type { ToolchainImage } from './runner.js';

/** Directories the sandbox mounts over; the rootfs is read-only there, so bwrap cannot make them. */
export const MOUNT_POINTS: readonly string[] = ['src', 'out', 'tmp', 'dev', 'proc'];
/** A file bound over when the build has a network (the host's resolver configuration). */
export const RESOLV_CONF = 'etc/resolv.conf';

const STAGING_PREFIX = '.';
const STAGING_MARK = '.tmp-';
/** Staging directories older than this are taken to be left by a killed kiln. */
const STALE_STAGING_MS = 24 * 60 * 60 * 1000;

export interface EnsureRootfsOptions {
  /**
   * Told about entries unpack refused (they would have escaped the directory) or skipped (device
   * nodes, fifos, links to nothing), one line each. They are otherwise ignored: a toolchain needs
   * none of them, and what was refused was never written.
   */
  debug?: (line: string) => void;
  /** Called before each layer is read (for progress on a first, slow unpack). */
  onLayer?: (index: number, layer: Descriptor) => void;
}

/** An unpacked toolchain root filesystem (for the sandbox runner). */
export interface RootfsEntry {
  digest: string;
  dir: string;
  /** Bytes on disk (allocated blocks, hard links counted once). */
  size: number;
}

export function defaultRootfsRoot(): string {
  return path.join(storeDir(), 'rootfs');
}

/** The directory a digest's rootfs lives in (whether or not it exists yet). */
export function rootfsPath(digest: string, root = defaultRootfsRoot()): string {
  // parseDigest allows only lowercase hex, so the name cannot leave `root`.
  return path.join(root, parseDigest(digest).hex);
}

/**
 * The root filesystem of `image`, unpacked on first use and returned at once afterwards. The
 * directory is complete (a rename made it appear) and holds the sandbox's mount points.
 */
export async function ensureRootfs(
  image: ToolchainImage,
  root = defaultRootfsRoot(),
  options: EnsureRootfsOptions = {},
): Promise<string> {
  const { hex } = parseDigest(image.descriptor.digest);
  root = path.resolve(root);
  const dir = path.join(root, hex);
  if (await isDir(dir)) return dir;

  await fs.mkdir(root, { recursive: true }).catch((err) => {
    throw ioError(err, root);
  });
  const staging = await fs.mkdtemp(path.join(root, `${STAGING_PREFIX}${hex}${STAGING_MARK}`)).catch((err) => {
    throw ioError(err, root);
  });
  try {
    const built = path.join(staging, 'rootfs');
    const result = await unpackImage(OciDirSource.forDescriptor(image.store, image.descriptor), built, {
      onLayer: options.onLayer,
    });
    if (options.debug) {
      const say = (kind: string, issue: UnpackIssue) =>
        options.debug?.(
          `rootfs ${hex.slice(0, 12)}: ${kind} ${issue.path} (layer ${issue.layer}): ${issue.reason}`,
        );
      for (const issue of result.refused) say('refused', issue);
      for (const issue of result.skipped) say('skipped', issue);
    }
    await addMountPoints(built);
    try {
      // Atomic: others see no directory or a complete one. A directory already there (another
      // kiln won the race) makes this fail with ENOTEMPTY/EEXIST rather than be replaced.
      await fs.rename(built, dir);
    } catch (err) {
      if (!(await isDir(dir))) throw ioError(err, dir);
    }
    return dir;
  } finally {
    await removeTree(staging).catch(() => {});
  }
}

/**
 * Makes the directories the sandbox mounts over, and an empty /etc/resolv.conf to bind the host's
 * over. Whatever the image has there that is not a directory (a symlink could point the mount
 * anywhere) is replaced; this only ever touches kiln's private copy.
 */
async function addMountPoints(rootfs: string): Promise<void> {
  await withWritableDir(rootfs, async () => {
    for (const name of MOUNT_POINTS) {
      const p = path.join(rootfs, name);
      const st = await lstatOrUndefined(p);
      if (st?.isDirectory()) continue;
      if (st) await removeTree(p);
      await fs.mkdir(p, { mode: 0o755 });
    }
    const etc = path.join(rootfs, 'etc');
    let st = await lstatOrUndefined(etc);
    if (st === undefined) {
      await fs.mkdir(etc, { mode: 0o755 });
      st = await fs.lstat(etc);
    }
    if (!st.isDirectory()) return; // a symlinked /etc: the sandbox just gets no resolv.conf bound
    await withWritableDir(etc, async () => {
      const resolv = path.join(rootfs, RESOLV_CONF);
      const r = await lstatOrUndefined(resolv);
      if (r?.isFile()) return;
      if (r) await removeTree(resolv);
      await fs.writeFile(resolv, '', {
        mode: 0o644,
        flag: constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL,
      });
    });
  }).catch((err) => {
    throw ioError(err, rootfs);
  });
}

/** Runs `fn` with `dir` writable by us (an image may ship a read-only /), then restores its mode. */
async function withWritableDir(dir: string, fn: () => Promise<void>): Promise<void> {
  const mode = (await fs.lstat(dir)).mode & 0o7777;
  const writable = (mode & 0o700) === 0o700 || process.getuid?.() === 0;
  if (!writable) await fs.chmod(dir, mode | 0o700);
  try {
    await fn();
  } finally {
    if (!writable) await fs.chmod(dir, mode);
  }
}

/** The rootfs directories under `root` with their digest and size on disk. */
export async function listRootfs(root = defaultRootfsRoot()): Promise<RootfsEntry[]> {
  const entries: RootfsEntry[] = [];
  for (const { digest, dir } of await rootfsDirs(root)) {
    entries.push({ digest, dir, size: await diskUsage(dir, new Set()) });
  }
  return entries;
}

/**
 * Removes every rootfs whose digest is not in `keep` (full `sha256:…` digests) and staging
 * directories a killed kiln left over a day ago; returns the digests removed. Read-only
 * directories in an image are made writable first, so a non-root user can remove its own cache.
 */
export async function pruneRootfs(keep: Set<string>, root = defaultRootfsRoot()): Promise<string[]> {
  const removed: string[] = [];
  for (const { digest, dir } of await rootfsDirs(root)) {
    if (keep.has(digest)) continue;
    // Renamed away first, so nothing sees (or binds) a half-removed rootfs meanwhile.
    const doomed = await fs.mkdtemp(path.join(root, `${STAGING_PREFIX}${path.basename(dir)}${STAGING_MARK}`));
    try {
      await fs.rename(dir, path.join(doomed, 'rootfs'));
    } catch (err) {
      await fs.rmdir(doomed).catch(() => {});
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // another prune was first
      throw ioError(err, dir);
    }
    await removeTree(doomed).catch((err) => {
      throw ioError(err, doomed);
    });
    removed.push(digest);
  }
  const now = Date.now();
  for (const name of await readdirOrEmpty(root)) {
    if (!name.startsWith(STAGING_PREFIX) || !name.includes(STAGING_MARK)) continue;
    const p = path.join(root, name);
    const st = await lstatOrUndefined(p);
    if (st?.isDirectory() && now - st.mtimeMs > STALE_STAGING_MS) await removeTree(p).catch(() => {});
  }
  return removed;
}

async function rootfsDirs(root: string): Promise<{ digest: string; dir: string }[]> {
  const found: { digest: string; dir: string }[] = [];
  for (const name of await readdirOrEmpty(root)) {
    const algorithm = name.length === 64 ? 'sha256' : name.length === 128 ? 'sha512' : undefined;
    if (algorithm === undefined || !/^[0-9a-f]+$/.test(name)) continue;
    const dir = path.join(root, name);
    if (await isDir(dir)) found.push({ digest: `${algorithm}:${name}`, dir });
  }
  return found.sort((a, b) => a.digest.localeCompare(b.digest));
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw ioError(err, dir);
  }
}

async function diskUsage(p: string, seen: Set<string>): Promise<number> {
  const st = await lstatOrUndefined(p);
  if (st === undefined) return 0;
  const key = `${st.dev}:${st.ino}`;
  if (seen.has(key)) return 0;
  seen.add(key);
  let size = st.blocks * 512;
  if (st.isDirectory()) {
    // A directory without read permission (mode 0 in an image) is counted as its own blocks only.
    const names = await fs.readdir(p).catch(() => [] as string[]);
    for (const name of names) size += await diskUsage(path.join(p, name), seen);
  }
  return size;
}

/**
 * `rm -rf` that also works as a non-root user on trees with read-only directories: on a
 * permission error, every directory in the tree is made u+rwx (symlinks are never followed: only
 * what lstat says is a directory is chmod-ed) and removal is tried again.
 */
export async function removeTree(p: string): Promise<void> {
  try {
    await fs.rm(p, { recursive: true, force: true });
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
  }
  await makeOwnerWritable(p);
  await fs.rm(p, { recursive: true, force: true });
}

async function makeOwnerWritable(p: string): Promise<void> {
  const st = await lstatOrUndefined(p);
  if (!st?.isDirectory()) return;
  if ((st.mode & 0o700) !== 0o700) await fs.chmod(p, (st.mode & 0o7777) | 0o700);
  for (const name of await fs.readdir(p)) await makeOwnerWritable(path.join(p, name));
}

async function isDir(p: string): Promise<boolean> {
  return (await lstatOrUndefined(p))?.isDirectory() ?? false;
}

async function lstatOrUndefined(p: string): Promise<import('node:fs').Stats | undefined> {
  try {
    return await fs.lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
