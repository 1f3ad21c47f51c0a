/**
 * The small protocol pieces of the registry client: WWW-Authenticate parsing, retry timing and
 * the one retry helper, typed registry errors, which hosts may speak plain HTTP, when a refused
 * manifest PUT is tried again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KilnError } from '../../src/errors.js';
import { MediaType } from '../../src/oci/media-types.js';
import { parseReference } from '../../src/oci/reference.js';
import { parseChallenges } from '../../src/registry/challenge.js';
import { isRetryable, RegistryError } from '../../src/registry/errors.js';
import { insecureList, isLoopback } from '../../src/registry/registry.js';
import {
  backoffDelay,
  DEFAULT_RETRY,
  isRetryableStatus,
  parseRetryAfter,
  RetryBudget,
  withRetry,
} from '../../src/registry/retry.js';
import { openRepository } from '../../src/transport/registry.js';
import { answerPing, startServer } from '../support/hostile.js';

test('challenges: Bearer with quoted params, as Docker Hub and distribution send them', () => {
  assert.deepEqual(
    parseChallenges(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
    ),
    [
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:library/alpine:pull',
        },
      },
    ],
  );
});

test('challenges: several in one header, several headers, escapes, bare tokens, odd spacing', () => {
  const parsed = parseChallenges([
    'Basic realm="Registry Realm", Bearer realm="https://a/t", error="insufficient_scope"',
    'Bearer  realm = "x\\"y" , scope="repository:a:pull repository:b:pull,push"',
    'Negotiate',
  ]);
  assert.deepEqual(
    parsed.map((c) => c.scheme),
    ['basic', 'bearer', 'bearer', 'negotiate'],
  );
  assert.equal(parsed[0]!.params.realm, 'Registry Realm');
  assert.equal(parsed[1]!.params.error, 'insufficient_scope');
  assert.equal(parsed[2]!.params.realm, 'x"y');
  assert.equal(parsed[2]!.params.scope, 'repository:a:pull repository:b:pull,push');
  assert.deepEqual(parsed[3]!.params, {});
  assert.deepEqual(parseChallenges(undefined), []);
  assert.deepEqual(parseChallenges(''), []);
});

test('challenges: garbage never throws', () => {
  for (const junk of ['=', '",,,"', 'Bearer realm="unterminated', 'Bearer ,,, =x', '\u0000\u0001']) {
    assert.doesNotThrow(() => parseChallenges(junk), junk);
  }
});

test('retry: which statuses are retried', () => {
  for (const s of [408, 429, 500, 502, 503, 504]) assert.equal(isRetryableStatus(s), true, String(s));
  for (const s of [200, 201, 202, 400, 401, 403, 404, 405, 416, 501, 505])
    assert.equal(isRetryableStatus(s), false, String(s));
});

test('retry: Retry-After in seconds and as an HTTP date', () => {
  assert.equal(parseRetryAfter('3'), 3000);
  assert.equal(parseRetryAfter(undefined), undefined);
  assert.equal(parseRetryAfter('soon'), undefined);
  const inTwo = new Date(Date.now() + 2000).toUTCString();
  const ms = parseRetryAfter(inTwo)!;
  assert.ok(ms > 0 && ms <= 2000, String(ms));
  // The server's wish is honoured, up to a bound.
  assert.equal(backoffDelay(DEFAULT_RETRY, 1, parseRetryAfter('2')), 2000);
  assert.equal(backoffDelay({ ...DEFAULT_RETRY, maxDelayMs: 100 }, 1, parseRetryAfter('3600')), 300);
});

test('retry: backoff grows exponentially with jitter and stays under the cap', () => {
  const policy = { attempts: 10, baseDelayMs: 100, maxDelayMs: 1000, budgetMs: 60_000 };
  for (let n = 1; n <= 8; n++) {
    const ceiling = Math.min(1000, 100 * 2 ** (n - 1));
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(policy, n);
      assert.ok(d >= ceiling / 2 && d <= ceiling, `attempt ${n}: ${d} not in [${ceiling / 2}, ${ceiling}]`);
    }
  }
});

const QUICK = { attempts: 3, baseDelayMs: 1, maxDelayMs: 5, budgetMs: 10_000 };

test('withRetry: retryable failures are tried again within the policy, others at once never', async () => {
  const flaky = (failures: number, retryable = true) => {
    let calls = 0;
    const fn = async () => {
      calls++;
      if (calls <= failures) throw new RegistryError('E_NETWORK', `try ${calls}`, { retryable });
      return calls;
    };
    return { fn, calls: () => calls };
  };
  const cured = flaky(2);
  assert.equal(await withRetry(QUICK, cured.fn), 3);
  const spent = flaky(5);
  await assert.rejects(withRetry(QUICK, spent.fn), (e: RegistryError) => e.message === 'try 3');
  assert.equal(spent.calls(), 3, 'attempts in all, the first included');
  const final = flaky(5, false);
  await assert.rejects(withRetry(QUICK, final.fn), /try 1/);
  assert.equal(final.calls(), 1);
  // A plain KilnError or Error is no network failure: not retried either.
  let plain = 0;
  await assert.rejects(
    withRetry(QUICK, async () => {
      plain++;
      throw new Error('bug');
    }),
  );
  assert.equal(plain, 1);
});

test('withRetry: results asked again are returned as they are once the policy is spent; Retry-After is waited', async () => {
  const seen: number[] = [];
  const discarded: number[] = [];
  const last = await withRetry(QUICK, async (attempt) => attempt, {
    again: (n) => (n < 10 ? {} : undefined),
    discard: (n) => void discarded.push(n),
    onRetry: ({ attempt }) => void seen.push(attempt),
  });
  assert.equal(last, 3, 'the last result');
  assert.deepEqual(discarded, [1, 2]);
  assert.deepEqual(seen, [1, 2]);
  // The registry's Retry-After, carried by the error, is the wait (capped at 3 × maxDelayMs).
  let calls = 0;
  const started = Date.now();
  await withRetry({ ...QUICK, maxDelayMs: 100 }, async () => {
    if (++calls === 1)
      throw new RegistryError('E_REGISTRY', '503', { status: 503, retryAfterMs: 250, retryable: true });
  });
  assert.ok(Date.now() - started >= 240, `waited ${Date.now() - started} ms`);
});

test('RetryBudget: progress starts the count again; the total cap holds regardless', () => {
  const budget = new RetryBudget({ ...QUICK, attempts: 2 }, 3);
  assert.notEqual(budget.next(), undefined);
  budget.progress();
  assert.notEqual(budget.next(), undefined, 'one failure since the progress');
  assert.equal(budget.next(), undefined, 'two since: spent');
  const capped = new RetryBudget({ ...QUICK, attempts: 5 }, 2);
  capped.next();
  capped.progress();
  assert.equal(capped.next(), undefined, 'two in all');
  assert.equal(capped.count, 2);
});

test('RegistryError: final() is not retryable and keeps the status and code; isRetryable reads the flag', () => {
  const e = new RegistryError('E_NETWORK', 'GET http://x/v2/: ECONNRESET', {
    reason: 'ECONNRESET',
    retryable: true,
  });
  assert.equal(isRetryable(e), true);
  const f = e.final('download of blob sha256:1 failed: ECONNRESET');
  assert.equal(isRetryable(f), false);
  assert.equal(f.code, 'E_NETWORK');
  assert.equal(f.reason, 'ECONNRESET');
  assert.equal(f.cause, e);
  const s = new RegistryError('E_REGISTRY', 'x', { status: 503, registryCode: 'UNAVAILABLE' });
  assert.equal(s.final(), s, 'already final');
  assert.equal(isRetryable(new Error('x')), false);
});

test('a status the registry keeps answering becomes a RegistryError with its status, code and Retry-After', async () => {
  let gets = 0;
  const server = await startServer((req, res) => {
    if (answerPing(req, res)) return;
    if (req.method === 'GET' && req.url?.includes('/manifests/')) {
      gets++;
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '0' });
      res.end(JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }));
      return;
    }
    res.writeHead(404).end();
  });
  try {
    const repo = openRepository(parseReference(`${server.host}/busy/app:1`), { retry: QUICK });
    await assert.rejects(repo.getManifest('1'), (e: unknown) => {
      assert.ok(e instanceof RegistryError);
      assert.equal(e.code, 'E_REGISTRY');
      assert.equal(e.status, 429);
      assert.equal(e.registryCode, 'TOOMANYREQUESTS');
      assert.equal(e.retryAfterMs, 0);
      assert.equal(e.retryable, false, 'the request was retried already');
      assert.match(e.message, /rate-limiting .*slow down/);
      return true;
    });
    assert.equal(gets, QUICK.attempts, 'retried within the policy');
    repo.registry.close();
  } finally {
    await server.stop();
  }
});

test('plain HTTP: loopback hosts and the ones named insecure', () => {
  for (const h of [
    'localhost',
    'localhost:5000',
    '127.0.0.1',
    '127.0.0.1:5000',
    '127.1.2.3:80',
    '[::1]:5000',
  ])
    assert.equal(isLoopback(h), true, h);
  for (const h of [
    'registry.example.com',
    '10.0.0.1:5000',
    '128.0.0.1',
    'localhost.example.com',
    '[::2]:5000',
  ])
    assert.equal(isLoopback(h), false, h);
  assert.deepEqual(insecureList({ KILN_INSECURE_REGISTRIES: 'a.example:5000, b.example  c' }, ['d']), [
    'a.example:5000',
    'b.example',
    'c',
    'd',
  ]);
  assert.deepEqual(insecureList({}), []);
});

test('manifest PUT: refused as DIGEST_INVALID while the registry writes blob links, it is tried again; other refusals are final', async () => {
  const refusals: string[] = ['DIGEST_INVALID', 'MANIFEST_BLOB_UNKNOWN'];
  const server = await startServer((req, res) => {
    if (answerPing(req, res)) return;
    if (req.method === 'PUT' && req.url?.includes('/manifests/')) {
      const code = refusals.shift();
      if (code) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code, message: 'race' }] }));
        return;
      }
      res.writeHead(201, { 'docker-content-digest': 'sha256:abc' });
      res.end();
      return;
    }
    res.writeHead(404).end();
  });
  try {
    const repo = openRepository(parseReference(`${server.host}/race/app:1`));
    const put = () => repo.pushManifest('1', Buffer.from('{}'), MediaType.OciManifest);
    assert.equal((await put()).digest, 'sha256:abc');
    assert.equal(server.requests.filter((r) => r.method === 'PUT').length, 3, 'two refusals, then stored');

    refusals.push('MANIFEST_INVALID');
    await assert.rejects(put(), (e: KilnError) => e.code === 'E_BAD_MANIFEST');
    assert.equal(server.requests.filter((r) => r.method === 'PUT').length, 4, 'not retried');

    refusals.push('DIGEST_INVALID', 'DIGEST_INVALID', 'DIGEST_INVALID', 'DIGEST_INVALID');
    await assert.rejects(put(), (e: KilnError) => e.code === 'E_DIGEST_MISMATCH');
    assert.equal(server.requests.filter((r) => r.method === 'PUT').length, 8, 'bounded: 1 + 3 tries');
  } finally {
    await server.stop();
  }
});
