import * as fs from 'node:fs';
import { ioError, KilnError } from '../errors.js';
import type { LayerEntry } from './entries.js';
import { END_OF_ARCHIVE, encodeHeader, padding } from './tar-header.js';

export interface TarOptions {
  /** Seconds since the epoch for every entry: SOURCE_DATE_EPOCH, else 0. */
  mtime?: number;
  uid?: number;
  gid?: number;
  /**
   * Keep permission bits (setuid, group-write...) instead of normalising to 0644/0755. Device nodes
   * and fifos keep their permission bits either way (less setuid, setgid and sticky unless kept).
   */
  keepModes?: boolean;
}

const READ_CHUNK = 1 << 20;

/** The mtime kiln stamps on entries: SOURCE_DATE_EPOCH when set and valid, else 0. */
export function defaultMtime(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return 0;
  if (!/^\d+$/.test(v))
    throw new KilnError('E_USAGE', `SOURCE_DATE_EPOCH must be a whole number of seconds, got '${v}'`);
  return Number(v);
}

export function normalMode(entry: LayerEntry, keep: boolean): number {
  const mode = entry.mode ?? 0;
  switch (entry.type) {
    case 'dir':
      return keep && entry.mode !== undefined ? mode & 0o7777 : 0o755;
    case 'symlink':
      return 0o777;
    case 'char':
    case 'block':
    case 'fifo':
      // Their permission bits are what they are for (/dev/null 0666, /dev/console 0600): kept, as tar
      // keeps them; only setuid, setgid and sticky go unless modes are kept.
      if (entry.mode === undefined) return 0o644;
      return keep ? mode & 0o7777 : mode & 0o777;
    default:
      if (keep && entry.mode !== undefined) return mode & 0o7777;
      return mode & 0o111 ? 0o755 : 0o644;
  }
}

/** Yields the tar archive of `entries` (already sorted) block by block; file contents are streamed. */
export async function* tarStream(
  entries: Iterable<LayerEntry>,
  options: TarOptions = {},
): AsyncGenerator<Buffer> {
  const mtime = options.mtime ?? defaultMtime();
  const keep = options.keepModes ?? false;
  for (const e of entries) {
    const size = e.type === 'file' ? (e.content?.byteLength ?? e.size ?? 0) : 0;
    yield encodeHeader({
      path: e.path,
      type: e.type,
      mode: normalMode(e, keep),
      uid: e.uid ?? options.uid ?? 0,
      gid: e.gid ?? options.gid ?? 0,
      size,
      mtime,
      linkname: e.linkname,
      devmajor: e.devmajor,
      devminor: e.devminor,
    });
    if (e.type !== 'file' || size === 0) continue;
    if (e.content) yield Buffer.from(e.content.buffer, e.content.byteOffset, e.content.byteLength);
    else if (e.source) yield* fileContent(e.source, size);
    else throw new Error(`layer entry ${e.path} has neither source nor content`);
    const pad = padding(size);
    if (pad) yield Buffer.alloc(pad);
  }
  yield END_OF_ARCHIVE;
}

/**
 * File content is read synchronously on purpose: libuv's thread pool is busy compressing, and an
 * async read would queue behind whole gzip members. A sync read of page-cached data is fast and
 * keeps the pool fed.
 */
async function* fileContent(file: string, size: number): AsyncGenerator<Buffer> {
  const changed = () => new KilnError('E_IO', `${file} changed size while it was being read`);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw ioError(err, file);
  }
  try {
    let done = 0;
    while (done < size) {
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - done));
      let bytesRead: number;
      try {
        bytesRead = fs.readSync(fd, buf, 0, buf.length, done);
      } catch (err) {
        throw ioError(err, file);
      }
      if (bytesRead === 0) throw changed();
      done += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    fs.closeSync(fd);
  }
}
