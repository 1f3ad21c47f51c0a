import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';

const gzipAsync = promisify(zlib.gzip);

/** Uncompressed bytes per gzip member. Fixed, so member boundaries (and so the output) depend only on the input. */
export const MEMBER_SIZE = 1 << 20;

export interface GzipOptions {
  level?: number;
  /** Members compressed at once; defaults to the number of cores. */
  parallel?: number;
}

/**
 * Compresses a stream as concatenated gzip members, several at a time on libuv's thread pool:
 * valid gzip that every reader accepts, at the speed of all cores. Output order is input order.
 */
export async function* parallelGzip(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: GzipOptions = {},
): AsyncGenerator<Buffer> {
  const level = options.level ?? 6;
  // Enough members in flight that the pool never waits for the reader, and the reader never
  // waits for the writer: reading, hashing, compressing and writing all overlap.
  const window = Math.max(2, options.parallel ?? availableParallelism() * 2 + 2);
  const queue: Promise<Buffer>[] = [];
  let finished = false;
  let failure: { error: unknown } | undefined;
  let wakeReader: (() => void) | undefined;
  let wakeWriter: (() => void) | undefined;
  const wake = (which: 'reader' | 'writer') => {
    const fn = which === 'reader' ? wakeReader : wakeWriter;
    if (which === 'reader') wakeReader = undefined;
    else wakeWriter = undefined;
    fn?.();
  };
  let stopped = false;

  const reader = (async () => {
    try {
      let members = 0;
      for await (const block of fixedBlocks(source, MEMBER_SIZE)) {
        if (stopped) return;
        const member = gzipAsync(block, { level }).then(fixHeader);
        member.catch(() => {}); // observed by the writer side
        queue.push(member);
        members++;
        wake('writer');
        while (queue.length >= window && !stopped) await new Promise<void>((r) => (wakeReader = r));
      }
      if (members === 0) queue.push(gzipAsync(Buffer.alloc(0), { level }).then(fixHeader)); // empty gzip is still gzip
    } catch (error) {
      failure = { error };
    } finally {
      finished = true;
      wake('writer');
    }
  })();

  try {
    for (;;) {
      if (queue.length > 0) {
        const member = await queue.shift()!;
        wake('reader');
        yield member;
        continue;
      }
      if (failure) throw failure.error;
      if (finished) break;
      await new Promise<void>((r) => (wakeWriter = r));
    }
  } finally {
    stopped = true;
    wake('reader');
    await reader;
  }
}

/** zlib writes the OS byte of the machine it runs on; kiln writes "unix" everywhere so digests match. */
function fixHeader(member: Buffer): Buffer {
  member[9] = 3;
  return member;
}

/** Re-cuts a stream into blocks of exactly `size` bytes (the last may be shorter). */
export async function* fixedBlocks(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  size: number,
): AsyncGenerator<Buffer> {
  let buf = Buffer.allocUnsafe(size);
  let used = 0;
  for await (const chunk of source) {
    let offset = 0;
    while (offset < chunk.byteLength) {
      const n = Math.min(size - used, chunk.byteLength - offset);
      buf.set(chunk.subarray(offset, offset + n), used);
      used += n;
      offset += n;
      if (used === size) {
        yield buf;
        buf = Buffer.allocUnsafe(size);
        used = 0;
      }
    }
  }
  if (used > 0) yield buf.subarray(0, used);
}
