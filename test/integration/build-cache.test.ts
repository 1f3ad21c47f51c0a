/**
 * The build cache and `kiln build`'s report, for real: a static-busybox toolchain image in an OCI
 * layout run by the bubblewrap sandbox (a wasm build writes an empty module; a linux/amd64 build
 * copies the image's static busybox as its binary and writes a file beside it), a real registry
 * behind a counting proxy.
 *
 * Checks: outputs kiln wrote into the project (an earlier `-o app.wasm`, `-o bin/app` and its
 * `bin/app.files/`) are not sources, so a build with another -o (or none) is a cache hit, and
 * kiln.lock lists them; `kiln build` twice in a row is a hit the second time; a local hit with
 * --cache-to pushes the entry when the repository lacks it (one HEAD) and never again when it has
 * it; `kiln build` with several --to says what they share once and names every destination.
 *
 * The kiln CLI must be built (`npm run build`). Outside CI a missing tool skips; in CI it fails.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type KilnResult, kiln } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry, startRequestLog } from '../support/registry.js';
import { busyboxSkipReason, busyboxToolchain } from '../support/toolchain-images.js';
import { ok, toolSkipReason } from '../support/tools.js';

const skip = toolSkipReason('bwrap') ?? busyboxSkipReason() ?? registrySkipReason('none');
const TEST = { timeout: 300_000 };
const WASM = '\\000asm\\001\\000\\000\\000';
const COMMAND = [
  'if [ "$KILN_TARGET_OS" = linux ]; then',
  'cp /bin/busybox "$KILN_OUT/app" && mkdir -p "$KILN_OUT/share" && echo hi > "$KILN_OUT/share/greeting";',
  `else printf '${WASM}' > "$KILN_OUT/app.wasm"; fi`,
].join(' ');

const work = mkdtempSync(join(tmpdir(), 'kiln-build-cache-'));
after(() => rmSync(work, { recursive: true, force: true }));
const home = join(work, 'home');

let registry: string;
let toolchain: string;

function k(args: string[], env: NodeJS.ProcessEnv = {}): Promise<KilnResult> {
  return kiln(args, { env: { KILN_HOME: home, ...env }, timeoutMs: 240_000 });
}

interface CompileJson {
  source: 'build' | 'cache' | 'remote-cache';
  digest: string;
  key: string;
  output: string;
}

/** `kiln build DIR --runner sandbox ARGS…`, which must succeed; returns the result. */
async function sandboxBuild(dir: string, args: string[]): Promise<KilnResult> {
  const r = await k(['build', dir, '--runner', 'sandbox', ...args]);
  ok(r, `kiln build ${dir} ${args.join(' ')}`);
  return r;
}

async function compile(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CompileJson> {
  const r = await k(['compile', ...args, '--runner', 'sandbox', '--json'], env);
  return JSON.parse(ok(r, `kiln compile ${args.join(' ')}`)) as CompileJson;
}

function project(name: string): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'main.txt'), `${name}\n`);
  writeFileSync(
    join(dir, 'kiln.yaml'),
    JSON.stringify({ toolchain: { image: toolchain, command: COMMAND } }),
  );
  return dir;
}

describe('build cache and build output', { skip }, () => {
  before(async () => {
    registry = (await sharedRegistry('none')).host;
    const layout = join(work, 'toolchain');
    await busyboxToolchain(layout);
    toolchain = `${registry}/toolchains/busybox:1`;
    ok(await k(['copy', `oci:${layout}:busybox-toolchain`, toolchain]), 'push the toolchain');
  }, TEST);

  test('outputs kiln wrote into the project never count as sources, whatever -o said', TEST, async () => {
    const dir = project('outputs');
    const first = await compile([dir, '-o', join(dir, 'app.wasm')]);
    assert.equal(first.source, 'build');
    // The earlier -o's file is in the project now; building to the default name must not count it.
    const plain = await compile([dir]);
    assert.equal(plain.source, 'cache', 'app.wasm from the earlier -o is not a source');
    assert.equal(plain.key, first.key);
    assert.equal((await compile([dir, '-o', join(dir, 'app.wasm')])).source, 'cache');

    // A native binary at a name of the user's choosing, with its extras directory beside it.
    const native = await compile([dir, '--platform', 'linux/amd64', '-o', join(dir, 'bin', 'app')]);
    assert.equal(native.source, 'build');
    assert.equal(readFileSync(join(dir, 'bin', 'app.files', 'share', 'greeting'), 'utf8'), 'hi\n');
    const nativeDefault = await compile([dir, '--platform', 'linux/amd64']);
    assert.equal(nativeDefault.source, 'cache', 'bin/app and bin/app.files/ are not sources');
    assert.equal(nativeDefault.output, join(dir, 'outputs-linux-amd64'));
    assert.equal((await compile([dir])).source, 'cache', "the wasm key does not count the native's outputs");
    const lock = JSON.parse(readFileSync(join(dir, 'kiln.lock'), 'utf8')) as { outputs?: string[] };
    assert.deepEqual(lock.outputs, ['app.wasm', 'bin/app'], 'kiln.lock lists the outputs at chosen names');

    // kiln build's -o likewise.
    await sandboxBuild(dir, ['-o', join(dir, 'out', 'built.wasm'), '--to', `oci:${join(work, 'o')}:x`]);
    assert.equal((await compile([dir])).source, 'cache', 'out/built.wasm is not a source either');

    // A real source still counts.
    writeFileSync(join(dir, 'main.txt'), 'changed\n');
    assert.equal((await compile([dir])).source, 'build');
  });

  test(
    'kiln build twice in a row: the second is a cache hit, though the first wrote into the project',
    TEST,
    async () => {
      const dir = project('twice');
      const build = async (platforms: string) =>
        JSON.parse(
          (
            await sandboxBuild(dir, [
              '--platform',
              platforms,
              '--to',
              `oci:${join(work, 'twice-out')}:x`,
              // The wasm lands in the project at a name of the user's choosing: the native compile
              // of the next build must not count it (nor the native binary the wasm compile).
              '-o',
              join(dir, 'app.wasm'),
              '--json',
            ])
          ).stdout,
        ) as { compiles: CompileJson[] };
      for (const platforms of ['linux/amd64,wasip1/wasm', 'wasip1/wasm']) {
        await build(platforms);
        assert.deepEqual(
          (await build(platforms)).compiles.map((c) => c.source),
          platforms.split(',').map(() => 'cache'),
          platforms,
        );
      }
    },
  );

  test('a local hit with --cache-to pushes the entry when the repository lacks it, once', TEST, async () => {
    const dir = project('push');
    const log = await startRequestLog(`http://${registry}`);
    try {
      const a = `${log.host}/kiln-cache/a`;
      const b = `${log.host}/kiln-cache/b`;
      const put = (repo: string, key: string) =>
        log.requests.some((r) => r.method === 'PUT' && r.path === `/v2/kiln-cache/${repo}/manifests/${key}`);
      const first = await compile([dir, '--cache-to', a]);
      assert.equal(first.source, 'build');
      assert.ok(put('a', first.key), 'the build was pushed to a');

      // The same store, another shared cache: a local hit, and b is filled.
      log.clear();
      const second = await compile([dir, '--cache-to', b]);
      assert.equal(second.source, 'cache');
      assert.ok(
        log.requests.some((r) => r.method === 'HEAD' && r.path === `/v2/kiln-cache/b/manifests/${first.key}`),
        'asked with a HEAD of the key tag',
      );
      assert.ok(put('b', first.key), 'the hit was pushed to b');
      assert.match(ok(await k(['tags', b]), 'kiln tags'), new RegExp(`^${first.key}$`, 'm'));

      // b has it now: a HEAD, and nothing pushed.
      log.clear();
      const third = await compile([dir, '--cache-to', b]);
      assert.equal(third.source, 'cache');
      const writes = log.requests.filter((r) => r.method !== 'GET' && r.method !== 'HEAD');
      assert.deepEqual(writes, [], 'no upload and no manifest PUT');
      assert.ok(
        log.requests.some((r) => r.method === 'HEAD' && r.path === `/v2/kiln-cache/b/manifests/${first.key}`),
      );

      // Another machine reads it from b.
      const other = await compile([dir, '--cache-from', b, '-o', join(work, 'other.wasm')], {
        KILN_HOME: join(work, 'home-other'),
      });
      assert.equal(other.source, 'remote-cache');
      assert.equal(other.digest, first.digest);
    } finally {
      await log.stop();
    }
  });

  test('kiln build with several --to says shared lines once and names each destination', TEST, async () => {
    const dir = project('several');
    const to = [`oci:${join(work, 'several-1')}:a`, `oci:${join(work, 'several-2')}:b`];
    const archive = `docker-archive:${join(work, 'several.tar')}:several:1`;
    const lines = async (args: string[]) => {
      const r = await sandboxBuild(dir, args);
      return r.stderr.split('\n').filter((l) => l !== '');
    };
    const single = await lines([...to.flatMap((t) => ['--to', t]), '--to', archive]);
    assert.deepEqual(single, [...new Set(single)], `no line twice:\n${single.join('\n')}`);
    for (const dest of [...to, archive])
      assert.ok(
        single.some((l) => l.startsWith(`wrote ${dest} `)),
        `a line names ${dest}`,
      );
    const sboms = single.filter((l) => l.startsWith('sbom for '));
    assert.equal(sboms.length, 1, single.join('\n'));
    // The archive has no place for referrers: the line says where the SBOM went.
    assert.match(sboms[0]!, new RegExp(`\\(in ${to.join(', ')}\\)$`));
    assert.equal(single.filter((l) => l.startsWith('wasip1/wasm: ')).length, 1);

    // An index of two platforms to two destinations: each image once, each SBOM once.
    const index = await lines(['--platform', 'linux/amd64,wasip1/wasm', ...to.flatMap((t) => ['--to', t])]);
    assert.deepEqual(index, [...new Set(index)], `no line twice:\n${index.join('\n')}`);
    assert.equal(index.filter((l) => l.startsWith('sbom for ')).length, 2, index.join('\n'));
    assert.ok(
      index.every((l) => !l.startsWith('sbom for ') || !l.includes('(in ')),
      'both hold every SBOM',
    );
    for (const dest of to) assert.ok(index.some((l) => l.startsWith(`wrote ${dest} (index of 2 images)`)));
  });
});
