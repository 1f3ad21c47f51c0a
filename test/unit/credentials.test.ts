/**
 * Registry credentials: lookup order, docker's config.json (key spellings, Hub aliases, helpers),
 * login/logout round trips and the CLI. A real credential helper (a shell script speaking docker's
 * protocol) is put first on PATH. Every test also checks that the secret shows up nowhere.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { isKilnError, KilnError } from '../../src/errors.js';
import { findCredentials } from '../../src/registry/credentials.js';
import { HUB_SERVER, login, logout } from '../../src/registry/docker-config.js';
import { kiln } from '../support/kiln.js';
import { sharedRegistry } from '../support/registry.js';

const SECRET = 'hunter2-S3cr3t-pw';
const SECRET_B64 = Buffer.from(SECRET).toString('base64');
const b64 = (s: string) => Buffer.from(s).toString('base64');

// docker-credential-kilntest: stores each record as a file named after its server URL in $KILNTEST_STORE
// and logs "action url" (never the secret) to calls.log. KILNTEST_MODE makes it misbehave.
const HELPER = `#!/bin/sh
set -u
action="\${1:-}"
input=$(cat)
case "\${KILNTEST_MODE:-}" in
  fail) echo "the keyring is locked"; exit 1 ;;
  leak) printf '{"ServerURL":"x","Username":"u","Secret":"%s' "$KILNTEST_LEAK"; exit 3 ;;
  garbage) echo "$KILNTEST_LEAK"; exit 0 ;;
  echo) echo "$input"; exit 1 ;;
  slow) exec sleep 10 ;;
esac
case "$action" in
  get|erase) url="$input" ;;
  store) url=$(printf '%s' "$input" | sed -n 's/.*"ServerURL":"\\([^"]*\\)".*/\\1/p') ;;
  *) echo "unknown action $action"; exit 1 ;;
esac
echo "$action $url" >> "$KILNTEST_STORE/calls.log"
file="$KILNTEST_STORE/$(printf '%s' "$url" | tr -c 'A-Za-z0-9' '_')"
case "$action" in
  get) if [ -f "$file" ]; then cat "$file"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  store) printf '%s' "$input" > "$file" ;;
  erase) if [ -f "$file" ]; then rm -f "$file"; else echo "credentials not found in native keychain"; exit 1; fi ;;
esac
`;

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
});

interface Sandbox {
  env: NodeJS.ProcessEnv;
  configPath: string;
  store: string;
  home: string;
  /** Contents of config.json, parsed. */
  config(): Promise<Record<string, unknown>>;
  /** The helper's call log ("action url" lines). */
  calls(): Promise<string[]>;
  /** Puts a record into the helper's store, as `store` would. */
  seed(url: string, username: string, secret: string): Promise<void>;
}

async function sandbox(config?: unknown, extraEnv: NodeJS.ProcessEnv = {}): Promise<Sandbox> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-cred-'));
  dirs.push(dir);
  const [home, bin, store] = ['home', 'bin', 'store'].map((d) => path.join(dir, d)) as [
    string,
    string,
    string,
  ];
  for (const d of [home, bin, store]) await fs.mkdir(d);
  await fs.writeFile(path.join(bin, 'docker-credential-kilntest'), HELPER, { mode: 0o755 });
  const dockerConfig = path.join(dir, 'docker');
  const configPath = path.join(dockerConfig, 'config.json');
  if (config !== undefined) {
    await fs.mkdir(dockerConfig);
    await fs.writeFile(configPath, typeof config === 'string' ? config : JSON.stringify(config));
  }
  const env: NodeJS.ProcessEnv = {
    PATH: `${bin}${path.delimiter}${process.env['PATH'] ?? ''}`,
    HOME: home,
    DOCKER_CONFIG: dockerConfig,
    KILNTEST_STORE: store,
    KILN_AUTH: undefined, // the CLI tests inherit process.env: do not let a real one in
    ...extraEnv,
  };
  const fileFor = (url: string) => path.join(store, url.replace(/[^A-Za-z0-9]/g, '_'));
  return {
    env,
    configPath,
    store,
    home,
    config: async () => JSON.parse(await fs.readFile(configPath, 'utf8')),
    calls: async () =>
      (await fs.readFile(path.join(store, 'calls.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean),
    seed: (url, username, secret) =>
      fs.writeFile(fileFor(url), JSON.stringify({ ServerURL: url, Username: username, Secret: secret })),
  };
}

/** Asserts `p` rejects with a KilnError of `code` whose message, hint and JSON hold no secret. */
async function rejectsWith(p: Promise<unknown>, code: string, ...mustContain: string[]): Promise<KilnError> {
  let caught: unknown;
  await assert.rejects(p, (e) => {
    caught = e;
    return true;
  });
  assert.ok(isKilnError(caught), `expected a KilnError, got ${String(caught)}`);
  const e = caught as KilnError;
  assert.equal(e.code, code, e.message);
  assertNoSecret(`${e.message} ${e.hint ?? ''} ${JSON.stringify(e)} ${e.stack} ${String(e.cause ?? '')}`);
  for (const s of mustContain) assert.ok(e.message.includes(s), `${JSON.stringify(e.message)} lacks ${s}`);
  return e;
}

function assertNoSecret(text: string): void {
  assert.ok(!text.includes(SECRET), `secret leaked: ${text}`);
  assert.ok(!text.includes(SECRET_B64), `base64 secret leaked: ${text}`);
}

// Lookup order

test('nothing configured: anonymous, even without a config dir', async () => {
  const sb = await sandbox();
  assert.deepEqual(await findCredentials('ghcr.io', { env: sb.env }), { source: 'anonymous' });
});

test('--creds wins over KILN_AUTH and config.json, and splits at the first colon', async () => {
  const sb = await sandbox({ auths: { 'ghcr.io': { auth: b64('file:pw') } } }, { KILN_AUTH: 'env:pw' });
  const found = await findCredentials('ghcr.io', { env: sb.env, creds: `me:${SECRET}:more` });
  assert.deepEqual(found, { credentials: { username: 'me', password: `${SECRET}:more` }, source: '--creds' });
});

test('malformed --creds and KILN_AUTH are E_USAGE and do not quote the value', async () => {
  const sb = await sandbox();
  for (const creds of [SECRET, `:${SECRET}`, 'user:']) {
    await rejectsWith(findCredentials('ghcr.io', { env: sb.env, creds }), 'E_USAGE', '--creds');
  }
  await rejectsWith(
    findCredentials('ghcr.io', { env: { ...sb.env, KILN_AUTH: SECRET } }),
    'E_USAGE',
    'KILN_AUTH',
  );
});

test('KILN_AUTH user:password applies to every registry and beats config.json', async () => {
  const sb = await sandbox(
    { auths: { 'ghcr.io': { auth: b64('file:pw') } } },
    { KILN_AUTH: `env:${SECRET}` },
  );
  for (const registry of ['ghcr.io', 'localhost:5000', 'docker.io']) {
    assert.deepEqual(await findCredentials(registry, { env: sb.env }), {
      credentials: { username: 'env', password: SECRET },
      source: 'KILN_AUTH',
    });
  }
});

test('KILN_AUTH as JSON: {"auths":{...}} or the bare map; other registries fall through to config.json', async () => {
  const sb = await sandbox({ auths: { 'quay.io': { auth: b64('file:pw') } } });
  const wrapped = JSON.stringify({ auths: { 'https://ghcr.io': { auth: b64(`a:${SECRET}`) } } });
  const bare = JSON.stringify({ 'ghcr.io': { username: 'b', password: SECRET }, 'quay.io': {} });
  assert.deepEqual(await findCredentials('ghcr.io', { env: { ...sb.env, KILN_AUTH: wrapped } }), {
    credentials: { username: 'a', password: SECRET },
    source: 'KILN_AUTH',
  });
  assert.deepEqual(await findCredentials('ghcr.io', { env: { ...sb.env, KILN_AUTH: bare } }), {
    credentials: { username: 'b', password: SECRET },
    source: 'KILN_AUTH',
  });
  // quay.io: absent from one, an empty entry in the other: config.json answers.
  for (const KILN_AUTH of [wrapped, bare]) {
    const found = await findCredentials('quay.io', { env: { ...sb.env, KILN_AUTH } });
    assert.equal(found.source, `${sb.configPath} (auths)`);
    assert.deepEqual(found.credentials, { username: 'file', password: 'pw' });
  }
  const broken = `{"ghcr.io":{"password":"${SECRET}"`;
  await rejectsWith(
    findCredentials('ghcr.io', { env: { ...sb.env, KILN_AUTH: broken } }),
    'E_CREDENTIALS',
    'KILN_AUTH',
  );
});

// config.json

test('auths keys match in any spelling docker writes; ports must match too', async () => {
  const spellings = [
    'ghcr.io',
    'https://ghcr.io',
    'http://ghcr.io',
    'https://ghcr.io/v1/',
    'ghcr.io/v2/',
    'GHCR.io',
  ];
  for (const key of spellings) {
    const sb = await sandbox({ auths: { [key]: { auth: b64(`u:${SECRET}`) } } });
    const found = await findCredentials('ghcr.io', { env: sb.env });
    assert.deepEqual(found.credentials, { username: 'u', password: SECRET }, key);
    assert.equal(found.source, `${sb.configPath} (auths)`);
    assertNoSecret(found.source);
  }
  const sb = await sandbox({ auths: { 'https://localhost:5000/v2/': { auth: b64('u:p') } } });
  assert.equal((await findCredentials('localhost:5000', { env: sb.env })).credentials?.password, 'p');
  assert.equal((await findCredentials('localhost:5001', { env: sb.env })).source, 'anonymous');
  assert.equal((await findCredentials('localhost', { env: sb.env })).source, 'anonymous');
});

test('Docker Hub: docker.io, index.docker.io and registry-1.docker.io all use https://index.docker.io/v1/', async () => {
  const sb = await sandbox({
    auths: {
      'https://index.docker.io/v1/': { auth: b64(`hubuser:${SECRET}`) },
      'ghcr.io': { auth: b64('g:p') },
    },
  });
  for (const registry of ['docker.io', 'index.docker.io', 'registry-1.docker.io']) {
    const found = await findCredentials(registry, { env: sb.env });
    assert.deepEqual(found.credentials, { username: 'hubuser', password: SECRET }, registry);
  }
  // ...and the key docker.io is Hub too; the exact key wins when both are there.
  const both = await sandbox({
    auths: { 'docker.io': { auth: b64('short:p') }, 'https://index.docker.io/v1/': { auth: b64('long:p') } },
  });
  assert.equal((await findCredentials('docker.io', { env: both.env })).credentials?.username, 'long');
  const short = await sandbox({ auths: { 'docker.io': { auth: b64('short:p') } } });
  assert.equal(
    (await findCredentials('registry-1.docker.io', { env: short.env })).credentials?.username,
    'short',
  );
});

test('entries with username/password fields and with identitytoken', async () => {
  const sb = await sandbox({
    auths: {
      'a.example': { username: 'u', password: SECRET },
      'b.example': { identitytoken: SECRET },
      'c.example': { auth: b64('u:p'), identitytoken: 'tok' },
      'd.example': {},
    },
  });
  assert.deepEqual((await findCredentials('a.example', { env: sb.env })).credentials, {
    username: 'u',
    password: SECRET,
  });
  assert.deepEqual((await findCredentials('b.example', { env: sb.env })).credentials, {
    identityToken: SECRET,
  });
  assert.deepEqual((await findCredentials('c.example', { env: sb.env })).credentials, {
    username: 'u',
    password: 'p',
    identityToken: 'tok',
  });
  assert.equal((await findCredentials('d.example', { env: sb.env })).source, 'anonymous');
});

test('config.json that is not JSON, or has a bad auth field, is E_CREDENTIALS naming the file, without the secret', async () => {
  const sb = await sandbox(`{"auths":{"ghcr.io":{"auth":"${SECRET_B64}"}},\n "x": ${SECRET}}`);
  await rejectsWith(findCredentials('ghcr.io', { env: sb.env }), 'E_CREDENTIALS', sb.configPath);
  const truncated = await sandbox(`{"auths":{"ghcr.io":{"auth":"${SECRET_B64}"}}\n`);
  await rejectsWith(findCredentials('ghcr.io', { env: truncated.env }), 'E_CREDENTIALS', 'line 2');
  const notObject = await sandbox('[1]');
  await rejectsWith(
    findCredentials('ghcr.io', { env: notObject.env }),
    'E_CREDENTIALS',
    notObject.configPath,
  );
  const badAuth = await sandbox({ auths: { 'ghcr.io': { auth: SECRET_B64 } } }); // no colon inside
  await rejectsWith(findCredentials('ghcr.io', { env: badAuth.env }), 'E_CREDENTIALS', badAuth.configPath);
  // An empty file is an empty config, as docker reads it.
  const empty = await sandbox('');
  assert.equal((await findCredentials('ghcr.io', { env: empty.env })).source, 'anonymous');
});

// Credential helpers

test('credHelpers beats auths; auths beats credsStore; credsStore serves the rest', async () => {
  const sb = await sandbox({
    credsStore: 'kilntest',
    credHelpers: { 'https://ghcr.io': 'kilntest' },
    auths: { 'ghcr.io': { auth: b64('file:p') }, 'quay.io': { auth: b64('file:p') }, 'gcr.io': {} },
  });
  await sb.seed('ghcr.io', 'helper', SECRET);
  await sb.seed('gcr.io', 'store', SECRET);
  const ghcr = await findCredentials('ghcr.io', { env: sb.env });
  assert.deepEqual(ghcr, {
    credentials: { username: 'helper', password: SECRET },
    source: 'docker-credential-kilntest',
  });
  const quay = await findCredentials('quay.io', { env: sb.env });
  assert.deepEqual(quay.credentials, { username: 'file', password: 'p' });
  const gcr = await findCredentials('gcr.io', { env: sb.env });
  assert.deepEqual(gcr, {
    credentials: { username: 'store', password: SECRET },
    source: 'docker-credential-kilntest',
  });
  assert.deepEqual(await sb.calls(), ['get ghcr.io', 'get gcr.io']);
});

test('a helper that has nothing means anonymous; Hub is asked for as https://index.docker.io/v1/', async () => {
  const sb = await sandbox({ credsStore: 'kilntest', credHelpers: { 'quay.io': 'kilntest' } });
  assert.deepEqual(await findCredentials('docker.io', { env: sb.env }), { source: 'anonymous' });
  // A credHelpers registry with nothing stored does not fall back to anything else.
  assert.deepEqual(await findCredentials('quay.io', { env: { ...sb.env, KILN_AUTH: '{}' } }), {
    source: 'anonymous',
  });
  assert.deepEqual(await sb.calls(), [`get ${HUB_SERVER}`, 'get quay.io']);
});

test('a helper is also asked under the spelling an auths entry shows (the one docker logged in with)', async () => {
  const sb = await sandbox({ credsStore: 'kilntest', auths: { 'https://ghcr.io': {} } });
  await sb.seed('https://ghcr.io', 'u', SECRET);
  const found = await findCredentials('ghcr.io', { env: sb.env });
  assert.deepEqual(found.credentials, { username: 'u', password: SECRET });
  assert.deepEqual(await sb.calls(), ['get ghcr.io', 'get https://ghcr.io']);
});

test('a helper answering Username <token> gives an identity token', async () => {
  const sb = await sandbox({ credsStore: 'kilntest' });
  await sb.seed('ghcr.io', '<token>', SECRET);
  assert.deepEqual((await findCredentials('ghcr.io', { env: sb.env })).credentials, {
    identityToken: SECRET,
  });
});

test('helper failures are E_CREDENTIALS naming the helper, never the secret', async () => {
  const sb = await sandbox({ credsStore: 'kilntest' });
  const env = (mode: string) => ({ ...sb.env, KILNTEST_MODE: mode, KILNTEST_LEAK: SECRET });
  const e = await rejectsWith(
    findCredentials('ghcr.io', { env: env('fail') }),
    'E_CREDENTIALS',
    'docker-credential-kilntest get failed',
  );
  assert.match(e.message, /the keyring is locked/); // harmless output is quoted, for the user's sake
  await rejectsWith(
    findCredentials('ghcr.io', { env: env('leak') }),
    'E_CREDENTIALS',
    'docker-credential-kilntest',
  );
  await rejectsWith(
    findCredentials('ghcr.io', { env: env('garbage') }),
    'E_CREDENTIALS',
    'docker-credential-kilntest',
  );
  const slow = findCredentials('ghcr.io', { env: env('slow'), helperTimeoutMs: 300 });
  await rejectsWith(slow, 'E_CREDENTIALS', 'docker-credential-kilntest', 'no answer');
  await rejectsWith(
    login('ghcr.io', { username: 'u', password: SECRET }, { env: env('echo') }),
    'E_CREDENTIALS',
    'docker-credential-kilntest store failed',
  );
  const missing = await sandbox({ credsStore: 'desktop' });
  const m = await rejectsWith(
    findCredentials('ghcr.io', { env: missing.env }),
    'E_CREDENTIALS',
    'docker-credential-desktop',
  );
  assert.match(m.hint ?? '', /credsStore/);
  const evil = await sandbox({ credsStore: '../../bin/sh' });
  await rejectsWith(findCredentials('ghcr.io', { env: evil.env }), 'E_CREDENTIALS', evil.configPath);
});

// login / logout

test('login without a store writes auths[host].auth, keeps the rest of the file, 0600 in a 0700 dir', async () => {
  const sb = await sandbox();
  await fs.rm(path.dirname(sb.configPath), { recursive: true, force: true });
  const r = await login('ghcr.io', { username: 'me', password: SECRET }, { env: sb.env });
  assert.deepEqual(r, { configPath: sb.configPath, store: 'file' });
  assert.deepEqual(await sb.config(), { auths: { 'ghcr.io': { auth: b64(`me:${SECRET}`) } } });
  assert.equal((await fs.stat(sb.configPath)).mode & 0o777, 0o600);
  assert.equal((await fs.stat(path.dirname(sb.configPath))).mode & 0o777, 0o700);

  // An existing file: other keys and entries stay; other spellings of this registry go; no temp files.
  const other = {
    psFormat: 'table {{.ID}}',
    proxies: { default: { httpProxy: 'http://proxy:3128' } },
    auths: { 'https://ghcr.io': { auth: b64('old:old') }, 'quay.io': { auth: b64('q:q') } },
  };
  const sb2 = await sandbox(other);
  await fs.chmod(sb2.configPath, 0o644);
  await login('ghcr.io', { username: 'me', password: SECRET }, { env: sb2.env });
  assert.deepEqual(await sb2.config(), {
    ...other,
    auths: { 'quay.io': { auth: b64('q:q') }, 'ghcr.io': { auth: b64(`me:${SECRET}`) } },
  });
  assert.equal((await fs.stat(sb2.configPath)).mode & 0o777, 0o600);
  assert.deepEqual(await fs.readdir(path.dirname(sb2.configPath)), ['config.json']);
  const found = await findCredentials('ghcr.io', { env: sb2.env });
  assert.deepEqual(found.credentials, { username: 'me', password: SECRET });

  const out = await logout('ghcr.io', { env: sb2.env });
  assert.deepEqual(out, { removed: true, configPath: sb2.configPath });
  assert.deepEqual(await sb2.config(), { ...other, auths: { 'quay.io': { auth: b64('q:q') } } });
  assert.equal((await findCredentials('ghcr.io', { env: sb2.env })).source, 'anonymous');
  assert.deepEqual(await logout('ghcr.io', { env: sb2.env }), { removed: false, configPath: sb2.configPath });
  assert.equal((await logout('ghcr.io', { env: sb.env })).removed, true);
  const none = await sandbox();
  assert.deepEqual(await logout('ghcr.io', { env: none.env }), {
    removed: false,
    configPath: none.configPath,
  });
});

test('login to Docker Hub is stored under https://index.docker.io/v1/; logout removes every Hub spelling', async () => {
  const sb = await sandbox({ auths: { 'docker.io': { auth: b64('old:old') } } });
  await login('docker.io', { username: 'me', password: SECRET }, { env: sb.env });
  assert.deepEqual(Object.keys((await sb.config())['auths'] as object), [HUB_SERVER]);
  assert.equal((await findCredentials('index.docker.io', { env: sb.env })).credentials?.password, SECRET);
  await fs.writeFile(
    sb.configPath,
    JSON.stringify({
      auths: { [HUB_SERVER]: { auth: b64('a:b') }, 'registry-1.docker.io': { auth: b64('c:d') } },
    }),
  );
  assert.equal((await logout('registry-1.docker.io', { env: sb.env })).removed, true);
  assert.deepEqual((await sb.config())['auths'], {});
});

test('login with credsStore stores through the helper and writes no secret; logout erases it', async () => {
  const sb = await sandbox({
    credsStore: 'kilntest',
    currentContext: 'default',
    auths: { 'https://ghcr.io': { auth: b64(`stale:${SECRET}`) } },
  });
  const r = await login('ghcr.io', { username: 'me', password: SECRET }, { env: sb.env });
  assert.deepEqual(r, { configPath: sb.configPath, store: 'docker-credential-kilntest' });
  const text = await fs.readFile(sb.configPath, 'utf8');
  assertNoSecret(text);
  assert.deepEqual(JSON.parse(text), {
    credsStore: 'kilntest',
    currentContext: 'default',
    auths: { 'ghcr.io': {} },
  });
  assert.equal((await fs.stat(sb.configPath)).mode & 0o777, 0o600);
  const found = await findCredentials('ghcr.io', { env: sb.env });
  assert.deepEqual(found, {
    credentials: { username: 'me', password: SECRET },
    source: 'docker-credential-kilntest',
  });

  assert.deepEqual(await logout('ghcr.io', { env: sb.env }), { removed: true, configPath: sb.configPath });
  assert.deepEqual((await sb.config())['auths'], {});
  assert.equal((await findCredentials('ghcr.io', { env: sb.env })).source, 'anonymous');
  assert.equal((await logout('ghcr.io', { env: sb.env })).removed, false);
  assert.deepEqual(await sb.calls(), [
    'store ghcr.io',
    'get ghcr.io',
    'erase ghcr.io',
    'get ghcr.io',
    'erase ghcr.io',
  ]);
  for (const line of await sb.calls()) assertNoSecret(line);
});

test('login uses the credHelpers entry for its host, and the file for other hosts', async () => {
  const sb = await sandbox({ credHelpers: { 'localhost:5000': 'kilntest' } });
  const hub = await login('docker.io', { username: 'me', password: 'pw' }, { env: sb.env });
  assert.equal(hub.store, 'file');
  const local = await login('localhost:5000', { username: 'me', password: SECRET }, { env: sb.env });
  assert.equal(local.store, 'docker-credential-kilntest');
  assertNoSecret(await fs.readFile(sb.configPath, 'utf8'));
  assert.deepEqual(await sb.calls(), ['store localhost:5000']);
  assert.equal((await findCredentials('localhost:5000', { env: sb.env })).credentials?.password, SECRET);
});

test('verify runs first: credentials it refuses are never stored', async () => {
  const sb = await sandbox({ credsStore: 'kilntest' });
  let seen: unknown;
  const refuse = async (c: unknown) => {
    seen = c;
    throw new KilnError('E_AUTH', 'unauthorized');
  };
  await rejectsWith(
    login('ghcr.io', { username: 'me', password: SECRET }, { env: sb.env, verify: refuse }),
    'E_AUTH',
  );
  assert.deepEqual(seen, { username: 'me', password: SECRET });
  assert.deepEqual(await sb.calls(), []);
  assert.deepEqual(await sb.config(), { credsStore: 'kilntest' });
  const fresh = await sandbox();
  await assert.rejects(
    login('ghcr.io', { username: 'me', password: SECRET }, { env: fresh.env, verify: refuse }),
  );
  await assert.rejects(fs.stat(fresh.configPath), { code: 'ENOENT' });
});

test('login refuses empty passwords, user names with ":" and hosts that are not hosts', async () => {
  const sb = await sandbox();
  for (const bad of ['', 'ghcr.io:port', 'under_score.io', '-x.io']) {
    await rejectsWith(login(bad, { username: 'a', password: SECRET }, { env: sb.env }), 'E_USAGE');
  }
  await rejectsWith(login('ghcr.io', { username: 'me', password: '' }, { env: sb.env }), 'E_USAGE');
  await rejectsWith(login('ghcr.io', { username: 'a:b', password: SECRET }, { env: sb.env }), 'E_USAGE');
  await rejectsWith(
    login('ghcr.io/some repo', { username: 'a', password: SECRET }, { env: sb.env }),
    'E_USAGE',
  );
});

test('a symlinked config.json is written through, as docker does', async () => {
  const sb = await sandbox();
  const target = path.join(sb.home, 'dotfiles-config.json');
  await fs.writeFile(target, '{"detachKeys":"ctrl-x"}');
  await fs.mkdir(path.dirname(sb.configPath), { recursive: true });
  await fs.symlink(target, sb.configPath);
  await login('ghcr.io', { username: 'me', password: 'pw' }, { env: sb.env });
  assert.ok((await fs.lstat(sb.configPath)).isSymbolicLink());
  assert.deepEqual(JSON.parse(await fs.readFile(target, 'utf8')), {
    detachKeys: 'ctrl-x',
    auths: { 'ghcr.io': { auth: b64('me:pw') } },
  });
});

// CLI

function assertCleanOutput(r: { stdout: string; stderr: string }): void {
  assertNoSecret(r.stdout);
  assertNoSecret(r.stderr);
}

test('kiln login --password-stdin / kiln logout', async () => {
  // kiln login checks the credentials with the registry first: an open registry takes any.
  const host = (await sharedRegistry('none')).host;
  const sb = await sandbox({ psFormat: 'x' });
  const r = await kiln(['login', host, '-u', 'me', '--password-stdin'], {
    env: sb.env,
    input: `${SECRET}\n`,
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /Login Succeeded/);
  assertCleanOutput(r);
  assert.deepEqual(await sb.config(), { psFormat: 'x', auths: { [host]: { auth: b64(`me:${SECRET}`) } } });

  const out1 = await kiln(['logout', host], { env: sb.env });
  assert.equal(out1.code, 0, out1.stderr);
  assert.match(out1.stderr, new RegExp(`Removed login credentials for ${host}`));
  const out2 = await kiln(['logout', `http://${host}/`], { env: sb.env });
  assert.match(out2.stderr, new RegExp(`Not logged in to ${host}`));
  const json = await kiln(['logout', host, '--json'], { env: sb.env });
  assert.deepEqual(JSON.parse(json.stdout), {
    registry: host,
    configPath: sb.configPath,
    removed: false,
  });
});

test('kiln login reads piped stdin without --password-stdin; -p warns; --json reports where', async () => {
  // kiln login checks the credentials with the registry first: an open registry takes any.
  const host = (await sharedRegistry('none')).host;
  const sb = await sandbox({ credsStore: 'kilntest' });
  const piped = await kiln(['login', host, '-u', 'me', '--debug'], {
    env: sb.env,
    input: SECRET,
  });
  assert.equal(piped.code, 0, piped.stderr);
  assertCleanOutput(piped);
  const p = await kiln(['login', host, '-u', 'me', '-p', SECRET, '--json'], { env: sb.env });
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stderr, /WARNING! Using --password via the CLI is insecure/);
  assertCleanOutput(p);
  assert.deepEqual(JSON.parse(p.stdout), {
    registry: host,
    configPath: sb.configPath,
    store: 'docker-credential-kilntest',
  });
  assert.deepEqual(await sb.calls(), [`store ${host}`, `store ${host}`]);
  assertNoSecret(await fs.readFile(sb.configPath, 'utf8'));
  assert.equal((await findCredentials(host, { env: sb.env })).credentials?.password, SECRET);
});

test('kiln login usage errors and helper failures: exit codes, no secret in any output', async () => {
  // kiln login checks the credentials with the registry first: an open registry takes any.
  const host = (await sharedRegistry('none')).host;
  const sb = await sandbox({ credsStore: 'kilntest' });
  const both = await kiln(['login', host, '-u', 'me', '-p', SECRET, '--password-stdin'], {
    env: sb.env,
    input: SECRET,
  });
  assert.equal(both.code, 2);
  assertCleanOutput(both);
  const noUser = await kiln(['login', host, '--password-stdin'], { env: sb.env, input: SECRET });
  assert.equal(noUser.code, 2);
  assert.match(noUser.stderr, /--username/);
  const empty = await kiln(['login', host, '-u', 'me'], { env: sb.env, input: '\n' });
  assert.equal(empty.code, 2);
  for (const flags of [[], ['--debug'], ['--json']]) {
    const failed = await kiln(['login', host, '-u', 'me', '--password-stdin', ...flags], {
      env: { ...sb.env, KILNTEST_MODE: 'echo' },
      input: SECRET,
    });
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stdout + failed.stderr, /docker-credential-kilntest store failed/);
    assert.match(failed.stdout + failed.stderr, /E_CREDENTIALS/);
    assertCleanOutput(failed);
  }
  const badHost = await kiln(['login', 'not a host', '-u', 'me', '--password-stdin'], {
    env: sb.env,
    input: SECRET,
  });
  assert.equal(badHost.code, 2);
  assertCleanOutput(badHost);
});
