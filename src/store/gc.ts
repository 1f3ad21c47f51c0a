/**
 * Garbage collection of kiln's store: mark every blob reachable from index.json (manifests, their
 * configs and layers, the manifests an index lists) and from build cache entries, then sweep the
 * rest. Another kiln may be writing an image whose blobs are not tagged yet, so unreachable blobs
 * younger than the grace period are kept, except those the caller knows are finished with.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { parseManifest } from '../oci/validate.js';
import type { OciLayout } from './layout.js';

/** What garbage collection removed and kept. */
export interface GcResult {
  removed: number;
  bytes: number;
}

const DEFAULT_GRACE_MS = 10 * 60_000;

async function mark(store: OciLayout): Promise<Set<string>> {
  const live = new Set<string>();
  const pending = (await store.readIndex()).manifests.map((m) => m.digest);
  while (pending.length) {
    const digest = pending.pop()!;
    if (live.has(digest)) continue;
    live.add(digest);
    let bytes: Buffer;
    try {
      bytes = await store.readBlob(digest);
    } catch {
      continue; // missing: nothing below it to keep
    }
    try {
      const parsed = parseManifest(bytes, digest);
      if (parsed.kind === 'index') pending.push(...parsed.index.manifests.map((m) => m.digest));
      else {
        live.add(parsed.manifest.config.digest);
        for (const l of parsed.manifest.layers) live.add(l.digest);
      }
    } catch {}
  }
  const builds = path.join(store.dir, 'builds');
  for (const name of await fs.readdir(builds).catch(() => [] as string[])) {
    try {
      const entry = JSON.parse(await fs.readFile(path.join(builds, name), 'utf8')) as {
        artifact?: { digest?: string };
      };
      if (entry.artifact?.digest) live.add(entry.artifact.digest);
    } catch {}
  }
  return live;
}

/** Removes unreachable blobs: those in `finished` at once, others once older than the grace period. */
export async function collectGarbage(
  store: OciLayout,
  options: { finished?: Set<string>; graceMs?: number } = {},
): Promise<GcResult> {
  const live = await mark(store);
  const grace = options.graceMs ?? DEFAULT_GRACE_MS;
  const result: GcResult = { removed: 0, bytes: 0 };
  const blobs = path.join(store.dir, 'blobs');
  for (const algorithm of await fs.readdir(blobs).catch(() => [] as string[])) {
    for (const hex of await fs.readdir(path.join(blobs, algorithm)).catch(() => [] as string[])) {
      if (hex.startsWith('.')) continue; // a write in progress
      const digest = `${algorithm}:${hex}`;
      if (live.has(digest)) continue;
      const file = path.join(blobs, algorithm, hex);
      const st = await fs.stat(file).catch(() => undefined);
      if (!st) continue;
      if (!options.finished?.has(digest) && Date.now() - st.mtimeMs < grace) continue;
      await fs.rm(file, { force: true });
      result.removed++;
      result.bytes += st.size;
    }
  }
  return result;
}
