/**
 * `kiln diff` and `kiln flatten` end to end through the built CLI, on a busybox image made with
 * `kiln append`: the whiteouts `tar -tzvf` lists, the diff appended back onto LOWER (BuildKit's
 * MergeOp) unpacking to UPPER's tree, and flattened images checked by `umoci unpack` and `kiln unpack`
 * against the multi-layer original. Needs `npm run build`; busybox, tar and umoci (missing: a skip
 * outside CI, a failure in CI).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { dir, file, symlink, tarOf } from '../support/hostile.js';
import { sha256hex } from '../support/images.js';
import { kiln, kilnOk as kilnRun } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry, startRequestLog } from '../support/registry.js';
import { workDir } from '../support/temp.js';
import { ok, requireTool, run, toolSkipReason } from '../support/tools.js';

const work = workDir('kiln-diff-flatten');
const layout = path.join(work, 'oci');
const ref = (tag: string) => `oci:${layout}:${tag}`;

/** Runs kiln, which must succeed; its stdout, trimmed. */
const kilnOk = async (args: string[]) => (await kilnRun(args)).trim();

interface Listed {
  type: string;
  mode: number;
  what: string;
  mtime?: number;
}

/** Every path under `root` with its type, mode, content hash or link target (and mtime, but not of symlinks). */
async function listDir(root: string): Promise<Record<string, Listed>> {
  const out: Record<string, Listed> = {};
  async function walk(rel: string): Promise<void> {
    for (const name of (await fs.readdir(path.join(root, rel))).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const full = path.join(root, r);
      const st = await fs.lstat(full);
      const mode = st.mode & 0o7777;
      const mtime = Math.floor(st.mtimeMs / 1000);
      if (st.isDirectory()) {
        out[r] = { type: 'dir', mode, what: '', mtime };
        await walk(r);
      } else if (st.isSymbolicLink()) out[r] = { type: 'symlink', mode: 0, what: await fs.readlink(full) };
      else if (st.isFile())
        out[r] = {
          type: 'file',
          mode,
          what: sha256hex(await fs.readFile(full)),
          mtime,
        };
      else out[r] = { type: 'other', mode, what: '', mtime };
    }
  }
  await walk('');
  return out;
}

async function unpacked(image: string, name: string): Promise<Record<string, Listed>> {
  const dest = path.join(work, name);
  await kilnOk(['unpack', image, dest]);
  return listDir(dest);
}

let built: Promise<void> | undefined;

/**
 * base: a busybox rootfs plus files to delete; app: base + a hand-made tar layer with whiteouts (a
 * file, a whole directory, an opaque directory) and changes + a directory layer.
 */
function buildImages(): Promise<void> {
  built ??= (async () => {
    const rootfs = path.join(work, 'rootfs');
    await fs.mkdir(path.join(rootfs, 'bin'), { recursive: true });
    await fs.copyFile(requireTool('busybox')!, path.join(rootfs, 'bin', 'busybox'));
    for (const applet of ['sh', 'ls', 'cat']) await fs.symlink('busybox', path.join(rootfs, 'bin', applet));
    await fs.mkdir(path.join(rootfs, 'etc'));
    await fs.writeFile(path.join(rootfs, 'etc', 'a'), 'a\n');
    await fs.writeFile(path.join(rootfs, 'etc', 'b'), 'b\n');
    await fs.mkdir(path.join(rootfs, 'var', 'lib'), { recursive: true });
    for (const n of ['x', 'y', 'z']) await fs.writeFile(path.join(rootfs, 'var', 'lib', n), n);
    await fs.mkdir(path.join(rootfs, 'gone', 'sub'), { recursive: true });
    await fs.writeFile(path.join(rootfs, 'gone', 'sub', 'deep'), 'deep');
    await kilnOk(['append', 'scratch', '--platform', 'linux/amd64', '--layer', rootfs, '--to', ref('base')]);

    const changes = path.join(work, 'changes.tar');
    await fs.writeFile(
      changes,
      await tarOf([
        file('.wh.gone', ''),
        dir('etc'),
        file('etc/.wh.b', ''),
        file('etc/a', 'A\n', 0o600),
        dir('var/lib'),
        file('var/lib/.wh..wh..opq', ''),
        file('var/lib/fresh', 'fresh'),
        symlink('bin/vi', 'busybox'),
      ]),
    );
    const app = path.join(work, 'app');
    await fs.mkdir(path.join(app, 'sub'), { recursive: true });
    await fs.writeFile(path.join(app, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
    await fs.writeFile(path.join(app, 'sub', 'data'), 'data');
    await kilnOk([
      'append',
      ref('base'),
      '--layer',
      changes,
      '--layer',
      `${app}:/opt/app`,
      '--to',
      ref('app'),
    ]);
  })();
  return built;
}

const skip = () => toolSkipReason('busybox', 'tar');

test('kiln diff --output: tar -tzvf lists the whiteouts, and LOWER + the diff unpacks to UPPER', async (t) => {
  const reason = skip();
  if (reason !== undefined) return t.skip(reason);
  await buildImages();
  // UPPER flattened is not a prefix of anything: the diff is computed entry by entry.
  await kilnOk(['flatten', ref('app'), '--to', ref('app-flat')]);
  const layer = path.join(work, 'diff.tar.gz');
  const r = await kiln(['--json', 'diff', ref('base'), ref('app-flat'), '--output', layer]);
  ok(r, 'kiln diff');
  const result = JSON.parse(r.stdout) as { reused: boolean; counts: Record<string, number>; entries: number };
  assert.equal(result.reused, false);
  const listing = await run(requireTool('tar')!, ['-tzvf', layer]);
  ok(listing, 'tar -tzvf');
  const names = listing.stdout
    .trim()
    .split('\n')
    .map((l) => l.split(/\s+/).slice(5).join(' '));
  for (const expected of [
    '.wh.gone',
    'etc/.wh.b',
    'var/lib/.wh..wh..opq',
    'etc/a',
    'var/lib/fresh',
    'bin/vi -> busybox',
  ])
    assert.ok(names.includes(expected), `${expected} in:\n${listing.stdout}`);
  assert.ok(!names.some((n) => n.startsWith('gone/')), 'only the topmost deleted path is whited out');
  assert.ok(!names.some((n) => n.startsWith('bin/busybox')), 'unchanged files are not in the diff');
  assert.deepEqual(
    names,
    [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
  );
  assert.match(listing.stdout, /-rw------- 0\/0 +2 .* etc\/a/, 'mode kept');

  // MergeOp: the diff appended to LOWER as it is.
  await kilnOk(['append', ref('base'), '--layer', layer, '--to', ref('merged')]);
  assert.deepEqual(await unpacked(ref('merged'), 'merged'), await unpacked(ref('app'), 'app-unpacked'));
  // Reversed, the diff deletes what app added and restores what it deleted.
  const reverse = path.join(work, 'reverse.tar.gz');
  await kilnOk(['diff', ref('app'), ref('base'), '--output', reverse]);
  await kilnOk(['append', ref('app'), '--layer', reverse, '--to', ref('back')]);
  assert.deepEqual(await unpacked(ref('back'), 'back'), await unpacked(ref('base'), 'base-unpacked'));
});

test('kiln diff --to: LOWER a prefix of UPPER reuses its layers; identical images give one empty layer', async (t) => {
  const reason = skip();
  if (reason !== undefined) return t.skip(reason);
  await buildImages();
  const r = await kiln(['--json', 'diff', ref('base'), ref('app'), '--to', ref('d')]);
  ok(r, 'kiln diff');
  const result = JSON.parse(r.stdout) as { reused: boolean; layers: { descriptor: { digest: string } }[] };
  assert.equal(result.reused, true);
  const inspect = async (tag: string) =>
    (JSON.parse(await kilnOk(['--json', 'inspect', ref(tag)])) as { image: { layers: { digest: string }[] } })
      .image;
  const app = await inspect('app');
  const d = await inspect('d');
  assert.deepEqual(
    d.layers.map((l) => l.digest),
    app.layers.slice(1).map((l) => l.digest),
  );
  assert.deepEqual(
    result.layers.map((l) => l.descriptor.digest),
    app.layers.slice(1).map((l) => l.digest),
  );

  const same = await kiln([
    '--json',
    'diff',
    ref('app'),
    ref('app'),
    '--output',
    path.join(work, 'empty.tar'),
  ]);
  ok(same, 'kiln diff of identical images');
  assert.equal((JSON.parse(same.stdout) as { entries: number }).entries, 0);
  assert.equal(
    (await fs.readFile(path.join(work, 'empty.tar'))).length,
    1024,
    'an empty tar: two zero blocks',
  );

  const usage = await kiln(['diff', ref('base'), ref('app')]);
  assert.equal(usage.code, 2, usage.stderr);
  assert.match(usage.stderr, /exactly one of --to/);
});

test('kiln flatten: one layer, the same tree as the original by kiln unpack and umoci unpack', async (t) => {
  const reason = skip() ?? toolSkipReason('umoci');
  if (reason !== undefined) return t.skip(reason);
  await buildImages();
  const first = await kilnOk(['flatten', ref('app'), '--to', ref('flat')]);
  const again = await kilnOk(['flatten', ref('app'), '--to', ref('flat2')]);
  assert.equal(first, again, 'flatten is deterministic');
  const info = JSON.parse(await kilnOk(['--json', 'inspect', ref('flat')])) as {
    image: { layers: unknown[] };
  };
  assert.equal(info.image.layers.length, 1);

  const original = await unpacked(ref('app'), 'orig');
  assert.ok(original['opt/app/run.sh'] && !original['gone'] && !original['etc/b'] && !original['var/lib/x']);
  assert.deepEqual(await unpacked(ref('flat'), 'flat'), original);

  const umoci = requireTool('umoci')!;
  const bundle = path.join(work, 'bundle');
  const u = await run(umoci, ['unpack', '--rootless', '--image', `${layout}:flat`, bundle], {
    timeoutMs: 120_000,
  });
  ok(u, 'umoci unpack');
  assert.deepEqual(await listDir(path.join(bundle, 'rootfs')), original);
  const stat = await run(umoci, ['stat', '--json', '--image', `${layout}:flat`]);
  ok(stat, 'umoci stat');
  const history = (JSON.parse(stat.stdout) as { history: { created_by: string }[] }).history;
  assert.deepEqual(
    history.map((h) => h.created_by),
    ['kiln flatten'],
  );
});

test('flatten and diff of registry images fetch each layer once (kept for the second read) and give the layout’s layer', {
  skip: registrySkipReason('none'),
}, async (t) => {
  const reason = skip();
  if (reason !== undefined) return t.skip(reason);
  await buildImages();
  const reg = await sharedRegistry('none');
  await kilnOk(['copy', ref('app'), `${reg.host}/diff-flatten/app:1`]);
  await kilnOk(['copy', ref('base'), `${reg.host}/diff-flatten/base:1`]);
  const log = await startRequestLog(reg.url);
  after(() => log.stop());
  const layerOf = async (r: string) =>
    (JSON.parse(await kilnOk(['--json', 'inspect', r])) as { image: { layers: { digest: string }[] } }).image
      .layers;
  const appLayers = (await layerOf(ref('app'))).map((l) => l.digest);
  const layerReads = () =>
    log.requests.filter((r) => r.method === 'GET' && appLayers.some((d) => r.path.endsWith(d))).length;

  await kilnOk(['flatten', `${log.host}/diff-flatten/app:1`, '--to', ref('reg-flat')]);
  assert.equal(layerReads(), appLayers.length, 'each layer of the image fetched once');
  await kilnOk(['flatten', ref('app'), '--to', ref('flat-local')]);
  assert.deepEqual(await layerOf(ref('reg-flat')), await layerOf(ref('flat-local')));

  log.clear();
  const out = path.join(work, 'reg-diff.tar.gz');
  await kilnOk([
    'diff',
    `${log.host}/diff-flatten/base:1`,
    `${log.host}/diff-flatten/app:1`,
    '--output',
    out,
  ]);
  // LOWER's layers are read once too, and UPPER starts with them.
  const shared = (await layerOf(ref('base'))).filter((l) => appLayers.includes(l.digest)).length;
  assert.equal(layerReads(), appLayers.length + shared, 'each layer of UPPER fetched once');
  const local = path.join(work, 'local-diff.tar.gz');
  await kilnOk(['diff', ref('base'), ref('app'), '--output', local]);
  assert.equal(sha256hex(await fs.readFile(out)), sha256hex(await fs.readFile(local)));
});
