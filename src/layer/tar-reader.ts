import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { KilnError } from '../errors.js';
import { isZstd, unzstd } from './zstd.js';

/** One tar entry as listed: path, type, size, mode, link target. */
export interface TarEntryInfo {
  path: string; // normalised: no leading './' or '/', no trailing '/'
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname?: string;
  /** A char or block device's numbers. */
  devmajor?: number;
  devminor?: number;
}

/** Sniffs gzip by its magic bytes, so callers need not trust a media type. */
export function isGzip(head: Uint8Array): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
}

const TYPES: Record<string, Exclude<TarEntryInfo['type'], 'other'>> = {
  file: 'file',
  'contiguous-file': 'file',
  directory: 'dir',
  symlink: 'symlink',
  link: 'hardlink',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

/** The kind of a filesystem entry from tar-stream's header type (none given: a file); undefined for others. */
export function tarEntryType(
  type: string | null | undefined,
): Exclude<TarEntryInfo['type'], 'other'> | undefined {
  return TYPES[type ?? 'file'];
}

export function cleanTarPath(name: string): string {
  let p = name;
  while (p.startsWith('./')) p = p.slice(2);
  while (p.startsWith('/')) p = p.slice(1);
  while (p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

/** How far one layer may expand when it is read: where gzip bombs are stopped. */
export interface ExpansionLimits {
  /** Most bytes one layer's tar stream may hold (after gunzip, or as stored). */
  maxLayerSize: number;
  /** Most uncompressed bytes per gzip byte read, once past EXPANSION_GRACE; Infinity for no limit. */
  maxExpansion: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** Real layers stay far below: a whole distribution is a few GiB. */
export const DEFAULT_MAX_LAYER_SIZE = 32 * GiB;
/**
 * Tar layers compress 2-10 times; a layer of mostly zeros (a sparse disk image) may reach ~1000, and
 * so do gzip bombs, which is what this catches. Raise it for such layers.
 */
export const DEFAULT_MAX_EXPANSION = 100;
const GUNZIP_CHUNK = 256 * 1024;
/** Output a layer may reach before the ratio counts, so small layers of zeros are never refused. */
export const EXPANSION_GRACE = 64 * MiB;

/**
 * The limits to read layers with: those given, else KILN_MAX_LAYER_SIZE / KILN_MAX_EXPANSION from the
 * environment, else the defaults. A malformed environment value is a usage error.
 */
export function expansionLimits(
  given: Partial<ExpansionLimits> = {},
  env: NodeJS.ProcessEnv = process.env,
): ExpansionLimits {
  const size = env.KILN_MAX_LAYER_SIZE;
  const ratio = env.KILN_MAX_EXPANSION;
  return {
    maxLayerSize:
      given.maxLayerSize ?? (size ? parseByteSize(size, 'KILN_MAX_LAYER_SIZE') : DEFAULT_MAX_LAYER_SIZE),
    maxExpansion:
      given.maxExpansion ?? (ratio ? parseExpansion(ratio, 'KILN_MAX_EXPANSION') : DEFAULT_MAX_EXPANSION),
  };
}

/** `512M`, `16G`, `1.5GiB`, `1048576`: K, M, G, T are powers of 1024. */
export function parseByteSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*$/i.exec(text);
  const n = m ? Number(m[1]) * 1024 ** (m[2] ? 'kmgt'.indexOf(m[2].toLowerCase()) + 1 : 0) : Number.NaN;
  if (!Number.isFinite(n) || n < 1 || n > Number.MAX_SAFE_INTEGER)
    throw new KilnError(
      'E_USAGE',
      `${what} takes a size such as 512M, 16G or 1073741824, got '${clip(text)}'`,
    );
  return Math.floor(n);
}

/** A ratio of at least 1, or `off` (no ratio limit). */
export function parseExpansion(text: string, what: string): number {
  if (/^\s*(off|none|unlimited)\s*$/i.test(text)) return Number.POSITIVE_INFINITY;
  const n = /^\s*\d+(?:\.\d+)?\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isFinite(n) || n < 1)
    throw new KilnError(
      'E_USAGE',
      `${what} takes a ratio of at least 1 (e.g. 1000) or off, got '${clip(text)}'`,
    );
  return n;
}

export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

/** A gzip stream gunzipped as it is read. */
async function* gunzipped(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  // Large output chunks: every chunk costs a trip through the thread pool and each stream after it.
  const gunzip = zlib.createGunzip({ chunkSize: GUNZIP_CHUNK });
  const feed = pipeline(Readable.from(source), gunzip);
  feed.catch(() => {}); // the same error reaches the reader of gunzip
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
    await feed;
  } finally {
    gunzip.destroy();
  }
}

/**
 * A layer's tar stream: decompressed when its first bytes say gzip or zstd, as stored otherwise. `checkHead`
 * sees the first bytes (at least 4 unless the blob is shorter) and may refuse them. Fails with
 * E_TOO_LARGE, naming `what`, once the stream passes `limits` (see ExpansionLimits).
 */
export async function* layerStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  what: string,
  limits: ExpansionLimits,
  checkHead?: (head: Buffer) => void,
): AsyncGenerator<Uint8Array> {
  const it = asAsync(source)[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  try {
    while (head.length < 4) {
      const r = await it.next();
      if (r.done) break;
      head = Buffer.concat([head, r.value]);
    }
    checkHead?.(head);
    let read = 0; // bytes of the blob read
    async function* rest(): AsyncGenerator<Uint8Array> {
      if (head.length > 0) {
        read += head.length;
        yield head;
      }
      for (let r = await it.next(); !r.done; r = await it.next()) {
        read += r.value.byteLength;
        yield r.value;
      }
    }
    let out = 0;
    const tooLarge = () =>
      new KilnError(
        'E_TOO_LARGE',
        `${what} is over the ${humanBytes(limits.maxLayerSize)} limit for one uncompressed layer`,
        {
          hint: 'if the layer is genuine, raise the limit: --max-layer-size SIZE (kiln unpack) or KILN_MAX_LAYER_SIZE=SIZE',
        },
      );
    if (!isGzip(head) && !isZstd(head)) {
      for await (const chunk of rest()) {
        out += chunk.byteLength;
        if (out > limits.maxLayerSize) throw tooLarge();
        yield chunk;
      }
      return;
    }
    const format = isGzip(head) ? 'gzip' : 'zstd';
    const plain = format === 'gzip' ? gunzipped(rest()) : unzstd(rest());
    try {
      for await (const chunk of plain) {
        out += chunk.byteLength;
        if (out > limits.maxLayerSize) throw tooLarge();
        if (out > EXPANSION_GRACE && out > limits.maxExpansion * read)
          throw new KilnError(
            'E_TOO_LARGE',
            `${what} expands more than ${limits.maxExpansion} times (${humanBytes(out)} from ${humanBytes(read)} of ${format} so far): refused as a likely ${format} bomb`,
            {
              hint: 'if the layer is genuine, raise the limit: --max-expansion RATIO (kiln unpack) or KILN_MAX_EXPANSION=RATIO',
            },
          );
        yield chunk;
      }
    } catch (err) {
      if (err instanceof KilnError || format === 'gzip') throw err;
      throw new KilnError('E_BAD_ARCHIVE', `${what} is not valid zstd: ${(err as Error).message}`, {
        cause: err,
        hint: 'the blob is damaged, or not the zstd stream its first bytes say',
      });
    } finally {
      await plain.return(undefined);
    }
  } finally {
    await it.return?.(undefined);
  }
}

export interface ReadTarOptions {
  /** Gzip bomb limits; default from the environment (see expansionLimits). */
  limits?: Partial<ExpansionLimits>;
}

/**
 * Reads a (possibly gzip-compressed) tar stream entry by entry. `onEntry` gets each entry's
 * content as a stream it may read; content it leaves unread is skipped.
 */
export async function readTar(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  onEntry: (entry: TarEntryInfo, content: AsyncIterable<Buffer>) => Promise<void> | void,
  what = 'layer',
  options: ReadTarOptions = {},
): Promise<void> {
  const input = layerStream(source, what, expansionLimits(options.limits));
  for await (const { entry, content } of tarEntries(input, what)) await onEntry(entry, content);
}

/**
 * The entries of a plain tar stream, pulled one at a time: each entry's content must be read (or
 * left, and then skipped) before the next is asked for. Failures are E_BAD_TAR naming `what`,
 * unless the source or the consumer failed with a KilnError of its own, which stands.
 */
export async function* tarEntries(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  what: string,
): AsyncGenerator<{ entry: TarEntryInfo; content: AsyncIterable<Buffer> }> {
  const extract = tar.extract();
  // The feed's error is the cause (bad gzip, a digest mismatch, a limit); the extractor's is a consequence.
  const fed = pipeline(Readable.from(asAsync(source)), extract).then(
    () => undefined,
    (err: unknown) => err ?? new Error('unknown error'),
  );
  try {
    for await (const item of extract) {
      const h = item.header;
      const entry: TarEntryInfo = {
        path: cleanTarPath(h.name),
        type: tarEntryType(h.type) ?? 'other',
        mode: h.mode ?? 0,
        // Ids past the header's 7 octal digits travel in PAX records, which tar-stream leaves in `pax`.
        uid: paxId(paxRecord(h.pax, 'uid')) ?? h.uid ?? 0,
        gid: paxId(paxRecord(h.pax, 'gid')) ?? h.gid ?? 0,
        size: h.size ?? 0,
        mtime: h.mtime ? Math.floor(h.mtime.getTime() / 1000) : 0,
      };
      if (h.linkname) entry.linkname = h.linkname;
      if (entry.type === 'char' || entry.type === 'block') {
        entry.devmajor = h.devmajor ?? 0;
        entry.devminor = h.devminor ?? 0;
      }
      yield { entry, content: item as unknown as AsyncIterable<Buffer> };
      for await (const _ of item) {
        // skip what the caller left unread
      }
    }
    const err = await fed;
    if (err) throw err;
  } catch (err) {
    extract.destroy();
    // A verdict of our own (the consumer's, a limit) stands; else the feed's error says why.
    const cause = err instanceof KilnError ? err : ((await fed) ?? err);
    if (cause instanceof KilnError) throw cause;
    throw new KilnError('E_BAD_TAR', `${what} is not a readable tar stream: ${(cause as Error).message}`, {
      cause,
    });
  }
}

async function* asAsync(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  yield* source;
}

/** Reads one file's bytes out of a layer (small files only: wasm modules, configs). */
export async function readFileFromTar(
  source: AsyncIterable<Uint8Array>,
  wanted: (entry: TarEntryInfo) => boolean,
  limit: number,
  what = 'layer',
  options: ReadTarOptions = {},
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
    options,
  );
  return found;
}

/** Lists a layer's entries (for `kiln inspect --layers` and tests). */
export async function listTar(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  what = 'layer',
  options: ReadTarOptions = {},
): Promise<TarEntryInfo[]> {
  const out: TarEntryInfo[] = [];
  await readTar(source, (e) => void out.push(e), what, options);
  return out;
}

/** A PAX uid/gid record as a number, when it is an id Linux can hold (0 to 2^32 - 2). */
function paxId(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,10}$/.test(value)) return undefined;
  const id = Number(value);
  return id < 2 ** 32 - 1 ? id : undefined;
}

function paxRecord(pax: unknown, key: string): string | undefined {
  const value = (pax as Record<string, unknown> | undefined)?.[key];
  return typeof value === 'string' ? value : undefined;
}
