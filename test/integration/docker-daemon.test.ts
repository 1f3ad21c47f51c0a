import * as assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { type DockerEngine, sharedDocker } from '../support/docker.js';
import { kiln } from '../support/kiln.js';
import { buildWasiProgram, HELLO_C } from '../support/wasi.js';

let engine: DockerEngine;
let hello: string;

before(async () => {
  engine = await sharedDocker();
  hello = await buildWasiProgram('hello', HELLO_C);
});

test('docker-daemon: loads an image into a real engine', async () => {
  const r = await kiln(
    ['package', hello, '--platform', 'linux/amd64', '--to', 'docker-daemon:kiln-daemon-test:1'],
    {
      env: { DOCKER_HOST: engine.host },
    },
  );
  assert.equal(r.code, 0, r.stderr);
  const inspect = await engine.docker(['image', 'inspect', 'kiln-daemon-test:1']);
  assert.equal(inspect.code, 0, inspect.stderr);
  const [info] = JSON.parse(inspect.stdout);
  assert.deepEqual(info.Config.Entrypoint, ['/hello.wasm']);
  assert.equal(info.Os, 'linux');
});

test('docker-daemon: a wasm image on an engine without the containerd store gets an error that says why', async () => {
  const r = await kiln(['package', hello, '--to', 'docker-daemon:kiln-wasm-test:1'], {
    env: { DOCKER_HOST: engine.host },
  });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /E_DOCKER/);
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
