/**
 * `kiln append` of a directory with device nodes, a fifo and a socket (made with mknod, mkfifo and a
 * listening Unix socket; needs root), through the built CLI: `--devices keep` (the default) writes
 * them as GNU tar does, and `tar -tvzf` lists them, `umoci unpack` makes them again with the same
 * numbers and modes, `kiln unpack` skips them with a note (`--devices refuse`: refuses them);
 * `--devices skip` leaves them out, each named; `--devices refuse` fails. Needs `npm run build`.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { kiln } from '../support/kiln.js';
import { requireTool, run, skipOrFail, toolSkipReason } from '../support/tools.js';

const skip =
  (process.getuid?.() === 0 ? undefined : skipOrFail('mknod needs root')) ??
  toolSkipReason('mknod', 'mkfifo', 'tar', 'umoci');

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-append-devices-'));
const tree = path.join(work, 'tree');
const layout = path.join(work, 'oci');
let server: net.Server | undefined;
after(async () => {
  server?.close();
  await fs.rm(work, { recursive: true, force: true });
});

before(async () => {
  if (skip !== undefined) return;
  await fs.mkdir(path.join(tree, 'dev'), { recursive: true });
  await fs.mkdir(path.join(tree, 'run'));
  await fs.writeFile(path.join(tree, 'etc-file'), 'x\n');
  for (const args of [
    ['-m', '600', 'dev/console', 'c', '5', '1'],
    ['-m', '666', 'dev/null', 'c', '1', '3'],
    ['-m', '660', 'dev/loop9', 'b', '7', '9'],
  ]) {
    const r = spawnSync(requireTool('mknod')!, args, { cwd: tree });
    assert.equal(r.status, 0, r.stderr.toString());
  }
  assert.equal(spawnSync(requireTool('mkfifo')!, ['-m', '644', 'run/fifo'], { cwd: tree }).status, 0);
  const listening = net.createServer();
  await new Promise<void>((resolve) => listening.listen(path.join(tree, 'run/sock'), resolve));
  server = listening;
});

function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** The one layer blob of the image tagged `tag`. */
async function layerBlob(tag: string): Promise<string> {
  const r = JSON.parse(ok(await kiln(['--json', 'inspect', `oci:${layout}:${tag}`]), 'kiln inspect')) as {
    image: { layers: { digest: string }[] };
  };
  assert.equal(r.image.layers.length, 1);
  return path.join(layout, 'blobs', r.image.layers[0]!.digest.replace(':', '/'));
}

const append = (tag: string, ...flags: string[]) =>
  kiln([
    'append',
    'scratch',
    '--platform',
    'linux/amd64',
    '--layer',
    tree,
    '--to',
    `oci:${layout}:${tag}`,
    ...flags,
  ]);

test('kiln append keeps device nodes and fifos; tar lists them, umoci makes them, kiln unpack skips them', {
  skip,
}, async () => {
  const appended = await append('keep');
  ok(appended, 'kiln append');
  assert.match(appended.stderr, /skipped: run\/sock \(from .*\): socket left out \(tar does the same\)/);
  assert.equal(ok(await append('again'), 'kiln append again'), appended.stdout, 'the same digest again');

  const listed = ok(await run(requireTool('tar')!, ['-tvzf', await layerBlob('keep')]), 'tar -tvzf');
  assert.match(listed, /^crw------- 0\/0 +5,1 1970-01-01 00:00 dev\/console$/m);
  assert.match(listed, /^crw-rw-rw- 0\/0 +1,3 1970-01-01 00:00 dev\/null$/m);
  assert.match(listed, /^brw-rw---- 0\/0 +7,9 1970-01-01 00:00 dev\/loop9$/m);
  assert.match(listed, /^prw-r--r-- 0\/0 +0 1970-01-01 00:00 run\/fifo$/m);
  assert.doesNotMatch(listed, /sock/);

  const bundle = path.join(work, 'bundle');
  ok(await run(requireTool('umoci')!, ['unpack', '--image', `${layout}:keep`, bundle]), 'umoci unpack');
  const made = async (p: string) => {
    const st = await fs.lstat(path.join(bundle, 'rootfs', p));
    const kind = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : st.isFIFO() ? 'p' : '?';
    return `${kind} ${(st.mode & 0o7777).toString(8)} ${st.rdev}`;
  };
  assert.equal(await made('dev/console'), `c 600 ${(5 << 8) | 1}`);
  assert.equal(await made('dev/null'), `c 666 ${(1 << 8) | 3}`);
  assert.equal(await made('dev/loop9'), `b 660 ${(7 << 8) | 9}`);
  assert.equal(await made('run/fifo'), 'p 644 0');

  const unpacked = await kiln(['unpack', `oci:${layout}:keep`, path.join(work, 'unpacked')]);
  ok(unpacked, 'kiln unpack');
  for (const p of ['dev/console', 'dev/null', 'dev/loop9'])
    assert.match(unpacked.stderr, new RegExp(`skipped: ${p} \\(layer 0\\): device node not created`));
  assert.match(unpacked.stderr, /skipped: run\/fifo \(layer 0\): fifo not created/);
  const refused = await kiln([
    'unpack',
    `oci:${layout}:keep`,
    path.join(work, 'refused'),
    '--devices',
    'refuse',
  ]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /refused: dev\/console \(layer 0\): device node refused \(--devices refuse\)/);
});

test('kiln append --devices skip leaves them out, each named; refuse fails; a bad mode is a usage error', {
  skip,
}, async () => {
  const skipped = await append('skip', '--devices', 'skip');
  ok(skipped, 'kiln append --devices skip');
  for (const p of ['dev/console', 'dev/loop9', 'dev/null'])
    assert.match(
      skipped.stderr,
      new RegExp(`skipped: ${p} \\(from .*\\): device node left out \\(--devices skip\\)`),
    );
  assert.match(skipped.stderr, /skipped: run\/fifo \(from .*\): fifo left out \(--devices skip\)/);
  const listed = ok(await run(requireTool('tar')!, ['-tzf', await layerBlob('skip')]), 'tar -tzf');
  assert.deepEqual(listed.trim().split('\n'), ['dev/', 'etc-file', 'run/']);

  const refused = await append('refuse', '--devices', 'refuse');
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    /dev\/console is a device node, refused \(--devices refuse\) \(E_UNSUPPORTED\)/,
  );
  assert.match(refused.stderr, /--devices keep writes device nodes and fifos/);

  const bad = await append('bad', '--devices', 'create');
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /--devices takes keep, skip or refuse, got 'create' \(E_USAGE\)/);
});
