import * as assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import type { KilnError } from '../../src/errors.js';
import { sha256 } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/media-types.js';
import { OciLayout } from '../../src/store/layout.js';

async function tmp(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'kiln-store-'));
}

async function leftovers(layout: OciLayout): Promise<string[]> {
  return (await fs.readdir(path.join(layout.dir, 'blobs', 'sha256'))).filter((n) => n.startsWith('.'));
}

test('a blob whose content does not match its digest is refused and leaves nothing behind', async () => {
  const layout = await OciLayout.open(path.join(await tmp(), 'l'), { create: true });
  const wrong = sha256('something else');
  await assert.rejects(
    layout.writeBytes(Buffer.from('hello'), { digest: wrong, size: 5 }),
    (e: KilnError) => e.code === 'E_DIGEST_MISMATCH',
  );
  assert.equal(await layout.hasBlob(wrong), false);
  assert.deepEqual(await leftovers(layout), []);
  await assert.rejects(
    layout.writeBytes(Buffer.from('hello'), { digest: sha256('hello'), size: 4 }),
    (e: KilnError) => e.code === 'E_SIZE_MISMATCH',
  );
  assert.deepEqual(await leftovers(layout), []);
});

test('a stream that fails midway leaves no blob and no temp file', async () => {
  const layout = await OciLayout.open(path.join(await tmp(), 'l'), { create: true });
  async function* broken() {
    yield Buffer.from('part');
    throw new Error('connection reset');
  }
  await assert.rejects(layout.writeBlob(broken()));
  assert.deepEqual(await leftovers(layout), []);
  assert.deepEqual((await fs.readdir(path.join(layout.dir, 'blobs', 'sha256'))).length, 0);
});

test('parallel tag updates to index.json are never lost', async () => {
  const dir = path.join(await tmp(), 'l');
  const layout = await OciLayout.open(dir, { create: true });
  const descs = await Promise.all(
    Array.from({ length: 24 }, async (_, i) => {
      const bytes = Buffer.from(JSON.stringify({ n: i }));
      const w = await layout.writeBytes(bytes);
      return { mediaType: MediaType.OciManifest, digest: w.digest, size: w.size };
    }),
  );
  // separate OciLayout objects, as separate processes would have
  await Promise.all(descs.map(async (d, i) => (await OciLayout.open(dir)).tag(d, `t${i}`)));
  const index = await layout.readIndex();
  assert.equal(index.manifests.length, 24);
  for (let i = 0; i < 24; i++) assert.equal((await layout.resolve(`t${i}`)).digest, descs[i]!.digest);
});

test('retagging replaces the old entry; resolving without a tag needs exactly one image', async () => {
  const layout = await OciLayout.open(path.join(await tmp(), 'l'), { create: true });
  const a = await layout.writeBytes(Buffer.from('{"a":1}'));
  const b = await layout.writeBytes(Buffer.from('{"b":1}'));
  await layout.tag({ mediaType: MediaType.OciManifest, ...a }, 'x');
  assert.equal((await layout.resolve()).digest, a.digest);
  await layout.tag({ mediaType: MediaType.OciManifest, ...b }, 'x');
  assert.equal((await layout.readIndex()).manifests.length, 1);
  await layout.tag({ mediaType: MediaType.OciManifest, ...a }, 'y');
  await assert.rejects(
    layout.resolve(),
    (e: KilnError) => e.code === 'E_AMBIGUOUS' && /x, y/.test(e.hint ?? ''),
  );
  await assert.rejects(layout.resolve('nope'), (e: KilnError) => e.code === 'E_NOT_FOUND');
});

test('a referrers fallback tag (an SBOM index) does not make an untagged layout ambiguous', async () => {
  const layout = await OciLayout.open(path.join(await tmp(), 'l'), { create: true });
  const image = await layout.writeBytes(Buffer.from('{"image":1}'));
  const referrers = await layout.writeBytes(Buffer.from('{"manifests":[]}'));
  await layout.tag({ mediaType: MediaType.OciManifest, ...image }, 'app');
  await layout.tag({ mediaType: MediaType.OciIndex, ...referrers }, image.digest.replace(':', '-'));
  assert.equal((await layout.resolve()).digest, image.digest);
  assert.equal(
    (await layout.resolve(image.digest.replace(':', '-'))).digest,
    referrers.digest,
    'still by tag',
  );
  await layout.tag({ mediaType: MediaType.OciIndex, ...referrers }, 'sha256-not-a-digest');
  await assert.rejects(layout.resolve(), (e: KilnError) => e.code === 'E_AMBIGUOUS');
});

test('a directory that is not a layout is neither read nor written into', async () => {
  const dir = await tmp();
  await fs.writeFile(path.join(dir, 'notes.txt'), 'mine');
  await assert.rejects(OciLayout.open(dir), (e: KilnError) => e.code === 'E_BAD_LAYOUT');
  await assert.rejects(OciLayout.open(dir, { create: true }), (e: KilnError) => e.code === 'E_BAD_LAYOUT');
  assert.deepEqual(await fs.readdir(dir), ['notes.txt']);
  await assert.rejects(OciLayout.open(path.join(dir, 'missing')), (e: KilnError) => e.code === 'E_NOT_FOUND');
});

test('a corrupted blob is detected when read', async () => {
  const layout = await OciLayout.open(path.join(await tmp(), 'l'), { create: true });
  const w = await layout.writeBytes(Buffer.from('{"ok":true}'));
  await fs.writeFile(layout.blobPath(w.digest), '{"ok":false}');
  await assert.rejects(layout.readBlob(w.digest), (e: KilnError) => e.code === 'E_DIGEST_MISMATCH');
});
