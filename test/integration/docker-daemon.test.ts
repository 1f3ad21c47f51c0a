import * as assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { formatPlatform, hostPlatform } from '../../src/oci/platform.js';
import { type DockerEngine, sharedDocker, startDocker } from '../support/docker.js';
import { truncatedTar, writeImage } from '../support/hostile.js';
import { kiln, kilnAppend, kilnDigest, kilnIndexCreate } from '../support/kiln.js';
import { startSshd } from '../support/sshd.js';
import { freshPaths, workDir } from '../support/temp.js';
import { buildWasiProgram, HELLO_C } from '../support/wasi.js';

const HOST = formatPlatform(hostPlatform());
let engine: DockerEngine;
let hello: string;
const fresh = freshPaths(workDir('kiln-daemon'), { create: true });

/** kiln against the shared engine. */
const withEngine = (args: string[]) => kiln(args, { env: { DOCKER_HOST: engine.host } });

/**
 * kiln package of hello for linux/amd64 to `docker-daemon:<name>` with `env`: it succeeds, and the
 * engine's `docker image inspect` shows the image with its entrypoint. kiln's result and the inspect record.
 */
async function loads(on: DockerEngine, name: string, env: NodeJS.ProcessEnv) {
  const r = await kiln(['package', hello, '--platform', 'linux/amd64', '--to', `docker-daemon:${name}`], {
    env,
  });
  assert.equal(r.code, 0, r.stderr);
  const inspect = await on.docker(['image', 'inspect', name]);
  assert.equal(inspect.code, 0, inspect.stderr);
  const [info] = JSON.parse(inspect.stdout);
  assert.deepEqual(info.Config.Entrypoint, ['/hello.wasm']);
  return { r, info };
}

before(async () => {
  engine = await sharedDocker();
  hello = await buildWasiProgram('hello', HELLO_C);
});

test('docker-daemon: loads an image into a real engine', async () => {
  const { info } = await loads(engine, 'kiln-daemon-test:1', { DOCKER_HOST: engine.host });
  assert.equal(info.Os, 'linux');
});

test('docker-daemon: a wasm image on an engine without the containerd store gets an error that says why', async () => {
  const r = await withEngine(['package', hello, '--to', 'docker-daemon:kiln-wasm-test:1']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /E_ENGINE/);
  assert.match(r.stderr, /containerd image store/);
  assert.match(r.stderr, /--platform linux\/amd64/);
});

test('docker-daemon: an engine that does not answer is a clear error', async () => {
  const r = await kiln(['package', hello, '--to', 'docker-daemon:x:1'], {
    env: { DOCKER_HOST: 'unix:///nonexistent.sock' },
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot reach the Docker engine/);
});

test('docker-daemon: loads through a tcp+TLS endpoint (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH); a CA that did not sign the engine is E_TLS', async () => {
  await using tlsEngine = await startDocker({ tls: true });
  const tls = tlsEngine.tls!;
  await loads(tlsEngine, 'kiln-tls-test:1', tls.env);

  // The os check asks /info over TLS too: refused before anything is sent, as over a socket.
  const wasm = await kiln(['package', hello, '--to', 'docker-daemon:kiln-tls-wasm:1'], { env: tls.env });
  assert.equal(wasm.code, 1, wasm.stdout + wasm.stderr);
  assert.match(wasm.stderr, new RegExp(`engine at ${tls.host.replace(/[.]/g, '\\.')}.*wasip1.*E_ENGINE`));

  // Trusting another CA (the client's own certificate): the engine's certificate is refused.
  const wrong = fresh('wrong-ca');
  for (const f of ['cert.pem', 'key.pem']) await copyFile(join(tls.certPath, f), join(wrong, f));
  await copyFile(join(tls.certPath, 'cert.pem'), join(wrong, 'ca.pem'));
  const refused = await kiln(['package', hello, '--platform', 'linux/amd64', '--to', 'docker-daemon:x:1'], {
    env: { ...tls.env, DOCKER_CERT_PATH: wrong },
  });
  assert.equal(refused.code, 1, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /TLS with the Docker engine at tcp:\/\/127\.0\.0\.1:\d+ failed.*E_TLS/);
  assert.match(refused.stderr, /hint: .*DOCKER_CERT_PATH/);
});

test('docker-daemon: loads through an ssh:// endpoint (keys from the ssh agent, docker system dial-stdio on the far side)', async () => {
  await using sshd = await startSshd({
    DOCKER_HOST: engine.host,
    DOCKER_CONFIG: engine.env['DOCKER_CONFIG']!,
  });
  const { r } = await loads(engine, 'kiln-ssh-test:1', sshd.clientEnv);

  // The os check (/info) goes over ssh as well.
  const wasm = await kiln(['package', hello, '--to', 'docker-daemon:kiln-ssh-wasm:1'], {
    env: sshd.clientEnv,
  });
  assert.equal(wasm.code, 1, wasm.stdout + wasm.stderr);
  // (the user in ssh://USER@HOST is redacted, as userinfo in any URL kiln prints)
  assert.match(wasm.stderr, /^kiln: the Docker engine at ssh:\/\/\S+127\.0\.0\.1:\d+ .*wasip1.*E_ENGINE/);
  assert.doesNotMatch(r.stderr + wasm.stderr, /Warning/, 'no warnings from the ssh transport');

  // ssh's own refusal (here: a host key it does not know) is E_ENGINE with its words.
  const unknown = await kiln(['package', hello, '--platform', 'linux/amd64', '--to', 'docker-daemon:x:1'], {
    env: sshd.strangerEnv,
  });
  assert.equal(unknown.code, 1, unknown.stderr);
  assert.match(
    unknown.stderr,
    /^kiln: cannot reach the Docker engine at ssh:\/\/\S+127\.0\.0\.1:\d+: ssh: Host key verification failed\..*E_ENGINE/,
  );
  assert.match(
    unknown.stderr,
    /hint: `ssh -l root -p \d+ -- 127\.0\.0\.1 docker system dial-stdio` must work/,
  );
});

/** oci:DIR:multi, an index of the wasm image and one of the host's platform. */
async function wasmAndNative(dir: string): Promise<{ index: string; native: string }> {
  await kilnDigest(['package', hello, '--to', `oci:${dir}:wasm`]);
  const native = await kilnAppend('scratch', [hello], `oci:${dir}:native`);
  const index = await kilnIndexCreate(`oci:${dir}:multi`, [`oci:${dir}:wasm`, `oci:${dir}:native`]);
  return { index, native };
}

test('docker-daemon: an index is refused with its platforms listed, before the engine is asked; --platform loads one', async () => {
  const dir = fresh('index');
  const { native } = await wasmAndNative(join(dir, 'layout'));
  const r = await withEngine(['copy', `oci:${dir}/layout:multi`, 'docker-daemon:kiln-index-test:1']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /E_AMBIGUOUS/);
  assert.match(r.stderr, new RegExp(`wasip1/wasm, ${HOST}`));
  assert.match(r.stderr, /hint: .*--platform/);
  assert.doesNotMatch(r.stderr, /copied/);
  assert.notEqual((await engine.docker(['image', 'inspect', 'kiln-index-test:1'])).code, 0);

  const one = await withEngine([
    'copy',
    '--platform',
    HOST,
    `oci:${dir}/layout:multi`,
    'docker-daemon:kiln-index-test:1',
  ]);
  assert.equal(one.code, 0, one.stderr);
  assert.equal(one.stdout.trim(), native);
  assert.equal((await engine.docker(['image', 'inspect', 'kiln-index-test:1'])).code, 0);
});

test('docker-daemon: an os the engine refuses (wasip1 without the containerd store) is an error before any blob is copied', async () => {
  const dir = fresh('wasm');
  assert.equal((await kiln(['package', hello, '--to', `oci:${dir}:wasm`])).code, 0);
  const r = await withEngine(['copy', `oci:${dir}:wasm`, 'docker-daemon:kiln-wasm-copy:1']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /E_ENGINE/);
  assert.match(r.stderr, /wasip1/);
  assert.match(r.stderr, /hint: .*containerd image store.*--platform linux\/amd64/);
  assert.doesNotMatch(r.stderr, /copied/);
});

test('docker-daemon: a load the engine fails (a truncated layer) prints no "copied" lines', async () => {
  const dir = fresh('bad');
  const image = await writeImage(join(dir, 'layout'), [{ raw: await truncatedTar() }], { tag: 'bad' });
  const r = await withEngine(['copy', image.ref, 'docker-daemon:kiln-bad-layer:1']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /E_ENGINE/);
  assert.doesNotMatch(r.stderr, /copied/);
});

test('a docker-archive of an index holds the index, and docker load takes its host image under the tag', async () => {
  const dir = fresh('archive');
  const { index } = await wasmAndNative(join(dir, 'layout'));
  const archive = join(dir, 'multi.tar');
  const r = await kiln(['copy', `oci:${dir}/layout:multi`, `docker-archive:${archive}:kiln-multi:1`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), index, 'the archive holds the whole index');
  const load = await engine.docker(['load', '-i', archive]);
  assert.equal(load.code, 0, load.stderr);
  assert.match(load.stdout, /Loaded image: kiln-multi:1/);
  const inspect = await engine.docker(['image', 'inspect', 'kiln-multi:1']);
  assert.equal(inspect.code, 0, inspect.stderr);
  const [info] = JSON.parse(inspect.stdout);
  assert.equal(`${info.Os}/${info.Architecture}`, HOST);
});
