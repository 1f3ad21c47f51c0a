/**
 * Credentials and tokens never leak, and tokens are as narrow as they can be. With the built CLI
 * (`npm run build`) against the test registries of test/support/registry.ts:
 *
 * - Basic auth over TLS and Bearer tokens: every command that meets a registry (package, copy both
 *   ways, inspect, digest, tags, login, logout), with --debug, with --json, succeeding and failing
 *   (wrong password, no credentials, malformed --creds, a registry that is down), credentials from
 *   --creds, KILN_AUTH and a stored login. Everything kiln printed, and every file under KILN_HOME
 *   and the layouts it wrote, is searched for the password, the Basic header value and every token
 *   the issuer handed out (captured by a proxy that sits between kiln and the issuer).
 * - Token scopes: a copy from repository a to repository b asks `repository:a:pull` for a and
 *   `repository:b:pull,push` (or `repository:b:pull`) for b, a mount adds `repository:a:pull` to b's,
 *   and nothing ever asks push on a source; read-only commands ask pull only.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, test } from 'node:test';
import { makeImage } from '../support/images.js';
import { type KilnResult, kiln, kilnHome } from '../support/kiln.js';
import {
  registrySkipReason,
  sharedRegistry,
  startRegistry,
  type TokenAccess,
  type TokenRegistry,
} from '../support/registry.js';

const HELLO = join(import.meta.dirname, '../../examples/hello/hello.wasm');
const work = mkdtempSync(join(tmpdir(), 'kiln-secrets-'));
after(() => rmSync(work, { recursive: true, force: true }));

const skip = registrySkipReason('basic') ?? registrySkipReason('token');
/** No credentials from the user's docker config unless a test logs in. */
const NO_DOCKER_CONFIG = join(work, 'no-docker-config');

function ok(r: KilnResult, what: string): string {
  assert.equal(r.code, 0, `${what} exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout.trim();
}

function failed(r: KilnResult, what: string, pattern: RegExp): void {
  assert.notEqual(r.code, 0, `${what} should have failed\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.match(`${r.stdout}\n${r.stderr}`, pattern, what);
}

// ---------------------------------------------------------------------------------------------------
// A proxy in front of a token registry that also stands in for its token issuer: the registry's
// challenges are rewritten to name the proxy's /token, which forwards to the real issuer and keeps
// every token it hands out.

interface TokenTap {
  host: string;
  tokens: Set<string>;
  stop(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']);

function forward(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

async function startTokenTap(reg: TokenRegistry): Promise<TokenTap> {
  const registry = new URL(reg.url);
  const realm = new URL(reg.realm);
  const tokens = new Set<string>();
  let self = '';
  const server: Server = createServer((req, res) => {
    const toIssuer = (req.url ?? '/').startsWith('/token');
    const target = toIssuer ? realm : registry;
    const up = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: toIssuer ? { ...forward(req.headers), host: realm.host } : forward(req.headers),
      },
      (ures) => {
        const headers = forward(ures.headers);
        const challenge = ures.headers['www-authenticate'];
        if (typeof challenge === 'string')
          headers['www-authenticate'] = challenge.replace(reg.realm, `${self}/token`);
        if (!toIssuer) {
          res.writeHead(ures.statusCode ?? 502, headers);
          ures.pipe(res);
          return;
        }
        const parts: Buffer[] = [];
        ures.on('data', (b: Buffer) => parts.push(b));
        ures.on('end', () => {
          const body = Buffer.concat(parts);
          try {
            const parsed = JSON.parse(body.toString('utf8')) as { token?: string; access_token?: string };
            for (const t of [parsed.token, parsed.access_token]) if (t) tokens.add(t);
          } catch {}
          res.writeHead(ures.statusCode ?? 502, headers);
          res.end(body);
        });
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connection', (s) => s.unref());
  const port = await new Promise<number>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
  server.unref();
  self = `http://127.0.0.1:${port}`;
  return {
    host: `127.0.0.1:${port}`,
    tokens,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// ---------------------------------------------------------------------------------------------------
// Looking for secrets

/** Every regular file under `dir` (following no links), with its bytes. */
function filesUnder(dir: string): { file: string; bytes: Buffer }[] {
  const out: { file: string; bytes: Buffer }[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p, { throwIfNoEntry: false });
      if (st?.isDirectory()) walk(p);
      else if (st?.isFile()) out.push({ file: p, bytes: readFileSync(p) });
    }
  };
  walk(dir);
  return out;
}

/** The forms a secret may take when printed or stored: as is, base64 (a Basic header), URL-encoded. */
function forms(secret: string, username: string): string[] {
  return [
    secret,
    Buffer.from(`${username}:${secret}`).toString('base64'),
    encodeURIComponent(secret),
    // The signature of a JWT alone identifies it.
    ...(secret.split('.').length === 3 ? [secret.split('.')[2]!] : []),
  ];
}

/** Asserts that none of `secrets` (in any of their forms) occurs in `text`. */
function assertClean(text: string | Buffer, secrets: string[], username: string, where: string): void {
  const haystack = Buffer.isBuffer(text) ? text : Buffer.from(text);
  for (const secret of secrets)
    for (const form of forms(secret, username))
      assert.ok(
        !haystack.includes(form),
        `${where} holds a secret (${form.slice(0, 6)}…):\n${haystack.toString('utf8').slice(0, 4000)}`,
      );
  // No bearer token of any issuer, no Authorization header value.
  assert.doesNotMatch(haystack.toString('latin1'), /eyJ[\w-]{10,}\.eyJ[\w-]{10,}/, `${where} holds a JWT`);
  assert.doesNotMatch(
    haystack.toString('latin1'),
    /\b(?:Basic|Bearer) [A-Za-z0-9+/=._-]{8,}/,
    `${where}: auth header`,
  );
}

// ---------------------------------------------------------------------------------------------------

test('no password or token in output, --debug logs, errors, KILN_HOME or written layouts', {
  skip,
  timeout: 110_000,
}, async (t) => {
  const basic = await sharedRegistry('basic');
  const tokenReg = await sharedRegistry('token');
  const tap = await startTokenTap(tokenReg);
  after(() => tap.stop());
  // The same user name on both; the passwords differ.
  const username = basic.username;
  assert.equal(tokenReg.username, username);
  const secrets = [basic.password, tokenReg.password];
  const printed: { what: string; r: KilnResult }[] = [];
  const run = async (what: string, args: string[], env: NodeJS.ProcessEnv = {}, input?: string) => {
    const r = await kiln([...args, '--debug'], {
      env: { DOCKER_CONFIG: NO_DOCKER_CONFIG, ...env },
      input,
    });
    printed.push({ what, r });
    return r;
  };
  /** `kiln login HOST -u USERNAME --password-stdin`, the password on stdin. */
  const login = (what: string, host: string, password: string, env: NodeJS.ProcessEnv) =>
    run(what, ['login', host, '-u', username, '--password-stdin'], env, `${password}\n`);
  const img = await makeImage(join(work, 'src'), 's', { layers: 2, layerBytes: 32 * 1024 });
  /** Directories kiln wrote to, searched at the end along with KILN_HOME. */
  const stores = ['basic-pull', 'basic-login', 'token-pull'].map((d) => join(work, d));

  // Basic auth over TLS.
  {
    const reg = basic;
    const tls = ['--ca-cert', reg.caFile];
    const creds = ['--creds', `${username}:${reg.password}`];
    const repo = `${reg.host}/secret/app`;
    ok(await run('basic: package', ['package', HELLO, '--to', `${repo}:hello`, ...tls, ...creds]), 'package');
    ok(await run('basic: push', ['copy', `oci:${img.layout}:s`, `${repo}:1`, ...tls, ...creds]), 'push');
    ok(
      await run('basic: push --json', [
        'copy',
        `oci:${img.layout}:s`,
        `${repo}:2`,
        '--json',
        ...tls,
        ...creds,
      ]),
      'push',
    );
    ok(
      await run('basic: pull', ['copy', `${repo}:1`, `oci:${join(work, 'basic-pull')}:x`, ...tls, ...creds]),
      'pull',
    );
    ok(
      await run('basic: mount', ['copy', `${repo}:1`, `${reg.host}/secret/other:1`, ...tls, ...creds]),
      'mount',
    );
    ok(await run('basic: inspect', ['inspect', `${repo}:1`, ...tls, ...creds]), 'inspect');
    ok(await run('basic: inspect --json', ['inspect', `${repo}:1`, '--json', ...tls, ...creds]), 'inspect');
    ok(
      await run('basic: digest via KILN_AUTH', ['digest', `${repo}:1`, ...tls], {
        KILN_AUTH: `${username}:${reg.password}`,
      }),
      'digest',
    );
    ok(await run('basic: tags', ['tags', repo, ...tls, ...creds]), 'tags');

    const wrong = ['--creds', `${username}:${reg.password.slice(0, -2)}xx`];
    secrets.push(`${reg.password.slice(0, -2)}xx`);
    failed(
      await run('basic: wrong password', ['copy', `${repo}:1`, `oci:${join(work, 'w')}:x`, ...tls, ...wrong]),
      'wrong password',
      /E_AUTH/,
    );
    failed(
      await run('basic: wrong password --json', ['inspect', `${repo}:1`, '--json', ...tls, ...wrong]),
      'wrong password',
      /E_AUTH/,
    );
    failed(await run('basic: no credentials', ['tags', repo, ...tls]), 'no credentials', /E_AUTH/);
    failed(await run('basic: no CA', ['inspect', `${repo}:1`, ...creds]), 'no CA', /E_TLS/);
    // A password given without the user name, by mistake.
    failed(
      await run('basic: --creds without user', ['inspect', `${repo}:1`, ...tls, '--creds', reg.password]),
      'malformed --creds',
      /./,
    );
    failed(
      await run('basic: KILN_AUTH without user', ['inspect', `${repo}:1`, ...tls], {
        KILN_AUTH: reg.password,
      }),
      'malformed KILN_AUTH',
      /./,
    );

    // compile: the toolchain image and the registry build cache behind the same credentials. No
    // engine answers, so the build stops at the runner, after the toolchain pull and cache lookup.
    const project = join(work, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'main.c'), 'int main(void) { return 0; }\n');
    writeFileSync(
      join(project, 'kiln.yaml'),
      `lang: c\ntoolchain:\n  image: ${reg.host}/secret/toolchain:1\n`,
    );
    ok(
      await run('basic: push toolchain', [
        'copy',
        `oci:${img.layout}:s`,
        `${reg.host}/secret/toolchain:1`,
        ...tls,
        ...creds,
      ]),
      'push',
    );
    const cache = `${reg.host}/secret/cache`;
    const compile = await run(
      'basic: compile',
      [
        'compile',
        project,
        '--runner',
        'docker',
        '--cache-from',
        cache,
        '--cache-to',
        cache,
        ...tls,
        ...creds,
      ],
      { DOCKER_HOST: 'unix:///nonexistent/kiln-test-docker.sock' },
    );
    failed(compile, 'compile without an engine', /E_NO_RUNNER/);
    assert.match(
      compile.stderr,
      /GET \/v2\/secret\/cache\/manifests\/[0-9a-f]{64} → 404/,
      'the cache was asked',
    );
    stores.push(project);

    // Broken credential sources that hold the secret next to the syntax error: a JSON parser's
    // message quotes the text around it.
    const b64 = Buffer.from(`${username}:${reg.password}`).toString('base64');
    failed(
      await run('basic: broken KILN_AUTH JSON', ['inspect', `${repo}:1`, ...tls], {
        KILN_AUTH: `{"auths":{"${reg.host}":{"auth":"${b64}"}} ${reg.password}`,
      }),
      'broken KILN_AUTH',
      /E_CREDENTIALS/,
    );
    const brokenConfig = join(work, 'docker-broken');
    mkdirSync(brokenConfig);
    writeFileSync(
      join(brokenConfig, 'config.json'),
      `{"auths":{"${reg.host}":{"auth":"${b64}","password":"${reg.password}"}} ${reg.password}`,
    );
    failed(
      await run('basic: broken config.json', ['inspect', `${repo}:1`, ...tls], {
        DOCKER_CONFIG: brokenConfig,
      }),
      'broken config.json',
      /E_CREDENTIALS/,
    );

    // A stored login, used, then removed; a refused login stores nothing.
    const dockerConfig = join(work, 'docker-basic');
    const env = { DOCKER_CONFIG: dockerConfig, SSL_CERT_FILE: reg.caFile };
    ok(await login('basic: login', reg.host, reg.password, env), 'login');
    ok(
      await run('basic: login -p', ['login', reg.host, '-u', username, '-p', reg.password], env),
      'login -p',
    );
    ok(
      await run(
        'basic: pull with the login',
        ['copy', `${repo}:2`, `oci:${join(work, 'basic-login')}:x`],
        env,
      ),
      'pull',
    );
    ok(await run('basic: logout', ['logout', reg.host], env), 'logout');
    failed(await login('basic: refused login', reg.host, 'not-it', env), 'refused login', /E_AUTH/);
  }

  // Bearer tokens, through the tap.
  {
    const reg = tokenReg;
    const creds = ['--creds', `${username}:${reg.password}`];
    const repo = `${tap.host}/secret/app`;
    ok(await run('token: package', ['package', HELLO, '--to', `${repo}:hello`, ...creds]), 'package');
    ok(await run('token: push', ['copy', `oci:${img.layout}:s`, `${repo}:1`, ...creds]), 'push');
    ok(
      await run('token: pull', ['copy', `${repo}:1`, `oci:${join(work, 'token-pull')}:x`, ...creds]),
      'pull',
    );
    ok(
      await run('token: mount', ['copy', `${repo}:1`, `${tap.host}/secret/other:1`, '--json', ...creds]),
      'mount',
    );
    ok(await run('token: inspect', ['inspect', `${repo}:1`, ...creds]), 'inspect');
    ok(
      await run('token: digest via KILN_AUTH', ['digest', `${repo}:1`], {
        KILN_AUTH: `${username}:${reg.password}`,
      }),
      'digest',
    );
    ok(await run('token: tags', ['tags', repo, ...creds]), 'tags');
    failed(
      await run('token: wrong password', [
        'inspect',
        `${repo}:1`,
        '--creds',
        `${username}:nope-${reg.password}`,
      ]),
      'wrong',
      /E_AUTH/,
    );
    secrets.push(`nope-${reg.password}`);
    failed(
      await run('token: anonymous push', ['copy', `oci:${img.layout}:s`, `${repo}:3`]),
      'anonymous',
      /E_AUTH/,
    );
    const dockerConfig = join(work, 'docker-token');
    const env = { DOCKER_CONFIG: dockerConfig };
    ok(await login('token: login', tap.host, reg.password, env), 'login');
    ok(await run('token: push with the login', ['copy', `oci:${img.layout}:s`, `${repo}:4`], env), 'push');
    ok(await run('token: logout', ['logout', tap.host], env), 'logout');
    assert.ok(tap.tokens.size >= 5, `the tap saw the tokens (${tap.tokens.size})`);
    secrets.push(...tap.tokens);
  }

  // A registry that has gone away, with credentials at hand.
  {
    const gone = await startRegistry({ auth: 'token' });
    await gone.stop();
    failed(
      await run('down: inspect', [
        'inspect',
        `${gone.host}/x/y:1`,
        '--creds',
        `${username}:${basic.password}`,
      ]),
      'down',
      /E_NETWORK/,
    );
  }

  for (const { what, r } of printed) {
    assertClean(r.stdout, secrets, username, `${what}: stdout`);
    assertClean(r.stderr, secrets, username, `${what}: stderr`);
  }
  // --debug did log: requests and token fetches, just not their secrets.
  const debugLines = printed.flatMap(({ r }) => r.stderr.split('\n').filter((l) => l.startsWith('debug:')));
  assert.ok(
    debugLines.some((l) => /token for repository:secret\/app:pull/.test(l)),
    'token fetches logged',
  );
  assert.ok(
    debugLines.some((l) => /PUT \/v2\/secret\/app\/manifests\/1 → 201/.test(l)),
    'requests logged',
  );

  const home = kilnHome();
  const stored = [home, ...stores].flatMap(filesUnder);
  assert.ok(stored.length > 5, 'kiln wrote into its store');
  for (const { file, bytes } of stored) assertClean(bytes, secrets, username, relative(work, file) || file);
  t.diagnostic(
    `${printed.length} runs, ${debugLines.length} debug lines, ${tap.tokens.size} tokens, ${stored.length} files searched`,
  );

  // The stored login lived in DOCKER_CONFIG, never in KILN_HOME; logout removed it.
  for (const dir of ['docker-basic', 'docker-token']) {
    const file = join(work, dir, 'config.json');
    const config = JSON.parse(readFileSync(file, 'utf8')) as { auths?: Record<string, unknown> };
    assert.deepEqual(config.auths ?? {}, {}, `${file} keeps no credentials after logout`);
  }
});

// ---------------------------------------------------------------------------------------------------
// Token scopes

/** Every scope asked for, as `name:actions` per repository, in one list per token request. */
function asked(reg: TokenRegistry): TokenAccess[][] {
  return reg.tokenRequests.map((r) => r.requested);
}

function describe(requests: TokenAccess[][]): string {
  return JSON.stringify(requests.map((r) => r.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`)));
}

test('token scopes are the narrowest that work: pull on sources, pull,push on destinations', {
  skip,
}, async () => {
  const reg = await startRegistry({ auth: 'token' });
  after(() => reg.stop());
  const creds = ['--creds', `${reg.username}:${reg.password}`];
  const env = { DOCKER_CONFIG: NO_DOCKER_CONFIG };
  const img = await makeImage(join(work, 'scopes-src'), 's', { layers: 3, layerBytes: 16 * 1024 });
  const k = (args: string[]) => kiln([...args, ...creds], { env });

  // A push from a layout: b's scopes only, pull,push among them.
  ok(await k(['copy', `oci:${img.layout}:s`, `${reg.host}/scopes/a:1`]), 'push a');
  let requests = asked(reg);
  for (const r of requests)
    for (const a of r) {
      assert.equal(a.type, 'repository', describe(requests));
      assert.equal(a.name, 'scopes/a', describe(requests));
      assert.ok(['pull', 'pull,push'].includes(a.actions.join(',')), describe(requests));
    }
  assert.ok(
    requests.some((r) => r.some((a) => a.actions.join(',') === 'pull,push')),
    `push asked pull,push: ${describe(requests)}`,
  );

  // A copy a → b in one registry (b mounts from a).
  const copies: [string, string, string][] = [
    ['same registry, with a mount', `${reg.host}/scopes/a:1`, `${reg.host}/scopes/b:1`],
    ['into a layout', `${reg.host}/scopes/a:1`, `oci:${join(work, 'scopes-pull')}:x`],
  ];
  for (const [what, from, to] of copies) {
    reg.tokenRequests.length = 0;
    ok(await k(['copy', from, to]), what);
    requests = asked(reg);
    assert.ok(requests.length > 0, `${what}: tokens were asked for`);
    for (const r of requests) {
      const a = r.find((x) => x.name === 'scopes/a');
      const b = r.find((x) => x.name === 'scopes/b');
      assert.ok(
        r.every((x) => x.type === 'repository' && (x === a || x === b)),
        `${what}: only a and b: ${describe(requests)}`,
      );
      assert.ok(
        !a || a.actions.join(',') === 'pull',
        `${what}: never more than pull on the source: ${describe(requests)}`,
      );
      assert.ok(
        !b || ['pull', 'pull,push'].includes(b.actions.join(',')),
        `${what}: pull or pull,push on the destination: ${describe(requests)}`,
      );
    }
    // The source is read with a token for exactly repository:a:pull.
    assert.ok(
      requests.some((r) => r.length === 1 && r[0]!.name === 'scopes/a' && r[0]!.actions.join(',') === 'pull'),
      `${what}: a pull-only token for the source: ${describe(requests)}`,
    );
    if (to.startsWith('oci:')) assert.ok(requests.every((r) => !r.some((x) => x.name === 'scopes/b')));
    else {
      assert.ok(
        requests.some((r) => r.some((x) => x.name === 'scopes/b' && x.actions.join(',') === 'pull,push')),
        `${what}: pull,push on the destination: ${describe(requests)}`,
      );
      // A mount asks b's pull,push with a's pull in one token, and only then.
      const mounts = requests.filter((r) => r.length === 2);
      assert.ok(mounts.length > 0, `${what}: a mount token: ${describe(requests)}`);
      for (const m of mounts)
        assert.ok(m.some((x) => x.name === 'scopes/b' && x.actions.join(',') === 'pull,push'));
    }
  }

  // Copies between two registries: nothing on one registry is asked of the other, and no mount.
  const other = await startRegistry({ auth: 'token', username: reg.username, password: reg.password });
  after(() => other.stop());
  reg.tokenRequests.length = 0;
  ok(await k(['copy', `${reg.host}/scopes/a:1`, `${other.host}/scopes/c:1`]), 'across registries');
  assert.ok(
    asked(reg).every(
      (r) => r.length === 1 && r[0]!.name === 'scopes/a' && r[0]!.actions.join(',') === 'pull',
    ),
    `source registry: pull on a only: ${describe(asked(reg))}`,
  );
  assert.ok(
    asked(other).every((r) =>
      r.every((x) => x.name === 'scopes/c' && ['pull', 'pull,push'].includes(x.actions.join(','))),
    ),
    `destination registry: c only: ${describe(asked(other))}`,
  );

  // Read-only commands ask pull, and only on the repository they read.
  for (const args of [
    ['inspect', `${reg.host}/scopes/b:1`],
    ['digest', `${reg.host}/scopes/b:1`],
    ['tags', `${reg.host}/scopes/b`],
    ['copy', `${reg.host}/scopes/b:1`, `oci:${join(work, 'scopes-pull-b')}:x`],
  ]) {
    reg.tokenRequests.length = 0;
    ok(await k(args), args.join(' '));
    assert.ok(reg.tokenRequests.length > 0);
    assert.ok(
      asked(reg).every(
        (r) => r.length === 1 && r[0]!.name === 'scopes/b' && r[0]!.actions.join(',') === 'pull',
      ),
      `${args[0]}: pull on b only: ${describe(asked(reg))}`,
    );
  }
});
