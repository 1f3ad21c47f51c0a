/**
 * Self-test of test/support/registry.ts: each registry configuration answers as a real registry does
 * (challenges, TLS, tokens, pushes and pulls), and the request log counts and redirects. Only node:http
 * and node:https are used as clients, so a failure here is the support code's, not kiln's.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { test } from 'node:test';
import { sha256 } from '../support/images.js';
import {
  registrySkipReason,
  sharedRegistry,
  startRegistry,
  startRequestLog,
  type TokenAccess,
} from '../support/registry.js';

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface SendOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** PEM of the CA to trust (https). */
  ca?: Buffer | string;
  /** TLS server name, to check a DNS SAN while connecting to 127.0.0.1. */
  servername?: string;
}

/** One request, no redirects followed, no connection reuse. */
function send(url: string, opts: SendOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers: Record<string, string | number> = { ...opts.headers };
    if (opts.body !== undefined) headers['Content-Length'] = Buffer.byteLength(opts.body);
    const options = { method: opts.method ?? 'GET', headers, agent: false as const, timeout: 10_000 };
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    };
    const req =
      u.protocol === 'https:'
        ? httpsRequest(u, { ...options, ca: opts.ca, servername: opts.servername }, onResponse)
        : httpRequest(u, options, onResponse);
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`timeout: ${options.method} ${url}`)));
    req.end(opts.body);
  });
}

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const bearer = (token: string) => `Bearer ${token}`;

/** Monolithic blob upload: POST a session, PUT the bytes with ?digest=. Returns the PUT's reply. */
async function pushBlob(
  base: string,
  name: string,
  blob: Buffer,
  opts: { auth?: string; ca?: Buffer } = {},
): Promise<Reply> {
  const headers: Record<string, string> = opts.auth ? { Authorization: opts.auth } : {};
  const started = await send(`${base}/v2/${name}/blobs/uploads/`, { method: 'POST', headers, ca: opts.ca });
  if (started.status !== 202) return started;
  const location = new URL(String(started.headers.location), base);
  location.searchParams.set('digest', sha256(blob));
  return send(location.href, {
    method: 'PUT',
    headers: { ...headers, 'Content-Type': 'application/octet-stream' },
    body: blob,
    ca: opts.ca,
  });
}

/** The parameters of a `Bearer realm="…",service="…"` challenge. */
function challengeParams(header: string | undefined): Record<string, string> {
  assert.ok(header, 'WWW-Authenticate is set');
  const m = /^Bearer (.*)$/.exec(header);
  assert.ok(m, `a Bearer challenge: ${header}`);
  return Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((p) => [p[1]!, p[2]!]));
}

function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [h, c] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString('utf8')),
    claims: JSON.parse(Buffer.from(c!, 'base64url').toString('utf8')),
  };
}

/** A token from the registry's issuer for `scopes`, asked with `auth` (or anonymously). */
async function getToken(
  reg: { realm: string; service: string },
  scopes: string[],
  auth?: string,
): Promise<Reply> {
  const url = new URL(reg.realm);
  url.searchParams.set('service', reg.service);
  for (const s of scopes) url.searchParams.append('scope', s);
  return send(url.href, { headers: auth ? { Authorization: auth } : {} });
}

function tokenOf(reply: Reply): string {
  assert.equal(reply.status, 200, reply.body.toString());
  const json = JSON.parse(reply.body.toString()) as { token?: string; access_token?: string };
  const token = json.token ?? json.access_token;
  assert.ok(token, 'a token in the reply');
  return token;
}

test('registry none: open, plain HTTP, stores and serves a blob, stop() cleans up', {
  skip: registrySkipReason('none'),
}, async () => {
  const reg = await startRegistry({ auth: 'none' });
  try {
    assert.match(reg.host, /^127\.0\.0\.1:\d+$/);
    assert.equal(reg.url, `http://${reg.host}`);
    const ping = await send(`${reg.url}/v2/`);
    assert.equal(ping.status, 200);
    assert.equal(ping.headers['docker-distribution-api-version'], 'registry/2.0');

    const blob = Buffer.from('open registry blob\n');
    const put = await pushBlob(reg.url, 'foo/bar', blob);
    assert.equal(put.status, 201, put.body.toString());
    assert.equal(put.headers['docker-content-digest'], sha256(blob));
    const got = await send(`${reg.url}/v2/foo/bar/blobs/${sha256(blob)}`);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, blob);
    // storage.delete.enabled
    const del = await send(`${reg.url}/v2/foo/bar/blobs/${sha256(blob)}`, { method: 'DELETE' });
    assert.equal(del.status, 202, del.body.toString());
  } finally {
    await reg.stop();
  }
  assert.equal(existsSync(reg.dir), false, 'stop() removes the temp dir');
  await assert.rejects(send(`${reg.url}/v2/`), /ECONNREFUSED/);
  await reg.stop(); // idempotent
});

test('registry basic: htpasswd over TLS with a test CA', { skip: registrySkipReason('basic') }, async () => {
  const reg = await sharedRegistry('basic');
  assert.equal(reg.url, `https://${reg.host}`);
  const ca = readFileSync(reg.caFile);

  const anonymous = await send(`${reg.url}/v2/`, { ca });
  assert.equal(anonymous.status, 401);
  assert.match(String(anonymous.headers['www-authenticate']), /^Basic realm="[^"]+"/);

  const ok = await send(`${reg.url}/v2/`, {
    ca,
    headers: { Authorization: basic(reg.username, reg.password) },
  });
  assert.equal(ok.status, 200);
  const wrong = await send(`${reg.url}/v2/`, { ca, headers: { Authorization: basic(reg.username, 'nope') } });
  assert.equal(wrong.status, 401);

  // The certificate names localhost too.
  const byName = await send(`${reg.url}/v2/`, { ca, servername: 'localhost' });
  assert.equal(byName.status, 401);
  // Without the CA the certificate is not trusted.
  await assert.rejects(send(`${reg.url}/v2/`), (e: NodeJS.ErrnoException) => {
    assert.match(String(e.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
    return true;
  });

  const blob = Buffer.from('basic registry blob\n');
  const auth = basic(reg.username, reg.password);
  const put = await pushBlob(reg.url, 'foo/bar', blob, { auth, ca });
  assert.equal(put.status, 201, put.body.toString());
  assert.equal((await pushBlob(reg.url, 'foo/bar', blob, { ca })).status, 401, 'no push without credentials');
  const got = await send(`${reg.url}/v2/foo/bar/blobs/${sha256(blob)}`, {
    ca,
    headers: { Authorization: auth },
  });
  assert.deepEqual([got.status, got.body], [200, blob]);

  assert.equal(await sharedRegistry('basic'), reg, 'one registry per process and configuration');
  await reg.stop(); // a no-op for a shared registry
  assert.equal((await send(`${reg.url}/v2/`, { ca })).status, 401);
});

test('registry token: challenge, token with credentials, push and pull with it', {
  skip: registrySkipReason('token'),
}, async () => {
  const reg = await sharedRegistry('token');
  assert.equal(reg.url, `http://${reg.host}`);
  const ping = await send(`${reg.url}/v2/`);
  assert.equal(ping.status, 401);
  assert.deepEqual(challengeParams(ping.headers['www-authenticate']), {
    realm: reg.realm,
    service: reg.service,
  });

  // Without a token the registry names the scope it wants.
  const refused = await send(`${reg.url}/v2/foo/bar/blobs/uploads/`, { method: 'POST' });
  assert.equal(refused.status, 401);
  const wanted = challengeParams(refused.headers['www-authenticate']);
  // The registry lists the actions in no fixed order (a Go map), so compare them as a set.
  const [kind, repo, actions] = (wanted['scope'] ?? '').split(':');
  assert.deepEqual([kind, repo, actions?.split(',').sort()], ['repository', 'foo/bar', ['pull', 'push']]);

  const before = reg.tokenRequests.length;
  const reply = await getToken(reg, ['repository:foo/bar:pull,push'], basic(reg.username, reg.password));
  const json = JSON.parse(reply.body.toString()) as Record<string, unknown>;
  const token = tokenOf(reply);
  assert.equal(json['access_token'], json['token'], 'both fields by default');
  assert.equal(json['expires_in'], 300);
  assert.ok(Math.abs(Date.parse(String(json['issued_at'])) - Date.now()) < 60_000, 'issued_at is now');

  const granted: TokenAccess[] = [{ type: 'repository', name: 'foo/bar', actions: ['pull', 'push'] }];
  const { header, claims } = decodeJwt(token);
  assert.equal(header['alg'], 'RS256');
  assert.equal((header['x5c'] as string[]).length, 1);
  assert.equal(claims['aud'], reg.service);
  assert.equal(claims['sub'], reg.username);
  assert.equal(Number(claims['exp']) - Number(claims['iat']), 300);
  assert.deepEqual(claims['access'], granted);
  assert.deepEqual(reg.tokenRequests.slice(before), [
    {
      method: 'GET',
      scopes: ['repository:foo/bar:pull,push'],
      requested: granted,
      granted,
      authenticated: true,
      account: reg.username,
      service: reg.service,
      status: 200,
    },
  ]);

  const blob = Buffer.from('token registry blob\n');
  const put = await pushBlob(reg.url, 'foo/bar', blob, { auth: bearer(token) });
  assert.equal(put.status, 201, put.body.toString());
  const got = await send(`${reg.url}/v2/foo/bar/blobs/${sha256(blob)}`, {
    headers: { Authorization: bearer(token) },
  });
  assert.deepEqual([got.status, got.body], [200, blob]);
  // A token for another repository does not open this one.
  const other = tokenOf(await getToken(reg, ['repository:other:pull'], basic(reg.username, reg.password)));
  const denied = await send(`${reg.url}/v2/foo/bar/blobs/${sha256(blob)}`, {
    headers: { Authorization: bearer(other) },
  });
  assert.equal(denied.status, 401);
  assert.match(String(denied.headers['www-authenticate']), /error="insufficient_scope"/);
});

test('registry token: anonymous callers may only pull public/', {
  skip: registrySkipReason('token'),
}, async () => {
  const reg = await sharedRegistry('token');
  const user = basic(reg.username, reg.password);
  const blob = Buffer.from('public blob\n');
  const scopes = ['repository:public/x:pull,push', 'repository:private/y:pull,push'];
  const pusher = bearer(tokenOf(await getToken(reg, scopes, user)));
  assert.equal((await pushBlob(reg.url, 'public/x', blob, { auth: pusher })).status, 201);
  assert.equal((await pushBlob(reg.url, 'private/y', blob, { auth: pusher })).status, 201);

  const before = reg.tokenRequests.length;
  const anon = tokenOf(await getToken(reg, ['repository:public/x:pull,push']));
  const record = reg.tokenRequests[before];
  assert.equal(record?.authenticated, false);
  assert.deepEqual(record?.granted, [{ type: 'repository', name: 'public/x', actions: ['pull'] }]);
  assert.deepEqual(decodeJwt(anon).claims['access'], record?.granted);

  const pulled = await send(`${reg.url}/v2/public/x/blobs/${sha256(blob)}`, {
    headers: { Authorization: bearer(anon) },
  });
  assert.deepEqual([pulled.status, pulled.body], [200, blob]);
  const push = await send(`${reg.url}/v2/public/x/blobs/uploads/`, {
    method: 'POST',
    headers: { Authorization: bearer(anon) },
  });
  assert.equal(push.status, 401, 'anonymous push is refused');
  assert.match(String(push.headers['www-authenticate']), /error="insufficient_scope"/);

  const priv = tokenOf(await getToken(reg, ['repository:private/y:pull']));
  assert.deepEqual(reg.tokenRequests.at(-1)?.granted, []);
  const hidden = await send(`${reg.url}/v2/private/y/blobs/${sha256(blob)}`, {
    headers: { Authorization: bearer(priv) },
  });
  assert.equal(hidden.status, 401);
});

test('registry token: several scopes, bad credentials, wrong service', {
  skip: registrySkipReason('token'),
}, async () => {
  const reg = await sharedRegistry('token');
  const before = reg.tokenRequests.length;
  const scopes = ['repository:a/b:pull', 'repository:c:pull,push', 'repository:a/b:push'];
  const token = tokenOf(await getToken(reg, scopes, basic(reg.username, reg.password)));
  const expected = [
    { type: 'repository', name: 'a/b', actions: ['pull', 'push'] },
    { type: 'repository', name: 'c', actions: ['pull', 'push'] },
  ];
  assert.deepEqual(decodeJwt(token).claims['access'], expected);
  assert.deepEqual(reg.tokenRequests[before]?.scopes, scopes);

  const bad = await getToken(reg, ['repository:a/b:pull'], basic(reg.username, 'wrong'));
  assert.equal(bad.status, 401);
  assert.equal(bad.headers['content-type'], 'application/json');
  assert.match(bad.body.toString(), /"UNAUTHORIZED"/);
  const rejected = reg.tokenRequests.at(-1);
  assert.deepEqual(
    [rejected?.status, rejected?.authenticated, rejected?.account, rejected?.granted],
    [401, false, reg.username, []],
  );

  const wrongService = await getToken(
    { realm: reg.realm, service: 'elsewhere' },
    [],
    basic(reg.username, reg.password),
  );
  assert.equal(wrongService.status, 400);
  const post = await send(reg.realm, { method: 'POST', body: 'grant_type=password' });
  assert.equal(post.status, 405, 'only GET (clients fall back to it)');
});

test('registry token: tokenField and expiresIn options', { skip: registrySkipReason('token') }, async () => {
  await using reg = await startRegistry({ auth: 'token', tokenField: 'access_token', expiresIn: 60 });
  const reply = await getToken(reg, ['repository:foo/bar:pull'], basic(reg.username, reg.password));
  const json = JSON.parse(reply.body.toString()) as Record<string, unknown>;
  assert.equal('token' in json, false);
  assert.equal(json['expires_in'], 60);
  const token = tokenOf(reply);
  const { claims } = decodeJwt(token);
  assert.equal(Number(claims['exp']) - Number(claims['iat']), 60);
  // The registry accepts it: an unknown blob is a 404, not a 401.
  const missing = await send(`${reg.url}/v2/foo/bar/blobs/${sha256(Buffer.from('x'))}`, {
    headers: { Authorization: bearer(token) },
  });
  assert.equal(missing.status, 404);

  await using only = await startRegistry({ auth: 'token', tokenField: 'token' });
  const plain = JSON.parse((await getToken(only, [])).body.toString()) as Record<string, unknown>;
  assert.deepEqual(Object.keys(plain).sort(), ['expires_in', 'issued_at', 'token']);
});

test('request log: counts requests, and a second push of the same blob sends no blob', {
  skip: registrySkipReason('none'),
}, async () => {
  const reg = await sharedRegistry('none');
  await using log = await startRequestLog(reg.url);
  assert.match(log.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(log.host, reg.host);

  const blob = Buffer.from(`request log blob ${Date.now()}\n`);
  const digest = sha256(blob);
  const started = await send(`${log.url}/v2/counted/blobs/uploads/`, { method: 'POST' });
  assert.equal(started.status, 202);
  assert.ok(String(started.headers.location).startsWith(`${log.url}/`), 'Location points back to the proxy');
  const location = new URL(String(started.headers.location));
  location.searchParams.set('digest', digest);
  assert.equal((await send(location.href, { method: 'PUT', body: blob })).status, 201);
  assert.deepEqual(
    log.requests.map((r) => [r.method, r.path.replace(/uploads\/[^/]+$/, 'uploads/ID'), r.status]),
    [
      ['POST', '/v2/counted/blobs/uploads/', 202],
      ['PUT', '/v2/counted/blobs/uploads/ID', 201],
    ],
  );
  assert.match(log.requests[1]!.url, /digest=sha256%3A|digest=sha256:/);

  // What a client does on a second push: HEAD finds the blob, nothing is uploaded.
  log.clear();
  assert.equal((await send(`${log.url}/v2/counted/blobs/${digest}`, { method: 'HEAD' })).status, 200);
  assert.deepEqual(log.requests, [
    { method: 'HEAD', path: `/v2/counted/blobs/${digest}`, url: `/v2/counted/blobs/${digest}`, status: 200 },
  ]);
  assert.equal(log.requests.filter((r) => r.method === 'PUT' || r.method === 'POST').length, 0);

  // The body streams through intact.
  const got = await send(`${log.url}/v2/counted/blobs/${digest}`);
  assert.deepEqual([got.status, got.body], [200, blob]);
  await log.stop();
  await assert.rejects(send(`${log.url}/v2/`), /ECONNREFUSED/);
});

test('request log: redirectBlobs answers blob GETs with a 307 to a storage URL', {
  skip: registrySkipReason('token'),
}, async () => {
  const reg = await sharedRegistry('token');
  await using log = await startRequestLog(reg.url, { redirectBlobs: true });
  const token = tokenOf(
    await getToken(reg, ['repository:redir/x:pull,push'], basic(reg.username, reg.password)),
  );
  const blob = Buffer.from('redirected blob\n');
  assert.equal((await pushBlob(log.url, 'redir/x', blob, { auth: bearer(token) })).status, 201);
  log.clear();

  // Auth errors are passed on, not redirected.
  const unauth = await send(`${log.url}/v2/redir/x/blobs/${sha256(blob)}`);
  assert.equal(unauth.status, 401);
  assert.match(String(unauth.headers['www-authenticate']), /^Bearer /);

  const redirect = await send(`${log.url}/v2/redir/x/blobs/${sha256(blob)}`, {
    headers: { Authorization: bearer(token) },
  });
  assert.equal(redirect.status, 307);
  const storage = String(redirect.headers.location);
  assert.ok(storage.startsWith(`${log.url}/_storage/${sha256(blob)}?`), storage);
  const fetched = await send(storage); // no credentials, as for a presigned URL
  assert.deepEqual([fetched.status, fetched.body], [200, blob]);
  const forged = await send(`${log.url}/_storage/${sha256(blob)}?key=forged`);
  assert.equal(forged.status, 403);
  assert.deepEqual(
    log.requests.map((r) => [r.method, r.path.split('/')[1], r.status]),
    [
      ['GET', 'v2', 401],
      ['GET', 'v2', 307],
      ['GET', '_storage', 200],
      ['GET', '_storage', 403],
    ],
  );
  // HEAD is served directly, as registries backed by S3 do.
  const head = await send(`${log.url}/v2/redir/x/blobs/${sha256(blob)}`, {
    method: 'HEAD',
    headers: { Authorization: bearer(token) },
  });
  assert.equal(head.status, 200);
});
