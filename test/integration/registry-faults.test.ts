/**
 * The registry client under faults: a real registry (docker-registry, CNCF distribution 2.8) behind a
 * fault-injecting proxy (test/support/fault-proxy.ts) that answers chosen requests with 5xx/429, resets
 * connections before a response or in the middle of a body, delays or corrupts. Mostly through the
 * library with a fast retry policy; the CLI (built with `npm run build`) where its defaults matter.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { KilnError } from '../../src/errors.js';
import { sha256 } from '../../src/oci/digest.js';
import { parseReference } from '../../src/oci/reference.js';
import type { Descriptor } from '../../src/oci/types.js';
import { HttpClient } from '../../src/registry/http.js';
import { Registry, type RegistryOptions } from '../../src/registry/registry.js';
import { Repository } from '../../src/registry/repository.js';
import type { RetryPolicy } from '../../src/registry/retry.js';
import { OciLayout } from '../../src/store/layout.js';
import { copyImage } from '../../src/transport/copy.js';
import { OciDirDestination, OciDirSource } from '../../src/transport/oci-dir.js';
import { RegistryDestination, RegistrySource } from '../../src/transport/registry.js';
import { type FaultLogEntry, faultProxy, startConnectionCounter } from '../support/fault-proxy.js';
import { imageSeries, seededBytes, sha256Of, type TestImage } from '../support/images.js';
import { kiln } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { freshPaths, workDir } from '../support/temp.js';

/** One client for every Registry here, as a context's pool would share it; closed at the end. */
const http = new HttpClient();
const work = workDir('kiln-faults');
after(() => http.close());

const skip = registrySkipReason('none') ?? registrySkipReason('basic') ?? registrySkipReason('token');

/** Fast retries, so the file runs in seconds: 4 attempts, 10–50 ms apart. */
const FAST: RetryPolicy = { attempts: 4, baseDelayMs: 10, maxDelayMs: 50, budgetMs: 5000 };
/** No credentials from the user's docker config. */
const ENV = { DOCKER_CONFIG: join(work, 'no-docker-config') };

function repository(host: string, name: string, options: RegistryOptions = {}): Repository {
  return new Repository(new Registry(host, { retry: FAST, env: ENV, ...options }, http), name);
}

const proxy = faultProxy;
const image = imageSeries(work, 'faults');
const fresh = freshPaths(work);

/** Copies a test image to `host/name:1` with the library, as `kiln copy` does. */
async function push(
  img: TestImage,
  host: string,
  name: string,
  options: { retry?: RetryPolicy; signal?: AbortSignal; jobs?: number; registry?: RegistryOptions } = {},
) {
  const src = await OciDirSource.open(`oci:${img.layout}:${img.tag}`, img.layout, img.tag);
  const ref = parseReference(`${host}/${name}:1`);
  const repo = repository(host, name, { retry: options.retry ?? FAST, ...options.registry });
  const dst = new RegistryDestination(`${host}/${name}:1`, ref, repo, options.signal);
  return copyImage(src, dst, { signal: options.signal, jobs: options.jobs });
}

/** Copies `host/name:1` into an OCI layout directory (blobs verified as they are written). */
async function pull(host: string, name: string, dir: string, signal?: AbortSignal) {
  const ref = parseReference(`${host}/${name}:1`);
  const src = new RegistrySource(`${host}/${name}:1`, ref, repository(host, name), signal);
  const dst = await OciDirDestination.open(`oci:${dir}:pulled`, dir, 'pulled');
  return copyImage(src, dst, { signal });
}

/** The registry itself (no proxy) holds the image under `name:1`, with every blob at its digest. */
async function assertStored(registryHost: string, name: string, img: TestImage): Promise<void> {
  const repo = repository(registryHost, name);
  const { descriptor } = await repo.getManifest('1');
  assert.equal(descriptor.digest, img.descriptor.digest, 'the manifest under the tag is the image');
  const out = fresh('check');
  const pulled = await pull(registryHost, name, out);
  assert.equal(pulled.descriptor.digest, img.descriptor.digest);
  for (const layer of img.layers) assert.ok(existsSync(join(out, 'blobs', 'sha256', layer.digest.slice(7))));
}

const hex = (d: string) => d.slice('sha256:'.length);
const summary = (log: FaultLogEntry[]) =>
  log.map((r) => `${r.method} ${r.url} → ${r.status}${r.fault ? ` [${r.fault}]` : ''}`).join('\n');

async function rejects(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail('expected a failure');
}

function kilnError(err: unknown, code: string): KilnError {
  assert.ok(err instanceof KilnError, `a KilnError, got ${String(err)}`);
  assert.equal(err.code, code, `${err.code}: ${err.message}`);
  return err;
}

function blobDescriptor(bytes: Buffer): Descriptor {
  return { mediaType: 'application/octet-stream', digest: sha256(bytes), size: bytes.length };
}

/** The blob's content in slices, as a file stream would give it; counts how often it is opened. */
function opener(bytes: Buffer) {
  const state = { opens: 0 };
  const open = async () => {
    state.opens++;
    return (async function* () {
      for (let i = 0; i < bytes.length; i += 256 * 1024) yield bytes.subarray(i, i + 256 * 1024);
    })();
  };
  return { open, state };
}

async function hashBlob(repo: Repository, digest: string): Promise<string> {
  return sha256Of(await repo.openBlob(digest));
}

// ---------------------------------------------------------------------------------------------------

test('a push survives 503s on blob HEAD, upload POST and PUT, and on the manifest PUT', {
  skip,
}, async () => {
  const reg = await sharedRegistry('none');
  const img = await image(1, 64 * 1024);
  const layer = hex(img.layers[0]!.digest);
  const p = await proxy(reg.url, {
    rules: [
      {
        match: { method: 'HEAD', path: new RegExp(`/blobs/sha256:${layer}$`) },
        times: 2,
        fault: { status: 503 },
      },
      { match: { method: 'POST', path: /\/blobs\/uploads\/$/ }, times: 2, fault: { status: 503 } },
      {
        match: { method: 'PUT', path: new RegExp(`digest=sha256%3A${layer}`) },
        times: 2,
        fault: { status: 503 },
      },
      { match: { method: 'PUT', path: /\/manifests\// }, times: 2, fault: { status: 503 } },
    ],
  });
  const result = await push(img, p.host, 'faults/503');
  assert.equal(result.descriptor.digest, img.descriptor.digest);
  const log = p.requests;
  const of = (method: string, re: RegExp) => log.filter((r) => r.method === method && re.test(r.url));
  const statuses = (rs: FaultLogEntry[]) => rs.map((r) => r.status);
  assert.deepEqual(statuses(of('HEAD', new RegExp(`sha256:${layer}$`))), [503, 503, 404], summary(log));
  assert.deepEqual(statuses(of('POST', /\/blobs\/uploads\/$/)).slice(0, 2), [503, 503], summary(log));
  assert.deepEqual(
    statuses(of('PUT', new RegExp(`digest=sha256%3A${layer}`))),
    [503, 503, 201],
    summary(log),
  );
  assert.deepEqual(statuses(of('PUT', /\/manifests\//)), [503, 503, 201], summary(log));
  await assertStored(reg.host, 'faults/503', img);
});

test('429 with Retry-After: 1 waits at least a second before the next try', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const img = await image(1, 1024);
  const layer = hex(img.layers[0]!.digest);
  const p = await proxy(reg.url, {
    rules: [
      { match: { method: 'PUT', path: /\/manifests\// }, fault: { status: 429, retryAfter: '1' } },
      // A blob PUT streams its body, so the upload restarts: after the wait as well.
      {
        match: { method: 'PUT', path: new RegExp(`digest=sha256%3A${layer}`) },
        fault: { status: 429, retryAfter: '1' },
      },
    ],
  });
  // Retry-After is honoured up to 3 × maxDelayMs, so this policy lets a 1 s wait through.
  await push(img, p.host, 'faults/429', { retry: { ...FAST, maxDelayMs: 1000 } });
  const puts = p.requests.filter((r) => r.method === 'PUT' && r.path.includes('/manifests/'));
  assert.deepEqual(
    puts.map((r) => r.status),
    [429, 201],
    summary(p.requests),
  );
  const waited = puts[1]!.at - puts[0]!.at;
  assert.ok(waited >= 950, `the retry came ${waited} ms after the 429`);
  const blobPuts = p.requests.filter((r) => r.method === 'PUT' && r.url.includes(layer));
  assert.deepEqual(
    blobPuts.map((r) => r.status),
    [429, 201],
    summary(p.requests),
  );
  const blobWaited = blobPuts[1]!.at - blobPuts[0]!.at;
  assert.ok(blobWaited >= 950, `the blob upload restarted ${blobWaited} ms after the 429`);
  await assertStored(reg.host, 'faults/429', img);
});

test('retries are bounded: a registry that always answers 503 fails after exactly `attempts` tries', {
  skip,
}, async () => {
  const reg = await sharedRegistry('none');
  const img = await image(1, 1024);
  await push(img, reg.host, 'faults/bounded');
  const p = await proxy(reg.url, {
    rules: [{ match: { path: /\/manifests\// }, times: Infinity, fault: { status: 503 } }],
  });
  const started = Date.now();
  const err = kilnError(await rejects(repository(p.host, 'faults/bounded').getManifest('1')), 'E_REGISTRY');
  assert.match(err.message, /answered 503/);
  const gets = p.requests.filter((r) => r.path.includes('/manifests/'));
  assert.equal(gets.length, FAST.attempts, summary(p.requests));
  assert.ok(Date.now() - started < FAST.budgetMs);

  // A push whose manifest PUT always fails: the same bound.
  p.setRules([{ match: { method: 'PUT', path: /\/manifests\// }, times: Infinity, fault: { status: 503 } }]);
  p.clear();
  const pushErr = kilnError(await rejects(push(img, p.host, 'faults/bounded-push')), 'E_REGISTRY');
  assert.match(pushErr.message, /answered 503/);
  const puts = p.requests.filter((r) => r.method === 'PUT' && r.path.includes('/manifests/'));
  assert.equal(puts.length, FAST.attempts, summary(p.requests));

  // A blob PUT (a streamed body, which is re-sent by restarting the upload) is bounded too.
  p.setRules([
    { match: { method: 'PUT', path: /\/blobs\/uploads\// }, times: Infinity, fault: { status: 503 } },
  ]);
  p.clear();
  const big = await image(1, 2048);
  const blobErr = kilnError(await rejects(push(big, p.host, 'faults/bounded-blob')), 'E_REGISTRY');
  assert.match(blobErr.message, /answered 503/);
  // An upload is tried 4 times (UPLOAD_ATTEMPTS in repository.ts), each PUT once; the first blob to
  // run out of tries stops the other.
  const counts = new Map<string, number>();
  for (const r of p.requests) {
    const d = /digest=sha256%3A([0-9a-f]+)/.exec(r.url)?.[1];
    if (r.method === 'PUT' && d) counts.set(d, (counts.get(d) ?? 0) + 1);
  }
  assert.equal(Math.max(...counts.values()), 4, summary(p.requests));
});

test('the CLI gives up on an always-503 registry with E_REGISTRY naming the status', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const img = await image(1, 1024);
  const p = await proxy(reg.url, {
    rules: [{ match: { method: 'PUT', path: /\/manifests\// }, times: Infinity, fault: { status: 503 } }],
  });
  const r = await kiln(['copy', `oci:${img.layout}:${img.tag}`, `${p.host}/faults/cli-503:1`], { env: ENV });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /answered 503 to push of manifest 1.*\(E_REGISTRY\)/);
  const puts = p.requests.filter((x) => x.method === 'PUT' && x.path.includes('/manifests/'));
  assert.equal(puts.length, 5, `the default policy makes 5 attempts\n${summary(p.requests)}`);
});

test('no retry on 401, 403, 404, nor on a TLS failure', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const img = await image(1, 1024);
  await push(img, reg.host, 'faults/noretry');
  const p = await proxy(reg.url);
  const repo = repository(p.host, 'faults/noretry');
  for (const [status, code] of [
    [401, 'E_AUTH'],
    [403, 'E_DENIED'],
    [404, 'E_NOT_FOUND'],
  ] as const) {
    p.setRules([{ match: { path: /\/manifests\// }, times: Infinity, fault: { status } }]);
    p.clear();
    kilnError(await rejects(repo.getManifest('1')), code);
    const sent = p.requests.filter((r) => r.path.includes('/manifests/'));
    assert.equal(sent.length, 1, `${status} is final\n${summary(p.requests)}`);
  }

  // A TLS registry whose CA is not trusted: one TLS handshake, then E_TLS.
  const tls = await sharedRegistry('basic');
  const port = Number(new URL(tls.url).port);
  const counter = await startConnectionCounter({ host: '127.0.0.1', port });
  after(() => counter.stop());
  const err = kilnError(
    await rejects(
      repository(counter.host, 'x/y', { creds: `${tls.username}:${tls.password}` }).getManifest('1'),
    ),
    'E_TLS',
  );
  assert.match(err.message, /not trusted/);
  assert.deepEqual(
    counter.connections.filter((c) => c === 'tls'),
    ['tls'],
    `connections: ${counter.connections.join(', ')}`,
  );
});

test('a reset before the response to a blob PUT: the upload starts over and the image arrives', {
  skip,
}, async () => {
  const reg = await sharedRegistry('none');
  const img = await image(2, 256 * 1024);
  const layer = hex(img.layers[1]!.digest);
  const p = await proxy(reg.url, {
    rules: [
      {
        match: { method: 'PUT', path: new RegExp(`digest=sha256%3A${layer}`) },
        fault: { reset: 'before-response' },
      },
    ],
  });
  const result = await push(img, p.host, 'faults/reset-put');
  assert.equal(result.descriptor.digest, img.descriptor.digest);
  const puts = p.requests.filter((r) => r.method === 'PUT' && r.url.includes(layer));
  assert.deepEqual(
    puts.map((r) => r.status),
    ['reset', 201],
    summary(p.requests),
  );
  assert.equal(puts[0]!.bytesIn, img.layers[1]!.size, 'the whole blob was sent before the reset');
  const posts = p.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/blobs/uploads/'));
  assert.equal(posts.length, 4, `3 blobs and one restart\n${summary(p.requests)}`);
  await assertStored(reg.host, 'faults/reset-put', img);
});

test('kiln copy survives 503s and a connection reset with its default retry policy', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const img = await image(2, 128 * 1024);
  const p = await proxy(reg.url, {
    rules: [
      { match: { method: 'HEAD', path: /\/blobs\// }, times: 2, fault: { status: 503 } },
      {
        match: { method: 'PUT', path: new RegExp(`digest=sha256%3A${hex(img.layers[0]!.digest)}`) },
        fault: { reset: 'before-response' },
      },
      { match: { method: 'PUT', path: /\/manifests\// }, times: 2, fault: { status: 503 } },
    ],
  });
  const r = await kiln(['copy', `oci:${img.layout}:${img.tag}`, `${p.host}/faults/cli:1`, '--debug'], {
    env: ENV,
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), img.descriptor.digest);
  assert.match(r.stderr, /status 503; retry 1/);
  assert.ok(p.requests.some((x) => x.status === 'reset'));
  await assertStored(reg.host, 'faults/cli', img);
});

test('a chunked upload reset in the middle of its 3rd PATCH resumes from the registry Range', {
  skip,
}, async () => {
  const reg = await sharedRegistry('none');
  const bytes = seededBytes('chunked-resume', 5 * 1024 * 1024 + 12_345);
  const desc = blobDescriptor(bytes);
  const p = await proxy(reg.url, {
    rules: [{ match: { method: 'PATCH' }, skip: 2, fault: { reset: 'mid-body', afterBytes: 300_000 } }],
  });
  const { open, state } = opener(bytes);
  const repo = repository(p.host, 'faults/chunked');
  await repo.uploadBlob(desc, open, { monolithicMax: 0, chunkSize: 1024 * 1024 });

  const log = p.requests;
  const patches = log.filter((r) => r.method === 'PATCH');
  assert.deepEqual(
    patches.map((r) => r.status),
    [202, 202, 'reset', 202, 202, 202, 202],
    summary(log),
  );
  const resetAt = log.findIndex((r) => r.status === 'reset');
  const status = log[resetAt + 1]!;
  assert.equal(status.method, 'GET', `the client asks the upload's status\n${summary(log)}`);
  assert.match(status.path, /\/blobs\/uploads\/[^/]+$/);
  assert.equal(status.status, 204);
  const resent = log.slice(resetAt + 1).reduce((n, r) => n + (r.method === 'PATCH' ? r.bytesIn : 0), 0);
  assert.equal(resent, bytes.length - 2 * 1024 * 1024, 'only what the registry lacked is sent again');
  assert.ok(resent < bytes.length);
  assert.equal(log.filter((r) => r.method === 'POST').length, 1, 'the upload session is kept');
  assert.equal(state.opens, 2, 'the content is opened again once, to hash the prefix');
  const puts = log.filter((r) => r.method === 'PUT');
  assert.deepEqual(
    puts.map((r) => r.status),
    [201],
  );
  assert.equal(await hashBlob(repository(reg.host, 'faults/chunked'), desc.digest), desc.digest);
  assert.equal(await repository(reg.host, 'faults/chunked').hasBlob(desc.digest), bytes.length);
});

test('a chunked upload reset in its first PATCH, or where the registry kept part of a chunk, still arrives', {
  skip,
}, async () => {
  const reg = await sharedRegistry('none');
  const p = await proxy(reg.url, {
    rules: [{ match: { method: 'PATCH' }, fault: { reset: 'mid-body', afterBytes: 100_000 } }],
  });
  const steps = (log: FaultLogEntry[]) =>
    log.filter((r) => r.path.includes('/blobs/uploads/')).map((r) => `${r.method} ${r.status}`);
  /** Seeded bytes (seed NAME) uploaded in 1 MiB chunks through the proxy, which must arrive whole; the upload's steps. */
  const chunked = async (name: string, size: number) => {
    const bytes = seededBytes(name, size);
    const desc = blobDescriptor(bytes);
    p.clear();
    const options = { monolithicMax: 0, chunkSize: 1024 * 1024 };
    await repository(p.host, `faults/${name}`).uploadBlob(desc, opener(bytes).open, options);
    assert.equal(await hashBlob(repository(reg.host, `faults/${name}`), desc.digest), desc.digest);
    return steps(p.requests);
  };
  // Nothing stored: distribution says `Range: 0-0`, as it would for one byte, so the upload starts over.
  assert.deepEqual(
    await chunked('chunked-first', 3 * 1024 * 1024 + 7),
    [
      'POST 202',
      'PATCH reset',
      'GET 204',
      'DELETE 204',
      'POST 202',
      ...Array(4).fill('PATCH 202'),
      'PUT 201',
    ],
    summary(p.requests),
  );

  // The registry got part of the broken chunk: its upload no longer matches the session's state
  // (distribution answers the status GET with an error), so the client starts a new upload.
  p.setRules([
    { match: { method: 'PATCH' }, skip: 1, fault: { reset: 'mid-body', afterBytes: 200_000, forward: true } },
  ]);
  assert.deepEqual(
    (await chunked('chunked-partial', 3 * 1024 * 1024 + 11)).slice(0, 6),
    ['POST 202', 'PATCH 202', 'PATCH reset', 'GET 404', 'DELETE 404', 'POST 202'],
    summary(p.requests),
  );

  // The same, when the registry reports its Range before it has handled the broken chunk: the
  // resumed PATCH meets a corrupt session (404 BLOB_UPLOAD_INVALID). That is not final either.
  const invalid = JSON.stringify({
    errors: [{ code: 'BLOB_UPLOAD_INVALID', message: 'upload resumed at wrong offset' }],
  });
  p.setRules([
    { match: { method: 'PATCH' }, skip: 1, fault: { reset: 'mid-body', afterBytes: 200_000 } },
    { match: { method: 'PATCH' }, skip: 2, fault: { status: 404, body: invalid } },
  ]);
  assert.deepEqual(
    (await chunked('chunked-late', 3 * 1024 * 1024 + 5)).slice(0, 6),
    ['POST 202', 'PATCH 202', 'PATCH reset', 'GET 204', 'PATCH 404', 'GET 204'],
    summary(p.requests),
  );
});

test('a 503 to a PATCH resumes the chunked upload from where the registry is', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const bytes = seededBytes('chunked-503', 3 * 1024 * 1024 + 3);
  const desc = blobDescriptor(bytes);
  const p = await proxy(reg.url, {
    rules: [{ match: { method: 'PATCH' }, skip: 1, fault: { status: 503 } }],
  });
  const options = { monolithicMax: 0, chunkSize: 1024 * 1024 };
  await repository(p.host, 'faults/chunked-503').uploadBlob(desc, opener(bytes).open, options);
  const steps = p.requests
    .filter((r) => r.path.includes('/blobs/uploads/'))
    .map((r) => `${r.method} ${r.status}`);
  assert.deepEqual(
    steps,
    ['POST 202', 'PATCH 202', 'PATCH 503', 'GET 204', 'PATCH 202', 'PATCH 202', 'PATCH 202', 'PUT 201'],
    summary(p.requests),
  );
  assert.equal(await hashBlob(repository(reg.host, 'faults/chunked-503'), desc.digest), desc.digest);
});

test('a blob download reset on every attempt fails with E_NETWORK and leaves no oci: directory', {
  skip,
}, async () => {
  const reg = await sharedRegistry('none');
  const img = await image(4, 512 * 1024);
  await push(img, reg.host, 'faults/download');
  const first = hex(img.layers[0]!.digest);
  const p = await proxy(reg.url, {
    rules: [
      {
        match: { method: 'GET', path: new RegExp(`/blobs/sha256:${first}$`) },
        fault: { reset: 'mid-body', afterBytes: 100_000 },
      },
      // Every resumed request (Range) is cut too, so the download runs out of attempts.
      {
        match: { method: 'GET', path: new RegExp(`/blobs/sha256:${first}$`) },
        skip: 1,
        times: Infinity,
        fault: { reset: 'mid-body', afterBytes: 0 },
      },
      // The other layers are still on their way when the first one fails.
      { match: { method: 'GET', path: /\/blobs\// }, times: Infinity, fault: { delayMs: 300 } },
    ],
  });
  const out = join(work, 'download-reset');
  const err = await rejects(pull(p.host, 'faults/download', out));
  kilnError(err, 'E_NETWORK');
  assert.ok(
    p.requests.some((r) => r.status === 'reset'),
    summary(p.requests),
  );
  await new Promise((resolve) => setTimeout(resolve, 500)); // whatever was in flight has landed
  assert.equal(existsSync(out), false, `${out} is removed: ${existsSync(out) ? readdirSync(out) : ''}`);
});

test('a corrupted blob download fails with E_DIGEST_MISMATCH and stores nothing', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const img = await image(2, 256 * 1024);
  await push(img, reg.host, 'faults/corrupt');
  const bad = img.layers[1]!;
  const p = await proxy(reg.url, {
    rules: [
      {
        match: { method: 'GET', path: new RegExp(`/blobs/sha256:${hex(bad.digest)}$`) },
        times: Infinity,
        fault: { corruptBody: true },
      },
    ],
  });
  // Into a fresh directory: it is removed.
  const fresh = join(work, 'corrupt-fresh');
  kilnError(await rejects(pull(p.host, 'faults/corrupt', fresh)), 'E_DIGEST_MISMATCH');
  assert.equal(existsSync(fresh), false);

  // Into a layout that exists: it stays, without the blob, a temp file, or the tag.
  const existing = join(work, 'corrupt-existing');
  await OciLayout.open(existing, { create: true });
  kilnError(await rejects(pull(p.host, 'faults/corrupt', existing)), 'E_DIGEST_MISMATCH');
  const blobs = readdirSync(join(existing, 'blobs', 'sha256'));
  assert.ok(!blobs.includes(hex(bad.digest)), 'the corrupt blob is not stored');
  assert.deepEqual(
    blobs.filter((b) => b.startsWith('.')),
    [],
    'no temp files',
  );
  assert.deepEqual(await (await OciLayout.open(existing)).tags(), []);
  const corrupted = p.requests.filter((r) => r.fault === 'corrupt');
  assert.equal(corrupted.length, 2, `one download per copy, not retried\n${summary(p.requests)}`);
});

test('an AbortSignal stops a copy in flight, and no request goes out afterwards', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const img = await image(4, 128 * 1024);
  const blobs = img.layers.length + 1;
  const controller = new AbortController();
  let abortedAt = 0;
  let puts = 0;
  const p = await proxy(reg.url, {
    rules: [
      { match: { method: 'PUT', path: /\/blobs\/uploads\// }, times: Infinity, fault: { delayMs: 2000 } },
    ],
    // Abort once every blob's PUT has arrived (and is held): whatever comes after was sent after it.
    onRequest: (r) => {
      if (r.method === 'PUT' && ++puts === blobs) {
        abortedAt = Date.now();
        controller.abort(new Error('stop the push'));
      }
    },
  });
  const err = await rejects(push(img, p.host, 'faults/abort', { signal: controller.signal, jobs: blobs }));
  const aborted =
    (err instanceof KilnError && err.code === 'E_ABORTED') ||
    (err as Error).message === 'stop the push' ||
    (err as Error).name === 'AbortError';
  assert.ok(aborted, `aborted, got ${String(err)}`);
  const settled = Date.now();
  assert.ok(settled - abortedAt < 2000, 'the copy does not wait for the delayed PUT');
  await new Promise((resolve) => setTimeout(resolve, 300));
  const late = p.requests.filter((r) => r.at > abortedAt);
  assert.deepEqual(late, [], `requests after the abort:\n${summary(late)}`);
  const stored = await repository(reg.host, 'faults/abort').headManifest('1');
  assert.equal(stored, undefined, 'no tag was pushed');

  // An abort during a retry's wait (a 429 asking for 30 s) ends it at once, with nothing sent after.
  await push(img, reg.host, 'faults/abort-wait');
  p.setRules([
    { match: { path: /\/manifests\// }, times: Infinity, fault: { status: 429, retryAfter: '30' } },
  ]);
  p.clear();
  const patient = { attempts: 4, baseDelayMs: 10, maxDelayMs: 20_000, budgetMs: 120_000 };
  const waiting = repository(p.host, 'faults/abort-wait', { retry: patient });
  const stop = new AbortController();
  const started = Date.now();
  setTimeout(() => stop.abort(), 200);
  const waitErr = kilnError(await rejects(waiting.getManifest('1', stop.signal)), 'E_ABORTED');
  assert.ok(Date.now() - started < 10_000, `aborted after ${Date.now() - started} ms: ${waitErr.message}`);
  assert.deepEqual(
    p.requests.map((r) => r.status),
    [200, 429],
    summary(p.requests),
  );
});

test('a token service that answers 503 once is asked again', { skip }, async () => {
  const reg = await sharedRegistry('token');
  const realm = new URL(reg.realm);
  const tokens = await proxy(realm.origin, {
    rules: [{ match: { path: /^\/token/ }, fault: { status: 503 } }],
  });
  // The registry's challenge names the token proxy as realm, so token requests go through it.
  const p = await proxy(reg.url, {
    rewriteHeaders: [{ from: reg.realm, to: `${tokens.url}${realm.pathname}` }],
  });
  const img = await image(1, 1024);
  const creds = `${reg.username}:${reg.password}`;
  const result = await push(img, p.host, 'faults/token', { registry: { creds } });
  assert.equal(result.descriptor.digest, img.descriptor.digest);
  assert.deepEqual(
    tokens.requests.slice(0, 2).map((r) => r.status),
    [503, 200],
    summary(tokens.requests),
  );
  const stored = await repository(reg.host, 'faults/token', { creds }).getManifest('1');
  assert.equal(stored.descriptor.digest, img.descriptor.digest);
});
