import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { KilnError } from '../errors.js';

export interface TarEntryInfo {
  path: string; // normalised: no leading './' or '/', no trailing '/'
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname?: string;
}

/** Sniffs gzip by its magic bytes, so callers need not trust a media type. */
export function isGzip(head: Uint8Array): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
}

const TYPES: Record<string, TarEntryInfo['type']> = {
  file: 'file',
  'contiguous-file': 'file',
  directory: 'dir',
  symlink: 'symlink',
  link: 'hardlink',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

export function cleanTarPath(name: string): string {
  let p = name;
  while (p.startsWith('./')) p = p.slice(2);
  while (p.startsWith('/')) p = p.slice(1);
  while (p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

/**
 * Reads a (possibly gzip-compressed) tar stream entry by entry. `onEntry` gets each entry's
 * content as a stream it may read; content it leaves unread is skipped.
 */
export async function readTar(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  onEntry: (entry: TarEntryInfo, content: AsyncIterable<Buffer>) => Promise<void> | void,
  what = 'layer',
): Promise<void> {
  const extract = tar.extract();
  const input = Readable.from(sniffGunzip(source));
  const consume = (async () => {
    for await (const entry of extract) {
      const h = entry.header;
      const info: TarEntryInfo = {
        path: cleanTarPath(h.name),
        type: TYPES[h.type ?? 'file'] ?? 'other',
        mode: h.mode ?? 0,
        uid: h.uid ?? 0,
        gid: h.gid ?? 0,
        size: h.size ?? 0,
        mtime: h.mtime ? Math.floor(h.mtime.getTime() / 1000) : 0,
      };
      if (h.linkname) info.linkname = h.linkname;
      await onEntry(info, entry as unknown as AsyncIterable<Buffer>);
      for await (const _ of entry) {
        // skip what the callback left unread
      }
    }
  })();
  try {
    await Promise.all([pipeline(input, extract), consume]);
  } catch (err) {
    if (err instanceof KilnError) throw err;
    throw new KilnError('E_BAD_TAR', `${what} is not a readable tar stream: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

async function* asAsync(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  yield* source;
}

async function* sniffGunzip(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  const it = asAsync(source);
  const first = await it.next();
  if (first.done) return;
  async function* all(): AsyncGenerator<Uint8Array> {
    yield first.value;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  }
  if (!isGzip(first.value)) {
    yield* all();
    return;
  }
  const gunzip = zlib.createGunzip();
  const feed = pipeline(Readable.from(all()), gunzip);
  feed.catch(() => {}); // the error also reaches the reader below
  for await (const chunk of gunzip) yield chunk as Buffer;
  await feed;
}

/** Reads one file's bytes out of a layer (small files only: wasm modules, configs). */
export async function readFileFromTar(
  source: AsyncIterable<Uint8Array>,
  wanted: (entry: TarEntryInfo) => boolean,
  limit: number,
  what = 'layer',
): Promise<{ entry: TarEntryInfo; data: Buffer } | undefined> {
  let found: { entry: TarEntryInfo; data: Buffer } | undefined;
  await readTar(
    source,
    async (entry, content) => {
      if (found || entry.type !== 'file' || !wanted(entry)) return;
      if (entry.size > limit)
        throw new KilnError(
          'E_TOO_LARGE',
          `${entry.path} in ${what} is ${entry.size} bytes, over the ${limit} byte limit`,
        );
      const parts: Buffer[] = [];
      for await (const c of content) parts.push(c);
      found = { entry, data: Buffer.concat(parts) };
    },
    what,
  );
  return found;
}

/** Lists a layer's entries (for `kiln inspect --layers` and tests). */
export async function listTar(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  what = 'layer',
): Promise<TarEntryInfo[]> {
  const out: TarEntryInfo[] = [];
  await readTar(source, (e) => void out.push(e), what);
  return out;
}
