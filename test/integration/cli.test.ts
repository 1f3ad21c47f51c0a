import * as assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { before, test } from 'node:test';
import { indexEntry, makeImage, makeIndex, tagged } from '../support/images.js';
import { KILN_CLI, kiln } from '../support/kiln.js';
import { run } from '../support/tools.js';
import { buildWasiProgram, HELLO_C, wasiSkipReason } from '../support/wasi.js';

let hello: string;
let work: string;

before(async () => {
  const skip = wasiSkipReason();
  if (skip) throw new Error(skip);
  hello = await buildWasiProgram('hello', HELLO_C);
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-cli-'));
});

async function manifestOf(layoutDir: string): Promise<Buffer> {
  const index = JSON.parse(await fs.readFile(path.join(layoutDir, 'index.json'), 'utf8'));
  const digest: string = index.manifests[0].digest;
  return fs.readFile(path.join(layoutDir, 'blobs', 'sha256', digest.slice(7)));
}

test('packaging twice gives byte-identical manifests despite changed mtime, owner and umask', async () => {
  const input = path.join(work, 'det.wasm');
  await fs.copyFile(hello, input);
  const a = await kiln(['package', input, '--to', `oci:${work}/det-a:v1`]);
  assert.equal(a.code, 0, a.stderr);
  await fs.utimes(input, 123456, 123456);
  if (process.getuid?.() === 0) await fs.chown(input, 4242, 4242);
  await fs.chmod(input, 0o600);
  // a fresh cache and another umask, as on another machine
  const b = await run(
    'sh',
    [
      '-c',
      `umask 077; exec "${process.execPath}" "${KILN_CLI}" package "${input}" --to "oci:${work}/det-b:v1"`,
    ],
    {
      env: { ...process.env, KILN_HOME: path.join(work, 'other-home') },
    },
  );
  assert.equal(b.code, 0, b.stderr);
  assert.equal(a.stdout.trim(), b.stdout.trim());
  assert.match(a.stdout.trim(), /^sha256:[0-9a-f]{64}$/);
  assert.ok((await manifestOf(`${work}/det-a`)).equals(await manifestOf(`${work}/det-b`)));
});

test('kiln run runs the packaged module with args, env and dirs, and exits with its code', async () => {
  const to = `oci:${work}/run:hello`;
  assert.equal((await kiln(['package', hello, '--to', to, '--env', 'GREETING=from-image'])).code, 0);
  const r = await kiln(['run', to, '--', 'a', 'b']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^hello a b$/m);
  assert.match(r.stdout, /^GREETING=from-image$/m, 'env from the image config');
  assert.doesNotMatch(r.stderr, /ExperimentalWarning/);
  const over = await kiln(['run', to, '--env', 'GREETING=cli', '--env', 'EXIT_CODE=7']);
  assert.equal(over.code, 7);
  assert.match(over.stdout, /^GREETING=cli$/m);
  const data = path.join(work, 'data');
  await fs.mkdir(data, { recursive: true });
  await fs.writeFile(path.join(data, 'one.txt'), '1');
  const dirs = await kiln(['run', to, '--dir', `${data}:/data`, '--env', 'LIST_DIR=/data']);
  assert.equal(dirs.code, 0, dirs.stderr);
  assert.match(dirs.stdout, /^entry: one\.txt$/m);
  const direct = await kiln(['run', hello, '--', 'direct']);
  assert.match(direct.stdout, /^hello direct$/m);
});

test('global options work before or after the command', async () => {
  const to = `oci:${work}/glob:x`;
  assert.equal((await kiln(['package', hello, '--to', to])).code, 0);
  const before = await kiln(['--json', 'inspect', to]);
  const after = await kiln(['inspect', to, '--json']);
  assert.equal(before.code, 0, before.stderr);
  assert.equal(before.stdout, after.stdout);
  const data = JSON.parse(before.stdout);
  assert.equal(data.image.platform.os, 'wasip1');
  assert.equal(data.image.platform.architecture, 'wasm');
  assert.deepEqual(data.image.config.entrypoint, ['/hello.wasm']);
  const quiet = await kiln(['package', hello, '--to', `oci:${work}/glob:y`, '--quiet']);
  assert.equal(quiet.stderr, '');
  const loud = await kiln(['package', hello, '--to', `oci:${work}/glob:z`]);
  assert.match(loud.stderr, /packaged/);
  const version = await kiln(['--version']);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  for (const cmd of ['package', 'inspect', 'run', 'copy']) {
    const help = await kiln([cmd, '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Examples:/, `${cmd} --help has examples`);
  }
});

async function assertNothingWritten(dir: string): Promise<void> {
  await assert.rejects(fs.stat(dir), 'destination must not exist');
}

function assertOneLineError(
  r: { code: number; stdout: string; stderr: string },
  code: number,
  errorCode: string,
): void {
  assert.equal(r.code, code, `exit code; stderr: ${r.stderr}`);
  const first = r.stderr.split('\n')[0] ?? '';
  assert.match(first, /^kiln: /);
  assert.match(r.stderr, new RegExp(errorCode));
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace without --debug');
}

test('bad input: clear one-line errors, exit 1 (2 for usage), nothing written', async () => {
  const txt = path.join(work, 'not.wasm');
  await fs.writeFile(txt, 'hello, I am text');
  let r = await kiln(['package', txt, '--to', `oci:${work}/bad1:x`]);
  assertOneLineError(r, 1, 'E_NOT_WASM');
  await assertNothingWritten(`${work}/bad1`);

  r = await kiln(['package', path.join(work, 'missing.wasm'), '--to', `oci:${work}/bad2:x`]);
  assertOneLineError(r, 1, 'E_NOT_FOUND');
  await assertNothingWritten(`${work}/bad2`);

  r = await kiln(['package', hello, '--format', 'zip', '--to', `oci:${work}/bad3:x`]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /zip/);
  await assertNothingWritten(`${work}/bad3`);

  r = await kiln(['package', hello, '--to', 'Example.com/UPPER/Repo:tag']);
  assertOneLineError(r, 1, 'E_BAD_REFERENCE');

  r = await kiln(['package', hello, '--to', 'ftp:/somewhere']);
  assertOneLineError(r, 1, 'E_UNKNOWN_TRANSPORT');

  r = await kiln(['package']);
  assertOneLineError(r, 2, 'E_USAGE');

  r = await kiln(['package', hello, '--to', `oci:${work}/bad4:x`, '--no-such-flag']);
  assertOneLineError(r, 2, 'E_USAGE');
  assert.match(r.stderr.split('\n')[0] ?? '', /--no-such-flag.*\(E_USAGE\)$/, 'the code ends the first line');
  await assertNothingWritten(`${work}/bad4`);

  const json = await kiln(['package', txt, '--to', `oci:${work}/bad5:x`, '--json']);
  assert.equal(json.code, 1);
  assert.equal(JSON.parse(json.stdout).error.code, 'E_NOT_WASM');
});

test('a truncated layout or archive is refused with a clear error', async () => {
  const dir = `${work}/trunc`;
  assert.equal((await kiln(['package', hello, '--to', `oci:${dir}:x`])).code, 0);
  const manifest = JSON.parse((await manifestOf(dir)).toString());
  await fs.rm(path.join(dir, 'blobs', 'sha256', manifest.layers[0].digest.slice(7)));
  let r = await kiln(['run', `oci:${dir}:x`]);
  assertOneLineError(r, 1, 'E_BAD_LAYOUT');
  await fs.rm(path.join(dir, 'index.json'));
  r = await kiln(['inspect', `oci:${dir}:x`]);
  assertOneLineError(r, 1, 'E_BAD_LAYOUT');

  const tar = `${work}/trunc.tar`;
  assert.equal((await kiln(['package', hello, '--to', `oci-archive:${tar}:x`])).code, 0);
  const full = await fs.readFile(tar);
  await fs.writeFile(tar, full.subarray(0, 3000));
  r = await kiln(['inspect', `oci-archive:${tar}:x`]);
  assertOneLineError(r, 1, 'E_BAD_ARCHIVE');
});

test('a failed copy leaves no destination behind', async () => {
  const src = `${work}/copysrc`;
  assert.equal((await kiln(['package', hello, '--to', `oci:${src}:x`])).code, 0);
  const manifest = JSON.parse((await manifestOf(src)).toString());
  await fs.writeFile(path.join(src, 'blobs', 'sha256', manifest.layers[0].digest.slice(7)), 'corrupted');
  let r = await kiln(['copy', `oci:${src}:x`, `oci-archive:${work}/copy-out.tar:x`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /E_SIZE_MISMATCH|E_DIGEST_MISMATCH/);
  await assertNothingWritten(`${work}/copy-out.tar`);
  assert.deepEqual(
    (await fs.readdir(work)).filter((n) => n.includes('copy-out')),
    [],
  );
  r = await kiln(['copy', `oci:${src}:x`, `oci:${work}/copy-out-dir:x`]);
  assert.equal(r.code, 1);
  await assertNothingWritten(`${work}/copy-out-dir`);
});

test('a blob corrupted without changing its size is caught by run and by copy', async () => {
  const src = `${work}/flip`;
  assert.equal((await kiln(['package', hello, '--to', `oci:${src}:x`])).code, 0);
  const manifest = JSON.parse((await manifestOf(src)).toString());
  const blob = path.join(src, 'blobs', 'sha256', manifest.layers[0].digest.slice(7));
  const bytes = await fs.readFile(blob);
  bytes[bytes.length - 20]! ^= 0xff; // same size, other content
  await fs.writeFile(blob, bytes);
  const r = await kiln(['run', `oci:${src}:x`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /E_DIGEST_MISMATCH|E_BAD_TAR/);
  for (const dst of [`oci:${work}/flip-dir:x`, `oci-archive:${work}/flip.tar:x`]) {
    const c = await kiln(['copy', `oci:${src}:x`, dst]);
    assert.equal(c.code, 1, dst);
    assert.match(c.stderr, /E_DIGEST_MISMATCH/, dst);
  }
  await assertNothingWritten(`${work}/flip-dir`);
  await assertNothingWritten(`${work}/flip.tar`);
});

test("arguments after -- belong to the module, even when they look like kiln's options", async () => {
  const r = await kiln(['run', hello, '--', '--json', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^hello --json --quiet$/m);
  const failing = await kiln(['run', path.join(work, 'nope.wasm'), '--', '--json']);
  assert.equal(failing.code, 1);
  assert.equal(failing.stdout, '', 'the error is for people, not JSON, since --json was the module argument');
  assert.match(failing.stderr, /^kiln: .*E_NOT_FOUND/);
});

test('an index of a wasm and a native image: run picks wasm, inspect lists both, copy --platform picks one', async () => {
  const dir = `${work}/multi`;
  assert.equal((await kiln(['package', hello, '--to', `oci:${dir}:wasm`])).code, 0);
  assert.equal(
    (await kiln(['package', hello, '--platform', 'linux/amd64', '--to', `oci:${dir}:native`])).code,
    0,
  );
  const wasm = tagged(dir, 'wasm');
  const native = tagged(dir, 'native');
  await makeIndex(dir, 'app', [indexEntry(native, 'linux/amd64'), indexEntry(wasm, 'wasip1/wasm')]);

  const run = await kiln(['run', `oci:${dir}:app`, '--', 'idx']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^hello idx$/m);
  const listed = JSON.parse((await kiln(['inspect', `oci:${dir}:app`, '--json'])).stdout);
  assert.deepEqual(
    listed.manifests.map((m: { platform: { os: string } }) => m.platform.os),
    ['linux', 'wasip1'],
  );
  const picked = JSON.parse(
    (await kiln(['inspect', `oci:${dir}:app`, '--platform', 'wasip1/wasm', '--json'])).stdout,
  );
  assert.equal(picked.image.digest, wasm.digest);
  const copied = await kiln([
    'copy',
    `oci:${dir}:app`,
    `oci:${work}/multi-copy:one`,
    '--platform',
    'linux/amd64',
  ]);
  assert.equal(copied.code, 0, copied.stderr);
  assert.equal(copied.stdout.trim(), native.digest);
  const whole = await kiln(['copy', `oci:${dir}:app`, `oci-archive:${work}/multi.tar:all`]);
  assert.equal(whole.code, 0, whole.stderr);
  const back = JSON.parse((await kiln(['inspect', `oci-archive:${work}/multi.tar:all`, '--json'])).stdout);
  assert.equal(back.manifests.length, 2);
});

test('kiln run of a native image is E_NOT_WASM naming its platforms, with a hint for docker/podman', async () => {
  const dir = `${work}/native`;
  const amd = await makeImage(dir, 'amd64', { layers: 1, layerBytes: 100 });
  let r = await kiln(['run', `oci:${dir}:amd64`]);
  assertOneLineError(r, 1, 'E_NOT_WASM');
  assert.match(r.stderr.split('\n')[0]!, /not a WebAssembly image.*linux\/amd64/);
  assert.match(r.stderr, /hint: .*kiln run. runs WebAssembly images; use docker or podman for native ones/);

  await makeIndex(dir, 'multi', [indexEntry(amd), indexEntry(amd, 'linux/arm64/v8')]);
  r = await kiln(['run', `oci:${dir}:multi`]);
  assertOneLineError(r, 1, 'E_NOT_WASM');
  assert.match(r.stderr.split('\n')[0]!, /linux\/amd64, linux\/arm64\/v8/);
  assert.match(r.stderr, /use docker or podman/);
  r = await kiln(['run', `oci:${dir}:multi`, '--platform', 'linux/arm64']);
  assertOneLineError(r, 1, 'E_NOT_WASM');
  assert.match(r.stderr.split('\n')[0]!, /linux\/amd64, linux\/arm64\/v8/);

  // A wasm image recorded for a native platform (crun's compat images) still runs.
  const crun = `oci:${work}/crun:x`;
  assert.equal((await kiln(['package', hello, '--platform', 'linux/amd64', '--to', crun])).code, 0);
  const ok = await kiln(['run', crun, '--', 'crun']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^hello crun$/m);
});

test('--runtime-config is refused by the formats that would drop it', async () => {
  const rc = path.join(work, 'runtime-config.json');
  await fs.writeFile(rc, JSON.stringify({ type: 'envoy_proxy', abiVersions: ['v0-4689'] }));
  const packageAs = (format: string) =>
    kiln([
      'package',
      hello,
      '--format',
      format,
      '--runtime-config',
      rc,
      '--to',
      `oci:${work}/rc-${format}:x`,
    ]);
  for (const format of ['image', 'artifact', 'wasm-to-oci']) {
    const r = await packageAs(format);
    assertOneLineError(r, 2, 'E_USAGE');
    assert.match(r.stderr.split('\n')[0]!, /--runtime-config is for the istio and istio-oci formats/, format);
    await assertNothingWritten(`${work}/rc-${format}`);
  }
  for (const format of ['istio', 'istio-oci']) {
    const r = await packageAs(format);
    assert.equal(r.code, 0, r.stderr);
  }
});

test('human output says 1 entry, 1 layer: singular for one', async () => {
  const to = `oci:${work}/one:x`;
  assert.equal((await kiln(['package', hello, '--to', to])).code, 0);
  const exported = await kiln(['export', to, '-o', path.join(work, 'one.tar')]);
  assert.equal(exported.code, 0, exported.stderr);
  assert.match(exported.stderr, /exported 1 entry from 1 layer of /);
  const unpacked = await kiln(['unpack', to, path.join(work, 'one-dir')]);
  assert.equal(unpacked.code, 0, unpacked.stderr);
  assert.match(unpacked.stderr, /unpacked 1 entry from 1 layer of /);
});

test("inspect's layer total is the layers' sum, not the manifest's and config's too", async () => {
  const { humanSize } = await import('../../src/cli/output.js');
  const img = await makeImage(`${work}/sizes`, 'two', { layers: 2, layerBytes: 100 });
  const shown = await kiln(['inspect', `oci:${work}/sizes:two`]);
  assert.equal(shown.code, 0, shown.stderr);
  const sum = img.layers.reduce((n, l) => n + l.size, 0);
  assert.match(shown.stdout, new RegExp(`^  layers +2 \\(${humanSize(sum)} in all\\)$`, 'm'));
});

test('a mistyped command: the code ends the first line, the suggestion has a line of its own', async () => {
  const r = await kiln(['inspec', 'oci:./x:y']);
  assert.equal(r.code, 2);
  const lines = r.stderr.split('\n');
  assert.equal(lines[0], "kiln: unknown command 'inspec' (E_USAGE)");
  assert.equal(lines[1]?.trim(), '(Did you mean inspect?)');
  assert.match(lines[2] ?? '', /^ {2}hint: /);
  const json = await kiln(['inspec', '--json']);
  assert.deepEqual(JSON.parse(json.stdout).error, {
    code: 'E_USAGE',
    message: "unknown command 'inspec'",
    hint: 'Did you mean inspect?',
  });
});

test("every subcommand's --help lists the global options", async () => {
  for (const cmd of [['package'], ['run'], ['inspect'], ['toolchain', 'list'], ['copy']]) {
    const help = await kiln([...cmd, '--help']);
    assert.equal(help.code, 0, help.stderr);
    for (const flag of [
      '--json',
      '--debug',
      '--quiet',
      '--creds',
      '--insecure-registry',
      '--ca-cert',
      '--jobs',
    ])
      assert.ok(help.stdout.includes(flag), `kiln ${cmd.join(' ')} --help lists ${flag}`);
  }
});

test('kiln toolchain list shows the whole reference: name@digest', async () => {
  const { hostPlatform } = await import('../../src/oci/platform.js');
  const platform = `linux/${hostPlatform().architecture}`;
  const name = `oci:${work}/tc:base`;
  assert.equal((await kiln(['package', hello, '--platform', platform, '--to', name])).code, 0);
  const pulled = await kiln(['toolchain', 'pull', name]);
  assert.equal(pulled.code, 0, pulled.stderr);
  const pinned = pulled.stdout.trim();
  assert.match(pinned, /@sha256:[0-9a-f]{64}$/);
  const list = await kiln(['toolchain', 'list']);
  assert.equal(list.code, 0, list.stderr);
  assert.equal(list.stdout.split('\n')[0]?.split('\t')[0], pinned);
});

/** A preload that emits another ExperimentalWarning as the program ends (long after kiln started). */
const other =
  "data:text/javascript,process.once('beforeExit',()=>process.emitWarning('Other is experimental','ExperimentalWarning'))";

test('kiln run prints no ExperimentalWarning for WASI, and leaves every other warning alone', async () => {
  const env = { ...process.env, NO_COLOR: '1', KILN_HOME: path.join(work, 'warn-home') };
  const cli = await run(process.execPath, ['--import', other, KILN_CLI, 'run', hello, '--', 'cli'], { env });
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /^hello cli$/m);
  assert.doesNotMatch(cli.stderr, /WASI/);
  assert.match(cli.stderr, /ExperimentalWarning: Other is experimental/);
});

test('runWasm used as a library prints no ExperimentalWarning for WASI, and leaves every other warning alone', async () => {
  const env = { ...process.env, NO_COLOR: '1', KILN_HOME: path.join(work, 'warn-home') };
  const library = new URL('../../dist/index.js', import.meta.url).href;
  const script = `const { runWasm } = await import(${JSON.stringify(library)});
process.exitCode = await runWasm(${JSON.stringify(hello)}, { args: ['lib'] });`;
  const lib = await run(process.execPath, ['--import', other, '--input-type=module', '-e', script], { env });
  assert.equal(lib.code, 0, lib.stderr);
  assert.match(lib.stdout, /^hello lib$/m);
  assert.doesNotMatch(lib.stderr, /WASI/);
  assert.match(lib.stderr, /ExperimentalWarning: Other is experimental/);
});

test('the bin keeps V8 code caches in KILN_HOME/.code-cache: reused, rewritten when broken, optional', async () => {
  const home = await fs.mkdtemp(path.join(work, 'code-cache-home-'));
  const env = { KILN_HOME: home };
  const image = `oci:${work}/code-cache:v1`;
  assert.equal((await kiln(['package', hello, '--to', image, '-q'], { env })).code, 0);
  const digest = await kiln(['digest', image], { env });
  assert.equal(digest.code, 0, digest.stderr);
  // One directory for this build of kiln and this Node, a cache per chunk the runs loaded.
  const keys = await fs.readdir(path.join(home, '.code-cache'));
  assert.equal(keys.length, 1, keys.join(', '));
  assert.match(keys[0]!, new RegExp(`-node${process.versions.node}-${process.arch}$`));
  const dir = path.join(home, '.code-cache', keys[0]!);
  const caches = async () => {
    const names = (await fs.readdir(dir)).sort();
    return Promise.all(names.map(async (n) => [n, (await fs.readFile(path.join(dir, n))).length] as const));
  };
  const first = await caches();
  assert.ok(first.length > 3 && first.every(([n, size]) => n.endsWith('.js.v8') && size > 0));
  const mtimes = async () =>
    Promise.all(first.map(async ([n]) => (await fs.stat(path.join(dir, n))).mtimeMs));
  const before = await mtimes();
  // A run that finds every cache it needs uses them and writes none.
  const again = await kiln(['digest', image], { env });
  assert.deepEqual([again.code, again.stdout, again.stderr], [0, digest.stdout, '']);
  assert.deepEqual(await mtimes(), before);
  // Broken caches (V8 rejects them) cost a compile, nothing else, and are written anew.
  for (const [n] of first) await fs.writeFile(path.join(dir, n), 'not a code cache');
  const broken = await kiln(['digest', image], { env });
  assert.deepEqual([broken.code, broken.stdout, broken.stderr], [0, digest.stdout, '']);
  for (const [n] of first.filter(([n]) => n.startsWith('main-')))
    assert.notEqual((await fs.readFile(path.join(dir, n), 'utf8')).slice(0, 16), 'not a code cache');
  // A store kiln can't write to: no cache, the command works.
  const file = path.join(work, 'code-cache-not-a-dir');
  await fs.writeFile(file, '');
  const unwritable = await kiln(['digest', image], { env: { KILN_HOME: path.join(file, 'home') } });
  assert.deepEqual([unwritable.code, unwritable.stdout, unwritable.stderr], [0, digest.stdout, '']);
});
