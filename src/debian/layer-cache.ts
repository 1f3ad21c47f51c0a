/**
 * Package layers kiln already made, found again: a package layer depends only on its .debs (by
 * SHA-256), the mtime and the merged-/usr directories, so `<store>/debian/layers/<key>.json`
 * records the layer blob and what the packages put there (for the top layer) under a key of those.
 * A record whose blob is gone (garbage collected) is a miss. Writes are atomic.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/types.js';
import { type OciLayout, writeFileAtomic } from '../store/layout.js';
import type { UnpackedPackage } from './layers.js';

/** Bump when what a package layer holds changes, so old records are not used. */
const FORMAT = 'kiln-debian-layer-4';

/** A package layer as recorded. */
export interface CachedLayer {
  descriptor: Descriptor;
  diffId: Digest;
  packages: UnpackedPackage[];
}

/** The record's key: the layer format, the .debs' SHA-256s in order, the mtime and merged-/usr directories. */
export function layerKey(debs: string[], mtime: number, merged: readonly string[]): string {
  return createHash('sha256')
    .update(JSON.stringify({ format: FORMAT, debs, mtime, merged }))
    .digest('hex');
}

function recordPath(store: OciLayout, key: string): string {
  return path.join(store.dir, 'debian', 'layers', `${key}.json`);
}

/** The recorded layer for `key` when its blob is still in the store. */
export async function cachedLayer(store: OciLayout, key: string): Promise<CachedLayer | undefined> {
  let record: CachedLayer;
  try {
    record = JSON.parse(await fs.readFile(recordPath(store, key), 'utf8')) as CachedLayer;
  } catch {
    return undefined; // none yet, or unreadable: made again
  }
  if (!record?.descriptor?.digest || !Array.isArray(record.packages)) return undefined;
  if (!(await store.hasBlob(record.descriptor.digest, record.descriptor.size))) return undefined;
  return record;
}

/** Records a layer under `key`. A failure to record only costs the next run the work again. */
export async function recordLayer(store: OciLayout, key: string, layer: CachedLayer): Promise<void> {
  const file = recordPath(store, key);
  try {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(file, JSON.stringify(layer));
  } catch {
    // the cache is an optimisation
  }
}
