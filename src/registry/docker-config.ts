/**
 * docker's config.json (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) and its credential
 * helpers (`docker-credential-NAME`), read and written as docker, skopeo and crane do, so that a
 * `docker login` works for kiln and a `kiln login` works for them.
 *
 * Secrets never reach a message: errors name files, helpers and hosts, never file contents or
 * helper output that could hold a secret.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ioError, KilnError, unlessMissing } from '../errors.js';
import { withLock } from '../store/lock.js';

/** A user name and password, or an identity token, for one registry. */
export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (docker's `identitytoken`); when set, exchange it rather than the password. */
  identityToken?: string;
}

/** The key docker writes Docker Hub credentials under, and the server URL it gives helpers for Hub. */
export const HUB_SERVER = 'https://index.docker.io/v1/';
const HUB_HOSTS: ReadonlySet<string> = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

export const HELPER_TIMEOUT_MS = 30_000;
/** Username a helper returns when the Secret is an identity (refresh) token. */
const TOKEN_USERNAME = '<token>';
// docker-credential-helpers print "credentials not found in native keychain"; others vary a little.
const NOT_FOUND_RE = /credentials not found/i;
const HOST_RE =
  /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[a-f0-9:]+\])(?::[0-9]+)?$/;
const HELPER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export type DockerConfig = Record<string, unknown>;

export interface HelperOptions {
  env?: NodeJS.ProcessEnv;
  /** How long a credential helper may take (default 30 s). */
  helperTimeoutMs?: number;
}

export interface LoginOptions extends HelperOptions {
  /** Checks the credentials against the registry; runs before anything is stored. */
  verify?: (c: Credentials) => Promise<void>;
}

/** What docker's ConvertToHostname does to a config key: drop http(s)://, and any path. */
export function keyHost(key: string): string {
  const s = key.trim().replace(/^https?:\/\//i, '');
  const slash = s.indexOf('/');
  return (slash === -1 ? s : s.slice(0, slash)).toLowerCase();
}

/** `registry` as `host[:port]`, lowercased; URL forms (`https://host/v2/`) are accepted. E_USAGE if not a host. */
export function registryHost(registry: string): string {
  const host = keyHost(registry);
  if (/\s/.test(registry) || !HOST_RE.test(host))
    throw new KilnError('E_USAGE', `${JSON.stringify(registry)} is not a registry host[:port]`, {
      hint: 'e.g. ghcr.io, localhost:5000, docker.io',
    });
  return host;
}

export function isDockerHub(host: string): boolean {
  return HUB_HOSTS.has(host);
}

/** The key a login is stored under and the ServerURL helpers get: the host, for Hub docker's URL. */
export function serverAddress(host: string): string {
  return isDockerHub(host) ? HUB_SERVER : host;
}

function sameRegistry(a: string, b: string): boolean {
  return a === b || (isDockerHub(a) && isDockerHub(b));
}

/** Keys of `map` that name the registry `host`, in any spelling; docker's own key first. */
export function matchingKeys(map: Record<string, unknown> | undefined, host: string): string[] {
  if (!map) return [];
  const exact = serverAddress(host);
  const keys = Object.keys(map).filter((k) => sameRegistry(keyHost(k), host));
  return keys.sort((a, b) => Number(b === exact) - Number(a === exact));
}

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env['DOCKER_CONFIG'] || path.join(env['HOME'] || os.homedir(), '.docker');
  return path.join(dir, 'config.json');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses config.json-shaped JSON. `what` names it in errors. The parser's own message is not used:
 * V8 quotes the text around the fault, which may be a secret.
 */
export function parseConfigJson(text: string, what: string): DockerConfig {
  if (text.trim() === '') return {}; // docker accepts an empty file
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    const pos = /position (\d+)/.exec(String((err as Error).message))?.[1];
    const line = pos === undefined ? '' : ` (line ${text.slice(0, Number(pos)).split('\n').length})`;
    throw new KilnError('E_CREDENTIALS', `${what} is not valid JSON${line}`);
  }
  if (!isObject(data)) throw new KilnError('E_CREDENTIALS', `${what} is not a JSON object`);
  for (const field of ['auths', 'credHelpers']) {
    if (data[field] !== undefined && !isObject(data[field]))
      throw new KilnError('E_CREDENTIALS', `${what}: "${field}" is not an object`);
  }
  if (data['credsStore'] !== undefined && typeof data['credsStore'] !== 'string')
    throw new KilnError('E_CREDENTIALS', `${what}: "credsStore" is not a string`);
  return data;
}

/** The parsed config.json, or undefined if there is none. */
export async function readDockerConfig(file: string): Promise<DockerConfig | undefined> {
  const text = await unlessMissing(fs.readFile(file, 'utf8'), file);
  return text === undefined ? undefined : parseConfigJson(text, file);
}

export function authsOf(config: DockerConfig | undefined): Record<string, unknown> | undefined {
  const auths = config?.['auths'];
  return isObject(auths) ? auths : undefined;
}

/**
 * The credentials in one `auths` entry: `auth` (base64 of user:password), else `username`/`password`,
 * plus `identitytoken`. Undefined for an entry without any (docker writes `{}` when a helper holds them).
 */
export function entryCredentials(entry: unknown, what: string): Credentials | undefined {
  if (!isObject(entry)) return undefined;
  const str = (k: string) =>
    typeof entry[k] === 'string' && entry[k] !== '' ? (entry[k] as string) : undefined;
  const out: Credentials = {};
  const auth = str('auth');
  if (auth !== undefined) {
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) throw new KilnError('E_CREDENTIALS', `${what}: "auth" is not base64 of user:password`);
    out.username = decoded.slice(0, colon);
    out.password = decoded.slice(colon + 1);
  } else {
    const username = str('username');
    const password = str('password');
    if (username !== undefined) out.username = username;
    if (password !== undefined) out.password = password;
  }
  const token = str('identitytoken');
  if (token !== undefined) out.identityToken = token;
  return out.password !== undefined || out.identityToken !== undefined ? out : undefined;
}

export interface ConfiguredHelper {
  /** `docker-credential-NAME` */
  program: string;
  /** Where it was configured: `credHelpers` or `credsStore`. */
  via: 'credHelpers' | 'credsStore';
}

function helperProgram(name: string, file: string): string {
  if (!HELPER_NAME_RE.test(name))
    throw new KilnError('E_CREDENTIALS', `${file}: ${JSON.stringify(name)} is not a credential helper name`);
  return `docker-credential-${name}`;
}

/** The helper config.json names for `host` in `credHelpers`, if any. */
export function credHelperFor(
  config: DockerConfig | undefined,
  host: string,
  file: string,
): ConfiguredHelper | undefined {
  const helpers = config?.['credHelpers'];
  if (!isObject(helpers)) return undefined;
  for (const key of matchingKeys(helpers, host)) {
    const name = helpers[key];
    if (typeof name === 'string' && name !== '')
      return { program: helperProgram(name, file), via: 'credHelpers' };
  }
  return undefined;
}

/** `credsStore`, the helper for every registry without a credHelpers entry. */
export function credsStoreOf(config: DockerConfig | undefined, file: string): ConfiguredHelper | undefined {
  const name = config?.['credsStore'];
  return typeof name === 'string' && name !== ''
    ? { program: helperProgram(name, file), via: 'credsStore' }
    : undefined;
}

async function findOnPath(program: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const names = process.platform === 'win32' ? [`${program}.exe`, `${program}.cmd`, program] : [program];
  for (const dir of (env['PATH'] ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    for (const name of names) {
      const candidate = path.join(dir, name);
      try {
        await fs.access(candidate, constants.X_OK);
        if ((await fs.stat(candidate)).isFile()) return candidate;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

interface HelperResult {
  code: number;
  stdout: string;
  stderr: string;
}

type HelperAction = 'get' | 'store' | 'erase';

async function runHelper(
  program: string,
  action: HelperAction,
  input: string,
  options: HelperOptions,
): Promise<HelperResult> {
  const env = options.env ?? process.env;
  const timeoutMs = options.helperTimeoutMs ?? HELPER_TIMEOUT_MS;
  const exe = await findOnPath(program, env);
  if (exe === undefined)
    throw new KilnError('E_CREDENTIALS', `credential helper ${program} not found on PATH`, {
      hint: `install ${program}, or remove it from docker's config.json (credsStore / credHelpers)`,
    });
  return new Promise((resolve, reject) => {
    // stderr is captured, not inherited: helpers like pass ask for passphrases through pinentry on the TTY.
    const child = spawn(exe, [action], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      child.stdout.destroy();
      child.stderr.destroy();
      finish(() =>
        reject(
          new KilnError(
            'E_CREDENTIALS',
            `credential helper ${program} ${action} gave no answer in ${timeoutMs} ms`,
          ),
        ),
      );
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) =>
      finish(() =>
        reject(
          new KilnError('E_CREDENTIALS', `cannot run credential helper ${program}: ${e.code ?? e.message}`),
        ),
      ),
    );
    child.on('close', (code, signal) =>
      finish(() =>
        resolve({
          code: code ?? (signal ? 128 : 1),
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
        }),
      ),
    );
    child.stdin.on('error', () => {}); // EPIPE if the helper exits without reading
    child.stdin.end(input);
  });
}

function isNotFound(r: HelperResult): boolean {
  return r.code !== 0 && (NOT_FOUND_RE.test(r.stdout) || NOT_FOUND_RE.test(r.stderr));
}

/**
 * A helper's failure. Its first line of output is quoted only if it cannot hold a secret we know of and
 * does not look like JSON (a half-written credential answer).
 */
function helperFailure(program: string, action: HelperAction, r: HelperResult, secrets: string[]): KilnError {
  const line = (r.stdout.trim() || r.stderr.trim()).split('\n')[0]?.trim().slice(0, 200) ?? '';
  const leaks =
    /[{}"]|secret/i.test(line) ||
    secrets.some((s) => s !== '' && (line.includes(s) || line.includes(Buffer.from(s).toString('base64'))));
  const detail = line === '' || leaks ? '' : `: ${line}`;
  return new KilnError(
    'E_CREDENTIALS',
    `credential helper ${program} ${action} failed (exit ${r.code})${detail}`,
  );
}

/**
 * Asks `program` for the credentials of each server URL in turn (the spellings a login may have used);
 * undefined when it has none for any of them.
 */
export async function helperGet(
  program: string,
  serverUrls: string[],
  options: HelperOptions = {},
): Promise<Credentials | undefined> {
  for (const url of serverUrls) {
    const r = await runHelper(program, 'get', url, options);
    if (isNotFound(r)) continue;
    if (r.code !== 0) throw helperFailure(program, 'get', r, []);
    let answer: unknown;
    try {
      answer = JSON.parse(r.stdout);
    } catch {
      answer = undefined;
    }
    if (!isObject(answer) || (answer['Secret'] !== undefined && typeof answer['Secret'] !== 'string'))
      throw new KilnError(
        'E_CREDENTIALS',
        `credential helper ${program} get answered something other than credentials JSON`,
      );
    const secret = (answer['Secret'] as string | undefined) ?? '';
    const username = typeof answer['Username'] === 'string' ? answer['Username'] : '';
    if (secret === '') continue; // some helpers answer an empty record for "none"
    return username === TOKEN_USERNAME ? { identityToken: secret } : { username, password: secret };
  }
  return undefined;
}

export async function helperStore(
  program: string,
  serverUrl: string,
  creds: { username: string; password: string },
  options: HelperOptions = {},
): Promise<void> {
  const input = JSON.stringify({ ServerURL: serverUrl, Username: creds.username, Secret: creds.password });
  const r = await runHelper(program, 'store', input, options);
  if (r.code !== 0) throw helperFailure(program, 'store', r, [creds.password]);
}

/** True if the helper erased something, false if it had nothing for `serverUrl`. */
export async function helperErase(
  program: string,
  serverUrl: string,
  options: HelperOptions = {},
): Promise<boolean> {
  const r = await runHelper(program, 'erase', serverUrl, options);
  if (r.code === 0) return true;
  if (isNotFound(r)) return false;
  throw helperFailure(program, 'erase', r, []);
}

/** The file to write: config.json's target if it is a symlink (as docker does), so dotfile links survive. */
async function writableConfigPath(file: string): Promise<string> {
  try {
    return await fs.realpath(file);
  } catch {
    return file;
  }
}

/** Writes config.json through a 0600 temp file and a rename; the directory is made 0700 if missing. */
async function writeDockerConfig(file: string, config: DockerConfig): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let handle: fs.FileHandle | undefined;
  try {
    await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    handle = await fs.open(tmp, 'wx', 0o600);
    await handle.chmod(0o600); // whatever the umask
    await handle.writeFile(`${JSON.stringify(config, null, '\t')}\n`);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.rename(tmp, file);
  } catch (err) {
    await handle?.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    throw ioError(err, file);
  }
}

/** Read-modify-write of config.json under a lock, so parallel logins do not lose each other's entries. */
async function updateDockerConfig(file: string, change: (config: DockerConfig) => boolean): Promise<void> {
  try {
    await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  } catch (err) {
    throw ioError(err, path.dirname(file));
  }
  await withLock(file, async () => {
    const config = (await readDockerConfig(file)) ?? {};
    if (change(config)) await writeDockerConfig(file, config);
  });
}

/**
 * Stores credentials for `registry` where docker would: with the credHelpers entry for the host or
 * `credsStore`, in that helper (config.json then gets only an empty `auths` entry, as docker writes),
 * else as `auths[key].auth` in config.json. Other spellings of the same registry's key are dropped, so
 * no stale credentials shadow the new ones; everything else in the file is kept.
 */
export async function login(
  registry: string,
  creds: { username: string; password: string },
  options: LoginOptions = {},
): Promise<{ configPath: string; store: string }> {
  const host = registryHost(registry);
  if (!creds.username) throw new KilnError('E_USAGE', 'a username is required');
  if (creds.username.includes(':'))
    throw new KilnError('E_USAGE', 'a username cannot contain ":" (docker stores user:password)');
  if (!creds.password) throw new KilnError('E_USAGE', 'the password is empty');
  if (options.verify) await options.verify({ username: creds.username, password: creds.password });

  const env = options.env ?? process.env;
  const configPath = await writableConfigPath(dockerConfigPath(env));
  const current = await readDockerConfig(configPath);
  const helper = credHelperFor(current, host, configPath) ?? credsStoreOf(current, configPath);
  const key = serverAddress(host);
  if (helper) await helperStore(helper.program, key, creds, options);

  await updateDockerConfig(configPath, (config) => {
    const auths = { ...(authsOf(config) ?? {}) };
    for (const k of matchingKeys(auths, host)) if (k !== key) delete auths[k];
    auths[key] = helper
      ? {}
      : { auth: Buffer.from(`${creds.username}:${creds.password}`, 'utf8').toString('base64') };
    config['auths'] = auths;
    return true;
  });
  return { configPath, store: helper ? helper.program : 'file' };
}

/**
 * Removes the credentials for `registry`: erased from its helper (under docker's key and every spelling
 * config.json lists) and every `auths` entry naming it. `removed` is false if there was nothing.
 */
export async function logout(
  registry: string,
  options: HelperOptions = {},
): Promise<{ removed: boolean; configPath: string }> {
  const host = registryHost(registry);
  const env = options.env ?? process.env;
  const configPath = await writableConfigPath(dockerConfigPath(env));
  const current = await readDockerConfig(configPath);
  if (current === undefined) return { removed: false, configPath };
  const helper = credHelperFor(current, host, configPath) ?? credsStoreOf(current, configPath);
  const keys = matchingKeys(authsOf(current), host);
  let removed = false;
  if (helper) {
    for (const url of new Set([serverAddress(host), ...keys])) {
      if (await helperErase(helper.program, url, options)) removed = true;
    }
  }
  if (keys.length > 0) {
    await updateDockerConfig(configPath, (config) => {
      const auths = authsOf(config);
      const now = matchingKeys(auths, host);
      if (!auths || now.length === 0) return false;
      for (const k of now) delete auths[k];
      removed = true;
      return true;
    });
  }
  return { removed, configPath };
}
