/**
 * A Debian archive reached over HTTP(S) (or a local `file:` mirror): GETs with redirects and kiln's
 * one retry policy, bodies streamed, and downloads into kiln's store verified against the SHA-256 the
 * signed index (or the lock) names while they are written.
 */
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ioError, KilnError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { RegistryError } from '../registry/errors.js';
import { discard, type HttpClient, type HttpResponse, readBody, toKilnError } from '../registry/http.js';
import {
  DEFAULT_RETRY,
  isRetryableStatus,
  parseRetryAfter,
  type RetryPolicy,
  withRetry,
} from '../registry/retry.js';
import type { OciLayout } from '../store/layout.js';

const MAX_REDIRECTS = 5;

/** What a file of the archive is expected to be: its SHA-256 (hex) and size. */
export interface ExpectedFile {
  sha256: string;
  size: number;
}

/** The mirror URL as given, checked: http, https or file, no query; without a trailing slash. */
export function mirrorUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new KilnError('E_USAGE', `--mirror '${text}' is not a URL`, {
      hint: 'for example --mirror http://deb.debian.org/debian',
    });
  }
  if (!['http:', 'https:', 'file:'].includes(url.protocol) || url.search !== '' || url.hash !== '')
    throw new KilnError(
      'E_USAGE',
      `--mirror '${text}' is not an http, https or file URL of a Debian archive`,
      {
        hint: 'for example --mirror http://deb.debian.org/debian',
      },
    );
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

/** One archive: its base URL, the HTTP client and signal it is reached with. */
export class Mirror {
  readonly base: URL;

  constructor(
    base: string,
    private readonly http: HttpClient,
    private readonly signal: AbortSignal,
    private readonly retry: RetryPolicy = DEFAULT_RETRY,
  ) {
    this.base = mirrorUrl(base);
  }

  /** The base URL as the lock file records it (no trailing slash). */
  get name(): string {
    return this.base.href.replace(/\/$/, '');
  }

  url(relative: string): URL {
    return new URL(relative.replace(/^\/+/, ''), this.base);
  }

  /** A small file (InRelease), read whole; E_NOT_FOUND names `what` when the mirror lacks it. */
  async fetchSmall(relative: string, what: string, limit = 16 * 1024 * 1024): Promise<Buffer> {
    return withRetry(
      this.retry,
      async () => {
        const res = await this.open(relative, what);
        return res.local ? await readLocal(res.local, limit, what) : await readBody(res.http!, limit);
      },
      { signal: this.signal },
    );
  }

  /**
   * Streams `relative` into the store as the blob `expected` names: hashed while written, refused
   * (nothing stored) when the bytes are not those. Retried whole when the connection fails. A blob
   * the store already has is not fetched. `what` names the file in errors (`busybox-static 1:1.35.0-4`).
   */
  async download(
    relative: string,
    expected: ExpectedFile,
    store: OciLayout,
    what: string,
  ): Promise<{ digest: Digest; size: number; fetched: boolean }> {
    const digest = `sha256:${expected.sha256}` as Digest;
    if (await store.hasBlob(digest, expected.size)) return { digest, size: expected.size, fetched: false };
    const url = this.url(relative);
    try {
      await withRetry(
        this.retry,
        async () => {
          const res = await this.open(relative, what);
          const body = res.local ? localBody(res.local) : networkBody(res.http!, url);
          await store.writeBlob(body, { digest, size: expected.size });
        },
        { signal: this.signal },
      );
    } catch (err) {
      if (err instanceof KilnError && err.code === 'E_DIGEST_MISMATCH')
        throw new KilnError(
          'E_DIGEST_MISMATCH',
          `${what}: ${url.href} does not have the SHA-256 ${expected.sha256}`,
          {
            cause: err,
            hint: 'the mirror serves other bytes than the index or lock names: a changed or tampered file (try another --mirror, or re-resolve with --update-lock)',
          },
        );
      if (err instanceof KilnError && err.code === 'E_SIZE_MISMATCH')
        throw new KilnError('E_SIZE_MISMATCH', `${what}: ${url.href} is not ${expected.size} bytes`, {
          cause: err,
          hint: 'the mirror serves other bytes than the index or lock names: a changed or tampered file (try another --mirror, or re-resolve with --update-lock)',
        });
      throw err;
    }
    return { digest, size: expected.size, fetched: true };
  }

  /** A GET answered 200 (redirects followed); E_NOT_FOUND for 404/410, retryable RegistryErrors for 5xx and network failures. */
  private async open(relative: string, what: string): Promise<{ http?: HttpResponse; local?: string }> {
    let url = this.url(relative);
    if (url.protocol === 'file:') {
      const file = fileURLToPath(url);
      await fs.access(file).catch((err) => {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(what, url);
        throw ioError(err, file);
      });
      return { local: file };
    }
    for (let hop = 0; ; hop++) {
      const req = { method: 'GET', url, signal: this.signal };
      const res = await this.http.send(req);
      if (res.status === 200) return { http: res };
      discard(res);
      const location = res.headers.location;
      if (res.status >= 300 && res.status < 400 && location) {
        if (hop >= MAX_REDIRECTS)
          throw new KilnError('E_NETWORK', `${url.href}: more than ${MAX_REDIRECTS} redirects`, {
            hint: 'the mirror redirects in a loop: name another with --mirror',
          });
        url = new URL(location, url);
        continue;
      }
      if (res.status === 404 || res.status === 410) throw notFound(what, url);
      const retryAfter = parseRetryAfter(
        Array.isArray(res.headers['retry-after'])
          ? res.headers['retry-after'][0]
          : res.headers['retry-after'],
      );
      throw new RegistryError('E_NETWORK', `GET ${url.href}: HTTP ${res.status}`, {
        status: res.status,
        retryable: isRetryableStatus(res.status),
        ...(retryAfter !== undefined ? { retryAfterMs: retryAfter } : {}),
      });
    }
  }
}

function notFound(what: string, url: URL): KilnError {
  return new KilnError('E_NOT_FOUND', `${what}: the mirror has no ${url.href}`, {
    hint: 'the archive dropped it or the name is wrong: check --mirror and --suite; a lock file names versions a mirror may since have replaced (--update-lock re-resolves)',
  });
}

/** A response body whose failures mid-way are retryable network errors, as a failed request is. */
async function* networkBody(res: HttpResponse, url: URL): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of res.body) yield chunk as Uint8Array;
  } catch (err) {
    throw toKilnError(err, { method: 'GET', url });
  } finally {
    res.body.destroy();
  }
}

async function* localBody(file: string): AsyncGenerator<Uint8Array> {
  const stream = createReadStream(file);
  try {
    for await (const chunk of stream) yield chunk as Uint8Array;
  } catch (err) {
    throw ioError(err, file);
  } finally {
    stream.destroy();
  }
}

async function readLocal(file: string, limit: number, what: string): Promise<Buffer> {
  const st = await fs.stat(file).catch((err) => {
    throw ioError(err, file);
  });
  if (st.size > limit)
    throw new KilnError('E_TOO_LARGE', `${what}: ${file} is over ${limit} bytes`, {
      hint: 'not a file of a Debian archive: check --mirror',
    });
  return fs.readFile(file);
}
