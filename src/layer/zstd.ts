/**
 * zstd layers. Compression runs in @mongodb-js/zstd (native libzstd, prebuilt for each platform in
 * an optional dependency of the package, so it installs with no download or compiler; its work runs
 * on libuv's thread pool), one frame per fixed-size block, several blocks at once. Decompression
 * streams through fzstd (pure JavaScript, any number of frames), so a layer made by any tool reads
 * without holding it whole.
 */
import { createRequire } from 'node:module';
import { Decompress } from 'fzstd';
import { KilnError } from '../errors.js';
import { parallelCompress } from './parallel-compress.js';

/** The first bytes of every zstd frame. */
export const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * Uncompressed bytes per frame. Fixed, so frame boundaries (and so the output) depend only on the
 * input. 4 MiB frames come within ~2% of one frame over the whole stream at level 3 (1 MiB: ~7%).
 */
export const FRAME_SIZE = 4 << 20;

/** The level `zstd` uses by default, and kiln's. */
export const ZSTD_LEVEL = 3;

export interface ZstdOptions {
  level?: number;
  /** Frames compressed at once; defaults to twice the number of cores, plus two. */
  parallel?: number;
}

export function isZstd(head: Uint8Array): boolean {
  return head.length >= 4 && ZSTD_MAGIC.every((b, i) => head[i] === b);
}

type Compress = (data: Buffer, level: number) => Promise<Buffer>;

/** The native compressor, loaded when first needed (it is a few MB, and gzip layers never need it). */
function nativeCompress(): Compress {
  try {
    // bindings.js, not index.js: the latter drops the level argument. Required at run time (never
    // bundled): it loads a native addon from the platform's package beside it in node_modules.
    const { compress } = createRequire(import.meta.url)('@mongodb-js/zstd/bindings.js') as {
      compress: Compress;
    };
    return compress;
  } catch (err) {
    throw new KilnError(
      'E_UNSUPPORTED',
      `zstd compression is not available on this platform: ${(err as Error).message}`,
      {
        cause: err,
        hint: 'use --compression gzip (the default), or install kiln where @mongodb-js/zstd has a prebuilt binary',
      },
    );
  }
}

/** Compresses a stream as concatenated zstd frames (see FRAME_SIZE), deterministic at a fixed level. */
export async function* parallelZstd(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: ZstdOptions = {},
): AsyncGenerator<Buffer> {
  const level = options.level ?? ZSTD_LEVEL;
  const compress = nativeCompress();
  yield* parallelCompress(source, FRAME_SIZE, (block) => compress(block, level), options.parallel);
}

/**
 * Decompresses a zstd stream (one or more frames) as it arrives. Errors are plain Errors with
 * fzstd's message; callers name the stream in their own KilnError.
 */
export async function* unzstd(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  let out: Uint8Array[] = [];
  const d = new Decompress((chunk) => {
    out.push(chunk);
  });
  for await (const chunk of source) {
    d.push(chunk);
    if (out.length) {
      const ready = out;
      out = [];
      yield* ready;
    }
  }
  d.push(new Uint8Array(0), true);
  yield* out;
}
