/**
 * Components, end to end with real parts: a C program compiled here (clang --target=wasm32-wasi) to a
 * preview 1 command, made a component by `kiln componentize` (jco's adapter), packaged as wasip2, and
 * run by `kiln run` from an `oci:` layout and from a test registry, with the same output and exit codes
 * as the reference implementation (`jco run` of the same component).
 *
 * The sandbox (src/component/sandbox.ts) with hostile guests: /etc/passwd, `..` through a preopen,
 * symbolic links out of a preopen (made by the test, and made by the guest), writing to a read-only
 * preopen, an endless loop (--timeout), memory growth without end (--max-memory). Each is refused or
 * confined; nothing outside is read or written.
 *
 * The cache: the transpiled component is kept in the store by digest, and a second run uses it.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { kiln, kilnDigest, kilnFails, kilnOk } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { workDir } from '../support/temp.js';
import { run } from '../support/tools.js';
import { buildWasiProgram, wasiSkipReason } from '../support/wasi.js';

const skip = wasiSkipReason();
const work = workDir('kiln-components');
const JCO = fileURLToPath(new URL('../../node_modules/@bytecodealliance/jco/dist/jco.js', import.meta.url));

/** One program, many behaviours (argv[1]), so one component is transpiled for all of them. */
const APP_C = String.raw`#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void try_read(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) { printf("read %s: refused (%s)\n", path, strerror(errno)); return; }
  char buf[256] = {0};
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  printf("read %s: GOT %zu bytes: %s\n", path, n, buf);
}

static void try_write(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) { printf("write %s: refused (%s)\n", path, strerror(errno)); return; }
  fputs("written by the guest\n", f);
  fclose(f);
  printf("write %s: WROTE\n", path);
}

void *volatile kept;

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "hello";
  if (!strcmp(mode, "hello")) {
    printf("hello from C\n");
    for (int i = 2; i < argc; i++) printf("arg %d: %s\n", i - 1, argv[i]);
    const char *g = getenv("GREETING");
    printf("GREETING=%s\n", g ? g : "(unset)");
    fprintf(stderr, "a line on stderr\n");
    return 0;
  }
  if (!strcmp(mode, "exit")) return atoi(argv[2]);
  if (!strcmp(mode, "stdin")) {
    char buf[256] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, stdin);
    printf("stdin: %zu bytes: %s\n", n, buf);
    return 0;
  }
  if (!strcmp(mode, "files")) {
    try_read("/data/in.txt");
    try_write("/data/out.txt");
    try_read("/data/out.txt");
    return 0;
  }
  if (!strcmp(mode, "hostile")) {
    try_read("/etc/passwd");
    try_read("/data/../etc/passwd");
    try_read("/data/../../../../../../etc/passwd");
    try_read("/data/../secret.txt");
    try_read("/data/abs-link");
    try_read("/data/rel-link");
    try_read("/data/sub/../../secret.txt");
    try_write("/data/rel-link");
    try_write("/data/../escaped.txt");
    if (symlink("../secret.txt", "/data/mine") == 0) printf("symlink /data/mine: made\n");
    else printf("symlink /data/mine: refused (%s)\n", strerror(errno));
    try_read("/data/mine");
    if (symlink("/etc/passwd", "/data/mine-abs") == 0) printf("symlink /data/mine-abs: made\n");
    else printf("symlink /data/mine-abs: refused (%s)\n", strerror(errno));
    try_read("/data/mine-abs");
    try_read("/data/inside-link");
    return 0;
  }
  if (!strcmp(mode, "readonly")) {
    try_read("/data/in.txt");
    try_write("/data/in.txt");
    try_write("/data/new.txt");
    return 0;
  }
  if (!strcmp(mode, "loop")) {
    volatile unsigned long n = 0;
    for (;;) n++;
  }
  if (!strcmp(mode, "grow")) {
    /* Silent while it grows: jco's output (jco run too) traps in the adapter's fd_write once the
       memory has grown by ~16 MiB, so the answer is the exit code: 0 when malloc was refused within
       argv[2] MiB, 3 when it got further. */
    size_t mib = 0, limit = (size_t)atoi(argv[2]);
    for (;;) {
      char *p = malloc(1 << 20);
      if (!p) return mib <= limit ? 0 : 3;
      memset(p, 1, 1 << 20);
      *(void **)p = kept; /* kept reachable, so the compiler cannot drop the allocation */
      kept = p;
      mib++;
    }
  }
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
`;

interface Built {
  module: string;
  component: string;
}

let built: Promise<Built> | undefined;
/** The preview 1 module and its component (by kiln componentize), made once for the file. */
function app(): Promise<Built> {
  built ??= (async () => {
    const module = await buildWasiProgram('app', APP_C);
    const component = path.join(work, 'app.component.wasm');
    await kilnOk(['componentize', module, '-o', component]);
    return { module, component };
  })();
  return built;
}

/** `jco run` of the same component: the reference. */
async function jcoRun(component: string, args: string[], env: Record<string, string> = {}, input?: string) {
  return run(process.execPath, [JCO, 'run', component, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    input,
    timeoutMs: 120_000,
  });
}

test('kiln componentize: a preview 1 command becomes a component, the same bytes every time', {
  skip,
}, async () => {
  const { module, component } = await app();
  const bytes = await fs.readFile(component);
  assert.deepEqual([...bytes.subarray(4, 8)], [0x0d, 0x00, 0x01, 0x00], 'a component header');
  const again = path.join(work, 'again.wasm');
  const digest = await kilnDigest(['componentize', module, '-o', again]);
  assert.equal(digest, `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
  assert.ok(bytes.equals(await fs.readFile(again)), 'deterministic');
  const err = await kilnFails(['componentize', component, '-o', path.join(work, 'twice.wasm')], 'E_USAGE');
  assert.match(err.message, /already a component/);
});

test('kiln package --component packages a preview 1 module as a wasip2 component, deterministically', {
  skip,
}, async () => {
  const { module } = await app();
  const a = await kilnDigest(['package', module, '--component', '--to', `oci:${work}/pkg-a:app`]);
  const b = await kilnDigest(['package', module, '--component', '--to', `oci:${work}/pkg-b:app`]);
  assert.equal(a, b);
  const inspect = JSON.parse(await kilnOk(['inspect', `oci:${work}/pkg-a:app`, '--json'])) as {
    image: { platform: { os: string } };
  };
  assert.equal(inspect.image.platform.os, 'wasip2');
});

/** kiln run and jco run of the component agree: stdout, stderr lines, exit code. */
async function sameAsJco(ref: string, component: string, args: string[], input?: string) {
  const env = { GREETING: 'hi there' };
  const ours = await kiln(['run', ref, '--env', `GREETING=${env.GREETING}`, '--', ...args], { input });
  const theirs = await jcoRun(component, args, env, input);
  assert.equal(ours.stdout, theirs.stdout, `stdout of ${args.join(' ')}\nkiln stderr: ${ours.stderr}`);
  assert.equal(ours.code, theirs.code, `exit code of ${args.join(' ')}\nkiln stderr: ${ours.stderr}`);
  assert.equal(ours.stderr, theirs.stderr);
  return ours;
}

test('kiln run of a component from an oci: layout prints what jco run prints, with the same exit codes', {
  skip,
}, async () => {
  const { component } = await app();
  const ref = `oci:${work}/run:app`;
  await kilnOk(['package', component, '--to', ref]);
  const hello = await sameAsJco(ref, component, ['hello', 'a', 'b c']);
  assert.match(hello.stdout, /^hello from C\narg 1: a\narg 2: b c\nGREETING=hi there\n$/);
  assert.equal(hello.stderr, 'a line on stderr\n');
  const three = await sameAsJco(ref, component, ['exit', '3']);
  assert.equal(three.code, 1, 'WASI 0.2 exit is ok/err: a component exits 1, as with jco run');
  assert.equal((await sameAsJco(ref, component, ['exit', '0'])).code, 0);
  const stdin = await sameAsJco(ref, component, ['stdin'], 'some input');
  assert.match(stdin.stdout, /^stdin: 10 bytes: some input$/m);
});

test('kiln run of a component from a registry', { skip: skip ?? registrySkipReason() }, async () => {
  const { component } = await app();
  const registry = await sharedRegistry('none');
  const ref = `${registry.host}/components/app:1`;
  await kilnOk(['package', component, '--to', ref]);
  await sameAsJco(ref, component, ['hello', 'from', 'registry']);
});

test('a preview 1 module runs on the same path and keeps its exit code', { skip }, async () => {
  const { module } = await app();
  const ref = `oci:${work}/p1:app`;
  await kilnOk(['package', module, '--to', ref, '--env', 'GREETING=from-image']);
  const r = await kiln(['run', ref, '--', 'hello', 'x']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'hello from C\narg 1: x\nGREETING=from-image\n');
  const over = await kiln(['run', ref, '--env', 'GREETING=cli', '--', 'hello']);
  assert.match(over.stdout, /^GREETING=cli$/m, '--env after the image env');
  assert.equal((await kiln(['run', ref, '--', 'exit', '7'])).code, 7);
  assert.equal((await kiln(['run', module, '--', 'exit', '9'])).code, 9);
});

test('--dir: read and write in a preopen; :ro refuses writes', { skip }, async () => {
  const { component } = await app();
  const data = path.join(work, 'files-data');
  await fs.mkdir(data, { recursive: true });
  await fs.writeFile(path.join(data, 'in.txt'), 'input file');
  const r = await kiln(['run', component, '--dir', `${data}:/data`, '--', 'files']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^read \/data\/in.txt: GOT 10 bytes: input file$/m);
  assert.match(r.stdout, /^write \/data\/out.txt: WROTE$/m);
  assert.equal(await fs.readFile(path.join(data, 'out.txt'), 'utf8'), 'written by the guest\n');
  const ro = await kiln(['run', component, '--dir', `${data}:/data:ro`, '--', 'readonly']);
  assert.equal(ro.code, 0, ro.stderr);
  assert.match(ro.stdout, /^read \/data\/in.txt: GOT/m);
  assert.match(ro.stdout, /^write \/data\/in.txt: refused/m);
  assert.match(ro.stdout, /^write \/data\/new.txt: refused/m);
  assert.equal(await fs.readFile(path.join(data, 'in.txt'), 'utf8'), 'input file');
  await assert.rejects(fs.stat(path.join(data, 'new.txt')));
});

test('hostile guest: nothing outside its preopen is read or written, through .., absolute paths or symlinks', {
  skip,
}, async () => {
  const { module, component } = await app();
  for (const [what, guest] of [
    ['component', component],
    ['preview 1 module', module],
  ] as const) {
    const box = path.join(work, `hostile-${what.replace(/ /g, '-')}`);
    const data = path.join(box, 'data');
    await fs.mkdir(path.join(data, 'sub'), { recursive: true });
    await fs.writeFile(path.join(box, 'secret.txt'), 'TOP SECRET');
    await fs.writeFile(path.join(data, 'inside.txt'), 'fine to read');
    await fs.symlink('/etc/passwd', path.join(data, 'abs-link'));
    await fs.symlink('../secret.txt', path.join(data, 'rel-link'));
    await fs.symlink('inside.txt', path.join(data, 'inside-link'));
    const before = await fs.readdir(box);
    const r = await kiln(['run', guest, '--dir', `${data}:/data`, '--', 'hostile']);
    assert.equal(r.code, 0, `${what}: ${r.stderr}`);
    const got = r.stdout.split('\n').filter((l) => / GOT | WROTE$/.test(l));
    assert.deepEqual(got, ['read /data/inside-link: GOT 12 bytes: fine to read'], `${what}:\n${r.stdout}`);
    assert.doesNotMatch(r.stdout, /TOP SECRET|root:/);
    assert.match(r.stdout, /^read \/etc\/passwd: refused/m);
    assert.match(r.stdout, /^read \/data\/\.\.\/etc\/passwd: refused/m);
    assert.match(r.stdout, /^read \/data\/rel-link: refused/m);
    assert.match(r.stdout, /^read \/data\/abs-link: refused/m);
    assert.match(r.stdout, /^read \/data\/mine: refused/m);
    assert.equal(
      await fs.readFile(path.join(box, 'secret.txt'), 'utf8'),
      'TOP SECRET',
      'not written through a link',
    );
    assert.deepEqual(await fs.readdir(box), before, 'nothing new beside the preopen');
  }
});

test('hostile guest: an endless loop is stopped by --timeout (E_TIMEOUT)', { skip }, async () => {
  const { component } = await app();
  const started = Date.now();
  const r = await kiln(['run', component, '--timeout', '2', '--', 'loop']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^kiln: .* ran longer than --timeout 2s and was stopped \(E_TIMEOUT\)$/m);
  assert.ok(Date.now() - started < 60_000);
});

test('hostile guest: memory growth without end is refused past --max-memory', { skip }, async () => {
  const { module, component } = await app();
  for (const guest of [component, module]) {
    const r = await kiln(['run', guest, '--max-memory', '64', '--timeout', '60', '--', 'grow', '64']);
    assert.equal(r.code, 0, `malloc refused within 64 MiB\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  // With a higher limit the same guest gets past 64 MiB (exit 3 from a preview 1 module).
  const free = await kiln(['run', module, '--max-memory', '256', '--timeout', '60', '--', 'grow', '64']);
  assert.equal(free.code, 3, free.stderr);
});

test('a component that exports no wasi:cli/run is refused, naming what it exports', { skip }, async () => {
  const reactor = fileURLToPath(new URL('../fixtures/wasm/component-reactor.wasm', import.meta.url));
  const err = await kilnFails(['run', reactor], 'E_NOT_RUNNABLE');
  assert.match(err.message, /exports no wasi:cli\/run \(it exports /);
});

test('the transpiled component is cached in the store by digest; a second run does not transpile', {
  skip,
}, async () => {
  const { component } = await app();
  const home = path.join(work, 'cache-home');
  const env = { KILN_HOME: home };
  await kilnOk(['run', component, '--', 'hello'], { env });
  const digest = createHash('sha256')
    .update(await fs.readFile(component))
    .digest('hex');
  const entries = await fs.readdir(path.join(home, 'components'));
  assert.equal(entries.length, 1);
  assert.ok(entries[0]!.startsWith(`${digest}-`), `${entries[0]} is keyed by the component's digest`);
  const entry = path.join(home, 'components', entries[0]!);
  const stamp = async () =>
    Promise.all(
      (await fs.readdir(entry)).sort().map(async (f) => {
        const st = await fs.stat(path.join(entry, f));
        return `${f} ${st.ino} ${st.mtimeMs}`;
      }),
    );
  const first = await stamp();
  await kilnOk(['run', component, '--', 'hello'], { env });
  assert.deepEqual(await stamp(), first, 'the entry is reused as it is');
  assert.deepEqual(await fs.readdir(path.join(home, 'components')), entries);

  const lib = (await import(
    new URL('../../dist/component/sandbox.js', import.meta.url).href
  )) as typeof import('../../src/component/sandbox.js');
  const { inspectWasm } = (await import(
    new URL('../../dist/wasm/inspect.js', import.meta.url).href
  )) as typeof import('../../src/wasm/inspect.js');
  const bytes = await fs.readFile(component);
  const other = path.join(work, 'cache-lib');
  const a = await lib.prepareGuest(bytes, 'app', inspectWasm(bytes), other);
  const b = await lib.prepareGuest(bytes, 'app', inspectWasm(bytes), other);
  assert.deepEqual([a.transpiled, b.transpiled], [true, false]);
  assert.equal(a.dir, b.dir);
});
