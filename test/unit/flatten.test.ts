/**
 * Flattening layers (whiteouts, opaque directories, overrides, hard links across layers) and
 * `exportImage`, on hand-written layers in real OCI layouts.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import { isKilnError, type KilnError } from '../../src/errors.js';
import { exportImage, type FlatEntry, type FlatIssue, flattenLayers } from '../../src/image/flatten.js';
import { parallelZstd } from '../../src/layer/zstd.js';
import { MediaType } from '../../src/oci/media-types.js';
import type { Descriptor } from '../../src/oci/types.js';
import { openSource } from '../../src/transport/open.js';
import { dir, file, type LayerSpec, link, readTar, symlink, tarOf, writeImage } from '../support/hostile.js';

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-flatten-'));
after(() => fs.rm(work, { recursive: true, force: true }));

/** Writes an image of hand-made layers to a new OCI layout; returns its `oci:` reference. */
async function makeImage(name: string, layers: LayerSpec[]): Promise<{ ref: string; layers: Descriptor[] }> {
  const { ref, layers: descs } = await writeImage(path.join(work, name), layers);
  return { ref, layers: descs };
}

interface Flat {
  order: string[];
  entries: Map<string, FlatEntry & { data?: string }>;
  issues: FlatIssue[];
}

async function flatten(ref: string, layers: Descriptor[]): Promise<Flat> {
  const source = await openSource(ref);
  const out: Flat = { order: [], entries: new Map(), issues: [] };
  try {
    for await (const item of flattenLayers(source, layers)) {
      if (item.kind === 'issue') {
        out.issues.push(item);
        continue;
      }
      const e: FlatEntry & { data?: string } = { ...item.entry };
      if (item.content) {
        const parts: Buffer[] = [];
        for await (const c of item.content) parts.push(c);
        e.data = Buffer.concat(parts).toString();
      }
      if (e.type === 'hardlink')
        assert.ok(
          out.entries.has(e.linkname!),
          `hard link ${e.path} -> ${e.linkname} comes after its target (order: ${out.order.join(' ')})`,
        );
      out.order.push(e.path);
      out.entries.set(e.path, e);
    }
  } finally {
    await source.close();
  }
  return out;
}

/** The content a path ends up with, following hard links. */
function contentOf(flat: Flat, p: string): string | undefined {
  let e = flat.entries.get(p);
  while (e?.type === 'hardlink') e = flat.entries.get(e.linkname!);
  return e?.data;
}

test('whiteouts, opaque dirs, overrides, dir replaced by file and file by dir, gzip and plain layers', async () => {
  const img = await makeImage('semantics', [
    {
      gzip: true,
      entries: [
        dir('./'),
        dir('etc', 0o750),
        file('etc/a', 'a0'),
        file('etc/b', 'b0'),
        dir('var'),
        dir('var/lib'),
        file('var/lib/old', 'old'),
        dir('var/lib/sub'),
        file('var/lib/sub/deep', 'deep'),
        dir('opt'),
        file('opt/o1', 'o1'),
        dir('data'),
        file('data/d1', 'd1'),
        file('keep', 'k0', 0o4755),
        file('t', 'was a file'),
        symlink('sl', 'etc/a'),
      ],
    },
    {
      entries: [
        dir('etc'),
        file('etc/.wh.a', ''),
        file('etc/b', 'b1'),
        dir('var/lib'),
        file('var/lib/.wh..wh..opq', ''),
        file('var/lib/new', 'n1'),
        file('opt', 'opt is a file now'),
        dir('t'),
        file('t/inner', 'inner'),
        file('.wh.data', ''),
        file('.wh.sl', ''),
        file('/abs/file', 'absolute'),
      ],
    },
    { gzip: true, entries: [file('etc/a', 'a2'), file('./etc/b', 'b2'), file('etc/.wh.b', '')] },
  ]);
  const flat = await flatten(img.ref, img.layers);
  assert.deepEqual(flat.issues, []);
  const paths = [...flat.entries.keys()].sort();
  assert.deepEqual(paths, [
    '',
    'abs/file',
    'etc',
    'etc/a',
    'etc/b',
    'keep',
    'opt',
    't',
    't/inner',
    'var',
    'var/lib',
    'var/lib/new',
  ]);
  assert.equal(contentOf(flat, 'etc/a'), 'a2', 'a file deleted by a whiteout can come back in a later layer');
  assert.equal(contentOf(flat, 'etc/b'), 'b2', 'the top layer wins; its own whiteout does not hide it');
  assert.equal(flat.entries.get('etc')!.mode, 0o755, 'an upper directory entry replaces the metadata');
  assert.equal(flat.entries.get('keep')!.mode, 0o4755, 'setuid kept');
  assert.equal(flat.entries.get('opt')!.type, 'file');
  assert.equal(flat.entries.get('t')!.type, 'dir');
  assert.equal(flat.entries.get('abs/file')!.data, 'absolute', 'a leading / is dropped, as tar does');
  assert.equal(flat.entries.get('var/lib')!.layer, 1);
  // Streamed top down: each layer once, the top layer's entries first.
  assert.deepEqual(flat.order.slice(0, 2), ['etc/a', 'etc/b']);
});

test('a directory replaced by a file hides everything below it, even when a later layer makes it a directory again', async () => {
  const img = await makeImage('dir-file-dir', [
    { entries: [dir('a'), file('a/x', 'x'), dir('a/sub'), file('a/sub/y', 'y')] },
    { entries: [file('a', 'file')] },
    { entries: [dir('a'), file('a/z', 'z')] },
  ]);
  const flat = await flatten(img.ref, img.layers);
  assert.deepEqual([...flat.entries.keys()].sort(), ['a', 'a/z']);
});

test('a file in a lower layer where an upper layer has a directory (implied by its children) is hidden', async () => {
  const img = await makeImage('implied-dir', [
    { entries: [symlink('link', '/etc'), file('plain', 'p')] },
    { entries: [file('link/passwd', 'mine'), file('plain/x', 'x')] },
  ]);
  const flat = await flatten(img.ref, img.layers);
  assert.deepEqual([...flat.entries.keys()].sort(), ['link/passwd', 'plain/x']);
});

test('hard links: same layer, to a lower layer, to a target replaced or deleted above, chains, broken', async () => {
  const img = await makeImage('links', [
    {
      gzip: true,
      entries: [
        file('base', 'base'),
        file('p', 'p-old'),
        file('r', 'r-old'),
        link('s', 'r'), // target replaced above, same layer: re-read at the end
        link('s2', 's'), // a chain through a link
        file('w', 'w-old'),
        dir('d'),
      ],
    },
    {
      entries: [
        file('f', 'f'),
        link('h', 'f'), // same layer
        link('l', 'base'), // target in the lower layer
        link('q', '/p'), // target replaced by the layer above; absolute as GNU tar writes them
        link('wl', 'w'), // target whited out by the layer above
        link('dl', 'd'),
        link('missing', 'nowhere'),
        link('esc', '../../etc/shadow'),
        file('r', 'r-new'),
      ],
    },
    { entries: [file('p', 'p-new'), file('.wh.w', '')] },
  ]);
  const flat = await flatten(img.ref, img.layers);
  assert.equal(flat.entries.get('h')!.type, 'hardlink');
  assert.equal(flat.entries.get('h')!.linkname, 'f');
  assert.equal(flat.entries.get('l')!.linkname, 'base');
  assert.equal(contentOf(flat, 'l'), 'base');
  assert.equal(contentOf(flat, 'p'), 'p-new');
  assert.equal(contentOf(flat, 'q'), 'p-old', 'the link keeps the content it had when it was made');
  assert.equal(contentOf(flat, 'r'), 'r-new');
  assert.equal(contentOf(flat, 's'), 'r-old');
  assert.equal(contentOf(flat, 's2'), 'r-old');
  assert.ok(
    flat.entries.get('s')!.type === 'hardlink' || flat.entries.get('s2')!.type === 'hardlink',
    's and s2 still share one inode',
  );
  assert.equal(contentOf(flat, 'wl'), 'w-old');
  assert.equal(flat.entries.has('w'), false);
  const issues = Object.fromEntries(flat.issues.map((i) => [i.path, i]));
  assert.match(issues['dl']!.reason, /directory/);
  assert.match(issues['missing']!.reason, /nowhere/);
  assert.equal(issues['esc']!.unsafe, true);
  assert.equal(flat.issues.length, 3);
});

/** Flattens with a source that counts how often each blob is fetched. */
async function countingReads(
  ref: string,
  layers: Descriptor[],
): Promise<{ seen: Record<string, string>; reads: number[] }> {
  const source = await openSource(ref);
  const reads = new Map<string, number>();
  const counting: typeof source = {
    name: source.name,
    resolve: () => source.resolve(),
    fetchManifest: (d) => source.fetchManifest(d),
    fetchBlob: (d) => {
      reads.set(d.digest, (reads.get(d.digest) ?? 0) + 1);
      return source.fetchBlob(d);
    },
    close: () => source.close(),
  };
  const seen: Record<string, string> = {};
  try {
    for await (const item of flattenLayers(counting, layers)) {
      if (item.kind !== 'entry') continue;
      const parts: Buffer[] = [];
      for await (const c of item.content ?? []) parts.push(c);
      seen[item.entry.path] =
        item.entry.type === 'hardlink' ? `-> ${item.entry.linkname}` : Buffer.concat(parts).toString();
    }
  } finally {
    await source.close();
  }
  return { seen, reads: layers.map((l) => reads.get(l.digest) ?? 0) };
}

test('each layer is read once, and again only when a link needs a target it had passed over', async () => {
  const replaced = await makeImage('reads-once', [
    { entries: [file('perl', 'old'), link('perl5', 'perl')] },
    { entries: [file('perl', 'new'), file('perl5', 'new')] },
  ]);
  const once = await countingReads(replaced.ref, replaced.layers);
  assert.deepEqual(once.seen, { perl: 'new', perl5: 'new' });
  assert.deepEqual(once.reads, [1, 1], 'a replaced link and target: nothing to read again');

  const partly = await makeImage('reads-twice', [
    { entries: [file('r', 'r-old'), link('s', 'r')] },
    { entries: [file('r', 'r-new')] },
  ]);
  const twice = await countingReads(partly.ref, partly.layers);
  assert.deepEqual(twice.seen, { r: 'r-new', s: 'r-old' });
  assert.deepEqual(twice.reads, [2, 1], 'the bottom layer again, for the old r that s keeps');
});

test('entries whose paths leave the root are reported unsafe and left out', async () => {
  const img = await makeImage('unsafe', [
    { entries: [file('../escape', 'x'), file('a/../../b', 'y'), file('ok', 'ok'), file('./a/./c', 'c')] },
  ]);
  const flat = await flatten(img.ref, img.layers);
  assert.deepEqual([...flat.entries.keys()].sort(), ['a/c', 'ok']);
  assert.deepEqual(
    flat.issues.map((i) => [i.path, i.unsafe]),
    [
      ['../escape', true],
      ['a/../../b', true],
    ],
  );
});

test('zstd layers are read (by their magic, whatever the media type says); bad zstd is E_BAD_ARCHIVE', async () => {
  const zstd = async (specs: Parameters<typeof tarOf>[0]) => {
    const parts: Buffer[] = [];
    for await (const c of parallelZstd([await tarOf(specs)])) parts.push(c);
    return Buffer.concat(parts);
  };
  const img = await makeImage('zstd', [
    { entries: [], raw: await zstd([file('a', 'a0'), file('b', 'b0')]), mediaType: MediaType.OciLayerZstd },
    { entries: [], raw: await zstd([file('.wh.a', ''), file('c', 'c1')]), mediaType: MediaType.OciLayerGzip },
  ]);
  const flat = await flatten(img.ref, img.layers);
  assert.deepEqual([...flat.order].sort(), ['b', 'c']);
  assert.equal(contentOf(flat, 'c'), 'c1');
  const bad = await makeImage('zstd-bad', [
    {
      entries: [],
      raw: Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]),
      mediaType: MediaType.OciLayerZstd,
    },
  ]);
  await assert.rejects(flatten(bad.ref, bad.layers), (e: KilnError) => {
    assert.equal(e.code, 'E_BAD_ARCHIVE');
    assert.match(e.message, /zstd/);
    return true;
  });
});

test('a corrupt layer fails with E_DIGEST_MISMATCH and exportImage leaves no file behind', async () => {
  const img = await makeImage('corrupt', [
    { gzip: true, entries: [file('a', 'a'.repeat(5000))] },
    { entries: [file('b', 'b'.repeat(5000))] },
  ]);
  // Flip a byte inside the top layer's file content: the tar still parses, only the digest tells.
  const blob = path.join(work, 'corrupt', 'blobs', 'sha256', img.layers[1]!.digest.slice(7));
  const bytes = await fs.readFile(blob);
  bytes[600] = bytes[600]! ^ 1;
  await fs.chmod(blob, 0o644);
  await fs.writeFile(blob, bytes);
  await assert.rejects(flatten(img.ref, img.layers), (e: KilnError) => e.code === 'E_DIGEST_MISMATCH');
  const out = path.join(work, 'corrupt.tar');
  await assert.rejects(exportImage(img.ref, out), (e) => isKilnError(e, 'E_DIGEST_MISMATCH'));
  assert.deepEqual(
    (await fs.readdir(work)).filter((n) => n.includes('corrupt.tar')),
    [],
    'no tar and no temp file',
  );
});

test('exportImage writes the flattened entries as one tar: same paths, types, modes, contents, links in order', async () => {
  const img = await makeImage('export', [
    {
      gzip: true,
      entries: [
        dir('bin', 0o555),
        dir('bin/sub'),
        file('bin/tool', '#!/bin/sh\n', 0o755),
        file('bin/gone', 'x'),
        file('lib', 'l'),
        symlink('bin/sh', 'tool'),
        { name: 'dev/null', type: 'character-device', mode: 0o666 },
      ],
    },
    {
      entries: [
        file('bin/.wh.gone', ''),
        link('bin/tool2', 'bin/tool'),
        file(`${'d'.repeat(120)}/long`, 'long'),
      ],
    },
  ]);
  const flat = await flatten(img.ref, img.layers);
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  const result = await exportImage(img.ref, sink);
  assert.equal(result.entries, flat.entries.size);
  assert.deepEqual(result.issues, []);
  const listed = (await readTar(Buffer.concat(chunks))).map(({ header: h, data }) => ({
    name: h.name,
    type: h.type,
    mode: h.mode,
    linkname: h.linkname,
    data: data.toString(),
  }));
  const names = listed.map((l) => l.name.replace(/\/$/, ''));
  // Same order, but directories last and deepest first, so extractors set their metadata after the files.
  const isDir = (p: string) => flat.entries.get(p)!.type === 'dir';
  const depth = (p: string) => p.split('/').length;
  const dirsLast = [
    ...flat.order.filter((p) => !isDir(p)),
    ...flat.order.filter(isDir).sort((x, y) => depth(y) - depth(x)),
  ];
  assert.deepEqual(names, dirsLast);
  const byName = new Map(listed.map((l) => [l.name.replace(/\/$/, ''), l]));
  assert.equal(byName.get('bin/tool')!.mode, 0o755);
  assert.equal(byName.get('bin/tool')!.data, '#!/bin/sh\n');
  assert.equal(byName.get('bin/sh')!.linkname, 'tool');
  assert.equal(byName.get('bin/tool2')!.type, 'link');
  assert.equal(byName.get('bin/tool2')!.linkname, 'bin/tool');
  assert.equal(byName.get('dev/null')!.type, 'character-device');
  assert.equal(byName.get(`${'d'.repeat(120)}/long`)!.data, 'long');
  assert.equal(byName.has('bin/gone'), false);
  assert.equal(byName.get('bin')!.mode, 0o555);
  assert.deepEqual(names.slice(-2), ['bin/sub', 'bin']);
});
