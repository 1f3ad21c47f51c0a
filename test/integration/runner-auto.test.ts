/**
 * `--runner auto`, for real: kiln is daemonless first, so auto takes the bubblewrap sandbox when it
 * can run even with a Docker engine answering (and loads nothing into the engine), the engine when
 * bubblewrap is missing, the host last; and it says which runner and why. A runner named with
 * --runner is used as asked. The toolchain is a static-busybox image in an OCI layout, the engine a
 * private dockerd; "bubblewrap missing" is a PATH without bwrap on it.
 *
 * The kiln CLI must be built (`npm run build`). Outside CI a missing tool skips; in CI it fails.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type DockerEngine, dockerSkipReason, sharedDocker } from '../support/docker.js';
import { kiln } from '../support/kiln.js';
import { busyboxSkipReason, busyboxToolchain } from '../support/toolchain-images.js';
import { ok, toolSkipReason } from '../support/tools.js';

const skip = toolSkipReason('bwrap') ?? busyboxSkipReason() ?? dockerSkipReason();
const TEST = { timeout: 300_000 };
const NO_ENGINE = 'unix:///nonexistent/kiln-test-docker.sock';
/** A PATH with no bwrap on it (kiln itself runs by node's absolute path). */
const NO_BWRAP = '/nonexistent/kiln-no-bwrap';
const WASM = '\\000asm\\001\\000\\000\\000';
const COMMAND = `printf '${WASM}' > "$KILN_OUT/app.wasm"`;

const work = mkdtempSync(join(tmpdir(), 'kiln-runner-auto-'));
after(() => rmSync(work, { recursive: true, force: true }));
const home = join(work, 'home');

let docker: DockerEngine;
let toolchain: string;
let projects = 0;

/** A project in a fresh directory (so no cache hit); its build writes an empty wasm module. */
function project(): string {
  const dir = join(work, `p${++projects}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'main.txt'), `project ${projects}\n`);
  return dir;
}

/**
 * `kiln compile` of a fresh project, twice: with --json for the runner it used (whatever the
 * wording), then as people see it for the line that says which runner and why.
 */
async function compile(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ runner: string; said: string[]; dir: string }> {
  const run = async (dir: string, json: boolean) => {
    const r = await kiln(
      ['compile', dir, ...args, '--toolchain', toolchain, '--command', COMMAND, ...(json ? ['--json'] : [])],
      {
        env: { KILN_HOME: home, DOCKER_HOST: docker.host, ...env },
        timeoutMs: 240_000,
      },
    );
    ok(r, `kiln compile ${args.join(' ')}`);
    assert.deepEqual(
      [...readFileSync(join(dir, `${basename(dir)}.wasm`))],
      [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
    );
    return r;
  };
  const dir = project();
  const { runner } = JSON.parse((await run(dir, true)).stdout) as { runner: string };
  const said = (await run(project(), false)).stderr.split('\n').filter((l) => l.startsWith('runner: '));
  return { runner, said, dir };
}

async function engineImages(): Promise<string> {
  return ok(await docker.docker(['images', '-q', '--no-trunc']), 'docker images');
}

describe('--runner auto', { skip }, () => {
  before(async () => {
    docker = await sharedDocker();
    const layout = join(work, 'toolchain');
    await busyboxToolchain(layout);
    toolchain = `oci:${layout}:busybox-toolchain`;
  }, TEST);

  test(
    'bubblewrap works and an engine answers: the sandbox, and nothing is loaded into the engine',
    TEST,
    async () => {
      const before = await engineImages();
      const r = await compile(['--runner', 'auto'], {});
      assert.equal(r.runner, 'sandbox');
      assert.equal(await engineImages(), before, 'no toolchain image loaded into the engine');
      assert.deepEqual(r.said, ['runner: sandbox (bubblewrap works; daemonless)']);
      // auto is the default.
      assert.equal((await compile([], {})).runner, 'sandbox');
    },
  );

  test('no bubblewrap: the engine that answers, and why', TEST, async () => {
    const r = await compile([], { PATH: NO_BWRAP });
    assert.equal(r.runner, 'docker');
    assert.deepEqual(r.said, [
      'runner: docker (bubblewrap unavailable: bwrap (bubblewrap) is not installed or not on PATH)',
    ]);
  });

  test('no bubblewrap and no engine: the host, naming both reasons, and not cached', TEST, async () => {
    const r = await compile([], { PATH: NO_BWRAP, DOCKER_HOST: NO_ENGINE });
    assert.equal(r.runner, 'local');
    assert.equal(r.said.length, 1);
    assert.match(
      r.said[0]!,
      /^runner: local \(bubblewrap unavailable: bwrap \(bubblewrap\) is not installed or not on PATH; docker unavailable: no Docker engine answers at .*kiln-test-docker\.sock/i,
    );
    // The host's build is not stored under the toolchain image's key: the sandbox builds it again.
    const again = await kiln(
      ['compile', r.dir, '--toolchain', toolchain, '--command', COMMAND, '--runner', 'sandbox', '--json'],
      { env: { KILN_HOME: home }, timeoutMs: 240_000 },
    );
    assert.equal(
      (JSON.parse(ok(again, 'kiln compile --runner sandbox')) as { source: string }).source,
      'build',
    );
  });

  test('--runner docker is used as asked, even where bubblewrap works', TEST, async () => {
    const r = await compile(['--runner', 'docker'], {});
    assert.equal(r.runner, 'docker');
    assert.deepEqual(r.said, ['runner: docker (asked for with --runner docker)']);
  });
});
