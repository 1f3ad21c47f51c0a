/**
 * Layers as values, as property tests over random trees (fast-check drives seeds; each tree is built
 * from its seed, so a failure replays with FC_SEED): files of random bytes and modes (exec, setuid,
 * setgid, sticky), directories, symlinks, hard links, fifos, xattrs, owners, mtimes, nested paths.
 * A is two layers (a tree X, then A restated with whiteouts and opaque markers over X); B is A
 * changed at random (deleted subtrees, new entries, content, modes, mtimes, xattrs, types, hard links
 * made and broken). The referee is flattenLayers (flatten.ts), which other tests hold to umoci's
 * and runtimes' semantics.
 *
 * Compared per path: type, mode, uid, gid, mtime, symlink target, xattrs, content digest, and which
 * paths share an inode (hard links). Mtimes are compared too: the diff carries metadata-only changes,
 * so merge(A, diff(A, B)) must give B's mtimes as well.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { diffImages } from '../../src/image/diff.js';
import { type FlatEntry, flattenLayers } from '../../src/image/flatten.js';
import { flattenImage } from '../../src/image/flatten-image.js';
import { listTar } from '../../src/layer/tar-reader.js';
import type { Descriptor, ImageManifest } from '../../src/oci/types.js';
import { OciLayout } from '../../src/store/layout.js';
import { openSource } from '../../src/transport/open.js';
import { type LayerSpec, type Spec, writeImage } from '../support/hostile.js';
import { sha256Of } from '../support/images.js';
import { prng } from '../support/random.js';

const seed = process.env['FC_SEED'] === undefined ? undefined : Number(process.env['FC_SEED']);
const runs = (n: number) => Number(process.env['FC_RUNS'] ?? n);
const params = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns: runs(numRuns),
  ...(seed === undefined ? {} : { seed }),
});

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-diff-props-'));
after(() => fs.rm(work, { recursive: true, force: true }));
const store = await OciLayout.open(path.join(work, 'cache'), { create: true });
let counter = 0;

// ---------------------------------------------------------------------------------------------------
// Random trees

interface Meta {
  type: 'dir' | 'file' | 'symlink' | 'fifo';
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  xattrs?: Record<string, string>;
  content?: Buffer;
  linkname?: string;
}
type Node = Meta | { type: 'hardlink'; target: string };
type Tree = Map<string, Node>;

const NAMES = ['a', 'b', 'c', 'd', 'e.x', 'f'];
const MODES = [0o644, 0o755, 0o600, 0o4755, 0o2755, 0o1777, 0o444, 0o700];
const IDS = [0, 0, 0, 1000, 65534];
const MTIMES = [0, 0, 1_600_000_000, 1_700_000_000];

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const chance = (r: Rand, p: number) => r() < p;

function randomMeta(r: Rand, type: Meta['type']): Meta {
  const meta = {
    type,
    mode:
      type === 'dir' ? pick(r, [0o755, 0o700, 0o1777, 0o2775]) : type === 'symlink' ? 0o777 : pick(r, MODES),
    uid: pick(r, IDS),
    gid: pick(r, IDS),
    mtime: chance(r, 0.2) ? Math.floor(r() * 2_000_000_000) : pick(r, MTIMES),
  } as Meta;
  if (type !== 'symlink' && chance(r, 0.25)) {
    meta.xattrs = { 'user.k': `v${Math.floor(r() * 3)}` };
    if (chance(r, 0.4)) meta.xattrs['security.x'] = `é-${Math.floor(r() * 2)}`;
  }
  return meta;
}

function randomBytes(r: Rand): Buffer {
  const n = chance(r, 0.15) ? 0 : Math.floor(r() * (chance(r, 0.1) ? 70_000 : 600));
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

function randomLeaf(r: Rand, tree: Tree, p: string, depth: number): void {
  const x = r();
  if (x < 0.3 && depth < 3) {
    tree.set(p, randomMeta(r, 'dir'));
    for (const name of NAMES) if (chance(r, 0.35)) randomLeaf(r, tree, `${p}/${name}`, depth + 1);
  } else if (x < 0.8) tree.set(p, { ...randomMeta(r, 'file'), content: randomBytes(r) });
  else if (x < 0.95)
    tree.set(p, {
      ...randomMeta(r, 'symlink'),
      linkname: pick(r, ['a', '../b', '/etc/passwd', 'c/d', 'nowhere']),
    });
  else tree.set(p, randomMeta(r, 'fifo'));
}

function randomTree(r: Rand): Tree {
  const tree: Tree = new Map();
  tree.set('', { ...randomMeta(r, 'dir'), mode: 0o755 });
  for (const name of NAMES) if (chance(r, 0.6)) randomLeaf(r, tree, name, 1);
  addLinks(r, tree, 2);
  return tree;
}

const files = (tree: Tree) => [...tree].filter(([, n]) => n.type === 'file').map(([p]) => p);
const dirs = (tree: Tree) => [...tree].filter(([, n]) => n.type === 'dir').map(([p]) => p);
const join = (d: string, n: string) => (d === '' ? n : `${d}/${n}`);

/** New hard links (at free paths in existing directories) to existing files. */
function addLinks(r: Rand, tree: Tree, n: number): void {
  for (let i = 0; i < n; i++) {
    const targets = files(tree);
    if (targets.length === 0 || !chance(r, 0.6)) continue;
    const p = join(pick(r, dirs(tree)), `${pick(r, NAMES)}.l`);
    if (!tree.has(p)) tree.set(p, { type: 'hardlink', target: pick(r, targets) });
  }
}

function removeSubtree(tree: Tree, p: string): void {
  for (const q of [...tree.keys()]) if (q === p || q.startsWith(`${p}/`)) tree.delete(q);
}

/** Hard links whose target is no longer a file become files of their own. */
function fixLinks(r: Rand, tree: Tree, before: Tree): void {
  for (const [p, n] of tree)
    if (n.type === 'hardlink' && tree.get(n.target)?.type !== 'file') {
      const old = before.get(n.target);
      tree.set(
        p,
        old && old.type === 'file' ? { ...old } : { ...randomMeta(r, 'file'), content: randomBytes(r) },
      );
    }
}

/** B: A with deletions, additions, changed content, metadata, types and hard links. */
function mutate(r: Rand, a: Tree): Tree {
  const b: Tree = new Map([...a].map(([p, n]) => [p, { ...n }]));
  for (const p of [...a.keys()].sort()) {
    const n = b.get(p);
    if (p === '' || !n) continue;
    const x = r();
    if (x < 0.12) removeSubtree(b, p);
    else if (n.type === 'hardlink') {
      const t = a.get(n.target);
      // Broken apart: a file of the same content and metadata, so only the links change.
      if (x < 0.3 && t && t.type === 'file') b.set(p, { ...t });
    } else if (x < 0.2 && n.type === 'file') n.content = randomBytes(r);
    else if (x < 0.25) n.mode = pick(r, n.type === 'dir' ? [0o755, 0o750] : MODES);
    else if (x < 0.3) n.mtime = pick(r, MTIMES) + 1;
    else if (x < 0.35 && n.type !== 'symlink')
      n.xattrs = chance(r, 0.5) ? undefined : { 'user.k': 'changed' };
    else if (x < 0.38) n.uid = pick(r, IDS);
    else if (x < 0.43) {
      // Type changes: a directory becomes a file or symlink, a file a directory.
      removeSubtree(b, p);
      randomLeaf(r, b, p, p.split('/').length);
    } else if (x < 0.5 && n.type === 'dir') {
      // Emptied: every child goes (an opaque directory in the diff, when there were several).
      for (const q of [...b.keys()]) if (q.startsWith(`${p}/`)) b.delete(q);
    }
  }
  for (const d of dirs(b))
    if (d.split('/').length < 3 && chance(r, 0.2)) randomLeaf(r, b, join(d, `${pick(r, NAMES)}n`), 3);
  addLinks(r, b, 2);
  fixLinks(r, b, a);
  return b;
}

// ---------------------------------------------------------------------------------------------------
// Trees as layers

function specOf(p: string, n: Node): Spec {
  const name = p === '' ? './' : p;
  if (n.type === 'hardlink') return { name, type: 'link', linkname: n.target };
  const pax = n.xattrs
    ? Object.fromEntries(Object.entries(n.xattrs).map(([k, v]) => [`SCHILY.xattr.${k}`, v]))
    : undefined;
  const base: Spec = { name, mode: n.mode, uid: n.uid, gid: n.gid, mtime: n.mtime, ...(pax ? { pax } : {}) };
  if (n.type === 'dir') return { ...base, type: 'directory' };
  if (n.type === 'symlink') return { ...base, type: 'symlink', linkname: n.linkname! };
  if (n.type === 'fifo') return { ...base, type: 'fifo' };
  return { ...base, content: n.content! };
}

/** The whole tree: parents before children, hard links after everything (so their targets are there). */
function fullLayer(tree: Tree): Spec[] {
  const sorted = [...tree].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return [
    ...sorted.filter(([, n]) => n.type !== 'hardlink').map(([p, n]) => specOf(p, n)),
    ...sorted.filter(([, n]) => n.type === 'hardlink').map(([p, n]) => specOf(p, n)),
  ];
}

/** `over` restated in full over `under`: whiteouts for what is gone, opaque markers on some directories. */
function restateLayer(r: Rand, under: Tree, over: Tree): Spec[] {
  const out = fullLayer(over);
  const gone = [...under.keys()].filter((p) => p !== '' && !over.has(p));
  for (const p of gone) {
    const i = p.lastIndexOf('/');
    const parent = i === -1 ? '' : p.slice(0, i);
    if (gone.includes(parent) || (parent !== '' && over.get(parent)?.type !== 'dir')) continue;
    out.push({ name: join(parent, `.wh.${p.slice(i + 1)}`), content: '' });
  }
  for (const d of dirs(over))
    if (under.get(d)?.type === 'dir' && chance(r, 0.3))
      out.push({ name: join(d, '.wh..wh..opq'), content: '' });
  return out;
}

interface Made {
  a: { ref: string; layers: Descriptor[] };
  b: { ref: string; layers: Descriptor[] };
  layout: string;
}

async function makeImages(s: number): Promise<Made & { bTree: Tree }> {
  const r = prng(s);
  const x = randomTree(r);
  const a = mutate(r, x);
  const b = mutate(r, a);
  const layout = path.join(work, `l${counter++}`);
  const aLayers: LayerSpec[] = [{ entries: fullLayer(x), gzip: true }, { entries: restateLayer(r, x, a) }];
  // B sometimes over layers of its own (A's first layer, then B restated), sometimes one layer.
  const bLayers: LayerSpec[] = chance(r, 0.5)
    ? [{ entries: fullLayer(b), gzip: true }]
    : [
        { entries: fullLayer(x), gzip: true },
        { entries: restateLayer(r, x, b), gzip: true },
      ];
  const ai = await writeImage(layout, aLayers, { tag: 'a' });
  const bi = await writeImage(layout, bLayers, { tag: 'b' });
  return { a: ai, b: bi, layout, bTree: b };
}

// ---------------------------------------------------------------------------------------------------
// Comparing flattened filesystems

interface Seen {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname?: string;
  xattrs?: Record<string, string>;
  digest?: string;
  /** The first path (sorted) of the inode when it has several. */
  group?: string;
}

/** The flattened filesystem of `layers` read from the layout of `ref`, hard links resolved into groups. */
async function flatOf(ref: string, layers: Descriptor[]): Promise<Record<string, Seen>> {
  const source = await openSource(ref);
  const out = new Map<string, Seen>();
  const links = new Map<string, string>();
  try {
    for await (const item of flattenLayers(source, layers)) {
      assert.equal(item.kind, 'entry', `no issues expected: ${JSON.stringify(item)}`);
      if (item.kind !== 'entry') continue;
      const e: FlatEntry = item.entry;
      if (e.type === 'hardlink') {
        links.set(e.path, e.linkname!);
        continue;
      }
      const seen: Seen = { type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime };
      if (e.linkname !== undefined) seen.linkname = e.linkname;
      if (e.xattrs) seen.xattrs = e.xattrs;
      if (item.content) {
        seen.digest = (await sha256Of(item.content)).slice('sha256:'.length);
      }
      out.set(e.path, seen);
    }
  } finally {
    await source.close();
  }
  const groups = new Map<string, string[]>();
  for (const [p, t] of links) {
    let target = t;
    while (links.has(target)) target = links.get(target)!;
    assert.ok(out.has(target), `hard link ${p} -> ${t} has a target`);
    out.set(p, { ...out.get(target)! });
    groups.set(target, [...(groups.get(target) ?? [target]), p]);
  }
  for (const names of groups.values()) {
    const first = names.sort()[0]!;
    for (const n of names) out.get(n)!.group = first;
  }
  return Object.fromEntries([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function manifestOf(layout: string, tag: string): Promise<ImageManifest> {
  const st = await OciLayout.open(layout);
  const desc = await st.resolve(tag);
  return JSON.parse((await st.readBlob(desc.digest)).toString()) as ImageManifest;
}

async function tarNames(layout: string, layer: Descriptor): Promise<string[]> {
  const file = path.join(layout, 'blobs', 'sha256', layer.digest.slice('sha256:'.length));
  return (await listTar([await fs.readFile(file)])).map((e) => e.path);
}

// ---------------------------------------------------------------------------------------------------
// Properties

test('merge(A, diff(A, B)) has the filesystem of B', async () => {
  let withWhiteouts = 0;
  let withOpaque = 0;
  const batch = () =>
    fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (s) => {
        const m = await makeImages(s);
        const to = `oci:${m.layout}:d`;
        const d = await diffImages({ lower: m.a.ref, upper: m.b.ref, to, store });
        assert.equal(d.reused, false);
        assert.equal(d.layers.length, 1);
        withWhiteouts += d.counts!.deleted > 0 ? 1 : 0;
        withOpaque += d.counts!.opaque > 0 ? 1 : 0;
        const dm = await manifestOf(m.layout, 'd');
        assert.deepEqual(
          dm.layers.map((l) => l.digest),
          d.layers.map((l) => l.descriptor.digest),
        );
        const merged = await flatOf(m.a.ref, [...m.a.layers, ...dm.layers]);
        const expected = await flatOf(m.b.ref, m.b.layers);
        assert.deepEqual(merged, expected);
        // The layer is sorted, parents before children, and every hard link finds its target before it.
        const names = await tarNames(m.layout, dm.layers[0]!);
        assert.deepEqual(
          names,
          [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))),
        );
      }),
      params(40),
    );
  await batch();
  // The property must not hold vacuously: whiteouts and opaque directories must have been among the
  // cases. A batch of random seeds now and then has no opaque directory (CI saw one); up to three
  // more batches make that a non-event, and a generator that never makes one still fails.
  for (let extra = 0; extra < 3 && runs(40) >= 20 && (withWhiteouts === 0 || withOpaque === 0); extra++)
    await batch();
  if (runs(40) >= 20) {
    assert.ok(withWhiteouts > 0, 'some runs had whiteouts');
    assert.ok(withOpaque > 0, 'some runs had opaque directories');
  }
});

test('diff of identical filesystems has no entries, whatever the layers', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (s) => {
      const r = prng(s);
      const x = randomTree(r);
      const a = mutate(r, x);
      const layout = path.join(work, `same${counter++}`);
      const layered = await writeImage(
        layout,
        [{ entries: fullLayer(x) }, { entries: restateLayer(r, x, a) }],
        { tag: 'a' },
      );
      const single = await writeImage(layout, [{ entries: fullLayer(a), gzip: true }], { tag: 'a1' });
      // Different layers, same filesystem: the general algorithm finds nothing.
      const d = await diffImages({
        lower: layered.ref,
        upper: single.ref,
        output: path.join(layout, 'd.tar'),
        store,
      });
      assert.equal(d.entries, 0, JSON.stringify(d.counts));
      assert.deepEqual(await listTar([await fs.readFile(path.join(layout, 'd.tar'))]), []);
      // The same image: no layer is even read; an empty layer.
      const same = await diffImages({
        lower: layered.ref,
        upper: layered.ref,
        to: `oci:${layout}:same`,
        store,
      });
      assert.equal(same.entries, 0);
      assert.equal(same.layers.length, 1);
    }),
    params(15),
  );
});

test('diff is deterministic and --output gives the same layer as --to', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (s) => {
      const m = await makeImages(s);
      const one = await diffImages({
        lower: m.a.ref,
        upper: m.b.ref,
        output: path.join(m.layout, 'one.tar.gz'),
        store,
      });
      const two = await diffImages({
        lower: m.a.ref,
        upper: m.b.ref,
        output: path.join(m.layout, 'two.tar.gz'),
        store,
      });
      const img = await diffImages({ lower: m.a.ref, upper: m.b.ref, to: `oci:${m.layout}:d`, store });
      assert.equal(one.layers[0]!.descriptor.digest, two.layers[0]!.descriptor.digest);
      assert.equal(one.layers[0]!.descriptor.digest, img.layers[0]!.descriptor.digest);
      assert.equal(one.layers[0]!.diffId, img.layers[0]!.diffId);
      const plain = await diffImages({
        lower: m.a.ref,
        upper: m.b.ref,
        output: path.join(m.layout, 'p.tar'),
        store,
      });
      assert.equal(
        plain.layers[0]!.diffId,
        one.layers[0]!.diffId,
        'the plain tar is the gzip one uncompressed',
      );
      assert.equal(plain.layers[0]!.descriptor.digest, plain.layers[0]!.diffId);
    }),
    params(10),
  );
});

test('when LOWER is a prefix of UPPER, the diff reuses UPPER’s own layers', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      fc.integer({ min: 1, max: 3 }),
      async (s, extra) => {
        const r = prng(s);
        const x = randomTree(r);
        const layout = path.join(work, `prefix${counter++}`);
        const trees = [x];
        for (let i = 0; i < extra; i++) trees.push(mutate(r, trees[trees.length - 1]!));
        const specs: LayerSpec[] = [{ entries: fullLayer(x), gzip: true }];
        for (let i = 1; i < trees.length; i++)
          specs.push({ entries: restateLayer(r, trees[i - 1]!, trees[i]!), gzip: true });
        const lower = await writeImage(layout, specs.slice(0, 1), { tag: 'lower' });
        const upper = await writeImage(layout, specs, { tag: 'upper' });
        const d = await diffImages({ lower: lower.ref, upper: upper.ref, to: `oci:${layout}:d`, store });
        assert.equal(d.reused, true);
        assert.deepEqual(
          d.layers.map((l) => l.descriptor.digest),
          upper.layers.slice(1).map((l) => l.digest),
        );
        const dm = await manifestOf(layout, 'd');
        assert.deepEqual(dm.layers, upper.layers.slice(1));
        assert.deepEqual(
          await flatOf(lower.ref, [...lower.layers, ...dm.layers]),
          await flatOf(upper.ref, upper.layers),
        );
        // --output: one remaining layer is copied byte for byte; several are squashed into one.
        const out = await diffImages({
          lower: lower.ref,
          upper: upper.ref,
          output: path.join(layout, 'o.tar.gz'),
          store,
        });
        if (extra === 1) {
          assert.equal(out.reused, true);
          assert.deepEqual(
            await fs.readFile(path.join(layout, 'o.tar.gz')),
            await fs.readFile(path.join(layout, 'blobs', 'sha256', upper.layers[1]!.digest.slice(7))),
          );
        } else assert.equal(out.reused, false);
      },
    ),
    params(10),
  );
});

test('flatten: one layer with the filesystem of the image, deterministic', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (s) => {
      const m = await makeImages(s);
      const one = await flattenImage({ source: m.a.ref, to: `oci:${m.layout}:flat`, store });
      const two = await flattenImage({ source: m.a.ref, to: `oci:${m.layout}:flat2`, store });
      assert.equal(one.descriptor.digest, two.descriptor.digest);
      const fm = await manifestOf(m.layout, 'flat');
      assert.equal(fm.layers.length, 1);
      assert.deepEqual(await flatOf(m.a.ref, fm.layers), await flatOf(m.a.ref, m.a.layers));
    }),
    params(10),
  );
});

test('a hand-made diff: topmost whiteouts, an opaque directory, hard links made and broken, xattrs', async () => {
  const layout = path.join(work, 'hand');
  const xattr = (v: string) => ({ 'SCHILY.xattr.user.a': v });
  const common: Spec[] = [
    { name: 'bin', type: 'directory', mode: 0o755 },
    { name: 'etc', type: 'directory', mode: 0o755 },
    { name: 'etc/a', content: 'a' },
    { name: 'keep', content: 'k' },
    { name: 'solo', content: 's', mode: 0o4755 },
    { name: 'var', type: 'directory', mode: 0o755 },
    { name: 'var/lib', type: 'directory', mode: 0o755 },
  ];
  const lower = await writeImage(
    layout,
    [
      {
        entries: [
          ...common,
          { name: 'bin/tool', content: 'tool', mode: 0o755, pax: xattr('1') },
          { name: 'etc/b', content: 'b' },
          { name: 'gone', type: 'directory', mode: 0o755 },
          { name: 'gone/sub', type: 'directory', mode: 0o755 },
          { name: 'gone/sub/deep', content: 'd' },
          { name: 'var/lib/x', content: 'x' },
          { name: 'var/lib/y', type: 'symlink', linkname: 'x' },
          { name: 'keep.l', type: 'link', linkname: 'keep' },
        ],
      },
    ],
    { tag: 'lower' },
  );
  const upper = await writeImage(
    layout,
    [
      {
        entries: [
          ...common.map((s) => (s.name === 'etc/a' ? { ...s, content: 'A' } : s)),
          { name: 'bin/tool', content: 'tool', mode: 0o755, pax: xattr('2') },
          { name: 'keep.l', content: 'k' },
          { name: 'var/lib/new', content: 'n' },
          { name: 'solo.l', type: 'link', linkname: 'solo' },
        ],
      },
    ],
    { tag: 'upper' },
  );
  const d = await diffImages({ lower: lower.ref, upper: upper.ref, to: `oci:${layout}:d`, store });
  assert.deepEqual(d.counts, { added: 2, changed: 5, deleted: 2, opaque: 1 });
  const dm = await manifestOf(layout, 'd');
  const file = path.join(layout, 'blobs', 'sha256', dm.layers[0]!.digest.slice(7));
  const listed = await listTar([await fs.readFile(file)]);
  assert.deepEqual(
    listed.map((e) => `${e.path} ${e.type}${e.linkname ? ` ${e.linkname}` : ''}`),
    [
      '.wh.gone file',
      'bin/tool file',
      'etc/.wh.b file',
      'etc/a file',
      'keep file', // its link was broken: both names are written, each a file of its own
      'keep.l file',
      'solo file', // a new link to an unchanged file: the target comes along
      'solo.l hardlink solo',
      'var/lib/.wh..wh..opq file',
      'var/lib/new file',
    ],
  );
  assert.equal(listed.find((e) => e.path === 'solo')!.mode & 0o7777, 0o4755);
  const source = await openSource(`oci:${layout}:d`);
  try {
    for await (const item of flattenLayers(source, dm.layers))
      if (item.kind === 'entry' && item.entry.path === 'bin/tool')
        assert.deepEqual(item.entry.xattrs, { 'user.a': '2' });
  } finally {
    await source.close();
  }
  assert.deepEqual(
    await flatOf(lower.ref, [...lower.layers, ...dm.layers]),
    await flatOf(upper.ref, upper.layers),
  );
  // The config is UPPER's, with the diff's one diff_id and one history entry.
  const st = await OciLayout.open(layout);
  const config = JSON.parse((await st.readBlob(dm.config.digest)).toString());
  assert.deepEqual(config.rootfs.diff_ids, [d.layers[0]!.diffId]);
  assert.deepEqual(
    config.history.map((h: { created_by: string }) => h.created_by),
    ['kiln diff'],
  );
  await assert.rejects(
    diffImages({ lower: lower.ref, upper: upper.ref, store }),
    (err: Error & { code?: string }) => err.code === 'E_USAGE',
  );
});
