/**
 * A real, throw-away OCI registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on a free
 * loopback port, in one of three configurations:
 *
 * - `none`:  open, plain HTTP.
 * - `basic`: htpasswd (bcrypt) Basic auth over TLS, with a per-registry test CA (`caFile`).
 * - `token`: the registry's token auth over plain HTTP, with a token issuer in this process that signs
 *   RS256 JWTs. The issuer grants an authenticated user every action asked for, and anonymous callers
 *   only `pull` on repositories under `public/`; every token request is recorded in `tokenRequests`.
 *
 * Each registry has its own temp dir (storage, config, certs, log) and an isolated environment
 * (REGISTRY_* variables are not passed on). `sharedRegistry(auth)` gives one registry per process and
 * configuration. Like the private dockerd in docker.ts, every registry is also stopped synchronously at
 * process exit or on SIGINT/SIGTERM, should a test not stop it.
 *
 * `startRequestLog(url)` puts a counting reverse proxy in front of a plain-HTTP registry, so tests can
 * assert which requests a client sent (e.g. that a second push uploads no blob), and optionally answer
 * blob GETs with a redirect to a storage URL, as registries backed by S3 or a CDN do.
 */
import type { ChildProcess } from 'node:child_process';
import { createSign, randomBytes, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, listenLoopback } from './net.js';
import { exitSet, killAndWait, killSync, spawnService } from './processes.js';
import { makeCa, SERVER_EXT, signCert } from './tls.js';
import { findTool, runOk, skipOrFail } from './tools.js';

export type RegistryAuth = 'none' | 'basic' | 'token';

/** One entry of a token's `access` claim (and of a parsed `scope=`). */
export interface TokenAccess {
  type: string;
  name: string;
  actions: string[];
}

/** One request to the token issuer, as the issuer saw and answered it. */
export interface TokenRequest {
  method: string;
  /** Every `scope=` query parameter, as sent, in order. */
  scopes: string[];
  /** The scopes parsed (entries for the same resource merged). */
  requested: TokenAccess[];
  /** The token's `access` claim; empty when no token was issued. */
  granted: TokenAccess[];
  /** True when valid Basic credentials were sent. */
  authenticated: boolean;
  /** The user name sent (valid or not). */
  account: string | undefined;
  /** The `service=` parameter, as sent. */
  service: string | null;
  status: number;
}

export interface StartRegistryOptions {
  auth?: RegistryAuth;
  /** Milliseconds to wait for `GET /v2/` to answer (default 10 000). */
  timeoutMs?: number;
  /** Credentials for `basic` and `token` (default `kiln` and a random password). */
  username?: string;
  password?: string;
  /** Which field of the token response holds the token (default `both`). */
  tokenField?: 'token' | 'access_token' | 'both';
  /** Token lifetime in seconds, sent as `expires_in` and used for `exp` (default 300). */
  expiresIn?: number;
}

interface RegistryBase {
  readonly auth: RegistryAuth;
  /** `127.0.0.1:PORT`, as in an image reference. */
  readonly host: string;
  /** `http://127.0.0.1:PORT` or `https://…` (basic). */
  readonly url: string;
  /** PEM of the test CA that signed the registry's certificate (basic only). */
  readonly caFile?: string;
  readonly username?: string;
  readonly password?: string;
  /** The token endpoint, as in the registry's challenge (token only). */
  readonly realm?: string;
  /** The registry's service name, the token's audience (token only). */
  readonly service?: string;
  /** Every request the token issuer got, oldest first (token only). */
  readonly tokenRequests?: TokenRequest[];
  /** The registry's temp dir (storage, config, certs, log); removed by stop(). */
  readonly dir: string;
  /** The registry's stdout+stderr. */
  readonly logPath: string;
  /** Stops the registry (and token issuer) and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface OpenRegistry extends RegistryBase {
  readonly auth: 'none';
}

export interface BasicRegistry extends RegistryBase {
  readonly auth: 'basic';
  readonly caFile: string;
  readonly username: string;
  readonly password: string;
}

export interface TokenRegistry extends RegistryBase {
  readonly auth: 'token';
  readonly username: string;
  readonly password: string;
  readonly realm: string;
  readonly service: string;
  readonly tokenRequests: TokenRequest[];
}

export type Registry = OpenRegistry | BasicRegistry | TokenRegistry;
export type RegistryFor<A extends RegistryAuth> = Extract<Registry, { auth: A }>;

const TOKEN_SERVICE = 'kiln-test-registry';
const TOKEN_ISSUER = 'kiln-test-issuer';

/** Debian packages for the tools used here (tools.ts does not list openssl and htpasswd). */
const PACKAGES: Readonly<Record<string, string>> = {
  'docker-registry': 'docker-registry',
  openssl: 'openssl',
  htpasswd: 'apache2-utils',
};

function toolsFor(auth: RegistryAuth): string[] {
  if (auth === 'basic') return ['docker-registry', 'openssl', 'htpasswd'];
  if (auth === 'token') return ['docker-registry', 'openssl'];
  return ['docker-registry'];
}

/**
 * Why a registry with `auth` cannot be started here, as a skip reason; undefined if it can. Throws in
 * CI, where a missing tool is a failure.
 */
export function registrySkipReason(auth: RegistryAuth = 'none'): string | undefined {
  const missing = toolsFor(auth).filter((t) => findTool(t) === undefined);
  if (missing.length === 0) return undefined;
  const pkgs = missing.map((t) => PACKAGES[t] ?? t).join(' ');
  return skipOrFail(`${missing.map((t) => `'${t}'`).join(', ')} not found (apt-get install ${pkgs})`);
}

// ---------------------------------------------------------------------------------------------------
// Process bookkeeping: every registry is killed and its dir removed at exit, even if a test forgets.

interface Running {
  dir: string;
  child: ChildProcess | undefined;
  exited: boolean;
  servers: Server[];
}

const live = exitSet<Running>((r) => cleanupSync(r));

function closeServers(r: Running): void {
  for (const s of r.servers.splice(0)) {
    s.close();
    s.closeAllConnections();
  }
}

/** For process exit: SIGTERM, wait up to 2 s, SIGKILL; nothing worth a graceful stop is stored. */
function cleanupSync(r: Running): void {
  live.delete(r);
  closeServers(r);
  killChildSync(r);
  rmSync(r.dir, { recursive: true, force: true, maxRetries: 3 });
}

function killChildSync(r: Running): void {
  if (r.child && !r.exited) killSync(r.child, 2_000, 0, 20);
}

/** Kills the current registry process (if running) and waits for it to exit. */
async function killChild(r: Running): Promise<void> {
  if (r.child) await killAndWait(r.child, () => r.exited, 5_000, 5_000);
}

async function stopAsync(r: Running): Promise<void> {
  if (!live.has(r)) return;
  // Stays in `live` until done, so the exit hook still cleans up if the process exits meanwhile.
  closeServers(r);
  await killChild(r);
  live.delete(r);
  rmSync(r.dir, { recursive: true, force: true, maxRetries: 3 });
}

// ---------------------------------------------------------------------------------------------------
// Helpers

function logTail(logPath: string, lines = 30): string {
  try {
    return readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') || '(empty log)';
  } catch {
    return '(no log)';
  }
}

/** True once `GET /v2/` answers as a registry does (200 open, 401 with auth). */
function ping(url: string, ca: Buffer | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const send = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = send(`${url}/v2/`, { method: 'GET', timeout: 2_000, agent: false, ca }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 || res.statusCode === 401));
      res.on('error', () => resolve(false));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/** A test CA and a server certificate it signed, for 127.0.0.1 and localhost (PEM paths). */
async function makeTlsCerts(certDir: string): Promise<{ ca: string; cert: string; key: string }> {
  const ca = await makeCa(certDir, join(certDir, 'ca.crt'), '/CN=kiln test CA');
  const cert = join(certDir, 'server.crt');
  const key = join(certDir, 'server.key');
  await signCert(ca, 'localhost', key, cert, SERVER_EXT);
  return { ca: ca.ca, cert, key };
}

// ---------------------------------------------------------------------------------------------------
// Token issuer

const b64url = (data: string | Buffer) => Buffer.from(data).toString('base64url');

/** Parses `type:name:a,b` scopes (several per parameter when space-separated), merging by resource. */
export function parseScopes(scopes: readonly string[]): TokenAccess[] {
  const merged = new Map<string, TokenAccess>();
  for (const scope of scopes.flatMap((s) => s.split(' ')).filter((s) => s !== '')) {
    // The name may itself hold ':' (never in repository names, but the grammar allows it).
    const first = scope.indexOf(':');
    const last = scope.lastIndexOf(':');
    if (first < 0 || last === first) continue;
    const type = scope.slice(0, first);
    const name = scope.slice(first + 1, last);
    const actions = scope
      .slice(last + 1)
      .split(',')
      .filter((a) => a !== '');
    const key = `${type}\0${name}`;
    const entry = merged.get(key) ?? { type, name, actions: [] };
    for (const a of actions) if (!entry.actions.includes(a)) entry.actions.push(a);
    merged.set(key, entry);
  }
  return [...merged.values()];
}

function parseBasic(header: string | undefined): { user: string; pass: string } | 'malformed' | undefined {
  if (header === undefined) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return 'malformed';
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return 'malformed';
  return { user: decoded.slice(0, colon), pass: decoded.slice(colon + 1) };
}

interface IssuerConfig {
  keyPem: string;
  certDerB64: string;
  username: string;
  password: string;
  tokenField: 'token' | 'access_token' | 'both';
  expiresIn: number;
  requests: TokenRequest[];
}

function signJwt(cfg: IssuerConfig, sub: string, access: TokenAccess[]): { token: string; issuedAt: Date } {
  const issuedAt = new Date();
  const now = Math.floor(issuedAt.getTime() / 1000);
  // distribution 2.8 verifies x5c against rootcertbundle and takes the key from its first certificate.
  const header = { typ: 'JWT', alg: 'RS256', x5c: [cfg.certDerB64] };
  const claims = {
    iss: TOKEN_ISSUER,
    sub,
    aud: TOKEN_SERVICE,
    exp: now + cfg.expiresIn,
    nbf: now,
    iat: now,
    jti: randomBytes(16).toString('hex'),
    access,
  };
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = createSign('RSA-SHA256').update(signingInput).sign(cfg.keyPem);
  return { token: `${signingInput}.${b64url(signature)}`, issuedAt };
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: OutgoingHttpHeaders = {},
): void {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(data),
    ...headers,
  });
  res.end(data);
}

function handleTokenRequest(cfg: IssuerConfig, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://issuer');
  if (url.pathname !== '/token') {
    sendJson(res, 404, { errors: [{ code: 'NOT_FOUND', message: 'no such endpoint' }] });
    return;
  }
  if (req.method !== 'GET') {
    // containerd tries the OAuth2 POST form first and falls back to GET on 405.
    sendJson(res, 405, { errors: [{ code: 'UNSUPPORTED', message: 'only GET' }] }, { Allow: 'GET' });
    return;
  }
  const scopes = url.searchParams.getAll('scope');
  const requested = parseScopes(scopes);
  const service = url.searchParams.get('service');
  const creds = parseBasic(req.headers.authorization);
  const record: TokenRequest = {
    method: req.method,
    scopes,
    requested,
    granted: [],
    authenticated: false,
    account: typeof creds === 'object' ? creds.user : undefined,
    service,
    status: 0,
  };
  cfg.requests.push(record);

  if (
    creds === 'malformed' ||
    (creds !== undefined && (creds.user !== cfg.username || creds.pass !== cfg.password))
  ) {
    record.status = 401;
    sendJson(
      res,
      401,
      { errors: [{ code: 'UNAUTHORIZED', message: 'incorrect username or password' }] },
      { 'WWW-Authenticate': 'Basic realm="kiln test token issuer"' },
    );
    return;
  }
  if (service !== null && service !== TOKEN_SERVICE) {
    // A client that echoes the wrong service from the challenge is a bug worth failing on.
    record.status = 400;
    sendJson(res, 400, {
      errors: [{ code: 'DENIED', message: `unknown service ${JSON.stringify(service)}` }],
    });
    return;
  }
  record.authenticated = creds !== undefined;
  record.granted = record.authenticated
    ? requested.map((a) => ({ ...a, actions: [...a.actions] }))
    : requested
        .filter((a) => a.type === 'repository' && a.name.startsWith('public/') && a.actions.includes('pull'))
        .map((a) => ({ ...a, actions: ['pull'] }));
  const { token, issuedAt } = signJwt(cfg, creds?.user ?? '', record.granted);
  const body: Record<string, unknown> = {};
  if (cfg.tokenField !== 'access_token') body['token'] = token;
  if (cfg.tokenField !== 'token') body['access_token'] = token;
  body['expires_in'] = cfg.expiresIn;
  body['issued_at'] = issuedAt.toISOString();
  record.status = 200;
  sendJson(res, 200, body);
}

async function startIssuer(cfg: IssuerConfig): Promise<{ server: Server; realm: string }> {
  const server = createServer((req, res) => {
    req.resume();
    try {
      handleTokenRequest(cfg, req, res);
    } catch (e) {
      sendJson(res, 500, { errors: [{ code: 'UNKNOWN', message: String(e) }] });
    }
  });
  const port = await listenLoopback(server);
  return { server, realm: `http://127.0.0.1:${port}/token` };
}

// ---------------------------------------------------------------------------------------------------
// The registry

/** Environment without REGISTRY_* (distribution reads overrides of any config key from them). */
function registryEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('REGISTRY_')) env[k] = v;
  return env;
}

type Launch = { ok: true } | { ok: false; why: string; clash: boolean };

/** Starts the registry (its config names the port) and waits for `GET /v2/`; on failure it is gone. */
async function launch(
  r: Running,
  binary: string,
  configPath: string,
  logPath: string,
  url: string,
  ca: Buffer | undefined,
  timeoutMs: number,
): Promise<Launch> {
  let spawnError: Error | undefined;
  // A forgotten registry is stopped by the exit hook, it does not keep the test alive.
  const options = { env: registryEnv(), flags: 'w' as const };
  const child = spawnService(binary, ['serve', configPath], logPath, options, (e) => {
    spawnError ??= e;
    r.exited = true;
  });
  r.child = child;
  r.exited = false;

  const started = Date.now();
  for (;;) {
    if (r.exited) {
      const why = spawnError
        ? `could not be started: ${spawnError.message}`
        : `exited (code ${child.exitCode})`;
      return { ok: false, why, clash: /address already in use/.test(logTail(logPath)) };
    }
    if (await ping(url, ca)) {
      if (!r.exited) return { ok: true };
      continue; // something else answered on our port; report why ours exited
    }
    if (Date.now() - started > timeoutMs) {
      await killChild(r);
      return { ok: false, why: `did not answer GET /v2/ within ${timeoutMs} ms`, clash: false };
    }
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** Starts a registry with `opts.auth` (default `none`) and resolves once it answers. Stop it with stop(). */
export async function startRegistry<A extends RegistryAuth = 'none'>(
  opts: StartRegistryOptions & { auth?: A } = {},
): Promise<RegistryFor<A>> {
  const auth: RegistryAuth = opts.auth ?? 'none';
  const reason = registrySkipReason(auth);
  if (reason !== undefined) throw new Error(`cannot start a test registry: ${reason}`);
  const binary = findTool('docker-registry')!;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const username = opts.username ?? 'kiln';
  const password = opts.password ?? randomBytes(12).toString('hex');

  const dir = mkdtempSync(join(tmpdir(), 'kiln-registry-'));
  const running: Running = { dir, child: undefined, exited: true, servers: [] };
  live.add(running);
  const stop = () => stopAsync(running);

  const storage = join(dir, 'storage');
  const certDir = join(dir, 'certs');
  const configPath = join(dir, 'config.json');
  const logPath = join(dir, 'registry.log');
  mkdirSync(storage);
  mkdirSync(certDir);

  try {
    const config: Record<string, unknown> = {
      version: '0.1',
      log: { level: 'error', formatter: 'text', accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: storage },
        delete: { enabled: true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: {
        addr: '',
        secret: randomBytes(32).toString('hex'),
        headers: { 'X-Content-Type-Options': ['nosniff'] },
      },
    };
    const http = config['http'] as Record<string, unknown>;
    let ca: Buffer | undefined;
    let extra: Record<string, unknown> = {};

    if (auth === 'basic') {
      const certs = await makeTlsCerts(certDir);
      ca = readFileSync(certs.ca);
      http['tls'] = { certificate: certs.cert, key: certs.key };
      // distribution only accepts bcrypt entries.
      const entry = await runOk(findTool('htpasswd')!, ['-Bbn', username, password]);
      const htpasswdPath = join(dir, 'htpasswd');
      writeFileSync(htpasswdPath, `${entry.stdout.trim()}\n`);
      config['auth'] = { htpasswd: { realm: 'kiln-test-registry', path: htpasswdPath } };
      extra = { caFile: certs.ca, username, password };
    } else if (auth === 'token') {
      const openssl = findTool('openssl')!;
      const keyPath = join(certDir, 'token.key');
      const certPath = join(certDir, 'token.crt');
      await runOk(openssl, [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        keyPath,
        '-out',
        certPath,
        '-days',
        '7',
        '-subj',
        `/CN=${TOKEN_ISSUER}`,
      ]);
      const tokenRequests: TokenRequest[] = [];
      const issuer = await startIssuer({
        keyPem: readFileSync(keyPath, 'utf8'),
        certDerB64: new X509Certificate(readFileSync(certPath)).raw.toString('base64'),
        username,
        password,
        tokenField: opts.tokenField ?? 'both',
        expiresIn: opts.expiresIn ?? 300,
        requests: tokenRequests,
      });
      running.servers.push(issuer.server);
      config['auth'] = {
        token: {
          realm: issuer.realm,
          service: TOKEN_SERVICE,
          issuer: TOKEN_ISSUER,
          rootcertbundle: certPath,
        },
      };
      extra = { username, password, realm: issuer.realm, service: TOKEN_SERVICE, tokenRequests };
    }

    const scheme = auth === 'basic' ? 'https' : 'http';
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const host = `127.0.0.1:${port}`;
      const url = `${scheme}://${host}`;
      http['addr'] = host;
      writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`); // YAML is a superset of JSON
      const outcome = await launch(running, binary, configPath, logPath, url, ca, timeoutMs);
      if (outcome.ok) {
        return {
          auth,
          host,
          url,
          dir,
          logPath,
          ...extra,
          stop,
          [Symbol.asyncDispose]: stop,
        } as RegistryFor<A>;
      }
      // Another process may take the port between freePort() and the registry's bind: try once more.
      if (outcome.clash && attempt === 1) continue;
      throw new Error(
        `test registry (${auth}) ${outcome.why}\n--- ${binary} serve ${configPath}\n` +
          `--- config:\n${readFileSync(configPath, 'utf8')}--- registry log (tail):\n${logTail(logPath)}`,
      );
    }
  } catch (e) {
    await stop();
    throw e;
  }
}

const shared = new Map<RegistryAuth, Promise<Registry>>();

/**
 * One registry per process (per test file) and configuration, started on first call and stopped at
 * process exit. Its stop() and asyncDispose are no-ops, so one test cannot pull it from under another;
 * tests that need an empty registry or other options use startRegistry().
 */
export function sharedRegistry<A extends RegistryAuth>(auth: A): Promise<RegistryFor<A>> {
  let entry = shared.get(auth);
  if (entry === undefined) {
    const starting: Promise<Registry> = startRegistry({ auth }).then(
      (reg): Registry => ({ ...reg, stop: async () => {}, [Symbol.asyncDispose]: async () => {} }),
    );
    starting.catch(() => {
      if (shared.get(auth) === starting) shared.delete(auth); // let a later call retry
    });
    shared.set(auth, starting);
    entry = starting;
  }
  return entry as Promise<RegistryFor<A>>;
}

// ---------------------------------------------------------------------------------------------------
// Counting reverse proxy: in fault-proxy.ts with the other proxies, named here too.

export {
  type LoggedRequest,
  type RequestLog,
  type RequestLogOptions,
  startRequestLog,
} from './fault-proxy.js';
