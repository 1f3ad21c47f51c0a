import { createHash, type Hash } from 'node:crypto';
import { KilnError } from '../errors.js';

/** An OCI digest, `algorithm:hex`. */
export type Digest = `${string}:${string}`;

const HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

/** Checks an `algorithm:hex` digest; only algorithms kiln can verify are accepted. */
export function parseDigest(value: string): { algorithm: 'sha256' | 'sha512'; hex: string } {
  const m = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/.exec(value);
  if (!m) throw new KilnError('E_BAD_DIGEST', `invalid digest '${clip(value)}': expected algorithm:hex`);
  const [, algorithm, hex] = m as unknown as [string, string, string];
  const len = HEX_LENGTH[algorithm];
  if (len === undefined)
    throw new KilnError(
      'E_BAD_DIGEST',
      `unsupported digest algorithm '${clip(algorithm)}' (kiln verifies sha256 and sha512)`,
    );
  if (hex.length !== len || !/^[0-9a-f]+$/.test(hex))
    throw new KilnError(
      'E_BAD_DIGEST',
      `invalid ${algorithm} digest '${clip(value)}': expected ${len} lowercase hex digits`,
    );
  return { algorithm: algorithm as 'sha256' | 'sha512', hex };
}

export function isDigest(value: string): value is Digest {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

/** The sha256 digest of bytes. */
export function sha256(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function hasherFor(digest: string): Hash {
  return createHash(parseDigest(digest).algorithm);
}

export function newHash(algorithm: 'sha256' | 'sha512' = 'sha256'): Hash {
  return createHash(algorithm);
}

/** A stream passed through as it is, hashed and counted on the way; `digest()` and `size()` once read. */
export interface Digesting {
  stream: AsyncGenerator<Uint8Array>;
  digest(): Digest;
  size(): number;
}

export function digesting(source: AsyncIterable<Uint8Array>): Digesting {
  const hash = newHash();
  let size = 0;
  async function* stream(): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      hash.update(chunk);
      size += chunk.byteLength;
      yield chunk;
    }
  }
  return { stream: stream(), digest: () => `sha256:${hash.digest('hex')}`, size: () => size };
}

function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
