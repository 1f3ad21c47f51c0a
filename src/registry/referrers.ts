/**
 * Referrers in a registry: pushing an artifact with a subject, and keeping the fallback tag when the
 * registry has no referrers API.
 *
 * Concurrency: a registry offers no compare-and-swap on tags: kiln re-reads the tag just before
 * writing, and after writing checks twice (at once, then a few round trips later) that its entry is
 * still there, writing again if a concurrent writer's update dropped it, and failing (E_REGISTRY)
 * after TAG_ATTEMPTS writes. That closes most of the window but not all (measured against
 * distribution 2.8: none lost with up to 8 parallel attaches to one image, about 1 in 16 with 16).
 * Attaching is idempotent, so attaching again repairs it.
 */
import { KilnError } from '../errors.js';
import { MediaType } from '../oci/media-types.js';
import {
  type AttachResult,
  fallbackIndex,
  type ReferrerArtifact,
  referrersTag,
  withEntry,
} from '../oci/referrers.js';
import type { Descriptor, ImageIndex } from '../oci/types.js';
import { encodeJson } from '../oci/validate.js';
import type { Repository } from './repository.js';
import { sleep } from './retry.js';

/** Writes of the fallback tag that a concurrent writer may undo before kiln gives up. */
const TAG_ATTEMPTS = 6;
/** The least wait before the second look at a fallback tag kiln wrote (see attachInRegistry). */
const SETTLE_MIN_MS = 50;

/** Stores `artifact` in `repo` as a referrer of `subject`. */
export async function attachInRegistry(
  repo: Repository,
  artifact: ReferrerArtifact,
  subject: Descriptor,
  signal: AbortSignal | undefined,
): Promise<AttachResult> {
  for (const [desc, bytes] of artifact.blobs) {
    const size = await repo.hasBlob(desc.digest, signal);
    if (size === desc.size || size === -1) continue;
    const blob = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    await repo.uploadBlob(blob, async () => once(bytes), signal ? { signal } : {});
  }
  const pushed = await repo.pushManifest(
    artifact.descriptor.digest,
    artifact.bytes,
    MediaType.OciManifest,
    signal,
  );
  if (pushed.subject) return { descriptor: artifact.descriptor, via: 'referrers-api' };
  const tag = referrersTag(subject.digest);
  let writes = 0;
  let settled = false;
  let roundTrip = 0;
  for (;;) {
    // Read just before writing, and again after: the write is done when the entry is there.
    const started = Date.now();
    const current = await registryFallback(repo, tag, signal);
    if (current?.manifests.some((m) => m.digest === artifact.descriptor.digest)) {
      // After a write of ours, look once more a little later: a concurrent writer that read before
      // our write lands its PUT within about a round trip, and would drop our entry unseen.
      if (writes === 0 || settled) return { descriptor: artifact.descriptor, via: 'fallback-tag' };
      settled = true;
      await sleep(Math.max(SETTLE_MIN_MS, 3 * roundTrip) * (1 + Math.random()), signal);
      continue;
    }
    settled = false;
    if (writes >= TAG_ATTEMPTS)
      throw new KilnError(
        'E_REGISTRY',
        `concurrent writers replaced the referrers tag ${tag} in ${repo.registry.host}/${repo.name} ${writes} times without kiln's entry`,
        { hint: 'attach again: attaching is idempotent' },
      );
    await repo.putManifest(
      tag,
      encodeJson(withEntry(current, artifact.descriptor)),
      MediaType.OciIndex,
      signal,
    );
    writes++;
    roundTrip = Date.now() - started;
  }
}

async function* once(bytes: Buffer): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function registryFallback(
  repo: Repository,
  tag: string,
  signal: AbortSignal | undefined,
): Promise<ImageIndex | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      const { bytes } = await repo.getManifest(tag, signal);
      return fallbackIndex(bytes, `${repo.registry.host}/${repo.name}:${tag}`);
    } catch (err) {
      if (err instanceof KilnError && err.code === 'E_NOT_FOUND') return undefined;
      // distribution may announce one version of a tag being rewritten and send another: read again.
      if (!(err instanceof KilnError && err.code === 'E_DIGEST_MISMATCH') || attempt >= 3) throw err;
    }
  }
}
