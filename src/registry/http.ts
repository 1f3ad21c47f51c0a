/**
 * HTTP for the registry client, on node:http/https with keep-alive agents.
 *
 * Why not undici or fetch: importing undici costs ~140 ms (50 ms for its core alone) on these
 * machines, more than the whole budget of `kiln package --to REGISTRY`; node:http loads in ~1 ms and
 * streams request and response bodies with backpressure, which is all the registry protocol needs.
 */
import * as http from 'node:http';
import type * as httpsTypes from 'node:https';
import { Readable } from 'node:stream';
import { KilnError } from '../errors.js';
import { RegistryError } from './errors.js';

export type RequestBody = Buffer | AsyncIterable<Uint8Array>;

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  body?: RequestBody;
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  url: URL;
  body: Readable;
}

export interface TlsOptions {
  /** PEM certificates trusted instead of Node's bundled roots (SSL_CERT_FILE). */
  roots?: string[];
  /** PEM certificates trusted in addition to the roots (--ca-cert). */
  extraCa?: string[];
}

/**
 * How long a request may make no progress before it counts as broken (E_TIMEOUT, which is retried
 * like a reset): no connection, no request bytes taken and no response yet, or no body bytes while
 * the reader waits for them. Transfers may take any time as long as bytes move. KILN_STALL_TIMEOUT_MS
 * overrides it (tests set it low).
 */
const STALL_TIMEOUT_MS = 30_000;

export function stallTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.KILN_STALL_TIMEOUT_MS);
  return Number.isInteger(n) && n > 0 ? n : STALL_TIMEOUT_MS;
}

/**
 * Response bodies up to this size (with a Content-Length) are read before send() resolves: a
 * connection cut while reading one fails the request, which the caller's retries then repeat. Tokens,
 * errors and manifests are this small; blobs stream, and resume with Range requests (repository.ts).
 */
const SMALL_BODY = 64 * 1024;

/** TLS failures that mean "this port does not speak TLS", where an insecure registry may fall back to HTTP. */
const TLS_PROTOCOL_CODES = new Set([
  'EPROTO',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
]);

/** Connection failures worth retrying: the peer or the network dropped us. */
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** The Node error code (`ECONNRESET`, `EPROTO`, ...) behind a network or TLS error, if any. */
export function socketErrorCode(err: unknown): string | undefined {
  if (!(err instanceof KilnError)) return undefined;
  const code = (err.cause as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A TLS failure that means "this port does not speak TLS", where an insecure registry may fall back to HTTP. */
export function isTlsProtocolError(err: unknown): boolean {
  return (
    err instanceof KilnError && err.code === 'E_TLS' && TLS_PROTOCOL_CODES.has(socketErrorCode(err) ?? '')
  );
}

/** A failure of `req` that a retry may cure: a reset, a refused or timed-out connection, a stall. */
function transientError(req: HttpRequest, reason: string, cause: unknown): RegistryError {
  return new RegistryError('E_NETWORK', `${describe(req)}: ${reason}`, { cause, reason, retryable: true });
}

/** A request that made no progress for the stall timeout: retried like a reset. */
function stallError(req: HttpRequest, reason: string): RegistryError {
  return new RegistryError('E_TIMEOUT', `${describe(req)}: ${reason}`, { reason, retryable: true });
}

/** One keep-alive agent per scheme and trust setting, shared by every registry this process talks to. */
export class HttpClient {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  private readonly httpsAgents = new Map<string, httpsTypes.Agent>();
  // node:https (and with it node:tls) loads only when a registry speaks TLS: ~15 ms saved otherwise.
  private https: typeof httpsTypes | undefined;

  constructor(private readonly tls: TlsOptions = {}) {}

  private async httpsAgent(verify: boolean): Promise<httpsTypes.Agent> {
    this.https ??= await import('node:https');
    const key = verify ? 'verify' : 'noverify';
    let agent = this.httpsAgents.get(key);
    if (!agent) {
      const ca =
        this.tls.roots || this.tls.extraCa
          ? [...(this.tls.roots ?? (await defaultRoots())), ...(this.tls.extraCa ?? [])]
          : undefined;
      agent = new this.https.Agent({ keepAlive: true, maxSockets: 32, ca, rejectUnauthorized: verify });
      this.httpsAgents.set(key, agent);
    }
    return agent;
  }

  /**
   * Sends one request; resolves when the response headers arrive (and a small body has been read).
   * Never retries. A request that makes no progress for stallTimeoutMs() fails with E_TIMEOUT.
   */
  async send(req: HttpRequest, options: { verifyTls?: boolean } = {}): Promise<HttpResponse> {
    const { url } = req;
    const isHttps = url.protocol === 'https:';
    const agent = isHttps ? await this.httpsAgent(options.verifyTls !== false) : this.httpAgent;
    const mod = isHttps ? this.https! : http;
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...req.headers };
    if (Buffer.isBuffer(req.body)) headers['content-length'] = String(req.body.length);
    const stallMs = stallTimeoutMs();
    return new Promise<HttpResponse>((resolve, reject) => {
      let settled = false;
      let sending = req.body !== undefined;
      const fail = (err: unknown) => {
        clearTimeout(timer);
        if (settled) return;
        settled = true;
        r.destroy();
        reject(toKilnError(err, req));
      };
      const done = (res: HttpResponse) => {
        clearTimeout(timer);
        if (settled) return void res.body.destroy();
        settled = true;
        resolve(res);
      };
      const r = mod.request(url, { method: req.method, headers, agent, signal: req.signal }, (res) => {
        if (settled) return void res.resume();
        clearTimeout(timer);
        watchBody(res, stallMs, req);
        const response = { status: res.statusCode ?? 0, headers: res.headers, url, body: res as Readable };
        const length = Number(res.headers['content-length']);
        const bodyless = req.method === 'HEAD' || response.status === 204 || response.status === 304;
        if (bodyless || !Number.isInteger(length) || length > SMALL_BODY) return done(response);
        const parts: Buffer[] = [];
        res.on('data', (chunk: Buffer) => parts.push(chunk));
        res.once('error', fail);
        res.once('close', () => {
          if (!res.complete) fail(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
        });
        res.once('end', () => done({ ...response, body: bufferedBody(Buffer.concat(parts)) }));
      });
      // No connection, no request bytes taken or no response: a stall. Progress sending re-arms it;
      // while the body's own source is slow (a download being resumed) the peer is not to blame.
      let onSource = false;
      const timer = setTimeout(() => {
        if (onSource) return void timer.refresh();
        fail(
          stallError(
            req,
            sending ? `sending stalled for ${seconds(stallMs)}` : `no response within ${seconds(stallMs)}`,
          ),
        );
      }, stallMs);
      timer.unref();
      r.on('error', fail);
      if (req.body === undefined) r.end();
      else if (Buffer.isBuffer(req.body)) r.end(req.body, () => (sending = false));
      else
        pump(req.body, r, {
          waiting: (waiting) => {
            onSource = waiting;
            if (!waiting && !settled) timer.refresh();
          },
          progress: () => {
            if (!settled) timer.refresh();
          },
        })
          .then(() => {
            sending = false;
          })
          .catch(fail);
    });
  }

  close(): void {
    this.httpAgent.destroy();
    for (const a of this.httpsAgents.values()) a.destroy();
  }
}

const USER_AGENT = 'kiln/0.1.0';

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Fails a response body with E_TIMEOUT when no bytes come for `ms` while its reader waits for them.
 * A reader that is behind (the body's buffer full: backpressure, e.g. from a slow upload the bytes
 * go to) is not a stall; the check comes again a period later.
 */
function watchBody(res: http.IncomingMessage, ms: number, req: HttpRequest): void {
  res.setTimeout(ms, () => {
    if (res.complete || res.destroyed) return;
    if (res.readableLength >= res.readableHighWaterMark) {
      res.setTimeout(ms);
      return;
    }
    res.destroy(stallError(req, `no data for ${seconds(ms)}`));
  });
}

function bufferedBody(bytes: Buffer): Readable {
  const body = new Readable({ read() {} });
  if (bytes.length > 0) body.push(bytes);
  body.push(null);
  return body;
}

async function defaultRoots(): Promise<string[]> {
  return [...(await import('node:tls')).rootCertificates];
}

/**
 * Writes an async iterable into a request with backpressure, then ends it. `waiting` tells the
 * stall timer when the time is the body's own (its source is slow, not the peer), `progress` that
 * bytes went out.
 */
async function pump(
  body: AsyncIterable<Uint8Array>,
  r: http.ClientRequest,
  watch: { waiting: (onSource: boolean) => void; progress: () => void },
): Promise<void> {
  const it = body[Symbol.asyncIterator]();
  try {
    for (;;) {
      watch.waiting(true);
      const next = await it.next();
      watch.waiting(false);
      if (next.done) break;
      if (r.destroyed) return;
      watch.progress();
      if (!r.write(next.value)) {
        await new Promise<void>((resolve, reject) => {
          const onDrain = () => {
            r.off('error', onError);
            r.off('close', onDrain);
            resolve();
          };
          const onError = (e: Error) => {
            r.off('drain', onDrain);
            reject(e);
          };
          r.once('drain', onDrain);
          r.once('close', onDrain);
          r.once('error', onError);
        });
        watch.progress();
      }
    }
  } finally {
    watch.waiting(false);
    // Ends the body's source (a download, a file) when the request ended first.
    if (r.destroyed) await it.return?.();
  }
  r.end();
}

function describe(req: HttpRequest): string {
  return `${req.method} ${req.url.origin}${req.url.pathname}`;
}

const CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
]);

/** Turns a socket or TLS failure into a RegistryError that says what happened, in one line. */
export function toKilnError(err: unknown, req: HttpRequest): KilnError {
  if (err instanceof KilnError) return err;
  const e = err as NodeJS.ErrnoException;
  const host = req.url.host;
  if (e?.name === 'AbortError' || e?.code === 'ABORT_ERR')
    return new RegistryError('E_ABORTED', `${describe(req)}: aborted`, { cause: err, reason: 'aborted' });
  if (e?.code && CERT_CODES.has(e.code))
    return new RegistryError('E_TLS', `TLS certificate of ${host} not trusted: ${e.message}`, {
      cause: err,
      hint: 'pass the CA that signed it with --ca-cert FILE (or SSL_CERT_FILE)',
    });
  if (e?.code && (TLS_PROTOCOL_CODES.has(e.code) || /ssl|tls/i.test(e.code)))
    return new RegistryError('E_TLS', `TLS handshake with ${host} failed: ${e.message}`, {
      cause: err,
      hint: 'if the registry speaks plain HTTP, name it with --insecure-registry',
    });
  if (e?.code === 'ECONNREFUSED')
    return new RegistryError('E_NETWORK', `cannot connect to ${host}: connection refused`, {
      cause: err,
      reason: 'connection refused',
      retryable: true,
    });
  if (e?.code === 'ENOTFOUND')
    return new RegistryError('E_NETWORK', `cannot resolve registry host ${req.url.hostname}`, { cause: err });
  if (e?.code && TRANSIENT_CODES.has(e.code)) return transientError(req, e.code, err);
  if (e?.message === 'socket hang up') return transientError(req, `connection closed by ${host}`, err);
  const reason = e?.message ?? String(err);
  return new RegistryError('E_NETWORK', `${describe(req)}: ${reason}`, { cause: err, reason });
}

/** Reads a small response body (errors, tokens, tag lists) with a cap, so a hostile peer can't fill memory. */
export async function readBody(res: HttpResponse, limit = 4 * 1024 * 1024): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > limit) {
        res.body.destroy();
        throw new KilnError('E_TOO_LARGE', `response from ${res.url.host} is over ${limit} bytes`);
      }
      parts.push(chunk as Buffer);
    }
  } catch (err) {
    // A connection cut while reading: E_NETWORK (transient), like one cut before the response.
    throw toKilnError(err, { method: 'GET', url: res.url });
  }
  return Buffer.concat(parts);
}

/** Discards a response body so its socket goes back to the pool. */
export function discard(res: HttpResponse): void {
  res.body.resume();
}

export function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
