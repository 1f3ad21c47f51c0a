import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { parallelCompress } from './parallel-compress.js';

const gzipAsync = promisify(zlib.gzip);

/** Uncompressed bytes per gzip member. Fixed, so member boundaries (and so the output) depend only on the input. */
export const MEMBER_SIZE = 1 << 20;

export interface GzipOptions {
  level?: number;
  /** Members compressed at once; defaults to twice the number of cores, plus two. */
  parallel?: number;
}

/**
 * Compresses a stream as concatenated gzip members, several at a time on libuv's thread pool:
 * valid gzip that every reader accepts, at the speed of all cores. Output order is input order.
 */
export function parallelGzip(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: GzipOptions = {},
): AsyncGenerator<Buffer> {
  const level = options.level ?? 6;
  return parallelCompress(
    source,
    MEMBER_SIZE,
    (block) => gzipAsync(block, { level }).then(fixHeader),
    options.parallel,
  );
}

/** zlib writes the OS byte of the machine it runs on; kiln writes "unix" everywhere so digests match. */
function fixHeader(member: Buffer): Buffer {
  member[9] = 3;
  return member;
}
