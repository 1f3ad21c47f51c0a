/**
 * The docker runner against a real engine: a private dockerd (test/support/docker.ts, no bridge
 * network) and a static-busybox toolchain image in a kiln store (test/support/toolchain-images.ts).
 * DOCKER_HOST points at the private engine for this file only. Outside CI a missing dockerd or
 * busybox skips; in CI it fails.
 *
 * Covered: artifacts and output, exit status, read-only /src (mount and copy), no network and the
 * environment, copy vs mount byte for byte, unsafe links in a copied /out, no container left after
 * success, failure, abort and SIGTERM (to the CLI, built with `npm run build`, which aborts its
 * context), one image load only, unavailable() / DOCKER_HOST parsing, and remote engines over tcp+TLS
 * and ssh:// (a private sshd, test/support/sshd.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { engineEndpoint } from '../../src/engine/endpoint.js';
import { isKilnError } from '../../src/errors.js';
import { parseDigest } from '../../src/oci/digest.js';
import { DockerRunner, type Transfer } from '../../src/toolchain/docker-runner.js';
import type { RunResult, ToolchainImage } from '../../src/toolchain/runner.js';
import { type DockerEngine, dockerSkipReason, sharedDocker, startDocker } from '../support/docker.js';
import { sshdSkipReason, startSshd } from '../support/sshd.js';
import { busyboxSkipReason, busyboxToolchain } from '../support/toolchain-images.js';

const TEST = { timeout: 120_000 };
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'kiln-runner-docker-'));
const home = join(work, 'home');

// The runner reads these; the file's tests see the private engine only, and the rest is restored.
const ENV_KEYS = ['DOCKER_HOST', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'CONTAINER_HOST'] as const;
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
after(() => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  rmSync(work, { recursive: true, force: true });
});

interface Setup {
  engine: DockerEngine;
  toolchain: ToolchainImage;
}
let setup: Promise<Setup> | undefined;

/** The engine and the toolchain image, made once for the file; undefined (and the test skipped) if they cannot be. */
async function ready(t: TestContext): Promise<Setup | undefined> {
  const reason = dockerSkipReason() ?? busyboxSkipReason();
  if (reason !== undefined) {
    t.skip(reason);
    return undefined;
  }
  setup ??= (async () => {
    const engine = await sharedDocker();
    for (const k of ENV_KEYS) delete process.env[k];
    process.env['DOCKER_HOST'] = engine.host;
    return { engine, toolchain: await busyboxToolchain(home) };
  })();
  return setup;
}

interface Build {
  result: RunResult;
  output: string;
  srcDir: string;
  outDir: string;
  /** tree(srcDir) just before the build. */
  srcBefore: Record<string, string>;
}

interface BuildOptions {
  transfer?: Transfer;
  env?: Record<string, string>;
  files?: Record<string, string | Buffer>;
  /** Files made executable (mode 0755) in the source. */
  executable?: string[];
  signal?: AbortSignal;
  /** Called with the output so far, each time some arrives. */
  onOutput?: (text: string) => void;
}

/** Runs `command` with the docker runner on a fresh source dir (with `files`) and an empty out dir. */
async function build(toolchain: ToolchainImage, command: string, opts: BuildOptions = {}): Promise<Build> {
  const dir = mkdtempSync(join(work, 'job-'));
  const srcDir = join(dir, 'src');
  const outDir = join(dir, 'out');
  mkdirSync(srcDir);
  mkdirSync(outDir);
  for (const [name, content] of Object.entries(opts.files ?? { 'input.txt': 'source text\n' })) {
    mkdirSync(join(srcDir, name, '..'), { recursive: true });
    writeFileSync(join(srcDir, name), content);
  }
  for (const name of opts.executable ?? []) chmodSync(join(srcDir, name), 0o755);
  const srcBefore = tree(srcDir);
  const stream = new PassThrough();
  let output = '';
  stream.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    opts.onOutput?.(output);
  });
  const runner = new DockerRunner(opts.transfer ? { transfer: opts.transfer } : {});
  const result = await runner.run({
    image: toolchain,
    command,
    env: opts.env ?? {},
    srcDir,
    outDir,
    network: false,
    output: stream,
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  await new Promise((resolve) => setImmediate(resolve));
  return { result, output, srcDir, outDir, srcBefore };
}

/** Every container the engine has, running or not. */
async function containers(engine: DockerEngine): Promise<string[]> {
  const r = await engine.docker(['ps', '-aq', '--no-trunc']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l !== '');
}

/** A directory as comparable data: path -> type, mode and content (files) or target (symlinks). */
function tree(dir: string, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    const rel = `${prefix}${name}`;
    const st = lstatSync(full);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out[rel] = `symlink -> ${readlinkSync(full)}`;
    else if (st.isDirectory()) {
      out[rel] = `dir ${mode}`;
      Object.assign(out, tree(full, `${rel}/`));
    } else out[rel] = `file ${mode} ${readFileSync(full).toString('base64')}`;
  }
  return out;
}

/** Exit statuses a build printed as `name=N` lines. */
function statuses(output: string): Record<string, number> {
  // Not anchored to lines: stdout and stderr arrive as separate frames and are merged here, so a
  // shell's error message written in two pieces can have a status line land in its middle.
  return Object.fromEntries([...output.matchAll(/\b([a-z]+)=(\d+)\b/g)].map((m) => [m[1], Number(m[2])]));
}

test('a build reads /src, writes /out, and its stdout and stderr reach job.output', TEST, async (t) => {
  const s = await ready(t);
  if (!s) return;
  const { result, output, outDir } = await build(
    s.toolchain,
    'echo "building from $(cat input.txt)"; mkdir -p /out/lib; printf "\\000asm" > /out/app.wasm; ' +
      'cat input.txt >> /out/app.wasm; echo data > "$KILN_OUT/lib/extra.txt"; echo "a warning" >&2',
  );
  assert.deepEqual(result, { runner: 'docker', exitCode: 0 });
  assert.deepEqual(readFileSync(join(outDir, 'app.wasm')), Buffer.from('\0asmsource text\n'));
  assert.equal(readFileSync(join(outDir, 'lib', 'extra.txt'), 'utf8'), 'data\n');
  assert.match(output, /^building from source text$/m);
  assert.match(output, /^a warning$/m);
});

test('a failing build: its exit status comes back and its stderr reached job.output', TEST, async (t) => {
  const s = await ready(t);
  if (!s) return;
  const { result, output } = await build(s.toolchain, 'echo "error: nothing to build" >&2; exit 3');
  assert.deepEqual(result, { runner: 'docker', exitCode: 3 });
  assert.match(output, /error: nothing to build/);
});

/** Tries to change /src every way a build could; prints name=status lines. */
const TAMPER =
  'echo changed > /src/input.txt; echo write=$?; touch /src/new.txt; echo create=$?; ' +
  'rm -f /src/input.txt; echo remove=$?; chmod 666 /src/input.txt; echo chmod=$?; ' +
  'mkdir /src/d; echo mkdir=$?; cat /src/input.txt; touch /tmp/scratch; echo tmp=$?; ' +
  'touch /etc/kiln-was-here; echo rootfs=$?';

for (const transfer of ['mount', 'copy'] as const) {
  test(
    `transfer ${transfer}: /src is read-only for the build and the host source stays as it was`,
    TEST,
    async (t) => {
      const s = await ready(t);
      if (!s) return;
      const { result, output, srcDir, srcBefore } = await build(s.toolchain, TAMPER, { transfer });
      assert.equal(result.exitCode, 0, output);
      const status = statuses(output);
      for (const op of ['write', 'create', 'remove', 'chmod', 'mkdir'])
        assert.ok((status[op] ?? 0) > 0, `${op} in /src succeeded:\n${output}`);
      assert.equal(status['tmp'], 0, `/tmp is not writable:\n${output}`);
      // The root filesystem is read-only with a mount; a copy needs it writable (putArchive).
      if (transfer === 'mount') assert.ok((status['rootfs'] ?? 0) > 0, `/etc is writable:\n${output}`);
      else assert.equal(status['rootfs'], 0, output);
      assert.match(output, /source text\n/, 'the source is still readable'); // see statuses()
      assert.deepEqual(Object.keys(srcBefore), ['input.txt']);
      assert.deepEqual(tree(srcDir), srcBefore);
    },
  );
}

test(
  'no network by default; the environment has KILN_OUT, KILN_SRC, HOME and the job env',
  TEST,
  async (t) => {
    const s = await ready(t);
    if (!s) return;
    const { result, output } = await build(s.toolchain, 'cat /proc/net/dev; echo ---; env', {
      env: { GREETING: 'hello world', KILN_EXTRA: '1' },
    });
    assert.equal(result.exitCode, 0, output);
    const [netdev = '', env = ''] = output.split('---\n');
    const interfaces = netdev
      .split('\n')
      .filter((l) => l.includes(':'))
      .map((l) => l.split(':')[0]!.trim());
    assert.deepEqual(interfaces, ['lo']);
    const vars = env.split('\n');
    for (const v of ['KILN_OUT=/out', 'KILN_SRC=/src', 'HOME=/tmp', 'GREETING=hello world', 'KILN_EXTRA=1'])
      assert.ok(vars.includes(v), `${v} missing from:\n${env}`);
  },
);

test('transfer copy gives the same /out as mount, byte for byte, from the same source', TEST, async (t) => {
  const s = await ready(t);
  if (!s) return;
  const files = {
    'blob.bin': randomBytes(3 * 1024 * 1024 + 17),
    'deep/er/name with spaces.txt': 'nested\n',
    [`${'long-directory-name-'.repeat(6)}/file.txt`]: 'a path over 100 bytes\n',
    'tool.sh': '#!/bin/sh\necho tool ran\n',
  };
  const command =
    'sh tool.sh && ./tool.sh && mkdir -p /out/bin /out/empty && cp blob.bin /out/app.wasm && ' +
    'cat "deep/er/name with spaces.txt" long-directory-name-*/file.txt > /out/bin/notes && ' +
    'cp tool.sh /out/bin/tool && chmod 750 /out/bin/tool && ln -s app.wasm /out/latest.wasm && ' +
    'ln /out/app.wasm /out/hard.wasm && ls -R /src | wc -l';
  const mount = await build(s.toolchain, command, { transfer: 'mount', files, executable: ['tool.sh'] });
  const copy = await build(s.toolchain, command, { transfer: 'copy', files, executable: ['tool.sh'] });
  assert.equal(mount.result.exitCode, 0, mount.output);
  assert.equal(copy.result.exitCode, 0, copy.output);
  assert.equal(copy.output, mount.output);
  assert.match(copy.output, /^tool ran$/m);
  const expected = tree(mount.outDir);
  assert.deepEqual(Object.keys(expected).sort(), [
    'app.wasm',
    'bin',
    'bin/notes',
    'bin/tool',
    'empty',
    'hard.wasm',
    'latest.wasm',
  ]);
  assert.deepEqual(tree(copy.outDir), expected);
  assert.deepEqual(readFileSync(join(copy.outDir, 'app.wasm')), files['blob.bin']);
  assert.equal(lstatSync(join(copy.outDir, 'hard.wasm')).ino, lstatSync(join(copy.outDir, 'app.wasm')).ino);
});

for (const [what, command] of [
  ['an absolute symlink', 'ln -s /etc/passwd /out/passwd'],
  ['a symlink that climbs out', 'mkdir /out/d && ln -s ../../etc /out/d/etc'],
  ['a chain of symlinks that climbs out', 'ln -s . /out/here && ln -s here/.. /out/up'],
] as const) {
  test(`transfer copy refuses ${what} in /out (E_UNSAFE_PATH)`, TEST, async (t) => {
    const s = await ready(t);
    if (!s) return;
    const before = await containers(s.engine);
    await assert.rejects(
      build(s.toolchain, `echo fine > /out/ok.txt && ${command}`, { transfer: 'copy' }),
      (err) => isKilnError(err, 'E_UNSAFE_PATH'),
    );
    assert.deepEqual(await containers(s.engine), before);
  });
}

test(
  'no container is left behind after a success, a failure, or an abort (which is quick)',
  TEST,
  async (t) => {
    const s = await ready(t);
    if (!s) return;
    const before = await containers(s.engine);
    await build(s.toolchain, 'true');
    assert.deepEqual(await containers(s.engine), before, 'after a success');
    await build(s.toolchain, 'exit 1');
    assert.deepEqual(await containers(s.engine), before, 'after a failure');
    await build(s.toolchain, 'exit 1', { transfer: 'copy' });
    assert.deepEqual(await containers(s.engine), before, 'after a failure with transfer copy');

    for (const transfer of ['mount', 'copy'] as const) {
      const controller = new AbortController();
      let abortedAt = 0;
      const started = Date.now();
      await assert.rejects(
        build(s.toolchain, 'echo started; sleep 30', {
          transfer,
          signal: controller.signal,
          onOutput: (text) => {
            if (text.includes('started') && !abortedAt) {
              abortedAt = Date.now();
              controller.abort();
            }
          },
        }),
        (err) => isKilnError(err, 'E_ABORTED'),
      );
      assert.ok(abortedAt > 0, 'the build never started');
      const took = Date.now() - abortedAt;
      assert.ok(took < 10_000, `the abort took ${took} ms`);
      assert.ok(Date.now() - started < 20_000);
      assert.deepEqual(await containers(s.engine), before, `after an abort (${transfer})`);
    }

    // Aborted before it starts: nothing is created at all.
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(build(s.toolchain, 'true', { signal: controller.signal }), (err) =>
      isKilnError(err, 'E_ABORTED'),
    );
    assert.deepEqual(await containers(s.engine), before, 'after an abort before the start');
  },
);

test(
  'SIGTERM to kiln during a build removes the container, then kills kiln with SIGTERM',
  TEST,
  async (t) => {
    const s = await ready(t);
    if (!s) return;
    const before = await containers(s.engine);
    // The CLI turns the signal into its context's abort; the runner removes its container, then
    // kiln lets the signal take its course.
    const dir = mkdtempSync(join(work, 'signal-'));
    writeFileSync(join(dir, 'main.txt'), 'a project\n');
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'dist/bin/kiln.js'),
        'compile',
        dir,
        '--runner',
        'docker',
        '--toolchain',
        `oci:${home}:busybox-toolchain`,
        '--command',
        'echo started; sleep 30',
      ],
      {
        cwd: dir,
        env: { ...process.env, DOCKER_HOST: s.engine.host, KILN_HOME: join(dir, 'kiln-home') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    let signalledAt = 0;
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    // The build's output goes to kiln's stderr.
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (stderr.includes('started') && !signalledAt) {
        signalledAt = Date.now();
        child.kill('SIGTERM');
      }
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.on('exit', (c, sig) => resolve([c, sig])),
    );
    assert.ok(signalledAt > 0, `the build never started:\n${stdout}\n${stderr}`);
    assert.deepEqual([code, signal], [null, 'SIGTERM'], `stdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.ok(Date.now() - signalledAt < 10_000, 'kiln took too long to go');
    assert.equal(stdout, '', 'nothing on stdout: the compile never finished');
    assert.deepEqual(await containers(s.engine), before);
  },
);

test('the toolchain image is loaded into the engine once, then found by its ID', TEST, async (t) => {
  const s = await ready(t);
  if (!s) return;
  const tag = `kiln-toolchain/${parseDigest(s.toolchain.descriptor.digest).hex.slice(0, 12)}:latest`;
  // A clean start: earlier tests in this file loaded it already.
  await s.engine.docker(['rmi', '-f', tag]);
  assert.notEqual((await s.engine.docker(['image', 'inspect', tag])).code, 0);

  const since = (Date.now() / 1000).toFixed(3);
  await build(s.toolchain, 'true');
  await build(s.toolchain, 'true');
  await build(s.toolchain, 'true', { transfer: 'copy' });
  const until = (Date.now() / 1000 + 1).toFixed(3);
  const events = await s.engine.docker([
    'events',
    '--since',
    since,
    '--until',
    until,
    '--filter',
    'type=image',
    '--filter',
    'event=load',
    '--format',
    '{{.ID}}',
  ]);
  assert.equal(events.code, 0, events.stderr);
  const loads = events.stdout.split('\n').filter((l) => l !== '');
  assert.equal(loads.length, 1, `image loads: ${JSON.stringify(loads)}`);

  // The engine's image is kiln's: its ID is the config digest of the toolchain's manifest.
  const inspect = await s.engine.docker(['image', 'inspect', '--format', '{{.Id}}', tag]);
  assert.equal(inspect.code, 0, inspect.stderr);
  const manifest = JSON.parse((await s.toolchain.store.readBlob(s.toolchain.descriptor.digest)).toString());
  assert.equal(inspect.stdout.trim(), manifest.config.digest);
});

test(
  'unavailable(): undefined for the engine, a one-line reason for a socket that does not exist',
  TEST,
  async (t) => {
    const s = await ready(t);
    if (!s) return;
    assert.equal(await new DockerRunner().unavailable(), undefined);
    process.env['DOCKER_HOST'] = `unix://${join(work, 'no-such-dir', 'docker.sock')}`;
    try {
      const started = Date.now();
      const why = await new DockerRunner().unavailable();
      assert.ok(why !== undefined);
      assert.match(
        why,
        /^no Docker engine answers at unix:\/\/\/.*no-such-dir\/docker\.sock \(no such socket\)$/,
      );
      assert.ok(Date.now() - started < 3_000);
      await assert.rejects(build(s.toolchain, 'true'), (err) => isKilnError(err, 'E_ENGINE'));
    } finally {
      process.env['DOCKER_HOST'] = s.engine.host;
    }
  },
);

/**
 * Through the remote endpoint the environment names: the engine answers, and a build (transfer copy)
 * that runs `then` after writing /out gives that exit status and /out, and leaves no container; its output.
 */
async function remoteBuild(s: Setup, engine: DockerEngine, then: string, exitCode: number): Promise<string> {
  assert.equal(await new DockerRunner().unavailable(), undefined);
  const { result, output, outDir } = await build(s.toolchain, `cat input.txt > /out/app.wasm; ${then}`);
  assert.deepEqual(result, { runner: 'docker', exitCode }, output);
  assert.equal(readFileSync(join(outDir, 'app.wasm'), 'utf8'), 'source text\n');
  assert.deepEqual(await containers(engine), []);
  return output;
}

test(
  'over tcp+TLS (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH): unavailable() pings, the image is loaded and the build runs with transfer copy',
  TEST,
  async (t) => {
    const s = await ready(t);
    if (!s) return;
    await using engine = await startDocker({ tls: true });
    const tls = engine.tls!;
    Object.assign(process.env, tls.env);
    try {
      assert.match(await remoteBuild(s, engine, 'echo "remote build"', 0), /^remote build$/m);
      const tag = `kiln-toolchain/${parseDigest(s.toolchain.descriptor.digest).hex.slice(0, 12)}:latest`;
      assert.equal((await engine.docker(['image', 'inspect', tag])).code, 0, 'loaded over TLS');
    } finally {
      for (const k of Object.keys(tls.env)) delete process.env[k];
      process.env['DOCKER_HOST'] = s.engine.host;
    }
  },
);

test('engineEndpoint: DOCKER_HOST and CONTAINER_HOST as the docker CLI reads them', () => {
  assert.deepEqual(
    engineEndpoint('docker', { DOCKER_HOST: 'unix:///run/x.sock' }).options.socketPath,
    '/run/x.sock',
  );
  const tcp = engineEndpoint('docker', { DOCKER_HOST: 'tcp://build.example:2375' });
  assert.equal(tcp.remote, true);
  assert.deepEqual(
    [tcp.options.host, tcp.options.port, tcp.options.protocol],
    ['build.example', 2375, 'http'],
  );
  const ssh = engineEndpoint('docker', { DOCKER_HOST: 'ssh://ci@build.example' });
  assert.deepEqual([ssh.options.protocol, ssh.options.username, ssh.options.port], ['ssh', 'ci', 22]);
  assert.equal(ssh.display, 'ssh://ci@build.example');
  assert.throws(
    () =>
      engineEndpoint('docker', {
        DOCKER_HOST: 'tcp://h:2376',
        DOCKER_TLS_VERIFY: '1',
        DOCKER_CERT_PATH: join(work, 'none'),
      }),
    (err) => isKilnError(err, 'E_TLS'),
  );
  assert.throws(
    () => engineEndpoint('docker', { DOCKER_HOST: 'npipe:////./pipe/docker_engine' }),
    (err) => isKilnError(err, 'E_UNSUPPORTED'),
  );
  const podman = engineEndpoint('podman', {
    CONTAINER_HOST: 'unix:///run/user/1000/podman/podman.sock',
    DOCKER_HOST: 'tcp://elsewhere:2375',
  });
  assert.deepEqual([podman.options.socketPath, podman.remote], ['/run/user/1000/podman/podman.sock', false]);
  assert.equal(
    engineEndpoint('podman', { XDG_RUNTIME_DIR: join(work, 'no-runtime') }).display.startsWith('unix:///'),
    true,
  );
});

test(
  'over ssh:// (ssh HOST docker system dial-stdio, as the docker CLI): unavailable() pings, the build runs with transfer copy, its output comes through',
  TEST,
  async (t) => {
    const s = await ready(t);
    if (!s) return;
    const reason = sshdSkipReason();
    if (reason !== undefined) return t.skip(reason);
    await using sshd = await startSshd({
      DOCKER_HOST: s.engine.host,
      DOCKER_CONFIG: s.engine.env['DOCKER_CONFIG']!,
    });
    const path = process.env['PATH'];
    const authSock = process.env['SSH_AUTH_SOCK'];
    Object.assign(process.env, sshd.clientEnv);
    try {
      const output = await remoteBuild(s, s.engine, 'echo "over ssh"; echo "to stderr" >&2; exit 3', 3);
      assert.match(output, /^over ssh$/m);
      assert.match(output, /^to stderr$/m);
    } finally {
      process.env['PATH'] = path;
      if (authSock === undefined) delete process.env['SSH_AUTH_SOCK'];
      else process.env['SSH_AUTH_SOCK'] = authSock;
      process.env['DOCKER_HOST'] = s.engine.host;
    }
  },
);
