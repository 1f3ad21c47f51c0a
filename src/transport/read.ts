import { KilnError } from '../errors.js';
import type { Descriptor } from '../oci/types.js';
import { verified } from '../oci/verify.js';
import type { ImageSource } from './types.js';

/** Reads a small blob (a config, a module) of any source whole, verified, refusing anything over `limit`. */
export async function readSmallBlob(source: ImageSource, desc: Descriptor, limit: number): Promise<Buffer> {
  if (desc.size > limit)
    throw new KilnError(
      'E_TOO_LARGE',
      `blob ${desc.digest} is ${desc.size} bytes, over the ${limit} byte limit`,
    );
  const parts: Buffer[] = [];
  for await (const chunk of verified(await source.fetchBlob(desc), desc, source.name))
    parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}
