/**
 * The hostile and malformed input corpus (test/fixtures/hostile/README.md), one named test per case,
 * through the CLI where a user would meet it. Inputs are built at test time by test/support/hostile.ts.
 *
 * Every refused case: exit 1 (2 for usage errors), one `kiln: ... (E_CODE)` line and no stack trace
 * (one with --debug), and nothing written outside the target: each case has a sentinel directory
 * `outside/` next to it whose canary must stay as it was, and its directory must hold no leftovers.
 *
 * Needs the built CLI (`npm run build`); the last case also a real registry (docker-registry).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { MediaType } from '../../src/oci/media-types.js';
import {
  answerPing,
  descriptorOf,
  device,
  dir,
  fifo,
  file,
  gzipBomb,
  HTML_ERROR_PAGE,
  indexOf,
  type LayerSpec,
  link,
  memoryImage,
  type Spec,
  startServer,
  symlink,
  type TestServer,
  tarOf,
  truncatedTar,
  writeImage,
  writeRawLayout,
} from '../support/hostile.js';
import { type KilnResult, kiln } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-hostile-'));
const servers: TestServer[] = [];
after(async () => {
  for (const s of servers) await s.stop();
  await fs.rm(work, { recursive: true, force: true });
});

const CANARY = 'canary: nothing may change me\n';
const MiB = 1024 * 1024;

interface Case {
  /** The case's own directory: the image, the target and the sentinel live here. */
  root: string;
  /** Where kiln is asked to write. */
  target: string;
  /** The sentinel: `outside/canary`, which must stay as it is. */
  outside: string;
}

async function newCase(name: string): Promise<Case> {
  const root = path.join(work, name);
  const outside = path.join(root, 'outside');
  await fs.mkdir(outside, { recursive: true });
  await fs.writeFile(path.join(outside, 'canary'), CANARY);
  return { root, target: path.join(root, 'target'), outside };
}

/** The sentinel is untouched, and the case's directory holds exactly `names` (no temp dirs left). */
async function assertContained(c: Case, names: string[]): Promise<void> {
  assert.deepEqual(await fs.readdir(c.outside), ['canary'], 'nothing written into the sentinel');
  const canary = path.join(c.outside, 'canary');
  assert.equal(await fs.readFile(canary, 'utf8'), CANARY, 'the canary is unchanged');
  assert.equal((await fs.stat(canary)).nlink, 1, 'no hard link to the canary');
  assert.deepEqual((await fs.readdir(c.root)).sort(), [...names, 'outside'].sort(), 'no leftovers');
}

function image(c: Case, layers: LayerSpec[], options: Parameters<typeof writeImage>[2] = {}) {
  return writeImage(path.join(c.root, 'image'), layers, options);
}

function ok(r: KilnResult, what: string): void {
  assert.equal(r.code, 0, `${what} exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

interface Refusal {
  /** Exit code: 1, or 2 for usage errors. */
  exit?: number;
  code: string;
  /** What the one message must say. */
  message?: RegExp;
  env?: NodeJS.ProcessEnv;
  /** Run again with --debug and check that it shows the error's stack. */
  debug?: boolean;
  cwd?: string;
}

let debugRuns = 0;

/** Runs kiln and checks the refusal contract: exit code, one `kiln:` line with the code, no stack. */
async function refused(args: string[], want: Refusal): Promise<KilnResult> {
  const r = await kiln(args, { env: want.env, ...(want.cwd ? { cwd: want.cwd } : {}) });
  const exit = want.exit ?? 1;
  assert.equal(r.code, exit, `kiln ${args.join(' ')}: exit code\nstderr: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('kiln:'));
  assert.equal(lines.length, 1, `one message:\n${r.stderr}`);
  assert.ok(lines[0]!.endsWith(` (${want.code})`), `the message ends with (${want.code}): ${lines[0]}`);
  if (want.message) assert.match(lines[0]!, want.message);
  assert.ok(lines[0]!.length < 1000, 'the message is short');
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace without --debug');
  assert.doesNotMatch(r.stderr, /internal error/);
  if (want.debug) {
    // unpack's DIR may hold what the first run extracted: the rerun gets a DIR of its own.
    const again =
      args[0] === 'unpack'
        ? [args[0], args[1]!, path.join(work, `debug-${++debugRuns}`), ...args.slice(3)]
        : args;
    const d = await kiln([...again, '--debug'], { env: want.env, ...(want.cwd ? { cwd: want.cwd } : {}) });
    if (again !== args) await fs.rm(again[2]!, { recursive: true, force: true });
    assert.equal(d.code, exit);
    assert.match(d.stderr, new RegExp(`\\[${want.code}\\]`), 'with --debug: the error and its code');
    assert.match(d.stderr, /^\s+at /m, 'with --debug: the stack');
  }
  return r;
}

const unpackTo = (ref: string, c: Case, ...more: string[]) => ['unpack', ref, c.target, ...more];
/** kiln unpack of `ref` into the case's target: refused E_UNSAFE_PATH with `message`. */
const unsafeUnpack = (ref: string, c: Case, message: RegExp) =>
  refused(unpackTo(ref, c), { code: 'E_UNSAFE_PATH', message });
/** A new case `name` and an image of `layers` (made from the case where they name its paths) in it. */
async function caseWith(name: string, layers: LayerSpec[] | ((c: Case) => LayerSpec[])) {
  const c = await newCase(name);
  return { c, img: await image(c, typeof layers === 'function' ? layers(c) : layers) };
}

// ---------------------------------------------------------------------------------------------------
// Tar

test('tar: ../ entries are refused (E_UNSAFE_PATH), the rest is extracted, export leaves them out', async () => {
  const { c, img } = await caseWith('dotdot', [
    {
      gzip: true,
      entries: [
        dir('a'),
        file('ok', 'ok'),
        file('../outside/canary', 'pwned'),
        file('a/../../outside/pwned', 'pwned'),
        file('./../../escape', 'pwned'),
        link('../outside/hl', 'ok'),
      ],
    },
  ]);
  const r = await refused(unpackTo(img.ref, c), {
    code: 'E_UNSAFE_PATH',
    message: /^kiln: refused 4 unsafe entries \(first: \.\.\/outside\/canary\)/,
    debug: true,
  });
  assert.equal(r.stderr.match(/^refused: /gm)?.length, 4, r.stderr);
  assert.deepEqual((await fs.readdir(c.target)).sort(), ['a', 'ok']);
  const tarFile = path.join(c.root, 'export.tar');
  await refused(['export', img.ref, '-o', tarFile], { code: 'E_UNSAFE_PATH', message: /left out 4 unsafe/ });
  await assertContained(c, ['image', 'target', 'export.tar']);
});

test('tar: absolute paths land inside DIR, as tar makes them relative; absolute symlinks are kept, never followed', async () => {
  const c = await newCase('absolute');
  const canary = path.join(c.outside, 'canary');
  const img = await image(c, [
    {
      entries: [
        file('/etc/abs', 'inside'),
        file(`/${path.relative('/', canary)}`, 'inside too'), // the canary's own absolute path
        symlink('/abs-link', canary),
        link('/hl', '/etc/abs'),
      ],
    },
  ]);
  ok(await kiln(unpackTo(img.ref, c)), 'kiln unpack');
  assert.equal(await fs.readFile(path.join(c.target, 'etc/abs'), 'utf8'), 'inside');
  assert.equal(await fs.readFile(path.join(c.target, path.relative('/', canary)), 'utf8'), 'inside too');
  assert.equal(await fs.readlink(path.join(c.target, 'abs-link')), canary, 'kept as it is');
  assert.equal(
    (await fs.stat(path.join(c.target, 'hl'))).ino,
    (await fs.stat(path.join(c.target, 'etc/abs'))).ino,
    'an absolute hard link target is inside DIR too',
  );
  await assertContained(c, ['image', 'target']);
});

test('tar: a symlink, then a write through it, is refused (E_UNSAFE_PATH), relative or absolute', async () => {
  const { c, img } = await caseWith('symlink-write', (c) => [
    {
      gzip: true,
      entries: [
        symlink('rel', '../outside'),
        file('rel/pwned', 'pwned'),
        file('rel/canary', 'pwned'),
        symlink('abs', c.outside),
        dir('abs/sub'),
        file('abs/sub/pwned', 'pwned'),
        symlink('deep', '../../../../../../../../..'),
        file(`deep/${path.relative('/', c.outside)}/pwned`, 'pwned'),
        file('after', 'still extracted'),
      ],
    },
  ]);
  const r = await unsafeUnpack(img.ref, c, /refused 5 unsafe entries \(first: rel\/pwned\)/);
  assert.match(r.stderr, /^refused: rel\/pwned \(layer 0\): rel is a symlink/m);
  assert.equal(await fs.readFile(path.join(c.target, 'after'), 'utf8'), 'still extracted');
  await assertContained(c, ['image', 'target']);
});

test('tar: hard links to outside DIR are refused (E_UNSAFE_PATH): by .., through a symlink', async () => {
  const { c, img } = await caseWith('hardlink-out', (c) => [
    {
      entries: [
        link('hl-dotdot', '../outside/canary'),
        symlink('s', '../outside'),
        file('s/canary', 'pwned'), // refused: written through the symlink
        link('hl-through', 's/canary'),
        link('hl-abs', path.join(c.outside, 'canary')), // made relative: a path inside DIR, not there
        file('target', 't'),
        link('hl-ok', 'target'),
      ],
    },
  ]);
  const r = await unsafeUnpack(img.ref, c, /refused 3 unsafe entries \(first: hl-dotdot\)/);
  assert.match(r.stderr, /^refused: hl-dotdot .*leaves the root/m);
  assert.match(r.stderr, /^refused: s\/canary .*s is a symlink/m);
  assert.match(r.stderr, /^refused: hl-through .*hard link target s\/canary: s is a symlink/m);
  assert.match(r.stderr, /^skipped: hl-abs .*is in no layer/m);
  assert.equal(
    (await fs.stat(path.join(c.target, 'hl-ok'))).ino,
    (await fs.stat(path.join(c.target, 'target'))).ino,
  );
  await assertContained(c, ['image', 'target']);
});

test('tar: a symlink loop is refused where written through, kept as links elsewhere; kiln run does not follow it', async () => {
  const { c, img } = await caseWith('symlink-loop', [
    {
      entries: [
        symlink('a', 'b'),
        symlink('b', 'a'),
        symlink('self', 'self'),
        file('a/x', 'through the loop'),
        link('hl', 'self'),
        file('ok', 'ok'),
      ],
    },
  ]);
  await unsafeUnpack(img.ref, c, /refused 1 unsafe entry \(first: a\/x\)/);
  assert.equal(await fs.readlink(path.join(c.target, 'self')), 'self');
  assert.equal(await fs.readlink(path.join(c.target, 'hl')), 'self', 'a hard link to the link itself');
  const run = await writeImage(
    path.join(c.root, 'image'),
    [{ entries: [symlink('app.wasm', 'app.wasm'), symlink('loop.wasm', 'app.wasm')] }],
    { tag: 'run', os: 'wasip1', arch: 'wasm', config: { Entrypoint: ['/loop.wasm'] } },
  );
  await refused(['run', run.ref], { code: 'E_NOT_RUNNABLE', message: /\/loop\.wasm is not in any layer/ });
  await assertContained(c, ['image', 'target']);
});

test('tar: device nodes and fifos are skipped with a note (exit 0), refused with --devices refuse', async () => {
  const { c, img } = await caseWith('devices', [
    {
      entries: [
        device('dev/null', 'character-device'),
        device('dev/sda', 'block-device', 8, 0),
        fifo('run/fifo'),
        file('ok', 'ok'),
      ],
    },
  ]);
  const r = await kiln(unpackTo(img.ref, c));
  ok(r, 'kiln unpack');
  assert.match(r.stderr, /^skipped: dev\/null .*device node not created/m);
  assert.match(r.stderr, /^skipped: dev\/sda .*device node not created/m);
  assert.match(r.stderr, /^skipped: run\/fifo .*fifo not created/m);
  assert.deepEqual(await fs.readdir(path.join(c.target, 'dev')), []);
  const strict = { ...c, target: path.join(c.root, 'strict') };
  const s = await refused(unpackTo(img.ref, strict, '--devices', 'refuse'), {
    code: 'E_UNSAFE_PATH',
    message: /refused 3 unsafe entries/,
  });
  assert.match(s.stderr, /^refused: dev\/null .*device node refused/m);
  assert.equal(await fs.readFile(path.join(strict.target, 'ok'), 'utf8'), 'ok', 'the rest is extracted');
  await assertContained(c, ['image', 'target', 'strict']);
});

test('tar: setuid/setgid bits are kept by default, cleared by --setuid strip, the files refused by --setuid refuse', async () => {
  const { c, img } = await caseWith('setuid', [
    {
      entries: [
        file('suid', 'x', 0o4755),
        file('sgid', 'x', 0o2755),
        dir('shared', 0o2775),
        file('plain', 'x', 0o755),
      ],
    },
  ]);
  const mode = async (dirName: string, name: string) =>
    (await fs.stat(path.join(c.root, dirName, name))).mode & 0o7777;
  ok(await kiln(unpackTo(img.ref, c)), 'kiln unpack');
  assert.equal(await mode('target', 'suid'), 0o4755, 'kept, as docker and umoci keep it');
  assert.equal(await mode('target', 'sgid'), 0o2755);

  const strip = await kiln(['unpack', img.ref, path.join(c.root, 'stripped'), '--setuid', 'strip']);
  ok(strip, 'kiln unpack --setuid strip');
  assert.match(strip.stderr, /^stripped: suid \(layer 0\): setuid bit cleared/m);
  assert.match(strip.stderr, /^stripped: sgid \(layer 0\): setgid bit cleared/m);
  assert.equal(await mode('stripped', 'suid'), 0o755);
  assert.equal(await mode('stripped', 'sgid'), 0o755);
  assert.equal(await mode('stripped', 'shared'), 0o2775, 'directories keep setgid (group inheritance)');
  const json = await kiln([
    'unpack',
    img.ref,
    path.join(c.root, 'stripped-json'),
    '--setuid',
    'strip',
    '--json',
  ]);
  ok(json, 'kiln unpack --setuid strip --json');
  assert.deepEqual(
    (JSON.parse(json.stdout) as { stripped: { path: string }[] }).stripped.map((s) => s.path).sort(),
    ['sgid', 'suid'],
  );

  const r = await refused(['unpack', img.ref, path.join(c.root, 'strict'), '--setuid', 'refuse'], {
    code: 'E_UNSAFE_PATH',
    message: /refused 2 unsafe entries/,
  });
  assert.match(r.stderr, /^refused: suid \(layer 0\): setuid file refused/m);
  assert.deepEqual((await fs.readdir(path.join(c.root, 'strict'))).sort(), ['plain', 'shared']);
  await assertContained(c, ['image', 'target', 'stripped', 'stripped-json', 'strict']);
});

test('tar: duplicate entries: the last one wins, and a symlink in between is replaced, never written through', async () => {
  const { c, img } = await caseWith('duplicates', [
    {
      gzip: true,
      entries: [
        file('x', 'first'),
        symlink('x', '../outside/canary'),
        file('x', 'last'),
        dir('d'),
        file('d/inside', 'i'),
        file('d', 'a file now'),
        file('f', 'a file'),
        dir('f'),
        file('f/inside', 'a dir now'),
        symlink('s', '../outside'),
        dir('s'),
        file('s/canary', 'in a real dir'),
      ],
    },
  ]);
  const r = await kiln(unpackTo(img.ref, c));
  ok(r, 'kiln unpack');
  assert.equal(await fs.readFile(path.join(c.target, 'x'), 'utf8'), 'last');
  assert.equal(await fs.readFile(path.join(c.target, 'd'), 'utf8'), 'a file now');
  assert.equal(await fs.readFile(path.join(c.target, 'f/inside'), 'utf8'), 'a dir now');
  assert.equal((await fs.lstat(path.join(c.target, 's'))).isDirectory(), true, 'the symlink was replaced');
  assert.equal(await fs.readFile(path.join(c.target, 's/canary'), 'utf8'), 'in a real dir');
  await assertContained(c, ['image', 'target']);
});

test('tar: a PAX header over 4 MiB is refused (E_BAD_TAR); a PAX path too long for the filesystem is skipped', async () => {
  const c = await newCase('pax');
  const huge = await image(c, [
    { gzip: true, entries: [{ name: 'p', content: 'x', pax: { comment: 'x'.repeat(5 * MiB) } }] },
  ]);
  await refused(unpackTo(huge.ref, c), {
    code: 'E_BAD_TAR',
    message:
      /layer 0 \(sha256:[0-9a-f]{64}\) of oci:.* is not a readable tar stream: Header exceeds max size/,
    debug: true,
  });
  const long = await writeImage(
    path.join(c.root, 'image'),
    [
      {
        entries: [
          { name: 'p', content: 'x', pax: { path: 'c'.repeat(3 * MiB) } },
          { name: 'q', content: 'x', pax: { path: `${'d/'.repeat(100)}${'e'.repeat(300)}` } },
          { name: 'l', type: 'symlink', linkname: 'x', pax: { linkpath: 'l'.repeat(100_000) } },
          file('ok', 'ok'),
        ],
      },
    ],
    { tag: 'long' },
  );
  const r = await kiln(unpackTo(long.ref, c));
  ok(r, 'kiln unpack');
  assert.match(
    r.stderr,
    /^skipped: c{200}\.\.\. \(3145728 bytes\) \(layer 0\): not created: the name is 3145728 bytes/m,
  );
  assert.match(r.stderr, /^skipped: (d\/){100}e{0,100}.*component of 300 bytes/m);
  assert.match(r.stderr, /^skipped: l .*symlink target is 100000 bytes/m);
  assert.ok(r.stderr.length < 4000, 'long names are shortened in messages');
  assert.deepEqual(await fs.readdir(c.target), ['ok'], 'not even the parents of what was skipped');
  await assertContained(c, ['image', 'target']);
});

test('tar: PAX values no system call takes (negative or huge owners, mtime 1e20, NUL in a link target) do not fail the unpack', async () => {
  const { c, img } = await caseWith('pax-values', [
    {
      entries: [
        { name: 'neg-uid', content: 'x', pax: { uid: '-5', gid: '-1' } },
        { name: 'big-uid', content: 'x', uid: 7, pax: { uid: '99999999999' } },
        { name: 'far-future', content: 'x', mtime: 1_600_000_000, pax: { mtime: '1e20' } },
        { name: 'nul-link', type: 'symlink', linkname: 'x', pax: { linkpath: 'a\0b' } },
        file('ok', 'ok'),
      ],
    },
  ]);
  const r = await kiln(unpackTo(img.ref, c));
  ok(r, 'kiln unpack');
  assert.match(r.stderr, /^skipped: nul-link .*NUL/m);
  const st = await fs.stat(path.join(c.target, 'big-uid'));
  if (process.getuid?.() === 0) assert.equal(st.uid, 7, "the header's owner, not the PAX one");
  assert.equal(Math.floor((await fs.stat(path.join(c.target, 'far-future'))).mtimeMs / 1000), 1_600_000_000);
  ok(await kiln(['export', img.ref, '-o', path.join(c.root, 'export.tar')]), 'kiln export');
  await assertContained(c, ['image', 'target', 'export.tar']);
});

test('tar: a truncated stream, plain or gzip, fails the command (E_BAD_TAR) and leaves no DIR and no tar', async () => {
  const c = await newCase('truncated');
  const plain = await image(c, [{ raw: await truncatedTar(), mediaType: MediaType.OciLayer }], {
    tag: 'plain',
  });
  const gz = gzipSync(await tarOf([file('a', 'x'.repeat(100_000))]));
  const cut = await image(c, [{ raw: gz.subarray(0, gz.length - 30), mediaType: MediaType.OciLayerGzip }], {
    tag: 'gzip',
  });
  await refused(unpackTo(plain.ref, c), {
    code: 'E_BAD_TAR',
    message: /of oci:.*:plain is not a readable tar stream: Unexpected end of data/,
    debug: true,
  });
  await refused(unpackTo(cut.ref, c), {
    code: 'E_BAD_TAR',
    message: /of oci:.*:gzip is not a readable tar stream: unexpected end of file/,
  });
  await refused(['export', cut.ref, '-o', path.join(c.root, 'export.tar')], { code: 'E_BAD_TAR' });
  // Into an existing empty directory: emptied again.
  await fs.mkdir(c.target);
  await refused(unpackTo(plain.ref, c), { code: 'E_BAD_TAR' });
  assert.deepEqual(await fs.readdir(c.target), []);
  await assertContained(c, ['image', 'target']);
});

test('tar: a gzip bomb is stopped (E_TOO_LARGE naming the layer); --max-expansion and KILN_MAX_EXPANSION let a genuine one through', async () => {
  const c = await newCase('gzip-bomb');
  const bomb = await gzipBomb(80 * MiB); // ~80 KiB that expand ~1000 times
  const img = await image(
    c,
    [{ entries: [file('ok', 'ok')] }, { raw: bomb, mediaType: MediaType.OciLayerGzip }],
    {
      os: 'wasip1',
      arch: 'wasm',
      config: { Entrypoint: ['/app.wasm'] },
    },
  );
  const layer = img.layers[1]!.digest;
  const where = new RegExp(`^kiln: layer 1 \\(${layer}\\) of oci:.* expands more than 100 times`);
  await refused(unpackTo(img.ref, c), { code: 'E_TOO_LARGE', message: where, debug: true });
  await refused(['export', img.ref, '-o', path.join(c.root, 'export.tar')], {
    code: 'E_TOO_LARGE',
    message: where,
  });
  await refused(['run', img.ref], { code: 'E_TOO_LARGE', message: /layer .* expands more than 100 times/ });
  await refused(unpackTo(img.ref, c, '--max-layer-size', '1M'), {
    code: 'E_TOO_LARGE',
    message: /layer 1 .* is over the 1 MiB limit for one uncompressed layer/,
  });
  await refused(unpackTo(img.ref, c), {
    code: 'E_TOO_LARGE',
    message: /over the 2 MiB limit/,
    env: { KILN_MAX_LAYER_SIZE: '2M' },
  });
  await assertContained(c, ['image']);

  ok(await kiln(unpackTo(img.ref, c, '--max-expansion', '2000')), 'kiln unpack --max-expansion 2000');
  assert.equal((await fs.stat(path.join(c.target, 'zeros'))).size, 80 * MiB);
  ok(
    await kiln(['export', img.ref, '-o', path.join(c.root, 'export.tar')], {
      env: { KILN_MAX_EXPANSION: 'off' },
    }),
    'KILN_MAX_EXPANSION=off kiln export',
  );
  await assertContained(c, ['image', 'target', 'export.tar']);
});

// ---------------------------------------------------------------------------------------------------
// Manifests and configs

const MANIFEST = MediaType.OciManifest;

/** A layout whose index.json names `desc` (default: the true descriptor of `manifest`). */
async function layoutWith(
  c: Case,
  name: string,
  manifest: Buffer | string,
  desc = descriptorOf(MANIFEST, manifest),
  extra: { bytes: Buffer | string; name?: string }[] = [],
): Promise<string> {
  const m = await memoryImage();
  const dirName = path.join(c.root, name);
  await writeRawLayout(
    dirName,
    [{ bytes: m.config }, { bytes: m.layer }, { bytes: manifest, name: desc.digest }, ...extra],
    indexOf(desc),
  );
  return `oci:${dirName}:test`;
}

const manifestWith = async (change: Record<string, unknown>) =>
  JSON.stringify({ ...JSON.parse((await memoryImage()).manifest.toString()), ...change });

test('manifest: over 4 MiB is refused before it is parsed (E_TOO_LARGE), also when its descriptor lies about the size', async () => {
  const c = await newCase('manifest-large');
  const big = await manifestWith({ annotations: { pad: 'x'.repeat(5 * MiB) } });
  await refused(['inspect', await layoutWith(c, 'big', big)], {
    code: 'E_TOO_LARGE',
    message: /manifest sha256:.* is 5243\d+ bytes, over the 4 MiB limit/,
    debug: true,
  });
  await refused(
    ['inspect', await layoutWith(c, 'lying', big, { ...descriptorOf(MANIFEST, big), size: 400 })],
    {
      code: 'E_TOO_LARGE',
    },
  );
  await refused(['copy', `oci:${c.root}/big:test`, `oci:${c.target}:x`], { code: 'E_TOO_LARGE' });
  await assertContained(c, ['big', 'lying']);
});

test('manifest and config: invalid JSON (E_BAD_MANIFEST, E_BAD_CONFIG)', async () => {
  const c = await newCase('invalid-json');
  await refused(['inspect', await layoutWith(c, 'manifest', '{"schemaVersion": 2, "layers": [')], {
    code: 'E_BAD_MANIFEST',
    message: /manifest is not valid JSON/,
    debug: true,
  });
  const config = 'not json, but a config';
  const m = await manifestWith({ config: descriptorOf(MediaType.OciConfig, config) });
  await refused(unpackTo(await layoutWith(c, 'config', m, undefined, [{ bytes: config }]), c), {
    code: 'E_BAD_CONFIG',
    message: /config is not valid JSON/,
  });
  await assertContained(c, ['manifest', 'config']);
});

test('manifest: the wrong media type (an index where a manifest is declared, text/html) is refused (E_BAD_MANIFEST)', async () => {
  const c = await newCase('media-type');
  const index = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] });
  await refused(['inspect', await layoutWith(c, 'index', index, descriptorOf(MANIFEST, index))], {
    code: 'E_BAD_MANIFEST',
    message: /media type application\/vnd\.oci\.image\.index\.v1\+json does not match the descriptor's/,
  });
  const m = (await memoryImage()).manifest;
  await refused(['inspect', await layoutWith(c, 'html', m, descriptorOf('text/html', m))], {
    code: 'E_BAD_MANIFEST',
    message: /does not match the descriptor's text\/html/,
  });
  const untyped = await manifestWith({ mediaType: 'text/html' });
  await refused(unpackTo(await layoutWith(c, 'untyped', untyped, descriptorOf('text/html', untyped)), c), {
    code: 'E_BAD_MANIFEST',
    message: /unsupported media type text\/html/,
  });
  await assertContained(c, ['index', 'html', 'untyped']);
});

test('manifest and config: content that does not hash to its descriptor (E_DIGEST_MISMATCH), copy leaves no destination', async () => {
  const c = await newCase('digest-mismatch');
  const m = await memoryImage();
  const altered = Buffer.from(m.manifest);
  altered[altered.length - 2] = 0x20; // same size, other bytes
  const ref = await layoutWith(c, 'manifest', altered, m.manifestDesc);
  await refused(['inspect', ref], { code: 'E_DIGEST_MISMATCH', message: /is corrupt/, debug: true });
  await refused(['copy', ref, `oci-archive:${c.root}/copy.tar:x`], { code: 'E_DIGEST_MISMATCH' });
  const config = Buffer.from(m.config);
  config[config.length - 2] = 0x20;
  const configRef = await layoutWith(c, 'config', m.manifest, m.manifestDesc, [
    { bytes: config, name: m.configDesc.digest },
  ]);
  await refused(unpackTo(configRef, c), { code: 'E_DIGEST_MISMATCH', message: /hashes to sha256:/ });
  await refused(['copy', configRef, `oci:${c.root}/copy-dir:x`], { code: 'E_DIGEST_MISMATCH' });
  await assertContained(c, ['manifest', 'config']);
});

test('manifest and layers: a size that does not match the descriptor (E_SIZE_MISMATCH)', async () => {
  const c = await newCase('size-mismatch');
  const m = await memoryImage();
  await refused(
    [
      'inspect',
      await layoutWith(c, 'manifest', m.manifest, { ...m.manifestDesc, size: m.manifestDesc.size + 5 }),
    ],
    {
      code: 'E_SIZE_MISMATCH',
      message: /is \d+ bytes, its descriptor says \d+/,
      debug: true,
    },
  );
  const wrong = await manifestWith({ layers: [{ ...m.layerDesc, size: m.layerDesc.size - 1 }] });
  await refused(unpackTo(await layoutWith(c, 'layer', wrong), c), { code: 'E_SIZE_MISMATCH' });
  await assertContained(c, ['manifest', 'layer']);
});

test('manifest: an unknown digest algorithm is refused (E_BAD_MANIFEST), in a manifest and in index.json', async () => {
  const c = await newCase('digest-algorithm');
  const m = await memoryImage();
  const md5 = await manifestWith({
    layers: [{ ...m.layerDesc, digest: 'md5:d41d8cd98f00b204e9800998ecf8427e' as const }],
  });
  await refused(unpackTo(await layoutWith(c, 'md5', md5), c), {
    code: 'E_BAD_MANIFEST',
    message: /layers\[0\]: unsupported digest algorithm 'md5'/,
    debug: true,
  });
  const sha384 = `sha384:${'a'.repeat(96)}` as const;
  await refused(
    ['inspect', await layoutWith(c, 'sha384', m.manifest, { ...m.manifestDesc, digest: sha384 })],
    {
      code: 'E_BAD_MANIFEST',
      message: /index\.json manifests\[0\]: unsupported digest algorithm 'sha384'/,
    },
  );
  await assertContained(c, ['md5', 'sha384']);
});

test('index: one that points to itself cannot hash to its own digest (E_DIGEST_MISMATCH); nesting deeper than 4 is refused by copy', async () => {
  const c = await newCase('index-self');
  const self = `sha256:${'ab'.repeat(32)}` as const;
  const body = JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [{ mediaType: MediaType.OciIndex, digest: self, size: 180 }],
  });
  const ref = await layoutWith(c, 'self', body, {
    mediaType: MediaType.OciIndex,
    digest: self,
    size: body.length,
  });
  await refused(['inspect', ref], { code: 'E_DIGEST_MISMATCH', debug: true });
  await refused(['copy', ref, `oci:${c.target}:x`], { code: 'E_DIGEST_MISMATCH' });

  const m = await memoryImage();
  const platform = { os: 'linux', architecture: 'amd64' };
  let child = { ...m.manifestDesc, platform };
  const blobs = [{ bytes: m.config }, { bytes: m.layer }, { bytes: m.manifest }];
  for (let i = 0; i < 6; i++) {
    const index = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [child] });
    blobs.push({ bytes: Buffer.from(index) });
    child = { ...descriptorOf(MediaType.OciIndex, index), platform };
  }
  await writeRawLayout(path.join(c.root, 'nested'), blobs, indexOf(child));
  await refused(['copy', `oci:${c.root}/nested:test`, `oci:${c.target}:x`], {
    code: 'E_BAD_MANIFEST',
    message: /indexes nest deeper than 4 levels/,
  });
  await assertContained(c, ['self', 'nested']);
});

// ---------------------------------------------------------------------------------------------------
// References and arguments

test('reference: malformed references are refused (E_BAD_REFERENCE) before anything is read or written', async () => {
  const c = await newCase('bad-reference');
  const bad: [string[], RegExp][] = [
    [['inspect', 'Registry.example.com/Team/App:1'], /repository names must be lowercase/],
    [['inspect', 'app@sha256:abc'], /must be 64 lowercase hex characters/],
    [['inspect', 'app:-bad-tag'], /invalid tag/],
    [['inspect', 'app name:1'], /whitespace/],
    [['inspect', 'host:5000//app'], /cannot contain '\/\/'/],
    [['copy', 'oci:', `oci:${c.target}:x`], /no path in oci:/],
    [['copy', `oci:${c.outside}:`, `oci:${c.target}:x`], /empty tag/],
    [['unpack', `${'a'.repeat(300)}/b:1`, c.target], /characters long/],
  ];
  for (const [args, message] of bad)
    await refused(args, { code: 'E_BAD_REFERENCE', message, debug: args === bad[0]![0] });
  await assertContained(c, []);
});

test('reference: unknown transports are refused (E_UNKNOWN_TRANSPORT) with the ones kiln knows', async () => {
  const c = await newCase('transport');
  for (const src of ['containers-storage:app', 'dir:/tmp/x', 'ostree:/repo', 'ftp://example.com/app.tar']) {
    const r = await refused(['copy', src, `oci:${c.target}:x`], {
      code: 'E_UNKNOWN_TRANSPORT',
      message: /unknown transport '[a-z-]+:'/,
    });
    assert.match(r.stderr, /hint: kiln reads and writes oci:, oci-archive:/);
  }
  const img = await writeImage(path.join(c.root, 'image'), [{ entries: [file('a', 'a')] }]);
  await refused(['copy', img.ref, 'containers-storage:app'], { code: 'E_UNKNOWN_TRANSPORT' });
  await assertContained(c, ['image']);
});

test('reference: a path where a reference is expected is refused (E_BAD_REFERENCE) with an oci: hint', async () => {
  const c = await newCase('path-reference');
  for (const p of ['./layout', '../layout', '/srv/layout', '.']) {
    const r = await refused(['inspect', p], {
      code: 'E_BAD_REFERENCE',
      message: /is a path, not an image reference/,
    });
    assert.match(
      r.stderr,
      new RegExp(`hint: for an OCI layout directory write oci:${p.replace(/\./g, '\\.')}`),
    );
  }
  await refused(['unpack', c.outside, c.target], { code: 'E_BAD_REFERENCE' });

  // A bare name that is a file or directory right here was meant as one, not as a Docker Hub repository.
  await fs.writeFile(path.join(c.root, 'app.tar'), 'not an image');
  const img = await image(c, [{ entries: [file('a', 'a')] }]);
  for (const args of [
    ['inspect', 'outside'],
    ['inspect', 'outside:v1'],
    ['copy', img.ref, 'app.tar'],
  ]) {
    const r = await refused(args, { code: 'E_BAD_REFERENCE', message: /names a local path/, cwd: c.root });
    assert.match(r.stderr, /hint: for an OCI layout directory write oci:/);
  }
  await assertContained(c, ['app.tar', 'image']);
});

test('arguments: option values out of range are usage errors (exit 2, E_USAGE) and touch nothing', async () => {
  const c = await newCase('arguments');
  const src = `oci:${c.root}/none:x`;
  const usage: [string[], RegExp, NodeJS.ProcessEnv?][] = [
    [['copy', src, `oci:${c.target}:x`, '--jobs', '0'], /--jobs takes a number from 1 to 64, got '0'/],
    [['copy', src, `oci:${c.target}:x`, '-j', '65'], /--jobs takes a number from 1 to 64/],
    [
      ['unpack', src, c.target, '--setuid', 'sometimes'],
      /--setuid takes keep, strip, refuse, got 'sometimes'/,
    ],
    [['unpack', src, c.target, '--devices', 'create'], /--devices takes skip, refuse/],
    [['unpack', src, c.target, '--max-expansion', '0.5'], /--max-expansion takes a ratio of at least 1/],
    [['unpack', src, c.target, '--max-expansion', '-3'], /--max-expansion takes a ratio/],
    [['unpack', src, c.target, '--max-layer-size', '12Q'], /--max-layer-size takes a size such as 512M/],
    [['unpack', src, c.target, '--max-layer-size', '0'], /--max-layer-size takes a size/],
    [['unpack', src, c.target], /KILN_MAX_EXPANSION takes a ratio/, { KILN_MAX_EXPANSION: 'lots' }],
    [
      ['export', src, '-o', `${c.target}.tar`],
      /KILN_MAX_LAYER_SIZE takes a size/,
      { KILN_MAX_LAYER_SIZE: '-1' },
    ],
  ];
  for (const [args, message, env] of usage)
    await refused(args, { exit: 2, code: 'E_USAGE', message, env, debug: args[0] === 'export' });
  await refused(['unpack', src, c.target, '--platform', 'linux/'], {
    code: 'E_BAD_PLATFORM',
    message: /the architecture is empty/,
  });
  await assertContained(c, []);
});

test('kiln.yaml: wrong types and unknown keys are refused (E_BAD_PROJECT) with file:line:col and a suggestion', async () => {
  const c = await newCase('kiln-yaml');
  const project = path.join(c.root, 'project');
  await fs.mkdir(project);
  const yaml = path.join(project, 'kiln.yaml');
  const cases: [string, RegExp, RegExp?][] = [
    [
      'lang: c\ntoolchian:\n  image: x\n',
      /kiln\.yaml:2:1: unknown key 'toolchian' \(did you mean 'toolchain'\?\)/,
      /hint: allowed here: .*toolchain/,
    ],
    ['lang: c\nimage:\n  platforms: 5\n', /kiln\.yaml:3:3: image\.platforms: expected a list \(got 5\)/],
    ['lang: 7\n', /kiln\.yaml:1:\d+: lang: expected one of rust, .* \(got 7\)/],
    ['lang: rusty\n', /kiln\.yaml:1:\d+: lang: expected one of/, /hint: did you mean 'rust'\?/],
    ['env: [a, b\n', /kiln\.yaml:\d+:\d+: invalid YAML/],
  ];
  for (const [text, message, hint] of cases) {
    await fs.writeFile(yaml, text);
    const r = await refused(['compile', project], {
      code: 'E_BAD_PROJECT',
      message,
      debug: text === cases[0]![0],
    });
    if (hint) assert.match(r.stderr, hint);
  }
  assert.deepEqual(await fs.readdir(project), ['kiln.yaml'], 'nothing written next to the project');
  await assertContained(c, ['project']);
});

// ---------------------------------------------------------------------------------------------------
// Registry answers: a loopback server that answers as a broken or hostile registry would

async function serve(handle: Parameters<typeof startServer>[0]): Promise<TestServer> {
  const s = await startServer(handle);
  servers.push(s);
  return s;
}

test('registry: an HTML error page is refused (500: E_REGISTRY after retries; 200: E_BAD_MANIFEST), no HTML in the message', async () => {
  const c = await newCase('registry-html');
  const failing = await serve((req, res) => {
    if (answerPing(req, res)) return;
    res.writeHead(500, { 'content-type': 'text/html' });
    res.end(HTML_ERROR_PAGE);
  });
  const r = await refused(['copy', `${failing.host}/app:1`, `oci:${c.target}:x`], {
    code: 'E_REGISTRY',
    message: new RegExp(`^kiln: ${failing.host} answered 500 to manifest 1`),
  });
  assert.doesNotMatch(r.stderr, /<|nginx|Bad Gateway/);
  assert.ok(failing.requests.filter((q) => q.url.includes('/manifests/')).length > 1, 'retried');

  const portal = await serve((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(HTML_ERROR_PAGE);
  });
  await refused(['unpack', `${portal.host}/app:1`, c.target], {
    code: 'E_BAD_MANIFEST',
    message: /manifest 1 in .*\/app is not valid JSON/,
    debug: true,
  });
  await assertContained(c, []);
});

test('registry: a wrong Docker-Content-Digest is refused (E_DIGEST_MISMATCH)', async () => {
  const c = await newCase('registry-digest');
  const m = await memoryImage();
  const lying = await serve((req, res) => {
    if (answerPing(req, res)) return;
    res.writeHead(200, { 'content-type': MANIFEST, 'docker-content-digest': `sha256:${'0'.repeat(64)}` });
    res.end(m.manifest);
  });
  await refused(['copy', `${lying.host}/app:1`, `oci:${c.target}:x`], {
    code: 'E_DIGEST_MISMATCH',
    message: new RegExp(`hashes to ${m.manifestDesc.digest}, expected sha256:0{64}`),
    debug: true,
  });
  // Asked by digest, it answers another manifest.
  const other = await serve((req, res) => {
    if (answerPing(req, res)) return;
    res.writeHead(200, { 'content-type': MANIFEST });
    res.end(m.manifest);
  });
  await refused(['unpack', `${other.host}/app@sha256:${'1'.repeat(64)}`, c.target], {
    code: 'E_DIGEST_MISMATCH',
  });
  await assertContained(c, []);
});

test("registry: a blob redirect to another host is followed without the registry's credentials", async () => {
  const c = await newCase('registry-redirect');
  const m = await memoryImage([file('hello.txt', 'from the storage host\n')]);
  const storage = await serve((req, res) => {
    const digest = new URL(req.url ?? '/', 'http://x').pathname.split('/').pop() ?? '';
    const blob = m.blobs.get(digest);
    if (!blob) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length });
    res.end(blob);
  });
  const creds = `Basic ${Buffer.from('kiln:s3cret-password').toString('base64')}`;
  const registry = await serve((req, res) => {
    if (answerPing(req, res, creds)) return;
    if (req.headers.authorization !== creds) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="hostile"' });
      res.end();
      return;
    }
    if (req.url?.includes('/manifests/')) {
      res.writeHead(200, { 'content-type': MANIFEST, 'docker-content-digest': m.manifestDesc.digest });
      res.end(m.manifest);
      return;
    }
    const digest = req.url?.split('/').pop() ?? '';
    res.writeHead(307, { location: `${storage.url}/bucket/${digest}?X-Signature=abc` });
    res.end();
  });
  const r = await kiln(['unpack', `${registry.host}/app:1`, c.target, '--creds', 'kiln:s3cret-password']);
  ok(r, 'kiln unpack through a redirect');
  assert.equal(await fs.readFile(path.join(c.target, 'hello.txt'), 'utf8'), 'from the storage host\n');
  assert.ok(
    registry.requests.some((q) => q.url.includes('/blobs/') && q.authorization === creds),
    'the registry got the credentials',
  );
  assert.equal(storage.requests.length, 2, 'config and layer fetched from the storage host');
  assert.deepEqual(
    storage.requests.map((q) => q.authorization),
    [undefined, undefined],
    'no Authorization header sent to the other host',
  );
  await assertContained(c, ['target']);
});

test('registry: an endless redirect loop stops (E_REGISTRY) and leaves no destination', async () => {
  const c = await newCase('registry-loop');
  const m = await memoryImage();
  const loop = await serve((req, res) => {
    if (answerPing(req, res)) return;
    if (req.url?.includes('/manifests/')) {
      res.writeHead(200, { 'content-type': MANIFEST, 'docker-content-digest': m.manifestDesc.digest });
      res.end(m.manifest);
      return;
    }
    // /v2/app/blobs/X -> /ping/v2/app/blobs/X -> /v2/app/blobs/X -> ...
    const url = req.url ?? '/';
    res.writeHead(302, { location: url.startsWith('/ping') ? url.slice(5) : `/ping${url}` });
    res.end();
  });
  await refused(['copy', `${loop.host}/app:1`, `oci:${c.target}:x`], {
    code: 'E_REGISTRY',
    message: /more than 5 redirects/,
    debug: true,
  });
  await refused(['unpack', `${loop.host}/app:1`, c.target], { code: 'E_REGISTRY' });
  assert.ok(loop.requests.length < 60, `a bounded number of requests: ${loop.requests.length}`);
  await assertContained(c, []);
});

test('registry: a manifest over 4 MiB, announced or streamed, is refused (E_TOO_LARGE)', async () => {
  const c = await newCase('registry-large');
  const big = await serve((req, res) => {
    if (answerPing(req, res)) return;
    const chunk = Buffer.alloc(MiB, 0x20);
    if (req.url?.includes('announced'))
      res.writeHead(200, { 'content-type': MANIFEST, 'content-length': 6 * MiB });
    else res.writeHead(200, { 'content-type': MANIFEST }); // chunked: no length up front
    for (let i = 0; i < 6; i++) res.write(chunk);
    res.end();
  });
  await refused(['inspect', `${big.host}/announced:1`], {
    code: 'E_TOO_LARGE',
    message: /is 6291456 bytes, over the 4 MiB limit/,
  });
  await refused(['copy', `${big.host}/streamed:1`, `oci:${c.target}:x`], {
    code: 'E_TOO_LARGE',
    message: /is over the 4 MiB limit/,
  });
  await assertContained(c, []);
});

test('registry (real docker-registry): hostile layers pushed there are refused the same way on unpack', async (t) => {
  const skip = registrySkipReason('none');
  if (skip) return t.skip(skip);
  const reg = await sharedRegistry('none');
  const c = await newCase('registry-real');
  const hostile: Spec[] = [
    symlink('s', '../outside'),
    file('s/pwned', 'pwned'),
    file('../escape', 'x'),
    file('ok', 'ok'),
  ];
  const img = await image(c, [
    { gzip: true, entries: hostile },
    { raw: await gzipBomb(70 * MiB), mediaType: MediaType.OciLayerGzip },
  ]);
  const ref = `${reg.host}/hostile/app:1`;
  ok(await kiln(['copy', img.ref, ref]), 'kiln copy to the registry');
  await refused(unpackTo(ref, c), { code: 'E_TOO_LARGE', message: /layer 1 .* expands more than 100 times/ });
  const r = await refused(unpackTo(ref, c, '--max-expansion', 'off'), {
    code: 'E_UNSAFE_PATH',
    message: /refused 2 unsafe entries/,
  });
  assert.match(r.stderr, /^refused: s\/pwned /m);
  assert.equal(await fs.readFile(path.join(c.target, 'ok'), 'utf8'), 'ok');
  await assertContained(c, ['image', 'target']);
});
