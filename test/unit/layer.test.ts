import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { collectEntries, type LayerEntry } from '../../src/layer/entries.js';
import { MEMBER_SIZE, parallelGzip } from '../../src/layer/gzip.js';
import { listTar } from '../../src/layer/tar-reader.js';
import { tarStream } from '../../src/layer/tar-writer.js';
import { writeLayer } from '../../src/layer/write-layer.js';
import { OciLayout } from '../../src/store/layout.js';

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

test('writeLayer computes digest and diff_id in one pass and stores a verified blob', async () => {
  const dir = await tmpdir();
  await makeTree(dir);
  const store = await OciLayout.open(path.join(dir, '..', `${path.basename(dir)}-store`), { create: true });
  const layer = await writeLayer(store, await collectEntries([{ source: dir, dest: '' }]), { mtime: 0 });
  const blob = await fs.readFile(store.blobPath(layer.descriptor.digest));
  assert.equal(`sha256:${createHash('sha256').update(blob).digest('hex')}`, layer.descriptor.digest);
  assert.equal(blob.length, layer.descriptor.size);
  const tar = gunzipSync(blob);
  assert.equal(`sha256:${createHash('sha256').update(tar).digest('hex')}`, layer.diffId);
  assert.equal(tar.length, layer.uncompressedSize);
});
