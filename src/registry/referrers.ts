/**
 * Referrers in a registry: pushing an artifact with a subject, and keeping the lists kiln amends
 * under tags: the fallback tag when the registry has no referrers API, cosign's `.sig` beside it.
 *
 * Concurrency: a registry offers no compare-and-swap on tags, so a writer that read the tag before
 * another's write landed drops that entry when it writes. `amendInRegistry` makes every entry land:
 *
 * - it re-reads the tag after writing, and writes again until every entry it knows of is there:
 *   its own and **every entry it has seen there** since it started, so a writer repairs what another
 *   writer's stale write dropped, not only its own;
 * - before writing again it waits a random while (growing with each write), so writers that keep
 *   undoing each other fall out of step;
 * - it returns only once the tag has held everything for a settle window: a few round trips when
 *   nothing else wrote (the uncontended cost is two reads and one short wait), and at least
 *   CONTENDED_SETTLE_MS once another writer was seen, so a writer still between its read and its
 *   write is caught before this one leaves;
 * - after TAG_ATTEMPTS writes without its entries holding it fails (E_REGISTRY), never silently.
 *
 * What is left is a writer stalled for longer than the settle window between its read and its
 * write (a process stopped mid-request), with nobody else left to repair it. Measured against
 * distribution 2.8 (Debian's docker-registry): 16 parallel `kiln sign` processes of one image, each
 * entry landed (test/integration/sign-copy.test.ts), where the earlier loop lost up to 2 of 16
 * bundle entries and all but one `.sig` layer.
 */
import { KilnError } from '../errors.js';
import { sha256 } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import {
  type AmendResult,
  type AttachResult,
  type BlobContent,
  FALLBACK_LIST,
  type ReferrerArtifact,
  referrersTag,
  type TagList,
} from '../oci/referrers.js';
import type { Descriptor } from '../oci/types.js';
import type { Repository } from './repository.js';
import { sleep } from './retry.js';

/** Writes of a tag that concurrent writers may undo before kiln gives up. */
const TAG_ATTEMPTS = 10;
/** The least settle window when no other writer was seen (see amendInRegistry). */
const SETTLE_MIN_MS = 50;
/** The least settle window once another writer was seen changing the tag. */
const CONTENDED_SETTLE_MS = 500;
/** The longest random wait before writing again. */
const BACKOFF_MAX_MS = 1_000;

/** Stores `artifact` in `repo` as a referrer of `subject`. */
export async function attachInRegistry(
  repo: Repository,
  artifact: ReferrerArtifact,
  subject: Descriptor,
  signal: AbortSignal | undefined,
): Promise<AttachResult> {
  await uploadMissing(repo, artifact.blobs, signal);
  const pushed = await repo.pushManifest(
    artifact.descriptor.digest,
    artifact.bytes,
    artifact.descriptor.mediaType || MediaType.OciManifest,
    signal,
  );
  if (pushed.subject) return { descriptor: artifact.descriptor, via: 'referrers-api' };
  await amendInRegistry(repo, referrersTag(subject.digest), FALLBACK_LIST, [artifact.descriptor], [], signal);
  return { descriptor: artifact.descriptor, via: 'fallback-tag' };
}

/** Uploads the blobs the registry lacks. */
async function uploadMissing(
  repo: Repository,
  blobs: readonly BlobContent[],
  signal: AbortSignal | undefined,
): Promise<void> {
  for (const [desc, content] of blobs) {
    const size = await repo.hasBlob(desc.digest, signal);
    if (size === desc.size || size === -1) continue;
    const blob = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    await repo.uploadBlob(blob, async () => (Buffer.isBuffer(content) ? once(content) : content()), {
      ...(signal ? { signal } : {}),
    });
  }
}

/**
 * Adds `add` to the list `list` keeps under `tag` (the blobs they name uploaded first), keeping
 * every entry already there, and returns once all of them hold (see the top of this file).
 */
export async function amendInRegistry<E>(
  repo: Repository,
  tag: string,
  list: TagList<E>,
  add: readonly E[],
  blobs: readonly BlobContent[],
  signal: AbortSignal | undefined,
): Promise<AmendResult> {
  await uploadMissing(repo, blobs, signal);
  const where = `${repo.registry.host}/${repo.name}:${tag}`;
  /** Every entry seen under the tag, then ours: what the tag must end up holding. */
  const known = new Map<string, E>();
  const ours = new Map(add.map((e) => [list.key(e), e]));
  let writes = 0;
  let wrote: string | undefined;
  let lastRead: string | undefined;
  let contended = false;
  let rested = false;
  let roundTrip = 0;
  /** When the tag was first read complete with its current content. */
  let completeSince = 0;
  for (;;) {
    const started = Date.now();
    const current = await readList(repo, tag, list, where, signal);
    const read = Date.now() - started;
    const digest = current?.digest ?? 'absent';
    // Another writer moved the tag: what we wrote is not what is there, and it changed since we read.
    if (lastRead !== undefined && digest !== lastRead && digest !== wrote) contended = true;
    const changed = digest !== lastRead;
    lastRead = digest;
    for (const e of current?.entries ?? []) if (!known.has(list.key(e))) known.set(list.key(e), e);
    const present = new Set((current?.entries ?? []).map((e) => list.key(e)));
    const missing = [...new Map([...known, ...ours]).entries()].flatMap(([k, e]) =>
      present.has(k) ? [] : [e],
    );
    if (missing.length === 0 && current) {
      // Nothing written and nothing else moving: it was there already (attaching is idempotent).
      if (writes === 0 && !contended) return { descriptor: current.descriptor, entries: present.size };
      if (changed || completeSince === 0) completeSince = Date.now();
      const settle = contended
        ? Math.max(CONTENDED_SETTLE_MS, 10 * roundTrip)
        : Math.max(SETTLE_MIN_MS, 3 * roundTrip);
      const waited = Date.now() - completeSince;
      if (waited >= settle) return { descriptor: current.descriptor, entries: present.size };
      await sleep(Math.min(settle - waited, settle / 3) * (0.5 + Math.random()), signal);
      continue;
    }
    completeSince = 0;
    if (writes >= TAG_ATTEMPTS)
      throw new KilnError(
        'E_REGISTRY',
        `concurrent writers replaced ${where} ${writes} times, each time without ${missing.length === 1 ? 'an entry' : `${missing.length} entries`} kiln wrote or saw there`,
        { hint: 'run the command again: signing, attesting and attaching are idempotent' },
      );
    // Someone undid a write of ours: wait a random while, then read again and write at once.
    if (writes > 0 && !rested) {
      rested = true;
      const cap = Math.min(BACKOFF_MAX_MS, Math.max(SETTLE_MIN_MS, roundTrip, read) * 2 ** writes);
      await sleep(cap * Math.random(), signal);
      continue;
    }
    rested = false;
    const next = list.manifest([...(current?.entries ?? []), ...missing], current?.bytes);
    await uploadMissing(repo, next.blobs, signal);
    await repo.putManifest(tag, next.bytes, next.mediaType, signal);
    wrote = sha256(next.bytes);
    writes++;
    // A read and a write: about how long another writer's read-to-write takes.
    roundTrip = Date.now() - started;
  }
}

async function* once(bytes: Buffer): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/** The list under `tag` (undefined when there is no such tag). */
async function readList<E>(
  repo: Repository,
  tag: string,
  list: TagList<E>,
  where: string,
  signal: AbortSignal | undefined,
): Promise<{ descriptor: Descriptor; digest: string; bytes: Buffer; entries: E[] } | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      const { descriptor, bytes } = await repo.getManifest(tag, signal);
      return { descriptor, digest: descriptor.digest, bytes, entries: list.entries(bytes, where) };
    } catch (err) {
      if (err instanceof KilnError && err.code === 'E_NOT_FOUND') return undefined;
      // distribution may announce one version of a tag being rewritten and send another: read again.
      if (!(err instanceof KilnError && err.code === 'E_DIGEST_MISMATCH') || attempt >= 3) throw err;
    }
  }
}
