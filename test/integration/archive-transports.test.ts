/**
 * `docker-archive:` and `oci-archive:` through the built CLI (`npm run build`): what kiln writes it
 * reads back with the same digests and annotations, an index keeps every platform, and writing a
 * tag into an existing oci-archive keeps the others. Archives are taken apart with the system tar.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatPlatform, hostPlatform } from '../../src/oci/platform.js';
import { kiln, kilnDigest, kilnIndexCreate } from '../support/kiln.js';
import { ok, runOk } from '../support/tools.js';

const HELLO_WASM = fileURLToPath(new URL('../../examples/hello/hello.wasm', import.meta.url));
const HOST = formatPlatform(hostPlatform());
const VARIANT = 'module.wasm.image/variant';

const work = mkdtempSync(join(tmpdir(), 'kiln-archives-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Inspected {
  digest: string;
  synthesized?: boolean;
  manifests?: { digest: string; platform?: { os: string; architecture: string } }[];
  image?: { digest: string; config: { digest: string }; annotations?: Record<string, string> };
}

async function inspectJson(ref: string, ...extra: string[]): Promise<Inspected> {
  const r = await kiln(['inspect', ref, '--json', ...extra]);
  ok(r, `kiln inspect ${ref}`);
  return JSON.parse(r.stdout) as Inspected;
}

/** A member of a tar file, read with the system tar. */
async function member(archive: string, name: string): Promise<string> {
  return (await runOk('tar', ['-xOf', archive, name])).stdout;
}

async function members(archive: string): Promise<string[]> {
  return (await runOk('tar', ['-tf', archive])).stdout.split('\n').filter((l) => l !== '');
}

function makeTree(name: string): string {
  const dir = join(work, name);
  mkdirSync(join(dir, 'sub'), { recursive: true });
  writeFileSync(join(dir, 'a.txt'), `${name}\n`);
  writeFileSync(join(dir, 'sub', 'run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 });
  return dir;
}

test('docker-archive: kiln reads back the manifest it wrote (same digest, annotations kept), by NAME:TAG or alone', async () => {
  const archive = join(work, 'app.tar');
  const digest = await kilnDigest(['package', HELLO_WASM, '--to', `docker-archive:${archive}:app:1`]);

  const alone = await inspectJson(`docker-archive:${archive}`);
  assert.equal(alone.digest, digest);
  assert.equal(alone.synthesized, undefined);
  assert.ok(alone.image?.annotations?.[VARIANT], JSON.stringify(alone.image?.annotations));
  assert.equal((await inspectJson(`docker-archive:${archive}:app:1`)).digest, digest);
  assert.equal((await inspectJson(`docker-archive:${archive}:docker.io/library/app:1`)).digest, digest);
  const missing = await kiln(['inspect', `docker-archive:${archive}:app:2`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /E_NOT_FOUND/);

  const human = await kiln(['inspect', `docker-archive:${archive}`]);
  ok(human, 'kiln inspect');
  assert.doesNotMatch(human.stdout, /synthesi/);

  const dir = join(work, 'from-archive');
  assert.equal(await kilnDigest(['copy', `docker-archive:${archive}`, `oci:${dir}:c`]), digest);
  const copied = await inspectJson(`oci:${dir}:c`);
  assert.equal(copied.digest, digest);
  assert.deepEqual(copied.image?.annotations, alone.image?.annotations);
});

test('docker-archive without an OCI index (a plain docker save): the manifest is synthesised and inspect says so', async () => {
  const archive = join(work, 'plain-src.tar');
  const digest = await kilnDigest(['package', HELLO_WASM, '--to', `docker-archive:${archive}:app:1`]);
  const { image } = await inspectJson(`docker-archive:${archive}`);
  const unpacked = join(work, 'plain-unpacked');
  mkdirSync(unpacked);
  await runOk('tar', ['-xf', archive, '-C', unpacked]);
  const plain = join(work, 'plain.tar');
  await runOk('tar', ['-cf', plain, '-C', unpacked, 'manifest.json', 'repositories', 'blobs']);

  const json = await inspectJson(`docker-archive:${plain}:app:1`);
  assert.equal(json.synthesized, true);
  assert.notEqual(json.digest, digest, 'a synthesised manifest has a digest of its own');
  assert.equal(json.image?.config.digest, image?.config.digest);
  const human = await kiln(['inspect', `docker-archive:${plain}`]);
  ok(human, 'kiln inspect');
  assert.match(human.stdout, /manifest synthesised from a Docker archive \(no OCI index in the archive\)/);
});

/** oci:DIR:multi, an index of the wasm image and one of the host's platform. */
async function wasmAndNative(dir: string): Promise<{ index: string; wasm: string; native: string }> {
  const wasm = await kilnDigest(['package', HELLO_WASM, '--to', `oci:${dir}:wasm`]);
  const native = await kilnDigest([
    'append',
    'scratch',
    '--layer',
    makeTree(`${dir}-tree`),
    '--to',
    `oci:${dir}:native`,
  ]);
  const index = await kilnIndexCreate(`oci:${dir}:multi`, [`oci:${dir}:wasm`, `oci:${dir}:native`]);
  return { index, wasm, native };
}

test('an index copied to docker-archive: keeps every platform in index.json; manifest.json names the host image; --platform picks one', async () => {
  const dir = join(work, 'multi');
  const { index, wasm, native } = await wasmAndNative(dir);
  const archive = join(work, 'multi.tar');
  assert.equal(await kilnDigest(['copy', `oci:${dir}:multi`, `docker-archive:${archive}:multi:1`]), index);

  const back = await inspectJson(`docker-archive:${archive}`);
  assert.equal(back.digest, index);
  assert.deepEqual(
    back.manifests?.map((m) => m.digest),
    [wasm, native],
  );
  const list = JSON.parse(await member(archive, 'manifest.json')) as { Config: string; RepoTags: string[] }[];
  const nativeConfig = (await inspectJson(`oci:${dir}:native`)).image!.config.digest;
  assert.deepEqual(
    list.map((e) => [e.Config, e.RepoTags]),
    [[`blobs/sha256/${nativeConfig.slice(7)}`, ['multi:1']]],
  );
  // Every image's blobs are in the archive: both platforms copy out and the wasm one runs.
  assert.equal((await inspectJson(`docker-archive:${archive}`, '--platform', HOST)).image?.digest, native);
  const out = join(work, 'multi-back');
  assert.equal(await kilnDigest(['copy', `docker-archive:${archive}:multi:1`, `oci:${out}:m`]), index);
  const ran = await kiln(['run', `docker-archive:${archive}`, '--', 'from the archive']);
  ok(ran, 'kiln run');
  assert.match(ran.stdout, /hello, from the archive/);

  const one = join(work, 'multi-wasm.tar');
  const picked = await kilnDigest([
    'copy',
    '--platform',
    'wasip1/wasm',
    `oci:${dir}:multi`,
    `docker-archive:${one}:w:1`,
  ]);
  assert.equal(picked, wasm);
  assert.equal((await inspectJson(`docker-archive:${one}`)).digest, wasm);
});

test('oci-archive: writing a tag keeps the archive’s other tags; rewriting one replaces only it', async () => {
  const archive = join(work, 'tags.tar');
  const a1 = await kilnDigest(['package', HELLO_WASM, '--to', `oci-archive:${archive}:a`]);
  const b = await kilnDigest([
    'append',
    'scratch',
    '--layer',
    makeTree('tags-tree'),
    '--to',
    `oci-archive:${archive}:b`,
  ]);
  assert.equal((await inspectJson(`oci-archive:${archive}:a`)).digest, a1);
  assert.equal((await inspectJson(`oci-archive:${archive}:b`)).digest, b);

  const a2 = await kilnDigest([
    'package',
    HELLO_WASM,
    '--annotation',
    'org.opencontainers.image.version=2',
    '--to',
    `oci-archive:${archive}:a`,
  ]);
  assert.notEqual(a2, a1);
  assert.equal((await inspectJson(`oci-archive:${archive}:a`)).digest, a2);
  assert.equal((await inspectJson(`oci-archive:${archive}:b`)).digest, b);
  const index = JSON.parse(await member(archive, 'index.json')) as {
    manifests: { digest: string; annotations: Record<string, string> }[];
  };
  assert.deepEqual(
    index.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], m.digest]).sort(),
    [
      ['a', a2],
      ['b', b],
    ],
  );
  const names = await members(archive);
  assert.ok(!names.includes(`blobs/sha256/${a1.slice(7)}`), 'the replaced manifest is gone');
  assert.equal(new Set(names).size, names.length, 'no member twice');
  // Copying out the kept tag reads every blob of it.
  assert.equal(await kilnDigest(['copy', `oci-archive:${archive}:b`, `oci:${join(work, 'tags-b')}:b`]), b);

  // A failed write leaves the archive as it was, and no temp file.
  const before = readFileSync(archive);
  const broken = join(work, 'broken');
  await kilnDigest(['append', 'scratch', '--layer', makeTree('broken-tree'), '--to', `oci:${broken}:x`]);
  const manifest = JSON.parse(
    readFileSync(
      join(broken, 'blobs', 'sha256', (await inspectJson(`oci:${broken}:x`)).digest.slice(7)),
      'utf8',
    ),
  ) as { layers: { digest: string }[] };
  writeFileSync(join(broken, 'blobs', 'sha256', manifest.layers[0]!.digest.slice(7)), 'corrupted');
  const failed = await kiln(['copy', `oci:${broken}:x`, `oci-archive:${archive}:c`]);
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /E_SIZE_MISMATCH|E_DIGEST_MISMATCH/);
  assert.ok(readFileSync(archive).equals(before), 'the archive is unchanged');
  assert.deepEqual(
    readdirSync(work).filter((n) => n.includes('tags.tar') && n !== 'tags.tar'),
    [],
  );
});

test('oci-archive: a file there that is not an OCI archive is refused, not overwritten', async () => {
  const file = join(work, 'notes.tar');
  writeFileSync(file, 'not an archive\n'.repeat(100));
  const r = await kiln(['package', HELLO_WASM, '--to', `oci-archive:${file}:a`]);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /E_BAD_ARCHIVE/);
  assert.match(r.stderr, /hint:/);
  assert.equal(readFileSync(file, 'utf8'), 'not an archive\n'.repeat(100));
});
