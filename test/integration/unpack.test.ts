/**
 * `kiln unpack` and `kiln export` through the CLI, on hand-written (and hostile) layers in OCI
 * layouts: escapes are refused and nothing is written outside DIR, the export tar and the unpacked
 * directory hold the same files, and umoci's rootfs of the same image matches kiln's.
 *
 * Needs the built CLI (`npm run build`) and, for the cross-check, umoci.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  type BuiltImage,
  dir,
  file,
  link,
  readTar,
  type Spec,
  symlink,
  writeImage,
} from '../support/hostile.js';
import { indexEntry, makeIndex, sha256hex } from '../support/images.js';
import { KILN_CLI, kiln, kilnHome } from '../support/kiln.js';
import { workDir } from '../support/temp.js';
import { requireTool, run, toolSkipReason } from '../support/tools.js';

const work = workDir('kiln-unpack');
const asRoot = process.getuid?.() === 0;

/** An image of `layers` (gzip unless `plain`) in the layout `name` under the work dir, tagged `tag`. */
function makeImage(
  name: string,
  layers: { entries: Spec[]; plain?: boolean }[],
  options: { tag?: string; arch?: string } = {},
): Promise<BuiltImage> {
  return writeImage(
    path.join(work, name),
    layers.map((l) => ({ entries: l.entries, gzip: !l.plain })),
    options,
  );
}

interface Listed {
  type: string;
  mode: number;
  uid?: number;
  what: string; // content hash or link target
  mtime?: number;
  /** For files with more than one name: the first name of the inode, sorted. */
  group?: string;
}

const hash = (b: Buffer) => sha256hex(b).slice(0, 16);

/** Every path under `root` (not root itself) with what matters; hard links by shared inode. */
async function listDir(
  root: string,
  options: { mtimes?: boolean; owners?: boolean } = {},
): Promise<Map<string, Listed>> {
  const out = new Map<string, Listed>();
  const inodes = new Map<number, string[]>();
  async function walk(rel: string): Promise<void> {
    for (const name of (await fs.readdir(path.join(root, rel))).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const full = path.join(root, r);
      const st = await fs.lstat(full);
      const base = {
        mode: st.mode & 0o7777,
        ...(options.owners ? { uid: st.uid } : {}),
        ...(options.mtimes && !st.isSymbolicLink() ? { mtime: Math.floor(st.mtimeMs / 1000) } : {}),
      };
      if (st.isDirectory()) {
        out.set(r, { type: 'dir', what: '', ...base });
        await walk(r);
      } else if (st.isSymbolicLink()) {
        out.set(r, { type: 'symlink', what: await fs.readlink(full), ...base, mode: 0 });
      } else if (st.isFile()) {
        out.set(r, { type: 'file', what: hash(await fs.readFile(full)), ...base });
        if (st.nlink > 1) inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), r]);
      } else out.set(r, { type: 'other', what: '', ...base });
    }
  }
  await walk('');
  for (const names of inodes.values()) {
    if (names.length < 2) continue;
    const first = names.sort()[0]!;
    for (const n of names) out.get(n)!.group = first;
  }
  return out;
}

/** The same listing of a tar: hard links become files sharing their target's content and group. */
async function listTarFile(
  bytes: Buffer,
  options: { mtimes?: boolean; owners?: boolean } = {},
): Promise<Map<string, Listed>> {
  const out = new Map<string, Listed>();
  const links = new Map<string, string>();
  for (const { header: h, data } of await readTar(bytes)) {
    const name = h.name.replace(/^\.\//, '').replace(/\/$/, '');
    if (name === '' || name === '.') continue;
    const base = {
      mode: h.mode! & 0o7777,
      ...(options.owners ? { uid: h.uid } : {}),
      ...(options.mtimes && h.type !== 'symlink' ? { mtime: Math.floor(h.mtime!.getTime() / 1000) } : {}),
    };
    if (h.type === 'directory') out.set(name, { type: 'dir', what: '', ...base });
    else if (h.type === 'symlink') out.set(name, { type: 'symlink', what: h.linkname!, ...base, mode: 0 });
    else if (h.type === 'file') out.set(name, { type: 'file', what: hash(data), ...base });
    else if (h.type === 'link') links.set(name, h.linkname!);
    else out.set(name, { type: 'other', what: '', ...base });
  }
  const groups = new Map<string, string[]>();
  for (const [name, target] of links) {
    const t = out.get(target);
    assert.ok(t, `hard link ${name} -> ${target}: target not in the tar`);
    out.set(name, { ...t });
    groups.set(target, [...(groups.get(target) ?? [target]), name]);
  }
  for (const names of groups.values()) {
    const first = names.sort()[0]!;
    for (const n of names) out.get(n)!.group = first;
  }
  return out;
}

function ok(r: { code: number; stdout: string; stderr: string }, what: string): void {
  assert.equal(r.code, 0, `${what} exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

/** A multi-layer image with whiteouts, opaque dirs, overrides, links: what most images do. */
const REALISTIC: { entries: Spec[]; plain?: boolean }[] = [
  {
    entries: [
      dir('bin'),
      file('bin/busybox', 'busybox binary', 0o755),
      link('bin/sh', 'bin/busybox'),
      symlink('bin/ls', 'busybox'),
      dir('etc'),
      file('etc/passwd', 'root:x:0:0\n'),
      file('etc/shadow', 'root:*:\n', 0o640),
      file('etc/motd', 'hello\n'),
      dir('etc/conf.d'),
      file('etc/conf.d/a.conf', 'a'),
      file('etc/conf.d/b.conf', 'b'),
      dir('var'),
      dir('var/cache'),
      file('var/cache/big', 'x'.repeat(100_000)),
      dir('usr'),
      dir('usr/lib'),
      file('usr/lib/libold.so', 'old lib', 0o755),
      dir('tmp', 0o1777),
      dir('opt'),
      dir('opt/app'),
      file('opt/app/run', 'v1', 0o755),
      file('usr/bin-was-file', 'file'),
    ],
  },
  {
    plain: true,
    entries: [
      dir('etc'),
      file('etc/.wh.motd', ''),
      dir('etc/conf.d'),
      file('etc/conf.d/.wh..wh..opq', ''),
      file('etc/conf.d/c.conf', 'c'),
      file('etc/passwd', 'root:x:0:0\napp:x:1000:1000\n'),
      link('etc/passwd-', 'etc/passwd'), // its target is replaced by the next layer
      file('var/.wh.cache', ''),
      dir('usr/lib'),
      file('usr/lib/.wh.libold.so', ''),
      file('usr/lib/libnew.so', 'new lib', 0o755),
      link('usr/lib/libnew.so.1', 'usr/lib/libnew.so'),
      file('opt', 'opt replaced by a file'),
      dir('usr/bin-was-file'),
      file('usr/bin-was-file/inside', 'now a dir'),
    ],
  },
  {
    entries: [
      dir('srv', 0o750),
      file('srv/data', 'data', 0o600),
      symlink('srv/current', '/srv/data'),
      file('etc/motd', 'welcome back\n'),
      file('setuid', 'suid', 0o4755),
      file('etc/passwd', 'root:x:0:0\napp:x:1000:1000\nweb:x:33:33\n'),
      link('usr/lib/libnew.so.2', 'usr/lib/libnew.so'), // to a file of a lower layer
    ],
  },
];

test('unpack of a multi-layer image equals its export: same paths, types, modes, contents, links, mtimes', async () => {
  const img = await makeImage('realistic', REALISTIC);
  const dest = path.join(work, 'realistic-rootfs');
  const r = await kiln(['unpack', img.ref, dest]);
  ok(r, 'kiln unpack');
  assert.match(r.stderr, /unpacked \d+ entries from 3 layers/);
  const tarFile = path.join(work, 'realistic.tar');
  ok(await kiln(['export', img.ref, '-o', tarFile]), 'kiln export');
  const stdout = await run(
    'sh',
    ['-c', `"${process.execPath}" "${KILN_CLI}" export "${img.ref}" -o - | sha256sum`],
    {
      env: { ...process.env, KILN_HOME: kilnHome() },
    },
  );
  ok(stdout, 'kiln export -o -');
  const fileBytes = await fs.readFile(tarFile);
  assert.equal(stdout.stdout.split(' ')[0], sha256hex(fileBytes), '-o - writes the same tar');

  const opts = { mtimes: true, owners: asRoot };
  const fromDir = await listDir(dest, opts);
  const fromTar = await listTarFile(fileBytes, opts);
  assert.deepEqual(Object.fromEntries(fromDir), Object.fromEntries(fromTar));
  // And what that is, spelled out.
  assert.deepEqual([...fromDir.keys()].sort(), [
    'bin',
    'bin/busybox',
    'bin/ls',
    'bin/sh',
    'etc',
    'etc/conf.d',
    'etc/conf.d/c.conf',
    'etc/motd',
    'etc/passwd',
    'etc/passwd-',
    'etc/shadow',
    'opt',
    'setuid',
    'srv',
    'srv/current',
    'srv/data',
    'tmp',
    'usr',
    'usr/bin-was-file',
    'usr/bin-was-file/inside',
    'usr/lib',
    'usr/lib/libnew.so',
    'usr/lib/libnew.so.1',
    'usr/lib/libnew.so.2',
    'var',
  ]);
  assert.equal(fromDir.get('usr/lib/libnew.so.2')!.group, 'usr/lib/libnew.so', 'a link to a lower layer');
  assert.equal(
    await fs.readFile(path.join(dest, 'etc/passwd-'), 'utf8'),
    'root:x:0:0\napp:x:1000:1000\n',
    'a link keeps the content its target had when it was made',
  );
  assert.equal(fromDir.get('etc/passwd')!.group, undefined);
  assert.equal(await fs.readFile(path.join(dest, 'etc/motd'), 'utf8'), 'welcome back\n');
  assert.equal(fromDir.get('bin/sh')!.group, 'bin/busybox', 'bin/sh is a hard link to bin/busybox');
  assert.equal(fromDir.get('setuid')!.mode, 0o4755);
  assert.equal(fromDir.get('tmp')!.mode, 0o1777);
  assert.equal(fromDir.get('srv')!.mode, 0o750);
  assert.equal(fromDir.get('srv/data')!.mtime, 1_600_000_000);
  assert.equal(
    await fs.readlink(path.join(dest, 'srv/current')),
    '/srv/data',
    'absolute symlinks kept as they are',
  );
});

test('kiln unpack gives the same files as umoci unpack of the same multi-layer image', async (t) => {
  const reason = toolSkipReason('umoci');
  if (reason !== undefined) return t.skip(reason);
  const img = await makeImage('umoci', REALISTIC);
  const bundle = path.join(work, 'umoci-bundle');
  const u = await run(
    requireTool('umoci')!,
    ['unpack', '--rootless', '--image', `${img.layout}:test`, bundle],
    {
      timeoutMs: 120_000,
    },
  );
  ok(u, 'umoci unpack');
  const dest = path.join(work, 'umoci-kiln-rootfs');
  ok(await kiln(['unpack', img.ref, dest]), 'kiln unpack');
  const theirs = await listDir(path.join(bundle, 'rootfs'), { mtimes: true });
  const ours = await listDir(dest, { mtimes: true });
  assert.deepEqual(Object.fromEntries(ours), Object.fromEntries(theirs));
});

test('hostile entries are refused, named on stderr, nothing is written outside DIR, the rest is extracted, exit 1', async () => {
  const outside = path.join(work, 'outside');
  await fs.mkdir(outside);
  await fs.writeFile(path.join(outside, 'secret'), 'secret');
  const img = await makeImage('hostile', [
    {
      entries: [
        dir('ok'),
        file('ok/a', 'a'),
        symlink('link', outside), // link -> an absolute directory outside DIR
        file('link/passwd', 'pwned'), // ... then a file through it
        symlink('rel', '../../../../../../..'),
        file('rel/pwned2', 'pwned'),
        file('../escape', 'pwned'),
        file('ok/../../escape2', 'pwned'),
        link('hl', '../../etc/shadow'), // hard link target outside DIR
        file('ok/target', 't'),
        link('hl-ok', 'ok/target'),
        link('hl2', 'link/passwd'), // hard link target through a symlink
        file('after', 'still extracted'),
      ],
    },
  ]);
  const dest = path.join(work, 'hostile-rootfs');
  const r = await kiln(['unpack', img.ref, dest]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /refused 6 unsafe entries \(first: .*\).*\(E_UNSAFE_PATH\)/);
  for (const p of ['link/passwd', 'rel/pwned2', '../escape', 'ok/../../escape2', 'hl', 'hl2'])
    assert.match(r.stderr, new RegExp(`^refused: ${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} `, 'm'));
  assert.deepEqual(await fs.readdir(outside), ['secret'], 'nothing written outside');
  assert.equal(await fs.readFile(path.join(outside, 'secret'), 'utf8'), 'secret');
  await assert.rejects(fs.lstat(path.join(work, 'escape')));
  await assert.rejects(fs.lstat(path.join(work, 'escape2')));
  assert.deepEqual((await fs.readdir(dest)).sort(), ['after', 'hl-ok', 'link', 'ok', 'rel']);
  assert.equal(await fs.readFile(path.join(dest, 'after'), 'utf8'), 'still extracted');
  assert.equal((await fs.lstat(path.join(dest, 'link'))).isSymbolicLink(), true, 'symlinks stay symlinks');
  assert.equal(
    (await fs.stat(path.join(dest, 'hl-ok'))).ino,
    (await fs.stat(path.join(dest, 'ok/target'))).ino,
  );

  const json = await kiln(['unpack', img.ref, path.join(work, 'hostile-json'), '--json']);
  assert.equal(json.code, 1);
  const doc = JSON.parse(json.stdout) as { refused: { path: string }[]; error: { code: string } };
  assert.equal(doc.error.code, 'E_UNSAFE_PATH');
  assert.deepEqual(doc.refused.map((x) => x.path).sort(), [
    '../escape',
    'hl',
    'hl2',
    'link/passwd',
    'ok/../../escape2',
    'rel/pwned2',
  ]);

  const exported = await kiln(['export', img.ref, '-o', path.join(work, 'hostile.tar')]);
  assert.equal(exported.code, 1, 'export leaves out paths with .. and says so');
  assert.match(exported.stderr, /E_UNSAFE_PATH/);
  const names = [...(await listTarFile(await fs.readFile(path.join(work, 'hostile.tar')))).keys()];
  assert.ok(!names.some((n) => n.split('/').includes('..')), names.join(' '));
});

test('a symlink in a lower layer does not redirect an upper layer: the upper layer makes a directory there', async () => {
  const outside = path.join(work, 'outside-2');
  await fs.mkdir(outside);
  const img = await makeImage('cross-layer', [
    { entries: [symlink('esc', outside)] },
    { entries: [file('esc/pwned', 'pwned')] },
  ]);
  const dest = path.join(work, 'cross-layer-rootfs');
  ok(await kiln(['unpack', img.ref, dest]), 'kiln unpack');
  assert.deepEqual(await fs.readdir(outside), []);
  assert.equal((await fs.lstat(path.join(dest, 'esc'))).isDirectory(), true);
  assert.equal(await fs.readFile(path.join(dest, 'esc/pwned'), 'utf8'), 'pwned');
});

test('DIR must be new or empty (E_USAGE, exit 2); with --force a symlink already in DIR is not followed', async () => {
  // No entry for pre itself: one would replace the symlink (as tar does) rather than write through it.
  const img = await makeImage('force', [{ entries: [file('pre/file', 'x'), file('top', 'top')] }]);
  const outside = path.join(work, 'outside-3');
  await fs.mkdir(outside);
  const dest = path.join(work, 'force-rootfs');
  await fs.mkdir(dest);
  await fs.symlink(outside, path.join(dest, 'pre'));
  const r = await kiln(['unpack', img.ref, dest]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /not empty.*E_USAGE/);
  const forced = await kiln(['unpack', img.ref, dest, '--force']);
  assert.equal(forced.code, 1, forced.stderr);
  assert.match(forced.stderr, /^refused: pre\/file .*pre is a symlink/m);
  assert.deepEqual(await fs.readdir(outside), []);
  assert.equal(await fs.readFile(path.join(dest, 'top'), 'utf8'), 'top');

  const empty = path.join(work, 'empty-rootfs');
  await fs.mkdir(empty);
  ok(await kiln(['unpack', img.ref, empty]), 'unpack into an empty directory');
  assert.equal(await fs.readFile(path.join(empty, 'pre/file'), 'utf8'), 'x');
});

test('a corrupt layer fails the command (E_DIGEST_MISMATCH) and leaves no DIR and no tar behind', async () => {
  const img = await makeImage('corrupt', [
    { plain: true, entries: [file('lower', 'l'.repeat(4000))] },
    { entries: [file('upper', 'u')] },
  ]);
  // The bottom layer is read last: the upper layer's entries are out before the mismatch shows.
  const blob = path.join(img.layout, 'blobs', 'sha256', img.layers[0]!.digest.slice(7));
  const bytes = await fs.readFile(blob);
  bytes[1000] = bytes[1000]! ^ 0xff;
  await fs.writeFile(blob, bytes);
  const dest = path.join(work, 'corrupt-rootfs');
  const r = await kiln(['unpack', img.ref, dest]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /E_DIGEST_MISMATCH/);
  await assert.rejects(fs.lstat(dest), 'no DIR');
  assert.deepEqual(
    (await fs.readdir(work)).filter((n) => n.includes('corrupt-rootfs')),
    [],
    'no temp dir',
  );
  const e = await kiln(['export', img.ref, '-o', path.join(work, 'corrupt.tar')]);
  assert.equal(e.code, 1);
  assert.match(e.stderr, /E_DIGEST_MISMATCH/);
  assert.deepEqual(
    (await fs.readdir(work)).filter((n) => n.includes('corrupt.tar')),
    [],
  );
  // Into an existing empty directory: emptied again.
  const empty = path.join(work, 'corrupt-empty');
  await fs.mkdir(empty);
  assert.equal((await kiln(['unpack', img.ref, empty])).code, 1);
  assert.deepEqual(await fs.readdir(empty), []);
});

test('--platform picks the image out of an index; device nodes are skipped with a warning', async () => {
  const amd = await makeImage('multi', [{ entries: [file('arch', 'amd64')] }], { tag: 'amd' });
  const arm = await makeImage(
    'multi',
    [{ entries: [file('arch', 'arm64'), { name: 'dev/null', type: 'character-device', mode: 0o666 }] }],
    { tag: 'arm', arch: 'arm64' },
  );
  await makeIndex(amd.layout, 'multi', [
    indexEntry(amd.manifest, 'linux/amd64'),
    indexEntry(arm.manifest, 'linux/arm64'),
  ]);
  const ref = `oci:${amd.layout}:multi`;
  const dest = path.join(work, 'multi-arm');
  const r = await kiln(['unpack', ref, dest, '--platform', 'linux/arm64']);
  ok(r, 'kiln unpack --platform');
  assert.equal(await fs.readFile(path.join(dest, 'arch'), 'utf8'), 'arm64');
  assert.match(r.stderr, /^skipped: dev\/null .*device node/m);
  assert.equal(await fs.readdir(path.join(dest, 'dev')).then((n) => n.length), 0);
  const tarFile = path.join(work, 'multi-amd.tar');
  ok(await kiln(['export', ref, '--platform', 'linux/amd64', '-o', tarFile]), 'kiln export --platform');
  const listed = await listTarFile(await fs.readFile(tarFile));
  assert.deepEqual([...listed.keys()], ['arch']);
  const none = await kiln(['unpack', ref, path.join(work, 'multi-s390x'), '--platform', 'linux/s390x']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /E_NO_MATCHING_PLATFORM/);
});
