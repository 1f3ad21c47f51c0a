import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { type TestContext, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { isKilnError } from '../../src/errors.js';
import {
  collectEntries,
  deviceNumbers,
  type LayerEntry,
  type SkippedEntry,
} from '../../src/layer/entries.js';
import { MEMBER_SIZE, parallelGzip } from '../../src/layer/gzip.js';
import { expansionLimits, layerStream, listTar } from '../../src/layer/tar-reader.js';
import { tarStream } from '../../src/layer/tar-writer.js';
import { writeLayer } from '../../src/layer/write-layer.js';
import { FRAME_SIZE, isZstd, parallelZstd, unzstd } from '../../src/layer/zstd.js';
import { OciLayout } from '../../src/store/layout.js';
import { sha256 } from '../support/images.js';
import { skipOrFail, toolSkipReason } from '../support/tools.js';

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

async function tmpdir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'kiln-layer-'));
}

async function makeTree(root: string): Promise<void> {
  await fs.mkdir(path.join(root, 'bin'), { recursive: true });
  await fs.mkdir(path.join(root, 'etc/deep'), { recursive: true });
  await fs.writeFile(path.join(root, 'bin/tool'), '#!/bin/sh\necho hi\n', { mode: 0o700 });
  await fs.writeFile(path.join(root, 'etc/config'), 'a=1\n', { mode: 0o600 });
  await fs.writeFile(path.join(root, 'etc/deep/data.bin'), Buffer.alloc(300_000, 7));
  await fs.symlink('../bin/tool', path.join(root, 'etc/tool-link'));
  await fs.link(path.join(root, 'etc/config'), path.join(root, 'etc/config-hardlink'));
  const long = 'x'.repeat(90);
  await fs.mkdir(path.join(root, long, long), { recursive: true });
  await fs.writeFile(path.join(root, long, long, 'file-with-a-long-path.txt'), 'long\n');
}

test('tar of a tree: sorted entries, normalised modes, links kept, long paths via ustar prefix and PAX', async () => {
  const dir = await tmpdir();
  await makeTree(dir);
  const entries = await collectEntries([{ source: dir, dest: '' }]);
  const tar = await collect(tarStream(entries, { mtime: 0 }));
  const read = await listTar([tar]);
  const paths = read.map((e) => e.path);
  assert.deepEqual(
    paths,
    [...paths].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
  );
  const byPath = new Map(read.map((e) => [e.path, e]));
  assert.equal(byPath.get('bin/tool')?.mode, 0o755);
  assert.equal(byPath.get('etc/config')?.mode, 0o644);
  assert.equal(byPath.get('etc')?.mode, 0o755);
  assert.equal(byPath.get('etc/tool-link')?.type, 'symlink');
  assert.equal(byPath.get('etc/tool-link')?.linkname, '../bin/tool');
  assert.equal(byPath.get('etc/config-hardlink')?.type, 'hardlink');
  assert.equal(byPath.get('etc/config-hardlink')?.linkname, 'etc/config');
  const long = `${'x'.repeat(90)}/${'x'.repeat(90)}/file-with-a-long-path.txt`;
  assert.equal(byPath.get(long)?.size, 5);
  for (const e of read) {
    assert.equal(e.uid, 0);
    assert.equal(e.mtime, 0);
  }
  // GNU tar reads the same archive and agrees on names
  const gnu = spawnSync('tar', ['-tvf', '-'], { input: tar });
  assert.equal(gnu.status, 0, gnu.stderr.toString());
  assert.match(gnu.stdout.toString(), /file-with-a-long-path\.txt/);
  assert.match(gnu.stdout.toString(), /etc\/config-hardlink link to etc\/config/);
});

test('PAX headers appear only when a value does not fit ustar', async () => {
  const short: LayerEntry[] = [{ path: 'a.txt', type: 'file', content: Buffer.from('a') }];
  const plain = await collect(tarStream(short, { mtime: 0 }));
  assert.equal(plain.subarray(156, 157).toString(), '0'); // first header is the file itself
  const name = `${'d'.repeat(200)}/${'f'.repeat(120)}`;
  const long: LayerEntry[] = [{ path: name, type: 'file', content: Buffer.from('b') }];
  const pax = await collect(tarStream(long, { mtime: 0 }));
  assert.equal(pax.subarray(156, 157).toString(), 'x');
  const [entry] = await listTar([pax]);
  assert.equal(entry?.path, name);
});

test('the same tree gives the same bytes whatever the mtimes, owners and modes on disk', async () => {
  const a = await tmpdir();
  await makeTree(a);
  const first = await collect(tarStream(await collectEntries([{ source: a, dest: 'app' }]), { mtime: 0 }));
  await fs.utimes(path.join(a, 'etc/config'), 1_000_000, 1_000_000);
  await fs.chmod(path.join(a, 'etc/config'), 0o640);
  if (process.getuid?.() === 0) await fs.lchown(path.join(a, 'bin/tool'), 1234, 4321);
  const second = await collect(tarStream(await collectEntries([{ source: a, dest: 'app' }]), { mtime: 0 }));
  assert.ok(first.equals(second));
});

test('SOURCE_DATE_EPOCH sets every mtime', async () => {
  const entries: LayerEntry[] = [{ path: 'f', type: 'file', content: Buffer.from('x') }];
  const tar = await collect(tarStream(entries, { mtime: 1_700_000_000 }));
  const [e] = await listTar([tar]);
  assert.equal(e?.mtime, 1_700_000_000);
});

test('parallel gzip: concatenated members that any gunzip reads back, deterministic, OS byte fixed', async () => {
  const input = createHash('sha512').update('seed').digest();
  const big = Buffer.alloc(MEMBER_SIZE * 3 + 12345);
  for (let i = 0; i < big.length; i += input.length) input.copy(big, i);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff; // some entropy
  const gz1 = await collect(parallelGzip([big.subarray(0, 1000), big.subarray(1000)]));
  const gz2 = await collect(parallelGzip([big]));
  assert.ok(gz1.equals(gz2), 'member boundaries depend on content only, not on how it was chunked');
  assert.ok(gunzipSync(gz1).equals(big));
  assert.equal(gz1[9], 3);
  const gnu = spawnSync('gzip', ['-dc'], { input: gz1, maxBuffer: 64 << 20 });
  assert.equal(gnu.status, 0);
  assert.ok(gnu.stdout.equals(big));
  const empty = await collect(parallelGzip([]));
  assert.equal(gunzipSync(empty).length, 0);
});

test('parallel zstd: concatenated frames that zstd -dc and kiln read back, the same bytes for any parallelism', async (t) => {
  const input = createHash('sha512').update('seed').digest();
  const big = Buffer.alloc(FRAME_SIZE * 2 + 12345);
  for (let i = 0; i < big.length; i += input.length) input.copy(big, i);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
  const z1 = await collect(parallelZstd([big.subarray(0, 1000), big.subarray(1000)], { parallel: 2 }));
  const z2 = await collect(parallelZstd([big], { parallel: 9 }));
  assert.ok(z1.equals(z2), 'frame boundaries depend on content only, not on chunks or cores');
  assert.ok(isZstd(z1));
  assert.ok((await collect(unzstd([z1.subarray(0, 7), z1.subarray(7)]))).equals(big));
  const empty = await collect(parallelZstd([]));
  assert.equal((await collect(unzstd([empty]))).length, 0);
  const noZstd = toolSkipReason('zstd');
  if (noZstd) return t.skip(noZstd);
  const cli = spawnSync('zstd', ['-dcq'], { input: z1, maxBuffer: 64 << 20 });
  assert.equal(cli.status, 0, cli.stderr.toString());
  assert.ok(cli.stdout.equals(big));
});

test('writeLayer with zstd: the zstd media type, a blob zstd -dc turns into the diff_id, a listable tar', async (t) => {
  const dir = await tmpdir();
  await makeTree(dir);
  const store = await OciLayout.open(path.join(dir, '..', `${path.basename(dir)}-zstore`), { create: true });
  const entries = await collectEntries([{ source: dir, dest: '' }]);
  const layer = await writeLayer(store, entries, { mtime: 0, compression: 'zstd' });
  assert.equal(layer.descriptor.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
  const blob = await fs.readFile(store.blobPath(layer.descriptor.digest));
  assert.equal(sha256(blob), layer.descriptor.digest);
  const listed = (await listTar([blob])).map((e) => e.path);
  assert.ok(listed.includes('etc/deep/data.bin') && listed.includes('bin/tool'), listed.join(' '));
  const noZstd = toolSkipReason('zstd');
  if (noZstd) return t.skip(noZstd);
  const cli = spawnSync('zstd', ['-dcq'], { input: blob, maxBuffer: 64 << 20 });
  assert.equal(cli.status, 0);
  assert.equal(sha256(cli.stdout), layer.diffId);
  assert.equal(cli.stdout.length, layer.uncompressedSize);
});

test('a zstd bomb stops at the expansion limit, as a gzip bomb does', async () => {
  const zeros = (function* () {
    for (let i = 0; i < 20; i++) yield Buffer.alloc(4 << 20); // 80 MiB of zeros, past EXPANSION_GRACE
  })();
  const bomb = await collect(parallelZstd(zeros));
  assert.ok(bomb.length < 64 << 10, `${bomb.length} bytes`);
  await assert.rejects(
    collect(layerStream([bomb], 'the bomb', expansionLimits({ maxExpansion: 100 }, {}))),
    (e: unknown) => isKilnError(e) && e.code === 'E_TOO_LARGE' && /likely zstd bomb/.test(e.message),
  );
  await assert.rejects(
    collect(layerStream([bomb], 'the bomb', expansionLimits({ maxLayerSize: 8 << 20 }, {}))),
    (e: unknown) => isKilnError(e) && e.code === 'E_TOO_LARGE',
  );
  assert.equal(
    (await collect(layerStream([bomb], 'the bomb', expansionLimits({ maxExpansion: Infinity }, {})))).length,
    80 << 20,
  );
});

test('writeLayer computes digest and diff_id in one pass and stores a verified blob', async () => {
  const dir = await tmpdir();
  await makeTree(dir);
  const store = await OciLayout.open(path.join(dir, '..', `${path.basename(dir)}-store`), { create: true });
  const layer = await writeLayer(store, await collectEntries([{ source: dir, dest: '' }]), { mtime: 0 });
  const blob = await fs.readFile(store.blobPath(layer.descriptor.digest));
  assert.equal(sha256(blob), layer.descriptor.digest);
  assert.equal(blob.length, layer.descriptor.size);
  const tar = gunzipSync(blob);
  assert.equal(sha256(tar), layer.diffId);
  assert.equal(tar.length, layer.uncompressedSize);
});

/** Why device nodes cannot be made here (mknod needs root). */
function mknodSkip(): string | undefined {
  return process.getuid?.() === 0 ? undefined : skipOrFail('mknod needs root');
}

/**
 * A new tree with char devices (one with a minor over 8 bits and a setuid bit), a block device, a
 * fifo and a socket, which is there while the test runs (Node removes it when its server closes).
 */
async function specialTree(t: TestContext): Promise<string> {
  const root = await tmpdir();
  await fs.mkdir(path.join(root, 'dev'));
  await fs.mkdir(path.join(root, 'run'));
  const sh = (cmd: string, ...args: string[]) => {
    const r = spawnSync(cmd, args, { cwd: root });
    assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  };
  sh('mknod', '-m', '600', 'dev/console', 'c', '5', '1');
  sh('mknod', '-m', '666', 'dev/null', 'c', '1', '3');
  sh('mknod', 'dev/wide', 'c', '300', '70000');
  await fs.chmod(path.join(root, 'dev/wide'), 0o4660);
  sh('mknod', '-m', '660', 'dev/loop9', 'b', '7', '9');
  sh('mkfifo', '-m', '640', 'run/fifo');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(path.join(root, 'run/sock'), resolve));
  await fs.writeFile(path.join(root, 'file'), 'x\n');
  t.after(() => server.close());
  return root;
}

test('device nodes and fifos: written as GNU tar writes them, read back with their numbers; sockets left out', {
  skip: mknodSkip(),
}, async (t) => {
  const dir = await specialTree(t);
  await fs.utimes(path.join(dir, 'dev/null'), 1_000_000, 1_000_000);
  const skipped: SkippedEntry[] = [];
  const entries = await collectEntries([{ source: dir, dest: '' }], { onSkip: (s) => skipped.push(s) });
  assert.deepEqual(skipped, [{ path: 'run/sock', reason: 'socket left out (tar does the same)' }]);
  const tar = await collect(tarStream(entries, { mtime: 1_700_000_000 }));
  const read = new Map((await listTar([tar])).map((e) => [e.path, e]));
  const pick = (p: string) => {
    const e = read.get(p);
    assert.ok(e, `${p} is in the layer`);
    return [e.type, e.mode.toString(8), e.devmajor, e.devminor, e.uid, e.gid, e.size, e.mtime];
  };
  assert.deepEqual(pick('dev/console'), ['char', '600', 5, 1, 0, 0, 0, 1_700_000_000]);
  assert.deepEqual(pick('dev/null'), ['char', '666', 1, 3, 0, 0, 0, 1_700_000_000]);
  // the permission bits are kept, setuid is not
  assert.deepEqual(pick('dev/wide'), ['char', '660', 300, 70000, 0, 0, 0, 1_700_000_000]);
  assert.deepEqual(pick('dev/loop9'), ['block', '660', 7, 9, 0, 0, 0, 1_700_000_000]);
  assert.deepEqual(pick('run/fifo'), ['fifo', '640', undefined, undefined, 0, 0, 0, 1_700_000_000]);
  assert.equal(read.has('run/sock'), false);

  // GNU tar lists them, and its own ustar header for each has the same type and device fields.
  const listed = spawnSync('tar', ['-tvf', '-'], { input: tar });
  assert.equal(listed.status, 0, listed.stderr.toString());
  assert.match(listed.stdout.toString(), /^crw------- 0\/0 +5,1 .* dev\/console$/m);
  assert.match(listed.stdout.toString(), /^crw-rw---- 0\/0 +300,70000 .* dev\/wide$/m);
  assert.match(listed.stdout.toString(), /^brw-rw---- 0\/0 +7,9 .* dev\/loop9$/m);
  assert.match(listed.stdout.toString(), /^prw-r----- 0\/0 +0 .* run\/fifo$/m);
  const fields = (b: Buffer) => [b.subarray(156, 157), b.subarray(329, 345)].map((f) => f.toString('latin1'));
  for (const p of ['dev/console', 'dev/wide', 'dev/loop9', 'run/fifo']) {
    const gnu = spawnSync('tar', ['--format=ustar', '--numeric-owner', '-cf', '-', p], { cwd: dir });
    assert.equal(gnu.status, 0, gnu.stderr.toString());
    const ours = await collect(tarStream(entries.filter((e) => e.path === p)));
    assert.deepEqual(fields(ours), fields(gnu.stdout), p);
  }

  // Deterministic: the device's mtime on disk does not matter.
  await fs.utimes(path.join(dir, 'dev/null'), 2_000_000, 2_000_000);
  const again = await collect(
    tarStream(await collectEntries([{ source: dir, dest: '' }]), { mtime: 1_700_000_000 }),
  );
  assert.ok(again.equals(tar));
});

test('devices skip leaves device nodes and fifos out, each named; refuse fails on the first', {
  skip: mknodSkip(),
}, async (t) => {
  const dir = await specialTree(t);
  const skipped: SkippedEntry[] = [];
  const entries = await collectEntries([{ source: dir, dest: 'root' }], {
    devices: 'skip',
    onSkip: (s) => skipped.push(s),
  });
  assert.deepEqual(
    entries.map((e) => e.path),
    ['root', 'root/dev', 'root/file', 'root/run'],
  );
  assert.deepEqual(skipped.map((s) => `${s.path}: ${s.reason}`).sort(), [
    'root/dev/console: device node left out (--devices skip)',
    'root/dev/loop9: device node left out (--devices skip)',
    'root/dev/null: device node left out (--devices skip)',
    'root/dev/wide: device node left out (--devices skip)',
    'root/run/fifo: fifo left out (--devices skip)',
    'root/run/sock: socket left out (tar does the same)',
  ]);
  await assert.rejects(
    collectEntries([{ source: path.join(dir, 'dev'), dest: '' }], { devices: 'refuse' }),
    (err) => {
      assert.ok(isKilnError(err, 'E_UNSUPPORTED'), String(err));
      assert.match(err.message, /dev\/console is a device node, refused \(--devices refuse\)$/);
      assert.match(err.hint ?? '', /--devices keep/);
      return true;
    },
  );
});

test('device numbers are split from a 64-bit dev_t as glibc splits them', () => {
  const makedev = (major: bigint, minor: bigint) =>
    Number(
      ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n),
    );
  for (const [major, minor] of [
    [0, 0],
    [1, 3],
    [5, 1],
    [259, 0],
    [4095, 1048575],
    [0x12345, 0x6789a],
  ] as const)
    assert.deepEqual(deviceNumbers(makedev(BigInt(major), BigInt(minor))), {
      devmajor: major,
      devminor: minor,
    });
});
