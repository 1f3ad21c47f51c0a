import { availableParallelism } from 'node:os';

/**
 * Compresses a stream in fixed-size blocks, several at a time (on libuv's thread pool, where both
 * node:zlib and the zstd binding run), each block its own gzip member or zstd frame: readers of both
 * formats take concatenated members/frames as one stream. Block boundaries depend only on the input,
 * never on the core count, so the output is the same on every machine. Output order is input order.
 */
export async function* parallelCompress(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  blockSize: number,
  compress: (block: Buffer) => Promise<Buffer>,
  parallel?: number,
): AsyncGenerator<Buffer> {
  // Enough blocks in flight that the pool never waits for the reader, and the reader never
  // waits for the writer: reading, hashing, compressing and writing all overlap.
  const window = Math.max(2, parallel ?? availableParallelism() * 2 + 2);
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
      let blocks = 0;
      for await (const block of fixedBlocks(source, blockSize)) {
        if (stopped) return;
        const out = compress(block);
        out.catch(() => {}); // observed by the writer side
        queue.push(out);
        blocks++;
        wake('writer');
        while (queue.length >= window && !stopped) await new Promise<void>((r) => (wakeReader = r));
      }
      if (blocks === 0) queue.push(compress(Buffer.alloc(0))); // empty input still makes a valid stream
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
        const out = await queue.shift()!;
        wake('reader');
        yield out;
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
