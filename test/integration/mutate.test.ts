/**
 * `kiln append`, `kiln mutate` and `kiln index create` through the built CLI (`npm run build`), with
 * what they write checked by kiln itself and by real tools: skopeo, umoci, and a private Docker engine
 * running a busybox image made from scratch. Outside CI a missing tool skips; in CI it fails.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { listTar, type TarEntryInfo } from '../../src/layer/tar-reader.js';
import { formatPlatform, hostPlatform } from '../../src/oci/platform.js';
import { dockerSkipReason, sharedDocker } from '../support/docker.js';
import {
  type Descriptor,
  DOCKER_CONFIG,
  DOCKER_LAYER,
  DOCKER_MANIFEST,
  HELLO_WASM,
  type ImageConfig,
  type ImageIndex,
  layoutBlob,
  layoutIndex,
  layoutJson,
  OCI_CONFIG,
  OCI_LAYER_GZIP,
  OCI_MANIFEST,
  sha256,
} from '../support/images.js';
import { kilnAppend, kilnDigest, kilnFails, kilnIndexCreate, kilnJson, kilnOk } from '../support/kiln.js';
import { workDir, writeTree } from '../support/temp.js';
import { busyboxRootfs, busyboxSkipReason } from '../support/toolchain-images.js';
import { ok, type RunResult, requireTool, run, runOk, toolSkipReason } from '../support/tools.js';

const TIMEOUT = 120_000;
const HOST = formatPlatform(hostPlatform());

const work = workDir('kiln-mutate');

async function entries(dir: string, layer: Descriptor): Promise<TarEntryInfo[]> {
  return listTar([layoutBlob(dir, layer.digest)]);
}

/** A small tree: a.txt, sub/run.sh. */
const makeTree = (name: string) =>
  writeTree(join(work, name), { 'a.txt': 'alpha\n', 'sub/run.sh': '#!/bin/sh\necho run\n' });

test('append from scratch: the same digest every time, on every transport; files at DEST, config and history right', async () => {
  const tree = makeTree('tree1');
  const one = join(work, 'append-1');
  const args = ['--platform', 'linux/arm64', '--layer', tree, '--layer', `${join(tree, 'a.txt')}:/etc/app`];
  const d1 = await kilnDigest(['append', 'scratch', ...args, '--to', `oci:${one}:x`]);
  const d2 = await kilnDigest(['append', 'scratch', ...args, '--to', `oci:${join(work, 'append-2')}:x`]);
  const d3 = await kilnDigest(['append', 'scratch', ...args, '--to', `oci-archive:${work}/append-3.tar`]);
  assert.equal(d1, d2);
  assert.equal(d1, d3);

  const manifest = layoutJson(one, d1);
  const config = layoutJson<ImageConfig>(one, manifest.config.digest);
  assert.equal(config.os, 'linux');
  assert.equal(config.architecture, 'arm64');
  assert.equal(manifest.layers.length, 2);
  assert.deepEqual(
    config.rootfs.diff_ids,
    manifest.layers.map((l) => sha256(gunzipSync(layoutBlob(one, l.digest)))),
  );
  assert.deepEqual(
    config.history?.map((h) => h.created_by),
    ['kiln append', 'kiln append'],
  );
  assert.deepEqual(
    (await entries(one, manifest.layers[0]!)).map((e) => [e.path, e.mode.toString(8), e.uid, e.mtime]),
    [
      ['a.txt', '644', 0, 0],
      ['sub', '755', 0, 0],
      ['sub/run.sh', '755', 0, 0],
    ],
  );
  assert.deepEqual(
    (await entries(one, manifest.layers[1]!)).map((e) => e.path),
    ['etc', 'etc/app', 'etc/app/a.txt'],
  );

  // SOURCE_DATE_EPOCH moves the times, and so the digest
  const later = await kilnDigest(['append', 'scratch', ...args, '--to', `oci:${join(work, 'append-4')}:x`], {
    env: { SOURCE_DATE_EPOCH: '1700000000' },
  });
  assert.notEqual(later, d1);
});

test('append: tar and tar.gz made by GNU tar are the layers; the .tar.gz byte for byte', async (t) => {
  const reason = toolSkipReason('tar');
  if (reason !== undefined) return t.skip(reason);
  const tree = makeTree('tree-tar');
  const plain = join(work, 'layer.tar');
  const gz = join(work, 'layer.tar.gz');
  await runOk(requireTool('tar')!, ['-cf', plain, '-C', tree, '.']);
  await runOk(requireTool('tar')!, ['-czf', gz, '-C', tree, '.']);
  const dir = join(work, 'append-tars');
  const digest = await kilnAppend('scratch', [plain, gz], `oci:${dir}:t`);
  const manifest = layoutJson(dir, digest);
  const config = layoutJson<ImageConfig>(dir, manifest.config.digest);
  const tarBytes = readFileSync(plain);
  const gzBytes = readFileSync(gz);
  assert.equal(manifest.layers[1]!.digest, sha256(gzBytes), 'the .tar.gz is kept as it is');
  assert.deepEqual(gunzipSync(layoutBlob(dir, manifest.layers[0]!.digest)), tarBytes, 'the .tar, gzipped');
  assert.deepEqual(config.rootfs.diff_ids, [sha256(tarBytes), sha256(gunzipSync(gzBytes))]);
  assert.ok((await entries(dir, manifest.layers[1]!)).some((e) => e.path === 'sub/run.sh'));

  const err = await kilnFails(
    ['append', 'scratch', '--layer', `${plain}:/opt`, '--to', `oci:${dir}:u`],
    'E_USAGE',
  );
  assert.match(err.message, /as it is/);
});

test('append to a Docker v2 base (as skopeo writes it) writes OCI over the same base blob; a docker-archive base works', async (t) => {
  const reason = toolSkipReason('skopeo');
  if (reason !== undefined) return t.skip(reason);
  const tree = makeTree('tree-docker');
  const oci = join(work, 'docker-base-oci');
  await kilnAppend('scratch', [tree], `oci:${oci}:b`, { platform: 'linux/amd64' });
  const v2 = join(work, 'docker-base-v2');
  ok(
    await tool('skopeo', ['copy', '--format', 'v2s2', `oci:${oci}:b`, `oci:${v2}:b`]),
    'skopeo copy --format v2s2',
  );
  const out = join(work, 'docker-appended');
  const digest = await kilnAppend(`oci:${v2}:b`, [`${tree}:/srv`], `oci:${out}:a`);
  // A manifest kiln creates is OCI (the media-type policy): the Docker layer is the same blob, renamed.
  const base = layoutJson(v2, layoutIndex(v2).manifests[0]!.digest);
  assert.equal(base.mediaType, DOCKER_MANIFEST);
  assert.equal(base.config.mediaType, DOCKER_CONFIG);
  assert.equal(base.layers[0]!.mediaType, DOCKER_LAYER);
  const manifest = layoutJson(out, digest);
  assert.equal(manifest.mediaType, OCI_MANIFEST);
  assert.equal(manifest.config.mediaType, OCI_CONFIG);
  assert.deepEqual(
    manifest.layers.map((l) => l.mediaType),
    [OCI_LAYER_GZIP, OCI_LAYER_GZIP],
  );
  assert.equal(manifest.layers[0]!.digest, base.layers[0]!.digest);

  // A docker-archive base (docker save's layout) is read as an OCI image by the transport.
  const archive = join(work, 'docker-base.tar');
  await kilnOk(['copy', `oci:${oci}:b`, `docker-archive:${archive}:base:1`]);
  const appended = join(work, 'docker-appended.tar');
  await kilnAppend(`docker-archive:${archive}`, [`${tree}:/srv`], `docker-archive:${appended}:app:1`);
  const info = await kilnJson<{ image: { layers: Descriptor[] } }>(['inspect', `docker-archive:${appended}`]);
  assert.deepEqual(
    info.image.layers.map((l) => l.mediaType),
    [OCI_LAYER_GZIP, OCI_LAYER_GZIP],
  );
});

test('mutate: an index has every image changed; --platform writes one image; the CLI parses as documented', async () => {
  const tree = makeTree('tree-mutate');
  const dir = join(work, 'mutate');
  for (const platform of ['linux/amd64', 'linux/arm64'])
    await kilnAppend('scratch', [tree], `oci:${dir}:${platform.replace('/', '-')}`, { platform });
  const multi = await kilnIndexCreate(`oci:${dir}:multi`, [
    `oci:${dir}:linux-amd64`,
    `oci:${dir}:linux-arm64`,
  ]);
  const edits = [
    '--entrypoint',
    '["/bin/sh","-c"]',
    '--cmd',
    'true',
    '--env',
    'A=1',
    '--env',
    'EMPTY=',
    '--label',
    'org.example=yes',
    '--annotation',
    'stamp=1',
    '--workdir',
    '/srv',
    '--user',
    '65534',
  ];
  const digest = await kilnDigest(['mutate', `oci:${dir}:multi`, ...edits, '--to', `oci:${dir}:mutated`]);
  const index = layoutJson<ImageIndex>(dir, digest);
  assert.deepEqual(index.annotations, { stamp: '1' });
  assert.deepEqual(
    index.manifests.map((m) => m.platform),
    [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ],
  );
  for (const m of index.manifests) {
    const manifest = layoutJson(dir, m.digest);
    assert.deepEqual(manifest.annotations, { stamp: '1' });
    const config = layoutJson<ImageConfig>(dir, manifest.config.digest);
    assert.deepEqual(config.config, {
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: ['true'],
      Env: ['A=1', 'EMPTY='],
      Labels: { 'org.example': 'yes' },
      WorkingDir: '/srv',
      User: '65534',
    });
    assert.equal(config.history?.length, 1, 'mutate adds no history');
  }

  const arm = ['--platform', 'linux/arm64', '--to', `oci:${dir}:arm`];
  const one = await kilnDigest(['mutate', `oci:${dir}:multi`, ...edits, ...arm]);
  assert.equal(one, index.manifests[1]!.digest, 'the arm64 image alone, as in the mutated index');
  const same = await kilnDigest(['mutate', `oci:${dir}:multi`, '--to', `oci:${dir}:same`]);
  assert.equal(same, multi, 'nothing asked, nothing changed: the same index');

  const bad = await kilnFails(
    ['mutate', `oci:${dir}:multi`, '--cmd', 'echo hi', '--to', `oci:${dir}:x`],
    'E_USAGE',
  );
  assert.match(bad.hint ?? '', /\["\/bin\/sh","-c","echo hello"\]/);
  await kilnFails(['mutate', `oci:${dir}:multi`, '--env', 'NOEQUALS', '--to', `oci:${dir}:x`], 'E_USAGE');
});

test('E_AMBIGUOUS: append to a multi-image index without --platform, and two images for one platform in an index', async () => {
  const tree = makeTree('tree-ambiguous');
  const dir = join(work, 'ambiguous');
  await kilnAppend('scratch', [tree], `oci:${dir}:a1`, { platform: 'linux/amd64' });
  await kilnAppend('scratch', [`${tree}:/other`], `oci:${dir}:a2`, { platform: 'linux/amd64' });
  await kilnAppend('scratch', [tree], `oci:${dir}:s`, { platform: 'linux/s390x' });
  await kilnIndexCreate(`oci:${dir}:multi`, [`oci:${dir}:a1`, `oci:${dir}:s`]);
  const err = await kilnFails(
    ['append', `oci:${dir}:multi`, '--layer', tree, '--to', `oci:${dir}:x`],
    'E_AMBIGUOUS',
  );
  assert.match(err.hint ?? '', /linux\/amd64, linux\/s390x/);
  await kilnAppend(`oci:${dir}:multi`, [tree], `oci:${dir}:x`, { platform: 'linux/s390x' });
  const dup = await kilnFails(
    ['index', 'create', '--to', `oci:${dir}:dup`, `oci:${dir}:a1`, `oci:${dir}:a2`],
    'E_AMBIGUOUS',
  );
  assert.match(dup.message, /linux\/amd64/);
  // The same image twice (directly and through an index) is listed once.
  const once = await kilnIndexCreate(`oci:${dir}:once`, [`oci:${dir}:multi`, `oci:${dir}:a1`]);
  assert.equal(layoutJson<ImageIndex>(dir, once).manifests.length, 2);
});

test('index create of a wasm image and a native one: kiln run picks the wasm entry, a docker-archive copy keeps both (docker load gets the native)', async () => {
  const tree = makeTree('tree-index');
  const dir = join(work, 'index');
  await kilnDigest(['package', HELLO_WASM, '--to', `oci:${dir}:wasm`]);
  await kilnAppend('scratch', [tree], `oci:${dir}:native`); // the host's platform
  const version = ['--annotation', 'org.opencontainers.image.version=1.0'];
  const digest = await kilnIndexCreate(`oci:${dir}:multi`, [`oci:${dir}:wasm`, `oci:${dir}:native`], version);
  const index = layoutJson<ImageIndex>(dir, digest);
  assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
  assert.deepEqual(
    index.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : '?')),
    ['wasip1/wasm', HOST],
  );
  assert.deepEqual(index.annotations, { 'org.opencontainers.image.version': '1.0' });

  assert.match(await kilnOk(['run', `oci:${dir}:multi`, '--', 'from the index']), /hello, from the index/);

  const archive = join(work, 'index-native.tar');
  await kilnOk(['copy', `oci:${dir}:multi`, `docker-archive:${archive}:native:1`]);
  // The archive holds the whole index (index.json); manifest.json, which docker load reads, the native image.
  assert.equal((await kilnJson<{ digest: string }>(['inspect', `docker-archive:${archive}`])).digest, digest);
  const info = await kilnJson<{ image: Descriptor & { platform: { os: string; architecture: string } } }>([
    'inspect',
    `docker-archive:${archive}`,
    '--platform',
    HOST,
  ]);
  assert.equal(formatPlatform(info.image.platform), HOST);
  assert.equal(info.image.digest, index.manifests[1]!.digest);
});

function tool(name: string, args: string[]): Promise<RunResult> {
  return run(requireTool(name)!, name === 'skopeo' ? ['--insecure-policy', ...args] : args, {
    timeoutMs: TIMEOUT,
  });
}

test('skopeo and umoci read what append and mutate write: manifest digest, config, unpacked files', async (t) => {
  const reason = toolSkipReason('skopeo', 'umoci');
  if (reason !== undefined) return t.skip(reason);
  const tree = makeTree('tree-tools');
  const dir = join(work, 'tools');
  await kilnAppend('scratch', [`${tree}:/app`], `oci:${dir}:base`, { platform: 'linux/amd64' });
  const digest = await kilnDigest([
    'mutate',
    `oci:${dir}:base`,
    '--entrypoint',
    '/app/sub/run.sh',
    '--env',
    'MODE=test',
    '--to',
    `oci:${dir}:app`,
  ]);

  const raw = await tool('skopeo', ['inspect', '--raw', `oci:${dir}:app`]);
  ok(raw, 'skopeo inspect --raw');
  assert.equal(sha256(Buffer.from(raw.stdout)), digest);
  const config = await tool('skopeo', ['inspect', '--config', '--raw', `oci:${dir}:app`]);
  ok(config, 'skopeo inspect --config');
  const parsed = JSON.parse(config.stdout) as ImageConfig;
  assert.deepEqual(parsed.config?.Entrypoint, ['/app/sub/run.sh']);
  assert.deepEqual(parsed.config?.Env, ['MODE=test']);

  const stat = await tool('umoci', ['stat', '--json', '--image', `${dir}:app`]);
  ok(stat, 'umoci stat');
  const history = (JSON.parse(stat.stdout) as { history: { created_by: string }[] }).history;
  assert.deepEqual(
    history.map((h) => h.created_by),
    ['kiln append'],
  );

  const bundle = join(work, 'tools-bundle');
  ok(await tool('umoci', ['unpack', '--rootless', '--image', `${dir}:app`, bundle]), 'umoci unpack');
  assert.equal(readFileSync(join(bundle, 'rootfs', 'app', 'a.txt'), 'utf8'), 'alpha\n');
  const runtime = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
    process: { args: string[]; env: string[] };
  };
  assert.deepEqual(runtime.process.args, ['/app/sub/run.sh']);
  assert.ok(runtime.process.env.includes('MODE=test'));
});

test('docker runs a busybox image made from scratch with kiln append and kiln mutate', {
  timeout: 300_000,
}, async (t) => {
  const reason = dockerSkipReason() ?? busyboxSkipReason();
  if (reason !== undefined) return t.skip(reason);
  const rootfs = await busyboxRootfs(join(work, 'busybox-rootfs'));
  const dir = join(work, 'busybox');
  await kilnAppend('scratch', [rootfs], `oci:${dir}:bb`);
  const archive = join(work, 'busybox.tar');
  await kilnDigest([
    'mutate',
    `oci:${dir}:bb`,
    '--env',
    'GREETING=hello from kiln',
    '--entrypoint',
    '["/bin/sh","-c"]',
    '--cmd',
    '["echo \\"$GREETING\\""]',
    '--to',
    `docker-archive:${archive}:kiln-busybox:1`,
  ]);

  const engine = await sharedDocker();
  const load = await engine.docker(['load', '-i', archive], { timeoutMs: TIMEOUT });
  ok(load, 'docker load');
  assert.match(load.stdout, /Loaded image: kiln-busybox:1/);
  const ran = await engine.docker(['run', '--rm', 'kiln-busybox:1'], { timeoutMs: TIMEOUT });
  ok(ran, 'docker run');
  assert.equal(ran.stdout.trim(), 'hello from kiln');
});
