import { KilnError } from '../errors.js';
import { hasherFor } from './digest.js';
import type { Descriptor } from './types.js';

/**
 * Re-hashes a stream as it is read and fails at the end if it is not what the descriptor says.
 * Readers of blob content use it; destinations verify as they write, so a copy hashes each blob once.
 */
export async function* verified(
  source: AsyncIterable<Uint8Array>,
  desc: Descriptor,
  where: string,
): AsyncGenerator<Uint8Array> {
  const hash = hasherFor(desc.digest);
  let size = 0;
  for await (const chunk of source) {
    hash.update(chunk);
    size += chunk.byteLength;
    if (size > desc.size)
      throw new KilnError(
        'E_SIZE_MISMATCH',
        `blob ${desc.digest} in ${where} is larger than ${desc.size} bytes`,
      );
    yield chunk;
  }
  const actual = `${desc.digest.slice(0, desc.digest.indexOf(':'))}:${hash.digest('hex')}`;
  if (size !== desc.size)
    throw new KilnError(
      'E_SIZE_MISMATCH',
      `blob ${desc.digest} in ${where} is ${size} bytes, its descriptor says ${desc.size}`,
    );
  if (actual !== desc.digest)
    throw new KilnError('E_DIGEST_MISMATCH', `blob ${desc.digest} in ${where} hashes to ${actual}`);
}

/** A small blob (a manifest) read whole must have the size its descriptor gives. */
export function expectSize(bytes: Buffer, desc: Descriptor, where: string): Buffer {
  if (bytes.length !== desc.size)
    throw new KilnError(
      'E_SIZE_MISMATCH',
      `${desc.digest} in ${where} is ${bytes.length} bytes, its descriptor says ${desc.size}`,
    );
  return bytes;
}
