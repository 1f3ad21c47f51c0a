/**
 * Self-test of the test support: the private Docker engine and containerd, and the WASI C builder work on
 * this machine.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { WASI } from 'node:wasi';
import { containerdSkipReason, startContainerd } from '../support/containerd.js';
import { dockerSkipReason, startDocker } from '../support/docker.js';
import { file, tarOf } from '../support/hostile.js';
import { sha256hex } from '../support/images.js';
import { workDir, writeTree } from '../support/temp.js';
import { requireTool, run } from '../support/tools.js';
import { buildWasiProgram, HELLO_C, wasiSkipReason } from '../support/wasi.js';

const work = workDir('kiln-support-selftest');

/** A tar of `entries`, mtime 0. */
const packTar = (entries: { name: string; data: Buffer; mode?: number }[]) =>
  tarOf(entries.map((e) => ({ ...file(e.name, e.data, e.mode), mtime: 0 })));
const sha256 = sha256hex;

/** A docker-archive (`docker save` format) of one layer holding the static binary `binary` as /init. */
async function tinyDockerArchive(binary: string, cmd: string[], tag: string): Promise<Buffer> {
  const layer = await packTar([{ name: 'init', data: readFileSync(binary), mode: 0o755 }]);
  const diffId = sha256(layer);
  const config = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: cmd },
    rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] },
  });
  const configName = `${sha256(config)}.json`;
  const manifest = JSON.stringify([{ Config: configName, RepoTags: [tag], Layers: [`${diffId}/layer.tar`] }]);
  return packTar([
    { name: configName, data: Buffer.from(config) },
    { name: `${diffId}/layer.tar`, data: layer },
    { name: 'manifest.json', data: Buffer.from(manifest) },
  ]);
}

test('tools: run() reports exit code and output without a shell', async () => {
  const sh = requireTool('sh');
  assert.ok(sh, 'sh is always present');
  const r = await run(sh, ['-c', 'echo out; echo err >&2; exit 3']);
  assert.deepEqual([r.code, r.stdout, r.stderr], [3, 'out\n', 'err\n']);
  const fed = await run('cat', [], { input: 'piped' });
  assert.equal(fed.stdout, 'piped');
  await assert.rejects(run('/nonexistent/kiln-tool', []), /cannot run/);
});

test('docker: a private engine starts, loads and runs an image, and stops cleanly', async (t) => {
  const reason = dockerSkipReason();
  if (reason !== undefined) return t.skip(reason);
  const started = Date.now();
  const engine = await startDocker();
  const dir = engine.dir;
  try {
    t.diagnostic(`dockerd ready in ${Date.now() - started} ms at ${engine.host} (cli ${engine.cli})`);
    assert.match(engine.host, /^unix:\/\/\//);
    assert.equal(engine.host, `unix://${engine.socketPath}`);

    const version = await engine.docker(['version', '--format', '{{.Server.Version}}']);
    assert.equal(version.code, 0, version.stderr);
    assert.notEqual(version.stdout.trim(), '');
    const root = await engine.docker(['info', '--format', '{{.DockerRootDir}}']);
    assert.equal(root.code, 0, root.stderr);
    assert.ok(root.stdout.trim().startsWith(engine.dir), `data-root ${root.stdout} is private`);

    // docker.io depends on tini, whose static binary (docker-init) makes a one-file image.
    const tini = requireTool('docker-init');
    assert.ok(tini, 'docker-init (tini) ships with docker.io');
    const archive = await tinyDockerArchive(tini, ['/init', '--version'], 'kiln-selftest/tini:latest');
    const load = await engine.docker(['load'], { input: archive });
    assert.equal(load.code, 0, load.stderr);
    assert.match(load.stdout, /Loaded image: kiln-selftest\/tini:latest/);
    const ran = await engine.docker(['run', '--rm', 'kiln-selftest/tini:latest']);
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(ran.stdout, /tini version/);
  } finally {
    await engine.stop();
  }
  assert.equal(existsSync(dir), false, 'stop() removes the temp dir');
  await engine.stop(); // idempotent
});

test('docker: await using stops the engine', async (t) => {
  const reason = dockerSkipReason();
  if (reason !== undefined) return t.skip(reason);
  let dir: string;
  {
    await using engine = await startDocker();
    dir = engine.dir;
    assert.equal((await engine.docker(['version'])).code, 0);
  }
  assert.equal(existsSync(dir), false);
});

/** Pids of the processes whose command line names `dir`. */
function processesNaming(dir: string): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e) && Number(e) !== process.pid)
    .filter((e) => {
      try {
        return readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(`${dir}/`);
      } catch {
        return false;
      }
    })
    .map(Number);
}

test('containerd: a private daemon answers ctr on its own socket, keeps its store in its dir, and stops cleanly', async (t) => {
  const reason = containerdSkipReason();
  if (reason !== undefined) return t.skip(reason);
  const started = Date.now();
  let dir: string;
  {
    await using containerd = await startContainerd();
    dir = containerd.dir;
    t.diagnostic(`containerd ready in ${Date.now() - started} ms at ${containerd.address}`);
    assert.ok(Buffer.byteLength(`${containerd.address}.ttrpc`) < 108, 'socket paths fit sun_path');
    assert.ok(containerd.address.startsWith(`${dir}/`));
    const version = await containerd.ctr(['version']);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /Server:\s+Version:/);
    const plugins = await containerd.ctr(['plugins', 'ls']);
    assert.equal(plugins.code, 0, plugins.stderr);
    assert.doesNotMatch(plugins.stdout, /io\.containerd\.grpc\.v1\s+cri\b/, 'the CRI plugin is not loaded');
    assert.ok(
      existsSync(join(dir, 'root', 'io.containerd.content.v1.content')),
      'its content store is in its dir',
    );
    assert.notEqual(processesNaming(dir).length, 0, 'containerd runs');
  }
  assert.deepEqual(processesNaming(dir), [], 'no process of it is left');
  assert.equal(existsSync(dir), false, 'stop() removes the temp dir');
});

test('wasi: HELLO_C compiles to a cached WASI module that behaves as documented', async (t) => {
  const reason = wasiSkipReason();
  if (reason !== undefined) return t.skip(reason);
  const wasm = await buildWasiProgram('hello', HELLO_C);
  const bytes = readFileSync(wasm);
  assert.deepEqual([...bytes.subarray(0, 4)], [0x00, 0x61, 0x73, 0x6d], 'starts with \\0asm');
  assert.equal(await buildWasiProgram('hello', HELLO_C), wasm, 'cached by content');

  writeTree(join(work, 'data'), { 'b.txt': 'b', 'a.txt': 'a' });
  const outPath = join(work, 'stdout');
  const errPath = join(work, 'stderr');
  const outFd = openSync(outPath, 'w');
  const errFd = openSync(errPath, 'w');
  let code: number;
  try {
    const wasi = new WASI({
      version: 'preview1',
      args: ['hello', 'from', 'kiln'],
      env: {
        GREETING: 'howdy',
        ERR_MSG: 'to stderr',
        LIST_DIR: '/data',
        WRITE_FILE: '/data/out.txt',
        EXIT_CODE: '7',
      },
      preopens: { '/data': join(work, 'data') },
      stdout: outFd,
      stderr: errFd,
      returnOnExit: true,
    });
    const instance = await WebAssembly.instantiate(
      await WebAssembly.compile(bytes),
      wasi.getImportObject() as Record<string, Record<string, unknown>>,
    );
    code = wasi.start(instance);
  } finally {
    closeSync(outFd);
    closeSync(errFd);
  }
  assert.equal(code, 7);
  assert.equal(
    readFileSync(outPath, 'utf8'),
    'hello from kiln\nGREETING=howdy\nentry: a.txt\nentry: b.txt\nwrote /data/out.txt\n',
  );
  assert.equal(readFileSync(errPath, 'utf8'), 'to stderr\n');
  assert.equal(readFileSync(join(work, 'data', 'out.txt'), 'utf8'), 'hello from wasm\n');
});
