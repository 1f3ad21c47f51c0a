/**
 * The bubblewrap sandbox runner, for real: a busybox toolchain image (the host's static busybox)
 * unpacked by ensureRootfs and run by bwrap. Checks what a build sees (mounts, environment, user,
 * network, the host's files) and what is left afterwards (artifacts owned by the caller, no
 * processes after an abort, one complete rootfs when several unpack at once).
 *
 * Needs bwrap and a static busybox; in CI (CI=true) their absence fails instead of skipping.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isKilnError } from '../../src/errors.js';
import { ensureRootfs, listRootfs, pruneRootfs, removeTree } from '../../src/toolchain/rootfs.js';
import type { BuildJob, RunResult, ToolchainImage } from '../../src/toolchain/runner.js';
import { imageUser, SandboxRunner } from '../../src/toolchain/sandbox-runner.js';
import { busyboxSkipReason, busyboxToolchain } from '../support/toolchain-images.js';
import { requireTool, skipOrFail, toolSkipReason } from '../support/tools.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

async function sandboxSkipReason(): Promise<string | undefined> {
  const missing = toolSkipReason('bwrap') ?? busyboxSkipReason();
  if (missing !== undefined) return missing;
  const why = await new SandboxRunner({ bwrap: requireTool('bwrap') }).unavailable();
  return why === undefined ? undefined : skipOrFail(`bwrap cannot run here: ${why}`);
}

const skip = await sandboxSkipReason();
const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-sandbox-'));
const home = path.join(work, 'home');
const rootfsRoot = path.join(work, 'rootfs');
let image: ToolchainImage;
let runner: SandboxRunner;

before(async () => {
  // Nothing here may touch the user's own cache.
  process.env['KILN_HOME'] = home;
  if (skip === undefined) {
    image = await busyboxToolchain(home);
    runner = new SandboxRunner({ rootfsRoot });
  }
});
// removeTree: a rootfs may hold read-only directories a non-root user cannot simply rm.
after(() => removeTree(work));

interface Built {
  result: RunResult;
  output: string;
  src: string;
  out: string;
}

let jobs = 0;

/** Runs `command` in the sandbox with a fresh source dir (holding `files`) and an empty out dir. */
async function build(
  command: string,
  options: Partial<BuildJob> & { files?: Record<string, string | Buffer> } = {},
): Promise<Built> {
  const dir = path.join(work, `job-${++jobs}`);
  const src = path.join(dir, 'src');
  const out = path.join(dir, 'out');
  await fs.mkdir(src, { recursive: true });
  await fs.mkdir(out);
  for (const [name, content] of Object.entries(options.files ?? {}))
    await fs.writeFile(path.join(src, name), content);
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  const { files: _files, ...rest } = options;
  const result = await runner.run({
    image,
    command,
    env: {},
    srcDir: src,
    outDir: out,
    network: false,
    output: sink,
    ...rest,
  });
  return { result, output: Buffer.concat(chunks).toString('utf8'), src, out };
}

/** Interface names listed in a /proc/net/dev. */
function interfaces(procNetDev: string): string[] {
  return procNetDev
    .split('\n')
    .slice(2)
    .map((line) => line.split(':')[0]!.trim())
    .filter((name) => name !== '')
    .sort();
}

/** Relative paths of everything under `dir` (lstat, symlinks not followed). */
async function tree(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true });
  return entries.map(String).sort();
}

/** Pids of the processes whose command line contains `marker`. */
async function pidsWith(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmdline = await fs.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(marker)) pids.push(Number(name));
  }
  return pids;
}

/** Pids of live (non-zombie) processes in the pid namespace `ns` (a /proc/PID/ns/pid link text). */
async function pidsInNamespace(ns: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const link = await fs.readlink(`/proc/${name}/ns/pid`).catch(() => '');
    if (link !== ns) continue;
    const stat = await fs.readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    if (stat !== '' && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z') pids.push(Number(name));
  }
  return pids;
}

test('a build reads /src and writes /out; its stdout and stderr reach job.output', { skip }, async () => {
  const input = randomBytes(4096);
  const b = await build(
    'pwd; cat input.txt > /out/app.wasm && printf "\\0asm" >> /out/app.wasm; echo on-stderr >&2',
    {
      files: { 'input.txt': input },
    },
  );
  assert.equal(b.result.runner, 'sandbox');
  assert.equal(b.result.exitCode, 0, b.output);
  const artifact = await fs.readFile(path.join(b.out, 'app.wasm'));
  assert.deepEqual(artifact, Buffer.concat([input, Buffer.from('\0asm', 'latin1')]));
  assert.match(b.output, /^\/src$/m, 'the build starts in /src');
  assert.match(b.output, /on-stderr/);
  // bwrap maps the sandbox's user to the caller: the artifact is ours on the host.
  const st = await fs.stat(path.join(b.out, 'app.wasm'));
  assert.equal(st.uid, process.getuid!());
  assert.equal(st.gid, process.getgid!());
});

test('a failing command gives its exit code, and its stderr is in job.output', { skip }, async () => {
  const b = await build('echo "it broke: no such thing" >&2; exit 3');
  assert.equal(b.result.exitCode, 3);
  assert.match(b.output, /it broke: no such thing/);
  // A signal is reported the way a shell does (128 + n), still as the build's own exit code.
  const killed = await build('kill -9 $$');
  assert.equal(killed.result.exitCode, 137);
});

test('/src and / are read-only; the host source stays as it was', { skip }, async () => {
  const b = await build(
    [
      'if echo changed > /src/input.txt; then exit 10; fi',
      'if touch /src/new.txt; then exit 11; fi',
      'if touch /etc/x; then exit 12; fi',
      'if mkdir /newdir; then exit 13; fi',
      'if touch /bin/busybox; then exit 14; fi',
      'touch /tmp/scratch && echo tmp-writable',
    ].join('\n'),
    { files: { 'input.txt': 'original\n' } },
  );
  assert.equal(b.result.exitCode, 0, b.output);
  assert.match(b.output, /Read-only file system/);
  assert.match(b.output, /tmp-writable/);
  assert.deepEqual(await fs.readdir(b.src), ['input.txt']);
  assert.equal(await fs.readFile(path.join(b.src, 'input.txt'), 'utf8'), 'original\n');
  assert.deepEqual(await fs.readdir(b.out), []);
});

test('no network by default; with network: true the host network and resolv.conf', { skip }, async () => {
  const offline = await build('cat /proc/net/dev');
  assert.equal(offline.result.exitCode, 0, offline.output);
  assert.deepEqual(interfaces(offline.output), ['lo']);

  const hostIfaces = interfaces(await fs.readFile('/proc/net/dev', 'utf8'));
  const online = await build('cat /proc/net/dev', { network: true });
  assert.equal(online.result.exitCode, 0, online.output);
  assert.deepEqual(interfaces(online.output), hostIfaces);

  const resolv = await fs.readFile('/etc/resolv.conf', 'utf8').catch(() => undefined);
  if (resolv !== undefined) {
    const r = await build('cat /etc/resolv.conf', { network: true });
    assert.equal(r.result.exitCode, 0, r.output);
    assert.equal(r.output, resolv);
  }
});

test("the host's home and files are not visible", { skip }, async (t) => {
  const secret = `kiln-secret-${randomBytes(8).toString('hex')}`;
  const probes: string[] = [];
  for (const dir of [os.homedir(), work]) {
    const probe = path.join(dir, `.kiln-sandbox-probe-${process.pid}`);
    try {
      await fs.writeFile(probe, secret);
      probes.push(probe);
    } catch {
      t.diagnostic(`cannot write a probe in ${dir}; not checked there`);
    }
  }
  assert.ok(probes.length > 0);
  try {
    for (const probe of probes) {
      assert.equal(await fs.readFile(probe, 'utf8'), secret, 'readable on the host');
      const cat = await build(`cat ${probe}`);
      assert.notEqual(cat.result.exitCode, 0);
      assert.doesNotMatch(cat.output, new RegExp(secret));
      const ls = await build(`ls -a ${path.dirname(probe)}`);
      assert.doesNotMatch(ls.output, /kiln-sandbox-probe/);
    }
    // Only the image's files and the mounts: nothing of the host's / (its /etc/hostname, /usr...).
    const top = await build('ls /');
    assert.deepEqual(top.output.split(/\s+/).filter(Boolean).sort(), [
      'bin',
      'dev',
      'etc',
      'out',
      'proc',
      'src',
      'tmp',
    ]);
  } finally {
    for (const probe of probes) await fs.rm(probe, { force: true });
  }
});

test("the environment is the image's and the job's, never the host's", { skip }, async () => {
  process.env['KILN_SANDBOX_HOST_ONLY'] = 'leaked';
  try {
    const withEnv: ToolchainImage = {
      ...image,
      config: { ...image.config, config: { Env: ['PATH=/bin', 'FROM_IMAGE=yes', 'OVERRIDDEN=image'] } },
    };
    const b = await build('env', { image: withEnv, env: { JOB_VAR: 'a b=c', OVERRIDDEN: 'job' } });
    assert.equal(b.result.exitCode, 0, b.output);
    const env = new Map(
      b.output
        .trim()
        .split('\n')
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const),
    );
    assert.equal(env.get('KILN_OUT'), '/out');
    assert.equal(env.get('KILN_SRC'), '/src');
    assert.equal(env.get('HOME'), '/tmp');
    assert.equal(env.get('PATH'), '/bin');
    assert.equal(env.get('FROM_IMAGE'), 'yes');
    assert.equal(env.get('JOB_VAR'), 'a b=c');
    assert.equal(env.get('OVERRIDDEN'), 'job');
    assert.equal(env.has('KILN_SANDBOX_HOST_ONLY'), false);
    assert.equal(env.has('KILN_HOME'), false);
  } finally {
    delete process.env['KILN_SANDBOX_HOST_ONLY'];
  }
});

test("the build runs as the image's user, and /out files are still the caller's", { skip }, async () => {
  const asRoot = await build('id -u; id -g');
  assert.deepEqual(asRoot.output.trim().split('\n'), ['0', '0'], 'no User: root, as in Docker');

  const as1234: ToolchainImage = { ...image, config: { ...image.config, config: { User: '1234:5678' } } };
  const b = await build('id -u; id -g; echo x > /out/f; echo y > $HOME/g && echo home-writable', {
    image: as1234,
  });
  assert.equal(b.result.exitCode, 0, b.output);
  assert.deepEqual(b.output.trim().split('\n'), ['1234', '5678', 'home-writable']);
  const st = await fs.stat(path.join(b.out, 'f'));
  assert.equal(st.uid, process.getuid!());

  // Names are looked up in the image's own /etc/passwd and /etc/group (busybox's image has none).
  const fakeRoot = path.join(work, 'users-rootfs');
  await fs.mkdir(path.join(fakeRoot, 'etc'), { recursive: true });
  await fs.writeFile(
    path.join(fakeRoot, 'etc/passwd'),
    'root:x:0:0::/root:/bin/sh\nbuilder:x:1500:1600::/home/b:/bin/sh\n',
  );
  await fs.writeFile(path.join(fakeRoot, 'etc/group'), 'root:x:0:\ntools:x:1700:builder\n');
  const userOf = (User: string) =>
    imageUser({ ...image, config: { ...image.config, config: { User } } }, fakeRoot);
  assert.deepEqual(await userOf('builder'), { uid: 1500, gid: 1600 });
  assert.deepEqual(await userOf('builder:tools'), { uid: 1500, gid: 1700 });
  assert.deepEqual(await userOf('1500'), { uid: 1500, gid: 1600 });
  assert.deepEqual(await userOf('root'), { uid: 0, gid: 0 });
  assert.deepEqual(await userOf('42:43'), { uid: 42, gid: 43 });
  await assert.rejects(userOf('builder:nogroup'), (err) => isKilnError(err, 'E_RUNNER'));
  // A symlinked /etc/passwd (it could point at the host's) is not read.
  const hostPasswd = path.join(work, 'host-passwd');
  await fs.writeFile(hostPasswd, 'hostonly:x:77:77::/:/bin/sh\n');
  assert.deepEqual(await userOf('77'), { uid: 77, gid: 0 });
  await fs.rm(path.join(fakeRoot, 'etc/passwd'));
  await fs.symlink(hostPasswd, path.join(fakeRoot, 'etc/passwd'));
  await assert.rejects(userOf('hostonly'), (err) => isKilnError(err, 'E_RUNNER'));

  const named: ToolchainImage = { ...image, config: { ...image.config, config: { User: 'builder' } } };
  await assert.rejects(
    build('true', { image: named }),
    (err) => isKilnError(err, 'E_RUNNER') && /builder/.test(err.message),
  );
});

test('ensureRootfs unpacks once, with the mount points the sandbox needs', { skip }, async () => {
  const root = path.join(work, 'rootfs-once');
  let layersRead = 0;
  const onLayer = () => {
    layersRead++;
  };
  const dir = await ensureRootfs(image, root, { onLayer });
  assert.ok(layersRead > 0);
  assert.equal(path.dirname(dir), root);
  assert.equal(path.basename(dir), image.descriptor.digest.split(':')[1]);
  for (const name of ['src', 'out', 'tmp', 'dev', 'proc'])
    assert.ok((await fs.lstat(path.join(dir, name))).isDirectory(), name);
  assert.ok((await fs.lstat(path.join(dir, 'etc/resolv.conf'))).isFile());
  const before = await fs.stat(path.join(dir, 'bin/busybox'));
  const beforeDir = await fs.stat(dir);

  layersRead = 0;
  assert.equal(await ensureRootfs(image, root, { onLayer }), dir);
  assert.equal(layersRead, 0, 'no layer read again');
  const after = await fs.stat(path.join(dir, 'bin/busybox'));
  const afterDir = await fs.stat(dir);
  assert.equal(after.ino, before.ino, 'not extracted again');
  assert.equal(afterDir.ino, beforeDir.ino);
  assert.equal(afterDir.mtimeMs, beforeDir.mtimeMs);
  assert.deepEqual(await fs.readdir(root), [path.basename(dir)], 'no staging left');
});

test('concurrent ensureRootfs calls (in one process and in two) leave one complete rootfs', {
  skip,
}, async (t) => {
  const reference = await tree(await ensureRootfs(image, path.join(work, 'rootfs-reference')));
  assert.ok(reference.includes('bin/busybox'));

  // In one process: every call passes the "already there?" check before any finishes, so all unpack.
  const root = path.join(work, 'rootfs-race');
  const dirs = await Promise.all([1, 2, 3].map(() => ensureRootfs(image, root)));
  assert.equal(new Set(dirs).size, 1);
  assert.deepEqual(await tree(dirs[0]!), reference);
  assert.deepEqual(await fs.readdir(root), [path.basename(dirs[0]!)], 'the losers discarded their copies');

  // In two kiln processes: each loads, says "ready", and calls ensureRootfs when told "go" on stdin.
  const root2 = path.join(work, 'rootfs-race-2');
  const script = path.join(work, 'ensure.mts');
  const src = (rel: string) => JSON.stringify(new URL(`../../${rel}`, import.meta.url).href);
  await fs.writeFile(
    script,
    [
      "import { existsSync } from 'node:fs';",
      "import { once } from 'node:events';",
      `import { OciLayout } from ${src('src/store/layout.ts')};`,
      `import { ensureRootfs, rootfsPath } from ${src('src/toolchain/rootfs.ts')};`,
      `import { toolchainInStore } from ${src('test/support/toolchain-images.ts')};`,
      'const [home, root] = process.argv.slice(2);',
      "const image = await toolchainInStore(await OciLayout.open(home), 'busybox', 'busybox-toolchain');",
      "process.stdout.write('ready\\n');",
      "await once(process.stdin, 'data');",
      'const existed = existsSync(rootfsPath(image.descriptor.digest, root));',
      'const dir = await ensureRootfs(image, root);',
      'process.stdout.write(JSON.stringify({ dir, existed }));',
      'process.stdin.destroy();',
    ].join('\n'),
  );
  const children = [1, 2].map(() => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, home, root2], {
      cwd: REPO,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let onReady: () => void;
    const ready = new Promise<void>((resolve) => {
      onReady = resolve;
    });
    child.stdout.on('data', (c) => {
      stdout += c;
      if (stdout.startsWith('ready\n')) onReady();
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => {
        onReady();
        resolve({ code, stdout: stdout.replace(/^ready\n/, ''), stderr });
      });
    });
    return { child, ready, done };
  });
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.child.stdin.write('go\n');
  const results = await Promise.all(children.map((c) => c.done));
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const [a, b] = results.map((r) => JSON.parse(r.stdout) as { dir: string; existed: boolean });
  assert.equal(a!.dir, b!.dir);
  // Both unpacking is the usual case (not asserted: a slow start could let one find the other's).
  t.diagnostic(`rootfs already there when called: ${a!.existed}, ${b!.existed}`);
  assert.deepEqual(await tree(a!.dir), reference);
  assert.deepEqual(await fs.readdir(root2), [path.basename(a!.dir)]);
});

test('an abort kills the sandbox at once and leaves no process', { skip }, async () => {
  const marker = `kiln-abort-${randomBytes(6).toString('hex')}`;
  const controller = new AbortController();
  const sink = new PassThrough();
  let seen = '';
  let namespace = '';
  const started = new Promise<void>((resolve) => {
    sink.on('data', (c: Buffer) => {
      seen += c.toString();
      if (seen.includes('started')) resolve();
    });
  });
  const src = await fs.mkdtemp(path.join(work, 'abort-src-'));
  const out = await fs.mkdtemp(path.join(work, 'abort-out-'));
  // The inner sh keeps the marker in its command line while `sleep` runs under it.
  const running = runner.run({
    image,
    command: `echo started; sh -c 'sleep 30; :' ${marker}`,
    env: {},
    srcDir: src,
    outDir: out,
    network: false,
    output: sink,
    signal: controller.signal,
  });
  running.catch(() => {});
  await started;
  let pids: number[] = [];
  for (let i = 0; i < 100 && pids.length < 3; i++) {
    await new Promise((r) => setTimeout(r, 20));
    pids = await pidsWith(marker);
  }
  assert.ok(pids.length >= 3, `bwrap, its init and the build should be running: ${pids}`);
  // The sandbox's pid namespace: every process of the build, `sleep` included, is in it.
  for (const pid of pids) {
    const ns = await fs.readlink(`/proc/${pid}/ns/pid`).catch(() => '');
    if (ns !== '' && ns !== (await fs.readlink('/proc/self/ns/pid'))) namespace = ns;
  }
  assert.notEqual(namespace, '');
  assert.ok((await pidsInNamespace(namespace)).length >= 3, 'init, sh, sh, sleep');

  const t0 = Date.now();
  controller.abort();
  await assert.rejects(running, (err) => isKilnError(err, 'E_ABORTED'));
  assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
  assert.deepEqual(await pidsWith(marker), []);
  assert.deepEqual(await pidsInNamespace(namespace), []);

  // Aborted before it starts: nothing runs at all.
  const early = new AbortController();
  early.abort();
  await assert.rejects(build(`echo ${marker}`, { signal: early.signal }), (err) =>
    isKilnError(err, 'E_ABORTED'),
  );
});

test("kiln's own failures are one-line KilnErrors", { skip }, async () => {
  await assert.rejects(
    runner.run({ command: 'true', env: {}, srcDir: work, outDir: work, network: false }),
    (err) => isKilnError(err, 'E_RUNNER'),
  );

  const missing = new SandboxRunner({ bwrap: path.join(work, 'no-such-bwrap'), rootfsRoot });
  assert.match((await missing.unavailable()) ?? '', /not installed|not on PATH/);
  await assert.rejects(
    missing.run({ image, command: 'true', env: {}, srcDir: work, outDir: work, network: false }),
    (err) => isKilnError(err, 'E_RUNNER') && /bubblewrap/.test(err.hint ?? '') && !err.message.includes('\n'),
  );

  // A rootfs without /bin/sh: bwrap cannot start the build, which is kiln's failure, not the build's.
  const fakeDigest = `sha256:${'e'.repeat(64)}` as const;
  const fake = path.join(rootfsRoot, 'e'.repeat(64));
  for (const dir of ['src', 'out', 'tmp', 'dev', 'proc', 'etc'])
    await fs.mkdir(path.join(fake, dir), { recursive: true });
  const noShell: ToolchainImage = { ...image, descriptor: { ...image.descriptor, digest: fakeDigest } };
  await assert.rejects(
    build('true', { image: noShell }),
    (err) => isKilnError(err, 'E_RUNNER') && /\/bin\/sh/.test(err.message),
  );
  await fs.rm(fake, { recursive: true });

  await assert.rejects(
    runner.run({
      image,
      command: 'true',
      env: {},
      srcDir: path.join(work, 'nope'),
      outDir: work,
      network: false,
    }),
    (err) => isKilnError(err, 'E_NOT_FOUND'),
  );
});

test('listRootfs and pruneRootfs: what is not kept goes, read-only directories included', {
  skip,
}, async () => {
  const root = path.join(work, 'rootfs-prune');
  const kept = await ensureRootfs(image, root);
  const otherHex = 'a'.repeat(64);
  const other = path.join(root, otherHex);
  await fs.mkdir(path.join(other, 'locked/deeper'), { recursive: true });
  await fs.writeFile(path.join(other, 'locked/deeper/file'), 'x');
  await fs.chmod(path.join(other, 'locked/deeper'), 0o500);
  await fs.chmod(path.join(other, 'locked'), 0o500);
  // Staging dirs: one a killed kiln left two days ago (goes), one being written now (stays).
  const stale = path.join(root, `.${otherHex}.tmp-stale`);
  const fresh = path.join(root, `.${otherHex}.tmp-fresh`);
  await fs.mkdir(stale);
  await fs.mkdir(fresh);
  const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000);
  await fs.utimes(stale, twoDaysAgo, twoDaysAgo);
  await fs.writeFile(path.join(root, 'not-a-rootfs'), '');

  const listed = await listRootfs(root);
  assert.deepEqual(
    listed.map((e) => e.digest),
    [image.descriptor.digest, `sha256:${otherHex}`].sort(),
  );
  const keptEntry = listed.find((e) => e.digest === image.descriptor.digest)!;
  assert.equal(keptEntry.dir, kept);
  assert.ok(keptEntry.size > (await fs.stat(path.join(kept, 'bin/busybox'))).size, 'busybox at least');

  assert.deepEqual(await pruneRootfs(new Set([image.descriptor.digest]), root), [`sha256:${otherHex}`]);
  assert.deepEqual(
    (await fs.readdir(root)).sort(),
    [`.${otherHex}.tmp-fresh`, path.basename(kept), 'not-a-rootfs'].sort(),
  );
  assert.deepEqual(await pruneRootfs(new Set([image.descriptor.digest]), root), []);
  assert.deepEqual(await pruneRootfs(new Set(), root), [image.descriptor.digest]);
  assert.deepEqual((await listRootfs(root)).length, 0);
});
