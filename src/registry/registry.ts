/**
 * One registry host: which scheme it speaks, how it authenticates, and requests to it with
 * authorization, retries and redirects. Repository operations are in repository.ts.
 */
import * as fs from 'node:fs';
import { KilnError } from '../errors.js';
import { type Challenge, parseChallenges } from './challenge.js';
import { findCredentials } from './credentials.js';
import { RegistryError } from './errors.js';
import {
  discard,
  HttpClient,
  type HttpRequest,
  type HttpResponse,
  header,
  isTlsProtocolError,
  readBody,
  socketErrorCode,
  type TlsOptions,
} from './http.js';
import { DEFAULT_RETRY, isRetryableStatus, parseRetryAfter, type RetryPolicy, withRetry } from './retry.js';

/** How to reach registries: credentials, insecure hosts, CA, retries, timeouts. */
export interface RegistryOptions {
  /** `user:password` for this registry (--creds); else KILN_AUTH, docker's config.json, anonymous. */
  creds?: string;
  env?: NodeJS.ProcessEnv;
  /** Hosts that may be reached over plain HTTP (and whose TLS certificates are not checked). */
  insecureRegistries?: string[];
  /** Extra CA certificate files (--ca-cert). */
  caFiles?: string[];
  retry?: RetryPolicy;
  /** Debug lines (never secrets). */
  debug?: (line: string) => void;
}

interface Credentials {
  username?: string;
  password?: string;
  identityToken?: string;
}

interface Token {
  value: string;
  expiresAt: number;
}

export interface RegistryRequest {
  method: string;
  /** `/v2/…` on this registry, or an absolute URL it handed out (upload locations). */
  path: string;
  /** Token scopes this request needs, e.g. `repository:app:pull`. */
  scopes: string[];
  headers?: Record<string, string>;
  /** A Buffer can be re-sent on retry; a stream can't, so requests with one are tried once. */
  body?: Buffer | AsyncIterable<Uint8Array>;
  /** Follow 3xx redirects (blob downloads): credentials are dropped when the host changes. */
  followRedirects?: boolean;
  signal?: AbortSignal;
}

const MAX_REDIRECTS = 5;
const TOKEN_MARGIN_MS = 10_000;

/** Docker Hub's API lives on another host than the one in references. */
function apiHost(host: string): string {
  return host === 'docker.io' || host === 'index.docker.io' ? 'registry-1.docker.io' : host;
}

function hostname(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const i = host.lastIndexOf(':');
  return i === -1 ? host : host.slice(0, i);
}

/** Loopback hosts may speak plain HTTP, as docker allows: localhost, 127.0.0.0/8, ::1. */
export function isLoopback(host: string): boolean {
  const h = hostname(host);
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

export function insecureList(env: NodeJS.ProcessEnv, extra: string[] = []): string[] {
  const fromEnv = (env.KILN_INSECURE_REGISTRIES ?? '').split(/[\s,]+/).filter((h) => h !== '');
  return [...fromEnv, ...extra];
}

/** The TLS trust of a client for these options: SSL_CERT_FILE replaces the roots, --ca-cert adds to them. */
export function tlsOptions(options: RegistryOptions): TlsOptions {
  const env = options.env ?? process.env;
  const readPem = (file: string) => {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new KilnError('E_NOT_FOUND', `CA certificate file ${file} can't be read`, { cause: err });
    }
  };
  return {
    roots: env.SSL_CERT_FILE ? [readPem(env.SSL_CERT_FILE)] : undefined,
    extraCa: options.caFiles?.map(readPem),
  };
}

/** Which HttpClient these options need: clients with the same trust are one. */
export function tlsKey(options: RegistryOptions): string {
  const env = options.env ?? process.env;
  return JSON.stringify([env.SSL_CERT_FILE ?? '', options.caFiles ?? []]);
}

/** A client of one registry host: auth, retries, its repositories. */
export class Registry {
  readonly apiHost: string;
  private readonly http: HttpClient;
  private readonly insecure: boolean;
  private readonly explicitlyInsecure: boolean;
  /** How requests are retried; uploads use it too, between restarts. */
  readonly retry: RetryPolicy;
  private pinged: Promise<void> | undefined;
  private base!: URL;
  private challenge: Challenge | undefined;
  private creds: Promise<{ credentials?: Credentials; source: string }> | undefined;
  private readonly tokens = new Map<string, Promise<Token>>();
  /** True when this registry made its own client (no pool gave one): close() closes it. */
  private readonly ownsHttp: boolean;

  constructor(
    /** As written in references: `docker.io`, `127.0.0.1:5000`. */
    readonly host: string,
    private readonly options: RegistryOptions = {},
    /** The connection pool's client (a KilnContext's); without one the registry makes its own. */
    http?: HttpClient,
  ) {
    this.apiHost = apiHost(host);
    this.ownsHttp = http === undefined;
    this.http = http ?? new HttpClient(tlsOptions(options));
    const env = options.env ?? process.env;
    const named = insecureList(env, options.insecureRegistries);
    this.explicitlyInsecure = named.includes(host) || named.includes(hostname(host));
    this.insecure = this.explicitlyInsecure || isLoopback(host);
    this.retry = options.retry ?? DEFAULT_RETRY;
  }

  private debug(line: string): void {
    this.options.debug?.(line);
  }

  /** Closes the connections of a client this registry made itself (a pooled one is the pool's to close). */
  close(): void {
    if (this.ownsHttp) this.http.close();
  }

  private credentials(): Promise<{ credentials?: Credentials; source: string }> {
    const found =
      this.creds ?? findCredentials(this.host, { creds: this.options.creds, env: this.options.env });
    this.creds = found;
    return found;
  }

  /**
   * `GET /v2/`: learns the scheme (HTTPS, or HTTP for an insecure host that doesn't speak TLS) and
   * the auth challenge, once per process.
   */
  ping(signal?: AbortSignal): Promise<void> {
    this.pinged ??= this.doPing(signal).catch((err) => {
      this.pinged = undefined;
      throw err;
    });
    return this.pinged;
  }

  private async doPing(signal?: AbortSignal): Promise<void> {
    const tryScheme = async (scheme: 'https' | 'http') => {
      const url = new URL(`${scheme}://${this.apiHost}/v2/`);
      return this.withRetries({ method: 'GET', url, signal }, () =>
        this.http.send({ method: 'GET', url, signal }, { verifyTls: !this.explicitlyInsecure }),
      );
    };
    let res: HttpResponse;
    if (isLoopback(this.host) && !this.explicitlyInsecure) {
      // Loopback registries mostly speak plain HTTP: try it first, which also spares loading the
      // TLS trust store (~90 ms). A TLS port answers 400 "HTTP request to an HTTPS server" or hangs up.
      const plain = await tryScheme('http').catch((err) => {
        if (socketErrorCode(err) === 'ECONNRESET') return undefined;
        throw err;
      });
      const tlsPort =
        plain === undefined ||
        (plain.status === 400 && /https/i.test((await readBody(plain, 4096)).toString('utf8')));
      if (!tlsPort && plain) {
        res = plain;
        this.base = new URL(`http://${this.apiHost}`);
      } else {
        res = await tryScheme('https');
        this.base = new URL(`https://${this.apiHost}`);
      }
    } else {
      try {
        res = await tryScheme('https');
        this.base = new URL(`https://${this.apiHost}`);
      } catch (err) {
        if (!this.insecure || !(isTlsProtocolError(err) || isRefused(err))) throw err;
        this.debug(`${this.host} does not speak TLS; using plain HTTP (insecure registry)`);
        res = await tryScheme('http');
        this.base = new URL(`http://${this.apiHost}`);
      }
    }
    discard(res);
    if (res.status === 401) {
      const challenges = parseChallenges(res.headers['www-authenticate']);
      this.challenge =
        challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
      if (!this.challenge)
        throw new RegistryError(
          'E_REGISTRY',
          `${this.host} asks for authentication in a way kiln does not know`,
          {
            hint: `WWW-Authenticate: ${String(res.headers['www-authenticate'] ?? '(none)')}`,
            status: res.status,
          },
        );
    } else if (res.status !== 200) {
      throw new RegistryError(
        'E_REGISTRY',
        `${this.host} is not an OCI registry: GET /v2/ answered ${res.status}`,
        { status: res.status },
      );
    }
    this.debug(
      `ping ${this.base.origin}: ${res.status}${this.challenge ? ` (${this.challenge.scheme})` : ''}`,
    );
  }

  /**
   * Proves the credentials work, as `docker login` does: Basic registries must accept them on
   * `/v2/`, token registries' token services must issue a token for them.
   */
  async checkLogin(signal?: AbortSignal): Promise<void> {
    await this.ping(signal);
    if (!this.challenge) return;
    if (this.challenge.scheme === 'basic') {
      const res = await this.request({ method: 'GET', path: '/v2/', scopes: [], signal });
      discard(res);
      if (res.status !== 200)
        throw new RegistryError('E_REGISTRY', `${this.host} answered ${res.status} to GET /v2/`, {
          status: res.status,
        });
      return;
    }
    const { credentials } = await this.credentials();
    await this.fetchToken(this.challenge, [], credentials, signal);
  }

  /** Sends a request with auth, retries and redirects; returns any status for the caller to judge. */
  async request(req: RegistryRequest): Promise<HttpResponse> {
    await this.ping(req.signal);
    let scopes = req.scopes;
    for (let authAttempt = 0; ; authAttempt++) {
      const auth = await this.authorization(scopes, req.signal);
      const url = new URL(req.path, this.base);
      const headers = { ...req.headers, ...(auth ? { authorization: auth } : {}) };
      const send = () =>
        this.http.send(
          { method: req.method, url, headers, body: req.body, signal: req.signal },
          { verifyTls: !this.explicitlyInsecure },
        );
      let res =
        Buffer.isBuffer(req.body) || req.body === undefined
          ? await this.withRetries({ method: req.method, url, signal: req.signal }, send)
          : await send();
      this.debug(`${req.method} ${url.pathname}${url.search ? '?…' : ''} → ${res.status}`);
      if (res.status === 401 && authAttempt === 0 && this.challenge?.scheme === 'bearer') {
        // The token may have expired or be too narrow (a mount needs pull on the source): ask again,
        // with the scope the registry names added.
        const fresh = parseChallenges(res.headers['www-authenticate']).find((c) => c.scheme === 'bearer');
        discard(res);
        const wanted = fresh?.params.scope?.split(' ') ?? [];
        scopes = [...new Set([...scopes, ...wanted])];
        this.tokens.delete(scopeKey(scopes));
        if (!Buffer.isBuffer(req.body) && req.body !== undefined) return this.unauthorized(req);
        continue;
      }
      if (res.status === 401) {
        discard(res);
        return this.unauthorized(req);
      }
      if (req.followRedirects) res = await this.follow(res, req, url);
      return res;
    }
  }

  private async follow(res: HttpResponse, req: RegistryRequest, from: URL): Promise<HttpResponse> {
    let current = res;
    let url = from;
    for (let hops = 0; current.status >= 300 && current.status < 400 && current.status !== 304; hops++) {
      const location = header(current, 'location');
      discard(current);
      if (!location) throw new RegistryError('E_REGISTRY', `${this.host} redirected without a Location`);
      if (hops >= MAX_REDIRECTS)
        throw new RegistryError('E_REGISTRY', `${this.host}: more than ${MAX_REDIRECTS} redirects`);
      const next = new URL(location, url);
      // Storage back ends (S3, CDNs) get no registry credentials: they'd be leaked, and they'd refuse them.
      const headers = { ...req.headers };
      if (next.origin === this.base.origin) {
        const auth = await this.authorization(req.scopes, req.signal);
        if (auth) headers.authorization = auth;
      }
      url = next;
      current = await this.withRetries({ method: req.method, url, signal: req.signal }, () =>
        this.http.send({ method: req.method, url, headers, signal: req.signal }),
      );
      this.debug(`${req.method} ${url.origin}${url.pathname} (redirect) → ${current.status}`);
    }
    return current;
  }

  private async unauthorized(req: RegistryRequest): Promise<never> {
    const { credentials, source } = await this.credentials();
    const what = req.scopes.some((s) => s.endsWith('push')) ? 'push to' : 'pull from';
    const repo = req.scopes[0]?.split(':')[1] ?? '';
    if (!credentials)
      throw new RegistryError('E_AUTH', `${this.host} requires authentication to ${what} ${repo}`.trim(), {
        hint: `log in with: kiln login ${this.host} (or pass --creds USER:PASSWORD)`,
        status: 401,
      });
    throw new RegistryError(
      'E_AUTH',
      `${this.host} refused the credentials from ${source} to ${what} ${repo}`.trim(),
      {
        hint: `check them with: kiln login ${this.host}`,
        status: 401,
      },
    );
  }

  /** Runs `send` again on retryable failures and retryable statuses, within the retry policy. */
  private withRetries(
    req: Pick<HttpRequest, 'method' | 'url' | 'signal'>,
    send: () => Promise<HttpResponse>,
  ): Promise<HttpResponse> {
    // A status still retryable once the policy is spent is returned: the caller turns it into an
    // error with the registry's message.
    return withRetry(this.retry, send, {
      signal: req.signal,
      again: (res) =>
        isRetryableStatus(res.status)
          ? { retryAfterMs: parseRetryAfter(header(res, 'retry-after')) }
          : undefined,
      discard,
      onRetry: ({ attempt, delayMs, error, result }) =>
        this.debug(
          `${req.method} ${req.url.pathname}: ${result ? `status ${result.status}` : (error as Error).message}; retry ${attempt} in ${delayMs} ms`,
        ),
    });
  }

  /** The Authorization header for these scopes, fetching (and caching) a token when the registry wants one. */
  private async authorization(scopes: string[], signal?: AbortSignal): Promise<string | undefined> {
    const challenge = this.challenge;
    if (!challenge) return undefined;
    const { credentials } = await this.credentials();
    if (challenge.scheme === 'basic') {
      if (!credentials?.username) return undefined;
      return `Basic ${Buffer.from(`${credentials.username}:${credentials.password ?? ''}`).toString('base64')}`;
    }
    const key = scopeKey(scopes);
    let pending = this.tokens.get(key);
    if (pending) {
      const t = await pending.catch(() => undefined);
      if (t && t.expiresAt - TOKEN_MARGIN_MS > Date.now()) return `Bearer ${t.value}`;
      if (this.tokens.get(key) === pending) this.tokens.delete(key);
    }
    pending = this.tokens.get(key);
    if (!pending) {
      pending = this.fetchToken(challenge, scopes, credentials, signal);
      this.tokens.set(key, pending);
      pending.catch(() => this.tokens.delete(key));
    }
    return `Bearer ${(await pending).value}`;
  }

  private async fetchToken(
    challenge: Challenge,
    scopes: string[],
    credentials: Credentials | undefined,
    signal?: AbortSignal,
  ): Promise<Token> {
    const realm = challenge.params.realm;
    if (!realm) throw new RegistryError('E_REGISTRY', `${this.host} asks for a token but names no realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RegistryError('E_REGISTRY', `${this.host} names an invalid token realm`);
    }
    const service = challenge.params.service;
    let res: HttpResponse;
    if (credentials?.identityToken) {
      // OAuth2 refresh-token grant, as docker does with an identity token.
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: credentials.identityToken,
        client_id: 'kiln',
      });
      if (service) form.set('service', service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      res = await this.withRetries({ method: 'POST', url, signal }, () =>
        this.http.send({
          method: 'POST',
          url,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: Buffer.from(form.toString()),
          signal,
        }),
      );
    } else {
      if (service) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      if (credentials?.username)
        headers.authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password ?? ''}`).toString('base64')}`;
      res = await this.withRetries({ method: 'GET', url, signal }, () =>
        this.http.send({ method: 'GET', url, headers, signal }),
      );
    }
    const body = await readBody(res, 1024 * 1024);
    this.debug(
      `token for ${scopes.join(' ') || '(no scope)'} from ${url.origin}${url.pathname} → ${res.status}`,
    );
    if (res.status === 401 || res.status === 403) {
      const { source } = await this.credentials();
      throw new RegistryError(
        'E_AUTH',
        credentials
          ? `${this.host}'s token service refused the credentials from ${source}`
          : `${this.host}'s token service refused anonymous access`,
        { hint: `log in with: kiln login ${this.host}`, status: res.status },
      );
    }
    if (res.status !== 200)
      throw new RegistryError('E_REGISTRY', `${this.host}'s token service answered ${res.status}`, {
        status: res.status,
      });
    let parsed: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new RegistryError('E_REGISTRY', `${this.host}'s token service sent a response that is not JSON`);
    }
    const value = parsed.token || parsed.access_token;
    if (!value) throw new RegistryError('E_REGISTRY', `${this.host}'s token service sent no token`);
    const lifetime = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : 60;
    const issued = parsed.issued_at ? Date.parse(parsed.issued_at) : Number.NaN;
    const start = Number.isNaN(issued) || issued > Date.now() ? Date.now() : issued;
    return { value, expiresAt: start + lifetime * 1000 };
  }
}

function scopeKey(scopes: string[]): string {
  return [...scopes].sort().join(' ');
}

/** A connection refused, reset or hung up: on an insecure host, the port may speak the other scheme. */
function isRefused(err: unknown): boolean {
  const code = socketErrorCode(err);
  return (
    err instanceof KilnError && err.code === 'E_NETWORK' && (code === 'ECONNREFUSED' || code === 'ECONNRESET')
  );
}

/** The registry's own error message from an OCI error body, if it sent one. */
export async function registryErrorDetail(res: HttpResponse): Promise<{ code?: string; message?: string }> {
  try {
    const body = await readBody(res, 64 * 1024);
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const first = parsed.errors?.[0];
    return { code: first?.code, message: first?.message };
  } catch {
    return {};
  }
}
