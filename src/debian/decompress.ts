/**
 * Decompressing the streams Debian archives hold: gzip in-process (node:zlib); xz and zstd through
 * the `xz` and `zstd` programs, which every Debian and Ubuntu system has (xz-utils is Priority:
 * required; zstd is one apt-get away) and which decode several times faster than JavaScript or
 * WebAssembly decoders. Node 20 has neither codec, and the npm bindings for liblzma need a prebuilt
 * binary fetched at install time or a compiler. Everything streams with backpressure both ways.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { KilnError } from '../errors.js';

/** The compressions of Debian's indexes and of the members of a .deb. */
export type Compression = 'gzip' | 'xz' | 'zstd' | 'none';

/** The compression a file name's suffix says (`data.tar.xz` → xz); undefined for one kiln does not read. */
export function compressionOf(name: string): Compression | undefined {
  if (name.endsWith('.gz')) return 'gzip';
  if (name.endsWith('.xz')) return 'xz';
  if (name.endsWith('.zst')) return 'zstd';
  if (name.endsWith('.tar') || !/\.[a-z0-9]+$/.test(name.replace(/^.*\//, ''))) return 'none';
  return undefined;
}

/** Data that does not decompress was checked against its SHA-256 when stored: a damaged store, or a format kiln can't read. */
const CORRUPT_HINT =
  "its SHA-256 was checked when it was stored: if kiln's copy broke since, an empty KILN_HOME fetches it again";

const TOOLS: Record<'xz' | 'zstd', { args: string[]; apt: string }> = {
  xz: { args: ['-dc'], apt: 'xz-utils' },
  zstd: { args: ['-dcq'], apt: 'zstd' },
};

/** `source` decompressed; `what` names it in errors (E_BAD_ARCHIVE for corrupt data). */
export function decompress(
  source: AsyncIterable<Uint8Array>,
  compression: Compression,
  what: string,
): AsyncIterable<Uint8Array> {
  switch (compression) {
    case 'none':
      return source;
    case 'gzip':
      return gunzip(source, what);
    default:
      return filter(compression, source, what);
  }
}

async function* gunzip(source: AsyncIterable<Uint8Array>, what: string): AsyncGenerator<Uint8Array> {
  const z = zlib.createGunzip();
  const fed = pipeline(Readable.from(source), z);
  fed.catch(() => {}); // the same failure reaches the reader of z, or is awaited below
  try {
    for await (const chunk of z) yield chunk as Buffer;
    await fed;
  } catch (err) {
    if (err instanceof KilnError) throw err;
    throw new KilnError('E_BAD_ARCHIVE', `${what} is not valid gzip: ${(err as Error).message}`, {
      cause: err,
      hint: CORRUPT_HINT,
    });
  } finally {
    z.destroy();
  }
}

/**
 * Runs `xz -dc` or `zstd -dcq` as a filter: `source` written to its stdin (with backpressure) while
 * its stdout is read. A consumer that stops early kills it; a non-zero exit is E_BAD_ARCHIVE with
 * what the tool said.
 */
async function* filter(
  tool: 'xz' | 'zstd',
  source: AsyncIterable<Uint8Array>,
  what: string,
): AsyncGenerator<Uint8Array> {
  const { args, apt } = TOOLS[tool];
  const child = spawn(tool, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    if (stderr.length < 4096) stderr += s;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>(
    (resolve) => {
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
      child.once('close', (code, signal) => resolve({ code, signal }));
    },
  );
  let feedError: unknown;
  const feed = (async () => {
    try {
      for await (const chunk of source) {
        if (child.stdin.destroyed) return;
        if (!child.stdin.write(chunk)) await Promise.race([once(child.stdin, 'drain'), exited]);
      }
      child.stdin.end();
    } catch (err) {
      feedError = err;
      child.kill('SIGKILL');
    }
  })();
  child.stdin.on('error', () => {}); // EPIPE when the tool exits early: its exit status says why
  let finished = false;
  try {
    for await (const chunk of child.stdout) yield chunk as Buffer;
    await feed;
    if (feedError) throw feedError;
    const r = await exited;
    finished = true;
    if (r.error) {
      const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
      throw new KilnError(
        missing ? 'E_UNSUPPORTED' : 'E_IO',
        missing ? `${tool} is not installed: kiln needs it to read ${what}` : `${tool}: ${r.error.message}`,
        { hint: `apt-get install ${apt}`, cause: r.error },
      );
    }
    if (r.code !== 0)
      throw new KilnError(
        'E_BAD_ARCHIVE',
        `${what} is not valid ${tool} data (${tool} ${r.signal ? `killed by ${r.signal}` : `exited ${r.code}`}${stderr ? `: ${stderr.trim().split('\n')[0]}` : ''})`,
        { hint: CORRUPT_HINT },
      );
  } finally {
    if (!finished) {
      child.kill('SIGKILL');
      child.stdout.destroy();
      await feed;
      await exited;
    }
  }
}
