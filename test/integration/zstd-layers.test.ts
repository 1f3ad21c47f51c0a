/**
 * `--compression zstd` (issue 15): layers kiln writes as zstd, read by the real tools that read them
 * (zstd, skopeo 1.9, containerd 1.6), by kiln itself (unpack), refused where the reader can't
 * (Docker Engine 20.10's docker-daemon load, umoci 0.4.7), and predicted by `kiln check`.
 *
 * Needs zstd, skopeo, umoci; containerd, ctr and docker-registry; dockerd. Outside CI a missing one
 * skips; in CI it fails. The kiln CLI must be built (`npm run build`).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { containerdSkipReason, startContainerd } from '../support/containerd.js';
import { dockerSkipReason, sharedDocker } from '../support/docker.js';
import { kiln, kilnAppend, kilnFails, kilnOk } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { freshPaths, workDir, writeTree } from '../support/temp.js';
import { ok, run, toolSkipReason } from '../support/tools.js';

const TIMEOUT = { timeout: 300_000 };
const work = workDir('kiln-zstd');
const fresh = freshPaths(work);
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const TREE = {
  'etc/app.conf': 'mode=zstd\n',
  'bin/run.sh': '#!/bin/sh\necho hi\n',
  // over one 4 MiB frame, so the blob is several frames
  'data/big.bin': Buffer.alloc(9 << 20, 'kiln zstd layers '),
};

interface Layout {
  dir: string;
  manifest: { layers: { mediaType: string; digest: string }[] };
  config: { rootfs: { diff_ids: string[] } };
}

function readLayout(dir: string): Layout {
  const blob = (d: string) => readFileSync(join(dir, 'blobs', 'sha256', d.slice(7)));
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  const manifest = JSON.parse(blob(index.manifests[0].digest).toString());
  const config = JSON.parse(blob(manifest.config.digest).toString());
  return { dir, manifest, config };
}

/** `kiln append scratch --layer TREE --compression zstd --to oci:DIR:z`. */
async function zstdImage(): Promise<Layout> {
  const tree = writeTree(fresh('tree'), TREE);
  const dir = fresh('oci');
  await kilnAppend('scratch', [tree], `oci:${dir}:z`, {
    platform: 'linux/amd64',
    extra: ['--compression', 'zstd'],
  });
  return readLayout(dir);
}

test('append --compression zstd: the zstd media type, a blob zstd -dc turns into the diff_id, kiln unpack reads it', {
  ...TIMEOUT,
  skip: toolSkipReason('zstd'),
}, async () => {
  const img = await zstdImage();
  const [layer] = img.manifest.layers;
  assert.equal(layer?.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
  const blob = join(img.dir, 'blobs', 'sha256', layer.digest.slice(7));
  const plain = await run('bash', ['-c', `set -o pipefail; zstd -dcq '${blob}' | sha256sum`]);
  assert.equal(`sha256:${ok(plain, 'zstd -dc').split(' ')[0]}`, img.config.rootfs.diff_ids[0]);
  // the same tree written again: the same bytes
  assert.equal((await zstdImage()).manifest.layers[0]?.digest, layer.digest);
  const root = fresh('root');
  await kilnOk(['unpack', `oci:${img.dir}:z`, root]);
  assert.equal(readFileSync(join(root, 'etc/app.conf'), 'utf8'), 'mode=zstd\n');
  assert.equal(sha256(readFileSync(join(root, 'data/big.bin'))), sha256(TREE['data/big.bin']));
});

test('skopeo 1.9 recompresses kiln zstd layers as gzip of the diff_id; umoci 0.4.7 refuses zstd', {
  ...TIMEOUT,
  skip: toolSkipReason('skopeo', 'umoci'),
}, async () => {
  const img = await zstdImage();
  const out = fresh('skopeo');
  // (--dest-decompress leaves zstd as it is in skopeo 1.9: it decompresses gzip only)
  const args = [
    'copy',
    '--dest-compress',
    '--dest-compress-format',
    'gzip',
    `oci:${img.dir}:z`,
    `oci:${out}:g`,
  ];
  ok(await run('skopeo', args), 'skopeo copy');
  const [gz] = readLayout(out).manifest.layers;
  assert.equal(gz?.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  const tar = gunzipSync(readFileSync(join(out, 'blobs', 'sha256', gz.digest.slice(7))));
  assert.equal(sha256(tar), img.config.rootfs.diff_ids[0]);
  const umoci = await run('umoci', ['unpack', '--image', `${img.dir}:z`, fresh('bundle')]);
  assert.notEqual(umoci.code, 0);
  assert.match(umoci.stderr, /not correct mediatype: application\/vnd\.oci\.image\.layer\.v1\.tar\+zstd/);
});

test('containerd 1.6 pulls and unpacks a kiln zstd image (its diff_ids checked), as kiln check --for containerd says', {
  ...TIMEOUT,
  skip: registrySkipReason('none') ?? containerdSkipReason(),
}, async () => {
  const img = await zstdImage();
  const ref = `${(await sharedRegistry('none')).host}/zstd/app:1`;
  await kilnOk(['copy', `oci:${img.dir}:z`, ref]);
  const check = await kiln(['check', ref, '--for', 'containerd,docker', '--json']);
  const verdicts = (
    JSON.parse(check.stdout) as {
      verdicts: { consumer: string; ok: boolean; findings: { rule: string }[] }[];
    }
  ).verdicts;
  assert.equal(verdicts.find((v) => v.consumer === 'containerd')?.ok, true);
  assert.ok(verdicts.find((v) => v.consumer === 'docker')?.findings.some((f) => f.rule === 'docker.zstd'));
  await using c = await startContainerd();
  ok(
    await c.ctr(['images', 'pull', '--plain-http', '--platform', 'linux/amd64', ref], { timeoutMs: 120_000 }),
    'ctr images pull',
  );
  const listed = ok(await c.ctr(['images', 'check', `name==${ref}`]), 'ctr images check');
  assert.match(listed, /complete \(\d+\/\d+\)\s.*\strue\s*$/m, listed);
});

test('docker-daemon: Engine 20.10 is refused a zstd image before the load, naming the layer and --compression gzip', {
  ...TIMEOUT,
  skip: dockerSkipReason(),
}, async () => {
  const engine = await sharedDocker();
  const version = ok(await engine.docker(['version', '--format', '{{.Server.Version}}']), 'docker version');
  if (Number(version.split('.')[0]) >= 23) return; // reads zstd: nothing to refuse
  const img = await zstdImage();
  const err = await kilnFails(['copy', `oci:${img.dir}:z`, 'docker-daemon:kiln-zstd:1'], 'E_UNSUPPORTED', {
    env: { DOCKER_HOST: engine.host },
  });
  assert.match(err.message, /layer 0 is zstd-compressed/);
  assert.match(err.hint ?? '', /--compression gzip/);
  const images = ok(await engine.docker(['images', '--format', '{{.Repository}}']), 'docker images');
  assert.doesNotMatch(images, /kiln-zstd/);
});

test(
  'package --compression zstd: the module in a zstd layer kiln unpack reads back; the default stays gzip',
  TIMEOUT,
  async () => {
    const wasm = new URL('../fixtures/wasm/core-command.wasm', import.meta.url).pathname;
    const zdir = fresh('pkg-zstd');
    const gdir = fresh('pkg-gzip');
    await kilnOk(['package', wasm, '--compression', 'zstd', '--to', `oci:${zdir}:w`]);
    await kilnOk(['package', wasm, '--to', `oci:${gdir}:w`]);
    assert.equal(
      readLayout(zdir).manifest.layers[0]?.mediaType,
      'application/vnd.oci.image.layer.v1.tar+zstd',
    );
    assert.equal(
      readLayout(gdir).manifest.layers[0]?.mediaType,
      'application/vnd.oci.image.layer.v1.tar+gzip',
    );
    const root = fresh('pkg-root');
    await kilnOk(['unpack', `oci:${zdir}:w`, root]);
    assert.ok(readFileSync(join(root, 'core-command.wasm')).equals(readFileSync(wasm)));
  },
);
