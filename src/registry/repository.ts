/**
 * Operations on one repository of a registry (OCI distribution spec v1.1): manifests, blobs,
 * uploads (monolithic, chunked, resumed), mounts, tags and referrers.
 */
import type { Readable } from 'node:stream';
import { KilnError } from '../errors.js';
import { type Digest, hasherFor, isDigest, newHash, parseDigest } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import type { Descriptor, ImageIndex } from '../oci/types.js';
import { MAX_MANIFEST_BYTES, parseManifest } from '../oci/validate.js';
import { verified } from '../oci/verify.js';
import { isRetryable, RegistryError } from './errors.js';
import { discard, type HttpResponse, header, readBody, toKilnError } from './http.js';
import { type Registry, type RegistryRequest, registryErrorDetail } from './registry.js';
import { isRetryableStatus, parseRetryAfter, RetryBudget, sleep, withRetry } from './retry.js';

/** Every manifest type kiln reads, so registries don't down-convert to schema 1. */
export const MANIFEST_ACCEPT = [
  MediaType.OciManifest,
  MediaType.OciIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
].join(', ');

export interface UploadOptions {
  /** Blobs up to this size go in one PUT; larger ones in PATCH chunks that can resume. */
  monolithicMax?: number;
  chunkSize?: number;
  signal?: AbortSignal;
}

/** Opens the blob's content from the start: first for the upload, again to resume a broken one. */
export type OpenContent = () => Promise<AsyncIterable<Uint8Array>>;

export interface OpenBlobOptions {
  /** The blob's size, if known: a body that ends short of it is resumed like a broken one. */
  size?: number;
}

const MONOLITHIC_MAX = 32 * 1024 * 1024;
const CHUNK_SIZE = 64 * 1024 * 1024;
const UPLOAD_ATTEMPTS = 4;
/** A manifest PUT refused this way right after its blobs went up is tried again after these waits. */
const MANIFEST_RACE_CODES = new Set(['DIGEST_INVALID', 'MANIFEST_BLOB_UNKNOWN', 'BLOB_UNKNOWN']);
const MANIFEST_RACE_DELAYS_MS = [100, 400, 1600];
/** A download resumes at most this many times the retry policy's attempts, progress or not. */
const RESUME_FACTOR = 4;

/** What fail() should know beyond the response: the registry's error, read already; whether a retry may cure it. */
interface FailOptions {
  detail?: { code?: string; message?: string };
  retryable?: boolean;
}

export class Repository {
  readonly pull: string[];
  readonly push: string[];

  constructor(
    readonly registry: Registry,
    readonly name: string,
  ) {
    this.pull = [`repository:${name}:pull`];
    this.push = [`repository:${name}:pull,push`];
  }

  private where(what: string): string {
    return `${what} in ${this.registry.host}/${this.name}`;
  }

  /**
   * Turns an unexpected status into a RegistryError with the registry's own words, its status, code
   * and Retry-After. `retryable` only where the caller retries at its level: a request's own
   * retries (Registry.request) are spent by the time a status reaches here.
   */
  async fail(res: HttpResponse, what: string, options: FailOptions = {}): Promise<never> {
    const detail =
      options.detail ?? (res.status === 404 || res.status >= 400 ? await registryErrorDetail(res) : {});
    if (res.status < 400) discard(res);
    const said = detail.message ? `: ${detail.message}` : '';
    const code = detail.code ?? '';
    const fields = {
      status: res.status,
      registryCode: detail.code,
      retryAfterMs: parseRetryAfter(header(res, 'retry-after')),
      retryable: options.retryable ?? false,
    };
    if (res.status === 404 || code.endsWith('_UNKNOWN'))
      throw new RegistryError(
        'E_NOT_FOUND',
        `${this.where(what)}: not found${code === 'NAME_UNKNOWN' ? ' (no such repository)' : ''}`,
        fields,
      );
    if (res.status === 403 || code === 'DENIED')
      throw new RegistryError('E_DENIED', `${this.registry.host} denied ${what} in ${this.name}${said}`, {
        ...fields,
        hint: 'check that these credentials may access this repository',
      });
    if (code === 'DIGEST_INVALID')
      throw new RegistryError(
        'E_DIGEST_MISMATCH',
        `${this.registry.host} rejected ${what}: digest does not match content${said}`,
        fields,
      );
    if (code === 'MANIFEST_INVALID' || code === 'MANIFEST_BLOB_UNKNOWN' || code === 'TAG_INVALID')
      throw new RegistryError('E_BAD_MANIFEST', `${this.registry.host} rejected ${what}${said}`, fields);
    if (res.status === 429 || code === 'TOOMANYREQUESTS')
      throw new RegistryError('E_REGISTRY', `${this.registry.host} is rate-limiting (${what})${said}`, {
        ...fields,
        hint: 'wait and try again, or log in for a higher limit',
      });
    throw new RegistryError(
      'E_REGISTRY',
      `${this.registry.host} answered ${res.status} to ${what}${said}`,
      fields,
    );
  }

  /**
   * `fail` for an upload request with a streamed body, which Registry.request can't re-send: a
   * retryable status is marked retryable so the upload resumes or starts over, and so are 404 and
   * 416 when `resumed`: the registry may still have been writing the broken chunk when it reported
   * its Range, then finds the session corrupt (distribution answers 404 BLOB_UPLOAD_INVALID and
   * drops it), and the upload must start over.
   */
  private failUpload(res: HttpResponse, what: string, resumed = false): Promise<never> {
    const retryable =
      isRetryableStatus(res.status) || (resumed && (res.status === 404 || res.status === 416));
    return this.fail(res, what, { retryable });
  }

  private req(r: Omit<RegistryRequest, 'path'> & { path: string }): Promise<HttpResponse> {
    return this.registry.request(r);
  }

  /** A HEAD or GET of a manifest by tag or digest, accepting every manifest type kiln reads. */
  private manifestRequest(
    method: 'HEAD' | 'GET',
    reference: string,
    signal?: AbortSignal,
  ): Promise<HttpResponse> {
    return this.req({
      method,
      path: `/v2/${this.name}/manifests/${reference}`,
      scopes: this.pull,
      headers: { accept: MANIFEST_ACCEPT },
      signal,
    });
  }

  /** `HEAD` a manifest: its descriptor, or undefined when absent. No body is transferred. */
  async headManifest(reference: string, signal?: AbortSignal): Promise<Descriptor | undefined> {
    const res = await this.manifestRequest('HEAD', reference, signal);
    discard(res);
    if (res.status === 404) return undefined;
    if (res.status !== 200) return this.fail(res, `manifest ${reference}`);
    const digest = header(res, 'docker-content-digest');
    const size = Number(header(res, 'content-length'));
    const mediaType = header(res, 'content-type')?.split(';')[0]?.trim();
    // A registry that leaves out the digest on HEAD still answers GET; hash what it sends.
    if (!digest || !isDigest(digest) || !Number.isFinite(size) || !mediaType)
      return (await this.getManifest(reference, signal)).descriptor;
    return { mediaType, digest, size };
  }

  /**
   * A manifest by tag or digest, verified: by digest, the bytes must hash to it; by tag, to the
   * digest the registry announces (if any). Capped at 4 MiB.
   */
  async getManifest(
    reference: string,
    signal?: AbortSignal,
  ): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    // The request is retried where it is sent; a connection cut while the body comes, here: only
    // that, so a failure whose retries are spent is not tried again.
    const got = await withRetry(this.registry.retry, () => this.fetchManifest(reference, signal), {
      signal,
      retryable: () => false,
      again: (r) => (r.cut && !signal?.aborted ? {} : undefined),
    });
    if (got.cut) throw got.cut;
    return got.manifest;
  }

  /** One GET of a manifest; a body cut while read comes back as `cut`, for getManifest to retry. */
  private async fetchManifest(
    reference: string,
    signal?: AbortSignal,
  ): Promise<
    | { manifest: { descriptor: Descriptor; bytes: Buffer }; cut?: undefined }
    | { manifest?: undefined; cut: KilnError }
  > {
    const res = await this.manifestRequest('GET', reference, signal);
    if (res.status !== 200) return this.fail(res, `manifest ${reference}`);
    const length = Number(header(res, 'content-length'));
    if (Number.isFinite(length) && length > MAX_MANIFEST_BYTES) {
      res.body.destroy();
      throw new KilnError(
        'E_TOO_LARGE',
        `${this.where(`manifest ${reference}`)} is ${length} bytes, over the 4 MiB limit`,
      );
    }
    let bytes: Buffer;
    try {
      bytes = await readBody(res, MAX_MANIFEST_BYTES);
    } catch (err) {
      if (isRetryable(err)) return { cut: err as KilnError };
      if (!(err instanceof KilnError) || err.code !== 'E_TOO_LARGE') throw err;
      throw new KilnError('E_TOO_LARGE', `${this.where(`manifest ${reference}`)} is over the 4 MiB limit`, {
        cause: err,
      });
    }
    const announced = header(res, 'docker-content-digest');
    const expected = reference.includes(':') ? reference : announced;
    const algorithm = expected ? parseDigest(expected).algorithm : 'sha256';
    const actual = `${algorithm}:${newHash(algorithm).update(bytes).digest('hex')}`;
    if (expected && actual !== expected)
      throw new KilnError(
        'E_DIGEST_MISMATCH',
        `${this.where(`manifest ${reference}`)} hashes to ${actual}, expected ${expected}`,
      );
    let mediaType = header(res, 'content-type')?.split(';')[0]?.trim();
    if (!mediaType || !/(manifest|index|list)/.test(mediaType)) {
      // Some registries answer application/json: take the type the manifest declares.
      const parsed = parseManifest(bytes, this.where(`manifest ${reference}`));
      mediaType =
        parsed.kind === 'index'
          ? (parsed.index.mediaType ?? MediaType.OciIndex)
          : (parsed.manifest.mediaType ?? MediaType.OciManifest);
    }
    return { manifest: { descriptor: { mediaType, digest: actual as Digest, size: bytes.length }, bytes } };
  }

  /** Pushes a manifest under a tag or its digest; returns the digest the registry stored. */
  async putManifest(
    reference: string,
    bytes: Buffer,
    mediaType: string,
    signal?: AbortSignal,
  ): Promise<string> {
    return (await this.pushManifest(reference, bytes, mediaType, signal)).digest;
  }

  /**
   * putManifest, with what the registry answered: the digest it stored and, for a manifest with a
   * `subject`, its `OCI-Subject` header, which says it indexed the referrer (distribution spec 1.1).
   */
  async pushManifest(
    reference: string,
    bytes: Buffer,
    mediaType: string,
    signal?: AbortSignal,
  ): Promise<{ digest: string; subject?: string }> {
    let res: HttpResponse;
    for (let attempt = 0; ; attempt++) {
      res = await this.req({
        method: 'PUT',
        path: `/v2/${this.name}/manifests/${reference}`,
        scopes: this.push,
        headers: { 'content-type': mediaType },
        body: bytes,
        signal,
      });
      if (res.status === 201 || res.status === 200 || res.status === 202) break;
      const what = `push of manifest ${reference}`;
      if (res.status !== 400 || attempt >= MANIFEST_RACE_DELAYS_MS.length) return this.fail(res, what);
      // distribution writes a repository's blob links in place: a manifest PUT that checks them while
      // another push of a shared blob is writing its link reads an empty digest and is refused with
      // DIGEST_INVALID or *_BLOB_UNKNOWN, though every blob is there. Waiting a moment settles it.
      const detail = await registryErrorDetail(res);
      if (!MANIFEST_RACE_CODES.has(detail.code ?? '')) return this.fail(res, what, { detail });
      await sleep(MANIFEST_RACE_DELAYS_MS[attempt]!, signal);
    }
    discard(res);
    const subject = header(res, 'oci-subject');
    const digest = header(res, 'docker-content-digest') ?? '';
    return subject ? { digest, subject } : { digest };
  }

  /** The blob's size if the repository has it. */
  async hasBlob(digest: string, signal?: AbortSignal): Promise<number | undefined> {
    const res = await this.req({
      method: 'HEAD',
      path: `/v2/${this.name}/blobs/${digest}`,
      scopes: this.pull,
      signal,
      followRedirects: true,
    });
    discard(res);
    if (res.status === 404) return undefined;
    if (res.status !== 200) return this.fail(res, `blob ${digest}`);
    const size = Number(header(res, 'content-length'));
    return Number.isFinite(size) ? size : -1;
  }

  /**
   * A blob's content as the registry sends it (redirects followed). Not verified: readers do that.
   * A body that breaks (reset, premature end, no data for the stall timeout) goes on where it
   * stopped, with a `Range` request, as one stream; within the retry policy, counted from the last
   * byte that came. A registry that answers the whole blob again instead has the bytes already given
   * skipped.
   */
  async openBlob(digest: string, signal?: AbortSignal, options: OpenBlobOptions = {}): Promise<Readable> {
    const res = await this.getBlob(digest, 0, signal).catch((err) => {
      throw this.gaveUp('download', digest, err, 1);
    });
    if (res.status !== 200) return this.fail(res, `blob ${digest}`);
    const { Readable: R } = await import('node:stream');
    return R.from(this.resumingBody(digest, res, options.size, signal), { objectMode: false });
  }

  private getBlob(digest: string, from: number, signal?: AbortSignal): Promise<HttpResponse> {
    return this.req({
      method: 'GET',
      path: `/v2/${this.name}/blobs/${digest}`,
      scopes: this.pull,
      headers: from > 0 ? { range: `bytes=${from}-` } : undefined,
      followRedirects: true,
      signal,
    });
  }

  private async *resumingBody(
    digest: string,
    first: HttpResponse,
    size: number | undefined,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<Buffer> {
    const policy = this.registry.retry;
    const length = Number(header(first, 'content-length'));
    const total =
      size ?? (Number.isInteger(length) && !header(first, 'content-encoding') ? length : undefined);
    let res: HttpResponse | undefined = first;
    let url = first.url;
    let delivered = 0;
    /** Bytes at the start of this response already delivered (a 200 to a Range request). */
    let skip = 0;
    /** Failures since the last byte came (and the time since), and in all. */
    const retries = new RetryBudget(policy, policy.attempts * RESUME_FACTOR);
    try {
      for (;;) {
        try {
          if (!res) {
            res = await this.getBlob(digest, delivered, signal);
            url = res.url;
            const resumed = await this.resumedAt(res, digest, delivered, total);
            if (resumed === undefined) return;
            skip = delivered - resumed;
          }
          for await (const chunk of res.body as AsyncIterable<Buffer>) {
            let bytes = chunk;
            if (skip > 0) {
              const n = Math.min(skip, bytes.length);
              skip -= n;
              bytes = bytes.subarray(n);
              if (bytes.length === 0) continue;
            }
            delivered += bytes.length;
            retries.progress();
            yield bytes;
          }
          res = undefined;
          if (total === undefined || delivered >= total) return;
          const reason = `body ended at byte ${delivered} of ${total}`;
          throw new RegistryError('E_NETWORK', `GET ${url.origin}${url.pathname}: ${reason}`, {
            reason,
            retryable: true,
          });
        } catch (caught) {
          res?.body.destroy();
          res = undefined;
          const err = toKilnError(caught, { method: 'GET', url });
          if (signal?.aborted || !isRetryable(err)) throw err;
          const delay = retries.next((err as RegistryError).retryAfterMs);
          if (delay === undefined)
            throw this.gaveUp(
              'download',
              digest,
              err,
              retries.count,
              total === undefined ? undefined : `${delivered} of ${total} bytes`,
            );
          await sleep(delay, signal);
        }
      }
    } finally {
      res?.body.destroy();
    }
  }

  /**
   * Where the answer to a `Range: bytes=<from>-` request starts (from, or 0 for a 200), or undefined
   * when there is nothing left to read. Other answers fail, retryable ones marked so.
   */
  private async resumedAt(
    res: HttpResponse,
    digest: string,
    from: number,
    total: number | undefined,
  ): Promise<number | undefined> {
    if (res.status === 200) return 0;
    if (res.status === 206) {
      const range = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(header(res, 'content-range') ?? '');
      const start = range ? Number(range[1]) : from;
      if (start <= from) return start;
      res.body.destroy();
      throw new RegistryError(
        'E_REGISTRY',
        `${this.registry.host} answered a request for ${this.where(`blob ${digest}`)} from byte ${from} with bytes from ${start}`,
        { status: res.status },
      );
    }
    if (res.status === 416 && total !== undefined && from >= total) {
      discard(res);
      return undefined;
    }
    return this.fail(res, `blob ${digest}`, { retryable: isRetryableStatus(res.status) });
  }

  /**
   * The one error a transfer ends with once its retries are spent: final (not retryable), and a
   * broken connection or a stall (E_NETWORK, E_TIMEOUT) named by the blob, the repository and the
   * cause. Other errors keep their message.
   */
  private gaveUp(
    what: 'download' | 'upload',
    digest: string,
    err: unknown,
    attempts: number,
    progress?: string,
  ): unknown {
    if (!(err instanceof RegistryError)) return err;
    if (!['E_NETWORK', 'E_TIMEOUT'].includes(err.code) || !err.retryable) return err.final();
    const where = `${this.registry.host}/${this.name}`;
    const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
    const done = progress ? ` (${progress})` : '';
    return err.final(
      `${what} of blob ${digest} ${what === 'download' ? 'from' : 'to'} ${where} failed${tries}${done}: ${err.reason}`,
    );
  }

  /**
   * Cross-repository mount: the registry links a blob from `from` without a transfer. Returns false
   * if it started an ordinary upload instead (it lacks the blob or won't mount); that upload is cancelled.
   */
  async mountBlob(digest: string, from: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.req({
      method: 'POST',
      path: `/v2/${this.name}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`,
      scopes: [...this.push, `repository:${from}:pull`],
      signal,
    });
    discard(res);
    if (res.status === 201) return true;
    if (res.status === 202) {
      const location = header(res, 'location');
      if (location) await this.cancelUpload(location);
      return false;
    }
    if (res.status === 401 || res.status === 403 || res.status === 404) return false;
    return this.fail(res, `mount of blob ${digest} from ${from}`);
  }

  private async cancelUpload(location: string): Promise<void> {
    await this.req({ method: 'DELETE', path: location, scopes: this.push })
      .then(discard)
      .catch(() => {});
  }

  /**
   * Uploads a blob. Small blobs go in one PUT; large ones in PATCH chunks (at least the registry's
   * OCI-Chunk-Min-Length), and a broken chunk resumes from the offset the registry reports. The
   * content is hashed while sent: a mismatch aborts before the registry would store anything.
   *
   * A broken connection or a retryable status starts the upload over, with the content opened
   * again, up to UPLOAD_ATTEMPTS times; after a break the registry is asked first whether it has the
   * blob (only its answer may have been lost). A PUT that breaks is not resumed in chunks instead:
   * distribution drops an upload session once the registry got part of a broken request (404
   * BLOB_UPLOAD_INVALID on the next), which a cut mid-body almost always does, so one request per
   * try is the best odds. Past the tries, one error names the blob and the cause.
   */
  async uploadBlob(desc: Descriptor, open: OpenContent, options: UploadOptions = {}): Promise<void> {
    const { signal } = options;
    let attempts = 0;
    // No time budget: an upload may take long, and each start over begins afresh.
    const policy = { ...this.registry.retry, attempts: UPLOAD_ATTEMPTS, budgetMs: Number.POSITIVE_INFINITY };
    try {
      const once = (attempt: number) => {
        attempts = attempt;
        return this.uploadOnce(desc, open, options, attempt);
      };
      await withRetry(policy, once, { signal });
    } catch (err) {
      throw signal?.aborted ? err : this.gaveUp('upload', desc.digest, err, attempts);
    }
  }

  /**
   * One try of uploadBlob. Our own verdicts (bad content, refused) fail for good; a dropped
   * connection or a retryable status fails retryable, for uploadBlob to start over after the
   * registry's backoff.
   */
  private async uploadOnce(
    desc: Descriptor,
    open: OpenContent,
    options: UploadOptions,
    attempt: number,
  ): Promise<void> {
    const { signal } = options;
    const what = `upload of blob ${desc.digest}`;
    const start = await this.req({
      method: 'POST',
      path: `/v2/${this.name}/blobs/uploads/`,
      scopes: this.push,
      signal,
    }).catch((err) => {
      throw this.gaveUp('upload', desc.digest, err, attempt);
    });
    if (start.status !== 202) return this.fail(start, what);
    discard(start);
    let location = header(start, 'location');
    if (!location)
      throw new RegistryError('E_REGISTRY', `${this.registry.host} started an upload without a Location`, {
        status: start.status,
      });
    const minChunk = Number(header(start, 'oci-chunk-min-length')) || 0;
    const monolithicMax = options.monolithicMax ?? MONOLITHIC_MAX;
    try {
      if (desc.size <= monolithicMax && minChunk <= desc.size) {
        const content = verified(await open(), desc, `${this.registry.host}/${this.name}`);
        const res = await this.req({
          method: 'PUT',
          path: withDigest(location, desc.digest),
          scopes: this.push,
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
          body: content,
          signal,
        });
        if (res.status !== 201) return await this.failUpload(res, what);
        discard(res);
        return;
      }
      location = await this.uploadChunks(
        desc,
        location,
        Math.max(minChunk, options.chunkSize ?? CHUNK_SIZE),
        open,
        options,
      );
      const res = await this.req({
        method: 'PUT',
        path: withDigest(location, desc.digest),
        scopes: this.push,
        body: Buffer.alloc(0),
        signal,
      });
      // A retry of a PUT whose answer was lost finds the upload closed: the blob may be there.
      if (res.status === 404 && (await this.arrived(desc, signal))) return discard(res);
      if (res.status !== 201) return await this.fail(res, what);
      discard(res);
    } catch (err) {
      // After an abort nothing more goes out (the registry purges the stale upload); the DELETE
      // would also hold the abort up for as long as the registry takes to answer.
      if (signal?.aborted) throw err;
      await this.cancelUpload(location);
      // The connection may have broken after the registry stored the blob, taking only its answer.
      if (isBrokenConnection(err) && (await this.arrived(desc, signal))) return;
      throw err;
    }
  }

  /** True if the repository has the blob, at its size (a failed HEAD says no). */
  private async arrived(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    const size = await this.hasBlob(desc.digest, signal).catch(() => undefined);
    return size === desc.size;
  }

  private async uploadChunks(
    desc: Descriptor,
    firstLocation: string,
    chunkSize: number,
    open: OpenContent,
    options: UploadOptions,
  ): Promise<string> {
    let location = firstLocation;
    let offset = 0;
    let resumes = 0;
    let hash = hasherFor(desc.digest);
    let reader = new ByteReader(await open());
    while (offset < desc.size) {
      const length = Math.min(chunkSize, desc.size - offset);
      try {
        const body = reader.take(length, (chunk) => {
          hash.update(chunk);
        });
        const res = await this.req({
          method: 'PATCH',
          path: location,
          scopes: this.push,
          headers: {
            'content-type': 'application/octet-stream',
            'content-range': `${offset}-${offset + length - 1}`,
            'content-length': String(length),
          },
          body,
          signal: options.signal,
        });
        if (res.status !== 202)
          return await this.failUpload(res, `upload of blob ${desc.digest}`, resumes > 0);
        discard(res);
        location = header(res, 'location') ?? location;
        offset += length;
      } catch (err) {
        if (!isRetryable(err) || resumes >= UPLOAD_ATTEMPTS || options.signal?.aborted) throw err;
        resumes++;
        // Ask the registry how much it has, then go on from there: re-read the prefix only to hash it.
        const status = await this.req({
          method: 'GET',
          path: location,
          scopes: this.push,
          signal: options.signal,
        });
        discard(status);
        if (status.status !== 204) throw err;
        location = header(status, 'location') ?? location;
        const range = /^(?:bytes=)?0-(\d+)$/.exec(header(status, 'range') ?? '');
        // `0-0` is ambiguous: distribution answers it for an empty upload as well as for one byte, so
        // resuming at 1 could skip a byte. Start the upload over (uploadBlob does), as without a Range.
        if (!range || range[1] === '0') throw err;
        offset = Number(range[1]) + 1;
        hash = hasherFor(desc.digest);
        await reader.close();
        reader = new ByteReader(await open());
        for await (const _ of reader.take(offset, (chunk) => hash.update(chunk))) {
          // hashed in the callback; nothing is sent
        }
      }
    }
    const actual = `${desc.digest.split(':')[0]}:${hash.digest('hex')}`;
    if (actual !== desc.digest)
      throw new KilnError(
        'E_DIGEST_MISMATCH',
        `${this.where(`blob ${desc.digest}`)}: content hashes to ${actual}`,
      );
    return location;
  }

  /** Every tag, following `Link` pagination. */
  async listTags(signal?: AbortSignal): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = `/v2/${this.name}/tags/list?n=1000`;
    for (let pages = 0; path && pages < 10_000; pages++) {
      const res = await this.req({ method: 'GET', path, scopes: this.pull, signal });
      if (res.status !== 200) return this.fail(res, 'tag list');
      const body = JSON.parse((await readBody(res, 16 * 1024 * 1024)).toString('utf8')) as {
        tags?: string[] | null;
      };
      tags.push(...(body.tags ?? []));
      path = nextLink(header(res, 'link'));
    }
    return tags;
  }

  /** Manifests that refer to `digest` (signatures, SBOMs): the referrers API, else the fallback tag. */
  async referrers(digest: string, artifactType?: string, signal?: AbortSignal): Promise<Descriptor[]> {
    const query = artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : '';
    const res = await this.req({
      method: 'GET',
      path: `/v2/${this.name}/referrers/${digest}${query}`,
      scopes: this.pull,
      headers: { accept: MediaType.OciIndex },
      signal,
    });
    let index: ImageIndex | undefined;
    if (res.status === 200 && header(res, 'content-type')?.startsWith(MediaType.OciIndex)) {
      index = JSON.parse((await readBody(res, MAX_MANIFEST_BYTES)).toString('utf8')) as ImageIndex;
    } else {
      discard(res);
      if (res.status !== 404 && res.status !== 200) return this.fail(res, `referrers of ${digest}`);
      const tag = digest.replace(':', '-');
      // One GET, not a HEAD first: most subjects asked about have referrers.
      let bytes: Buffer;
      try {
        ({ bytes } = await this.getManifest(tag, signal));
      } catch (err) {
        if (err instanceof KilnError && err.code === 'E_NOT_FOUND') return [];
        throw err;
      }
      index = JSON.parse(bytes.toString('utf8')) as ImageIndex;
    }
    const found = index.manifests ?? [];
    return artifactType ? found.filter((d) => d.artifactType === artifactType) : found;
  }
}

/** A connection that broke or stalled (not a status): the registry may have got everything. */
function isBrokenConnection(err: unknown): boolean {
  return isRetryable(err) && ['E_NETWORK', 'E_TIMEOUT'].includes((err as RegistryError).code);
}

function withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
}

function nextLink(link: string | undefined): string | undefined {
  if (!link) return undefined;
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link);
  return m?.[1];
}

/** Takes exact byte counts off an async iterable of chunks, splitting chunks at the boundaries. */
class ByteReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private rest: Uint8Array | undefined;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Ends the source (a download in flight) when it is read no further. */
  async close(): Promise<void> {
    this.rest = undefined;
    await this.it.return?.().catch(() => {});
  }

  async *take(n: number, onChunk: (chunk: Uint8Array) => void): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      let chunk = this.rest;
      this.rest = undefined;
      if (!chunk) {
        const next = await this.it.next();
        if (next.done) throw new KilnError('E_SIZE_MISMATCH', `content ended ${left} bytes early`);
        chunk = next.value;
      }
      if (chunk.byteLength > left) {
        this.rest = chunk.subarray(left);
        chunk = chunk.subarray(0, left);
      }
      left -= chunk.byteLength;
      onChunk(chunk);
      yield chunk;
    }
  }
}
