/**
 * `kiln copy` on a bad network: real registries (docker-registry, CNCF distribution 2.8) behind the
 * fault proxy (test/support/fault-proxy.ts) cutting connections at random in both directions, stalling
 * a response, or with the registry itself restarted mid-copy. Downloads resume with Range requests,
 * uploads start over (distribution can't resume an upload whose connection broke mid-chunk), and past
 * the retry budget a copy fails with one line naming the blob. Runs the CLI (built with
 * `npm run build`); skopeo, where installed, checks what arrived and is measured on the same network.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseReference } from '../../src/oci/reference.js';
import { HttpClient } from '../../src/registry/http.js';
import { Registry } from '../../src/registry/registry.js';
import { Repository } from '../../src/registry/repository.js';
import type { RetryPolicy } from '../../src/registry/retry.js';
import { copyImage } from '../../src/transport/copy.js';
import { OciDirDestination, OciDirSource } from '../../src/transport/oci-dir.js';
import { RegistryDestination, RegistrySource } from '../../src/transport/registry.js';
import { type FaultLogEntry, faultProxy } from '../support/fault-proxy.js';
import { imageSeries, sha256Of, type TestImage } from '../support/images.js';
import { kiln } from '../support/kiln.js';
import { freePort } from '../support/net.js';
import { exitSet, killAndWait, killSync } from '../support/processes.js';
import { registrySkipReason, sharedRegistry, startRegistry } from '../support/registry.js';
import { freshPaths, workDir } from '../support/temp.js';
import { findTool, requireTool, run } from '../support/tools.js';

/** One client for every Registry here, as a context's pool would share it; closed at the end. */
const http = new HttpClient();
const work = workDir('kiln-resilience');
after(() => http.close());

const skip = registrySkipReason('none');
/** skopeo checks what kiln wrote, and is measured on the same network; in CI it must be there. */
const skopeoPath = skip ? undefined : requireTool('skopeo');

/** No credentials from the user's docker config. */
const ENV = { DOCKER_CONFIG: join(work, 'no-docker-config') };
const FAST: RetryPolicy = { attempts: 4, baseDelayMs: 10, maxDelayMs: 50, budgetMs: 10_000 };
const MiB = 1024 * 1024;

const proxy = faultProxy;
const image = imageSeries(work, 'resilience');
const fresh = freshPaths(work);

function repository(host: string, name: string, retry: RetryPolicy = FAST): Repository {
  return new Repository(new Registry(host, { retry, env: ENV }, http), name);
}

/** Pushes a test image to `host/name:1` with the library, straight to the registry. */
async function push(img: TestImage, host: string, name: string): Promise<void> {
  const src = await OciDirSource.open(`oci:${img.layout}:${img.tag}`, img.layout, img.tag);
  const ref = parseReference(`${host}/${name}:1`);
  await copyImage(src, new RegistryDestination(ref.repository, ref, repository(host, name)));
}

/**
 * The registry itself (no proxy) holds the image under `name:1`: pulled back into an OCI layout by
 * skopeo (which checks every blob's digest) if installed, else by kiln's library (which does too).
 */
async function assertStored(registryHost: string, name: string, img: TestImage): Promise<void> {
  const out = fresh('check');
  if (skopeoPath) {
    const inspect = await skopeo([
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${registryHost}/${name}:1`,
    ]);
    assert.equal(inspect.code, 0, inspect.stderr);
    const manifest = JSON.parse(inspect.stdout) as { layers: { digest: string }[] };
    assert.deepEqual(
      manifest.layers.map((l) => l.digest),
      img.layers.map((l) => l.digest),
    );
    const copied = await skopeo([
      'copy',
      '--src-tls-verify=false',
      `docker://${registryHost}/${name}:1`,
      `oci:${out}:pulled`,
    ]);
    assert.equal(copied.code, 0, copied.stderr);
  } else {
    const ref = parseReference(`${registryHost}/${name}:1`);
    const src = new RegistrySource(ref.repository, ref, repository(registryHost, name));
    const pulled = await copyImage(src, await OciDirDestination.open(`oci:${out}:pulled`, out, 'pulled'));
    assert.equal(pulled.descriptor.digest, img.descriptor.digest);
  }
  for (const layer of img.layers)
    assert.ok(existsSync(join(out, 'blobs', 'sha256', layer.digest.slice(7))), `${layer.digest} arrived`);
  rmSync(out, { recursive: true, force: true });
}

function skopeo(args: string[], timeoutMs = 90_000) {
  return run(skopeoPath!, ['--insecure-policy', ...args], { timeoutMs });
}

/**
 * Registry a (the shared one) holding a new image of `layers` × `layerBytes` under `name:1`, and
 * registry b, a registry of the test's own (stopped after it).
 */
async function pushedToA(layers: number, layerBytes: number, name: string) {
  const a = await sharedRegistry('none');
  const b = await startRegistry();
  after(() => b.stop());
  const img = await image(layers, layerBytes);
  await push(img, a.host, name);
  return { a, b, img };
}

const hex = (d: string) => d.slice('sha256:'.length);
const summary = (log: FaultLogEntry[]) =>
  log
    .map(
      (r) =>
        `${r.method} ${r.url}${r.range ? ` (${r.range})` : ''} → ${r.status}${r.fault ? ` [${r.fault}]` : ''}`,
    )
    .join('\n');

// ---------------------------------------------------------------------------------------------------

test('half of all connections cut at random, both ways, at both registries: 5 of 5 kiln copies arrive', {
  skip,
}, async (t) => {
  const { a, b, img } = await pushedToA(6, 3 * MiB, 'res/img');
  const cuts = { probability: 0.5, maxOffset: 8 * MiB };
  const pa = await proxy(a.url, { randomCuts: { ...cuts, seed: 11 } });
  const pb = await proxy(b.url, { randomCuts: { ...cuts, seed: 12 } });

  const times: number[] = [];
  for (let i = 1; i <= 5; i++) {
    const started = Date.now();
    const r = await kiln(['copy', `${pa.host}/res/img:1`, `${pb.host}/res/kiln-${i}:1`], { env: ENV });
    times.push(Date.now() - started);
    assert.equal(r.code, 0, `copy ${i}: ${r.stderr}`);
    assert.equal(r.stdout.trim(), img.descriptor.digest);
  }
  const cutA = pa.connections.filter((c) => c.cut).length;
  const cutB = pb.connections.filter((c) => c.cut).length;
  t.diagnostic(
    `kiln: 5/5 copies in ${times.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ')}; ` +
      `source proxy cut ${cutA} of ${pa.connections.length} connections, destination proxy ${cutB} of ${pb.connections.length}`,
  );
  assert.ok(cutA > 0 && cutB > 0, 'both proxies cut connections');
  assert.ok(
    pa.requests.some((r) => r.range !== undefined),
    `a download resumed with a Range request\n${summary(pa.requests)}`,
  );
  for (let i = 1; i <= 5; i++) await assertStored(b.host, `res/kiln-${i}`, img);

  // skopeo through the same proxies, for comparison: its success count is reported, not asserted.
  // The five run side by side: its retries wait 1, 2, 4, 8, 16 s, over half a minute one by one.
  if (!skopeoPath) return t.diagnostic('skopeo not installed: no comparison');
  const outcomes = await Promise.all(
    [1, 2, 3, 4, 5].map((i) =>
      skopeo([
        'copy',
        '--retry-times',
        '5',
        '--src-tls-verify=false',
        '--dest-tls-verify=false',
        `docker://${pa.host}/res/img:1`,
        `docker://${pb.host}/res/skopeo-${i}:1`,
      ]),
    ),
  );
  const ok = outcomes.filter((r) => r.code === 0).length;
  t.diagnostic(`skopeo --retry-times 5: ${ok}/5 copies completed`);
  for (const r of outcomes.filter((x) => x.code !== 0))
    t.diagnostic(`skopeo failed: ${r.stderr.trim().split('\n').slice(-1)[0]}`);
});

test('a stalled blob response resumes after the stall timeout; stalled every time, the copy fails with E_TIMEOUT naming the blob', {
  skip,
}, async (t) => {
  const { a, b, img } = await pushedToA(2, 2 * MiB, 'res/stall');
  const layer = img.layers[1]!;
  const blobPath = new RegExp(`/blobs/sha256:${hex(layer.digest)}$`);
  const p = await proxy(a.url, {
    rules: [
      { match: { method: 'GET', path: blobPath }, fault: { stall: 'mid-body', afterBytes: 512 * 1024 } },
    ],
  });
  const env = { ...ENV, KILN_STALL_TIMEOUT_MS: '1000' };
  const started = Date.now();
  const r = await kiln(['copy', `${p.host}/res/stall:1`, `${b.host}/res/stall:1`], { env });
  assert.equal(r.code, 0, r.stderr);
  const gets = p.requests.filter((x) => x.method === 'GET' && blobPath.test(x.path));
  assert.deepEqual(
    gets.map((x) => [x.fault, x.range, x.status]),
    [
      ['stall:mid-body', undefined, 200],
      [undefined, `bytes=${512 * 1024}-`, 206],
    ],
    summary(p.requests),
  );
  assert.ok(gets[1]!.at - gets[0]!.at >= 1000, 'the stall timeout passed first');
  t.diagnostic(`resumed after the stall in ${Date.now() - started} ms`);
  await assertStored(b.host, 'res/stall', img);

  // Every try stalls before a byte of the body: 5 tries (the default policy), then one line.
  p.setRules([
    {
      match: { method: 'GET', path: blobPath },
      times: Infinity,
      fault: { stall: 'mid-body', afterBytes: 0 },
    },
  ]);
  p.clear();
  const failStarted = Date.now();
  const failed = await kiln(['copy', `${p.host}/res/stall:1`, `${b.host}/res/stall-fail:1`], { env });
  const took = Date.now() - failStarted;
  assert.equal(failed.code, 1, failed.stderr);
  const errors = failed.stderr.split('\n').filter((l) => l.startsWith('kiln:'));
  assert.equal(errors.length, 1, failed.stderr);
  assert.match(
    errors[0]!,
    new RegExp(
      `^kiln: download of blob ${layer.digest} from ${p.host}/res/stall failed after 5 attempts \\(0 of ${layer.size} bytes\\): .*no data for 1 s \\(E_TIMEOUT\\)$`,
    ),
  );
  const tries = p.requests.filter((x) => x.method === 'GET' && blobPath.test(x.path));
  assert.equal(tries.length, 5, summary(p.requests));
  // 5 stalls of 1 s and 4 backoffs of at most 0.2 + 0.4 + 0.8 + 1.6 s, and the process around them.
  assert.ok(took < 15_000, `gave up after ${took} ms`);
  t.diagnostic(`gave up after ${took} ms: ${errors[0]}`);
});

test('a download cut midway goes on with a Range request: the source sends the blob about once', {
  skip,
}, async (t) => {
  const a = await sharedRegistry('none');
  const img = await image(1, 6 * MiB);
  await push(img, a.host, 'res/range');
  const layer = img.layers[0]!;
  const blobPath = new RegExp(`/blobs/sha256:${hex(layer.digest)}$`);
  const cutAt = Math.floor(layer.size * 0.6);
  const p = await proxy(a.url, {
    rules: [{ match: { method: 'GET', path: blobPath }, fault: { reset: 'mid-body', afterBytes: cutAt } }],
  });
  const out = join(work, 'range-out');
  const r = await kiln(['copy', `${p.host}/res/range:1`, `oci:${out}:x`], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(join(out, 'blobs', 'sha256', hex(layer.digest))));
  const gets = p.requests.filter((x) => x.method === 'GET' && blobPath.test(x.path));
  assert.equal(gets.length, 2, summary(p.requests));
  assert.deepEqual(
    gets.map((x) => x.status),
    ['reset', 206],
  );
  // From what had arrived: at most what was sent before the cut (a reset drops bytes still unread).
  const resumedAt = Number(/^bytes=(\d+)-$/.exec(gets[1]!.range ?? '')?.[1]);
  assert.ok(resumedAt > 0 && resumedAt <= cutAt, `resumed at ${gets[1]!.range}`);
  const served = gets.reduce((n, x) => n + x.bytesOut, 0);
  assert.equal(served, cutAt + (layer.size - resumedAt));
  assert.ok(served < 2 * layer.size, `${served} bytes sent for a blob of ${layer.size}`);
  t.diagnostic(`${served} bytes sent for a blob of ${layer.size}, cut at ${cutAt}, resumed at ${resumedAt}`);

  // A registry without range support answers 200 with the whole blob: the bytes already read are
  // skipped, and the stream still hashes to the digest.
  p.setRules([
    { match: { method: 'GET', path: blobPath }, fault: { reset: 'mid-body', afterBytes: cutAt } },
    { match: { method: 'GET', path: blobPath }, skip: 1, fault: { ignoreRange: true } },
  ]);
  p.clear();
  assert.equal(await sha256Of(await repository(p.host, 'res/range').openBlob(layer.digest)), layer.digest);
  assert.deepEqual(
    p.requests.filter((x) => blobPath.test(x.path)).map((x) => [x.status, x.range?.replace(/\d+/, 'N')]),
    [
      ['reset', undefined],
      [200, 'bytes=N-'],
    ],
    summary(p.requests),
  );
});

// ---------------------------------------------------------------------------------------------------
// A registry that can be stopped and started again on the same port and storage.

interface Restartable {
  host: string;
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

const restartables = exitSet<{ child?: ChildProcess }>((r) => {
  if (r.child && r.child.exitCode === null) killSync(r.child, 2_000, 1_000);
});

function ping(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpRequest(`${url}/v2/`, { timeout: 1_000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

async function restartableRegistry(): Promise<Restartable> {
  const dir = fresh('restartable');
  mkdirSync(join(dir, 'storage'), { recursive: true });
  const host = `127.0.0.1:${await freePort()}`;
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      version: '0.1',
      log: { level: 'error', formatter: 'text', accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: join(dir, 'storage') },
        delete: { enabled: true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      // The same secret across restarts: upload sessions stay valid.
      http: { addr: host, secret: randomBytes(32).toString('hex') },
    }),
  );
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('REGISTRY_')) env[k] = v;
  const state: { child?: ChildProcess } = {};
  restartables.add(state);
  const url = `http://${host}`;
  const start = async () => {
    const log = openSync(join(dir, 'registry.log'), 'a');
    state.child = spawn(findTool('docker-registry')!, ['serve', config], {
      stdio: ['ignore', log, log],
      env,
    });
    closeSync(log);
    state.child.unref();
    const deadline = Date.now() + 10_000;
    while (!(await ping(url))) {
      if (Date.now() > deadline || state.child.exitCode !== null)
        throw new Error(`registry on ${host} did not start`);
      await new Promise((res) => setTimeout(res, 25));
    }
  };
  const stop = async () => {
    const child = state.child;
    if (child)
      await killAndWait(child, () => child.exitCode !== null || child.signalCode !== null, 5_000, 5_000);
  };
  after(async () => {
    await stop();
    restartables.delete(state);
  });
  await start();
  return { host, url, stop, start };
}

test('a registry restarted mid-copy, source or destination: the copy completes', { skip }, async (t) => {
  const reg = await restartableRegistry();
  const other = await startRegistry();
  after(() => other.stop());
  const img = await image(2, 16 * MiB);
  const big = img.layers.find((l) => l.size > MiB)!;
  const bigGet = new RegExp(`/blobs/sha256:${hex(big.digest)}$`);
  let restarted: Promise<number> | undefined;
  /** Once the big layer is asked for: stops the registry, and starts it again `downMs` later. */
  const restartOnBigLayer = (downMs: number) => (r: FaultLogEntry) => {
    if (r.method !== 'GET' || !bigGet.test(r.path) || restarted) return;
    restarted = (async () => {
      await new Promise((res) => setTimeout(res, 300));
      const down = Date.now();
      await reg.stop();
      await new Promise((res) => setTimeout(res, downMs));
      await reg.start();
      return Date.now() - down;
    })();
  };
  const debugLines = (stderr: string, re: RegExp) => stderr.split('\n').filter((l) => re.test(l));

  // The source restarts while the big layer comes down, held at 4 MiB for a second (the registry
  // has the rest still to send when it stops): once the break shows, the download goes on with a
  // Range request, answered 502 by the proxy while the registry is down, 206 once it is back.
  await push(img, reg.host, 'res/restart');
  const src = await proxy(reg.url, {
    rules: [
      {
        match: { method: 'GET', path: bigGet },
        fault: { stall: 'mid-body', afterBytes: 4 * MiB, ms: 1_000 },
      },
    ],
    onRequest: restartOnBigLayer(2_000),
  });
  let started = Date.now();
  const down = await kiln(['copy', `${src.host}/res/restart:1`, `${other.host}/res/restarted-src:1`], {
    env: ENV,
  });
  assert.equal(down.code, 0, down.stderr);
  assert.ok(restarted, 'the registry was restarted');
  t.diagnostic(`source registry down for ${await restarted} ms; copied in ${Date.now() - started} ms`);
  const gets = src.requests.filter((x) => x.method === 'GET' && bigGet.test(x.path));
  assert.ok(
    gets.some((x) => x.status === 502),
    `the registry was seen down\n${summary(src.requests)}`,
  );
  const resumed = gets.filter((x) => x.status === 206);
  assert.equal(resumed.length, 1, summary(src.requests));
  assert.ok(Number(/^bytes=(\d+)-$/.exec(resumed[0]!.range ?? '')?.[1]) >= 4 * MiB, summary(src.requests));
  await assertStored(other.host, 'res/restarted-src', img);

  // The destination restarts while the big layer goes up (its download held at 4 MiB for 3 s, so
  // the upload is mid-way): the upload starts over once the registry is back.
  restarted = undefined;
  const from = await proxy(other.url, {
    rules: [
      {
        match: { method: 'GET', path: bigGet },
        fault: { stall: 'mid-body', afterBytes: 4 * MiB, ms: 3_000 },
      },
    ],
    onRequest: restartOnBigLayer(1_000),
  });
  started = Date.now();
  const up = await kiln(
    ['copy', `${from.host}/res/restarted-src:1`, `${reg.host}/res/restarted-dst:1`, '--debug'],
    { env: ENV },
  );
  assert.equal(up.code, 0, up.stderr);
  assert.ok(restarted, 'the registry was restarted');
  t.diagnostic(`destination registry down for ${await restarted} ms; copied in ${Date.now() - started} ms`);
  // Three blobs, and the upload the restart broke once more.
  const posts = debugLines(up.stderr, /POST \/v2\/res\/restarted-dst\/blobs\/uploads\/ → 202/);
  assert.ok(posts.length >= 4, up.stderr);
  await assertStored(reg.host, 'res/restarted-dst', img);
});
