/**
 * `kiln compile --platform linux/...`: native binaries from the same runners and presets as wasm,
 * cross-compiled in one toolchain image for the build machine. The toolchain is Debian's clang 14
 * with lld, wasi-libc and the arm64 cross glibc (debootstrap, DEBIAN_TOOLCHAINS.native), pushed to a
 * real registry and pinned by kiln; builds run in the bubblewrap sandbox, one in a real Docker engine.
 *
 * Checks: linux/amd64 runs on this machine and prints what it should; linux/arm64 is an AArch64 ELF
 * (the header's bytes, read here), the same bytes from docker and the sandbox; a command that ignores
 * the target fails with E_WRONG_PLATFORM and writes nothing; a target the toolchain cannot build fails
 * with the build's error; native and wasm builds of one project are distinct cache entries that both
 * hit on a second run (with no engine reachable); a custom command sees $KILN_TARGET_*; what else
 * the build writes under /out lands in <output>.files/, is restored from the cache, and a symlink
 * leaving /out is refused with the previous output left as it was.
 */
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { type DockerEngine, dockerSkipReason, NO_ENGINE, sharedDocker } from '../support/docker.js';
import { kilnStore } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { writeTree } from '../support/temp.js';
import {
  busyboxBaseIndex,
  busyboxSkipReason,
  debootstrapSkipReason,
  isStaticElf,
  pushDebianToolchain,
} from '../support/toolchain-images.js';
import { ok, run, toolSkipReason } from '../support/tools.js';

const skip =
  (process.arch === 'x64' ? undefined : 'the native toolchain image is built for linux/amd64 hosts') ??
  debootstrapSkipReason() ??
  toolSkipReason('bwrap') ??
  dockerSkipReason() ??
  registrySkipReason('none');
const LONG = { timeout: 1_200_000 };

let docker: DockerEngine;
/** kiln with the file's store and the private engine, unless env overrides them. */
const { work, k } = kilnStore('kiln-compile-native', () => ({ DOCKER_HOST: docker.host }));
let image: string;

interface CompileJson {
  output: string;
  digest: string;
  size: number;
  source: 'build' | 'cache' | 'remote-cache';
  runner?: string;
  key?: string;
  target: { os: string; architecture: string; variant?: string };
  extras?: string;
}

async function compileJson(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CompileJson> {
  return JSON.parse(
    ok(await k(['compile', ...args, '--json'], env), `kiln compile ${args.join(' ')}`),
  ) as CompileJson;
}

/** `kiln compile DIR --platform PLATFORM --runner RUNNER --json`, which must succeed. */
const compileFor = (dir: string, platform: string, runner = 'sandbox', env: NodeJS.ProcessEnv = {}) =>
  compileJson([dir, '--platform', platform, '--runner', runner], env);

function cProject(name: string, greeting: string, extra = ''): string {
  return writeTree(join(work, name), {
    'main.c': `#include <stdio.h>\nint main(int argc, char **argv) {\n  printf("${greeting} %s\\n", argc > 1 ? argv[1] : "nobody");\n  return 0;\n}\n`,
    'kiln.yaml': `lang: c\ntoolchain:\n  image: ${image}\n${extra}`,
  });
}

/** e_machine and class from the file's ELF header, read here rather than with kiln's own check. */
function elfHeader(file: string): { machine: number; bits: number; littleEndian: boolean } {
  const b = readFileSync(file).subarray(0, 20);
  assert.deepEqual([...b.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], `${file} is an ELF`);
  return { bits: b[4] === 2 ? 64 : 32, littleEndian: b[5] === 1, machine: b.readUInt16LE(18) };
}

describe('native compiles', { skip }, () => {
  before(async () => {
    docker = await sharedDocker();
    const registry = (await sharedRegistry('none')).host;
    image = await pushDebianToolchain(
      'native',
      `${registry}/toolchains/native:bookworm`,
      join(work, 'push-store'),
    );
  }, LONG);

  test(
    'linux/amd64: a static binary that runs here, at DIR/<name>-linux-amd64, mode 0755',
    LONG,
    async () => {
      const dir = cProject('hello', 'hello from native C,');
      const r = await compileFor(dir, 'linux/amd64');
      assert.equal(r.source, 'build');
      assert.deepEqual(r.target, { os: 'linux', architecture: 'amd64' });
      const out = join(dir, 'hello-linux-amd64');
      assert.equal(r.output, out);
      assert.deepEqual(elfHeader(out), { machine: 62, bits: 64, littleEndian: true });
      assert.ok(isStaticElf(out), 'the image has the static glibc: linked with -static');
      assert.equal(statSync(out).mode & 0o777, 0o755);
      const ran = await run(out, ['kiln']);
      assert.equal(ran.code, 0, ran.stderr);
      assert.equal(ran.stdout, 'hello from native C, kiln\n');
      assert.equal(existsSync(join(dir, 'hello.wasm')), false, 'no wasm built');
    },
  );

  test(
    'linux/arm64 (and linux/aarch64): an AArch64 ELF, the same bytes from docker and the sandbox',
    LONG,
    async () => {
      const dir = cProject('cross', 'hello from arm64,');
      const sandbox = await compileFor(dir, 'linux/arm64');
      assert.deepEqual(sandbox.target, { os: 'linux', architecture: 'arm64' });
      const out = join(dir, 'cross-linux-arm64');
      assert.deepEqual(elfHeader(out), { machine: 183, bits: 64, littleEndian: true });
      assert.ok(isStaticElf(out));
      const engineBefore = (await docker.docker(['ps', '-aq'])).stdout;
      const inDocker = await compileJson([
        dir,
        '--platform',
        'linux/aarch64',
        '--runner',
        'docker',
        '--no-cache',
        '-o',
        join(work, 'cross-docker'),
      ]);
      assert.equal(inDocker.runner, 'docker');
      assert.deepEqual(inDocker.target, { os: 'linux', architecture: 'arm64' }, 'aarch64 is arm64');
      assert.equal(inDocker.digest, sandbox.digest);
      assert.deepEqual(readFileSync(join(work, 'cross-docker')), readFileSync(out));
      assert.equal((await docker.docker(['ps', '-aq'])).stdout, engineBefore, 'no container left');
    },
  );

  test('a command that ignores the target fails with E_WRONG_PLATFORM and writes nothing', LONG, async () => {
    const dir = cProject('wrong', 'wrong');
    const r = await k([
      'compile',
      dir,
      '--platform',
      'linux/arm64',
      '--runner',
      'sandbox',
      '--command',
      'clang-14 -O2 -o "$KILN_OUT/app" main.c',
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /E_WRONG_PLATFORM/);
    assert.match(r.stderr, /linux\/arm64 wrote a 64-bit little-endian ELF for x86-64/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(existsSync(join(dir, 'wrong-linux-arm64')), false, 'no artifact written');
    // The same command is right for the build machine's own platform.
    const host = await compileJson([
      dir,
      '--platform',
      'linux/amd64',
      '--runner',
      'sandbox',
      '--command',
      'clang-14 -O2 -o "$KILN_OUT/app" main.c',
    ]);
    assert.equal(host.source, 'build');
  });

  test("a target the toolchain cannot build fails with the build's error", LONG, async () => {
    const dir = cProject('riscv', 'riscv');
    const r = await k(['compile', dir, '--platform', 'linux/riscv64', '--runner', 'sandbox']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /E_BUILD_FAILED/);
    assert.match(r.stderr, /the build for linux\/riscv64 failed/);
    assert.match(r.stderr, /no C compiler for riscv64-linux-gnu/);
    assert.equal(existsSync(join(dir, 'riscv-linux-riscv64')), false);

    const dotnet = join(work, 'dotnet');
    mkdirSync(dotnet);
    writeFileSync(join(dotnet, 'app.csproj'), '<Project Sdk="Microsoft.NET.Sdk"></Project>\n');
    const unsupported = await k(['compile', dotnet, '--platform', 'linux/amd64', '--offline']);
    assert.equal(unsupported.code, 1);
    assert.match(unsupported.stderr, /E_UNSUPPORTED/);
    assert.match(unsupported.stderr, /dotnet has no native target/);
    const mac = await k(['compile', dir, '--platform', 'darwin/arm64']);
    assert.equal(mac.code, 1);
    assert.match(mac.stderr, /cannot compile for darwin\/arm64.*\(E_UNSUPPORTED\)/);
  });

  test(
    'native and wasm builds are distinct cache entries; both hit on a second run without a runner',
    LONG,
    async () => {
      const dir = cProject('both', 'both,');
      const wasm = await compileJson([dir, '--runner', 'sandbox']);
      const arm = await compileFor(dir, 'linux/arm64');
      const amd = await compileFor(dir, 'linux/amd64');
      assert.deepEqual(
        [wasm.source, arm.source, amd.source],
        ['build', 'build', 'build'],
        "one platform's output is not another's source",
      );
      assert.deepEqual(wasm.target, { os: 'wasip1', architecture: 'wasm' });
      assert.equal(new Set([wasm.key, arm.key, amd.key]).size, 3, 'three keys');
      assert.equal(new Set([wasm.digest, arm.digest, amd.digest]).size, 3, 'three artifacts');
      assert.deepEqual([...readFileSync(join(dir, 'both.wasm')).subarray(0, 4)], [0, 0x61, 0x73, 0x6d]);

      // No engine: only cache hits can succeed.
      const noEngine = { DOCKER_HOST: NO_ENGINE };
      rmSync(join(dir, 'both-linux-arm64'));
      const again = await Promise.all([
        compileJson([dir, '--runner', 'docker'], noEngine),
        compileFor(dir, 'linux/arm64', 'docker', noEngine),
        compileFor(dir, 'linux/amd64', 'docker', noEngine),
      ]);
      assert.deepEqual(
        again.map((r) => [r.source, r.key, r.digest]),
        [wasm, arm, amd].map((r) => ['cache', r.key, r.digest]),
      );
      const restored = join(dir, 'both-linux-arm64');
      assert.deepEqual(elfHeader(restored), { machine: 183, bits: 64, littleEndian: true });
      assert.equal(statSync(restored).mode & 0o777, 0o755, 'restored from the cache executable');
      const ran = await run(join(dir, 'both-linux-amd64'), ['cached']);
      assert.equal(ran.stdout, 'both, cached\n');
    },
  );

  test('a custom command sees KILN_TARGET_* for native and wasm targets', LONG, async () => {
    const command = [
      'env | grep "^KILN_TARGET_" | sort | sed "s/^/seen: /" >&2',
      'if [ "$KILN_TARGET_OS" = linux ]; then',
      '  clang-14 --target="$KILN_TARGET_TRIPLE" -fuse-ld=lld -static -O2 -o "$KILN_OUT/app" main.c',
      'else',
      '  clang-14 --target=wasm32-wasi --sysroot=/usr -O2 -o "$KILN_OUT/app.wasm" main.c',
      'fi',
    ].join('\n');
    const dir = cProject('custom', 'custom', `  command: ${JSON.stringify(command)}\n`);
    const seen = (stderr: string) =>
      stderr
        .split('\n')
        .filter((l) => l.startsWith('seen: '))
        .map((l) => l.slice(6));
    const arm = await k(['compile', dir, '--platform', 'linux/arm64', '--runner', 'sandbox']);
    ok(arm, 'custom arm64');
    assert.deepEqual(seen(arm.stderr), [
      'KILN_TARGET_ARCH=arm64',
      'KILN_TARGET_OS=linux',
      'KILN_TARGET_PLATFORM=linux/arm64',
      'KILN_TARGET_TRIPLE=aarch64-linux-gnu',
      'KILN_TARGET_VARIANT=',
    ]);
    assert.equal(elfHeader(join(dir, 'custom-linux-arm64')).machine, 183);
    const wasm = await k(['compile', dir, '--runner', 'sandbox']);
    ok(wasm, 'custom wasm');
    assert.deepEqual(seen(wasm.stderr), [
      'KILN_TARGET_ARCH=wasm',
      'KILN_TARGET_OS=wasip1',
      'KILN_TARGET_PLATFORM=wasip1/wasm',
      'KILN_TARGET_TRIPLE=wasm32-wasip1',
      'KILN_TARGET_VARIANT=',
    ]);
    assert.equal(
      ok(await k(['run', join(dir, 'custom.wasm'), '--', 'wasm']), 'kiln run').trim(),
      'custom wasm',
    );
  });

  test(
    'extras: other files under /out land in <output>.files, cached; a link leaving /out is refused',
    LONG,
    async () => {
      const dir = join(work, 'extras');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'main.c'), 'int main(void) { return 0; }\n');
      writeFileSync(join(dir, 'extras.txt'), 'kept\n');
      const command = [
        'set -e',
        'CLANG=$(command -v clang || ls /usr/bin/clang-[0-9]* | sort -V | tail -n 1)',
        '$CLANG -O2 -static -o "$KILN_OUT/app" main.c',
        'mkdir -p "$KILN_OUT/share/doc"',
        '[ -f extras.txt ] && cp extras.txt "$KILN_OUT/share/doc/extras.txt" && ln -s doc/extras.txt "$KILN_OUT/share/link"',
        '[ -f evil ] && ln -s ../../etc/passwd "$KILN_OUT/share/evil"',
        'true',
      ].join('\n');
      writeFileSync(
        join(dir, 'kiln.yaml'),
        `toolchain:\n  image: ${image}\n  command: ${JSON.stringify(command)}\nimage:\n  name: ex\n`,
      );
      const files = join(dir, 'ex-linux-amd64.files');
      const first = await compileFor(dir, 'linux/amd64');
      assert.equal(first.source, 'build');
      assert.equal(first.extras, files);
      assert.equal(readFileSync(join(files, 'share', 'doc', 'extras.txt'), 'utf8'), 'kept\n');
      assert.equal(readlinkSync(join(files, 'share', 'link')), 'doc/extras.txt');

      // Restored from the cache (no engine reachable, so no runner could have run).
      rmSync(files, { recursive: true });
      const hit = await compileJson([dir, '--platform', 'linux/amd64'], { DOCKER_HOST: NO_ENGINE });
      assert.equal(hit.source, 'cache');
      assert.equal(hit.extras, files);
      assert.equal(readFileSync(join(files, 'share', 'doc', 'extras.txt'), 'utf8'), 'kept\n');

      writeFileSync(join(dir, 'evil'), '');
      const evil = await k(['compile', dir, '--platform', 'linux/amd64', '--runner', 'sandbox']);
      assert.equal(evil.code, 1, evil.stderr);
      assert.match(
        evil.stderr,
        /\/out\/share\/evil is a symlink to \.\.\/\.\.\/etc\/passwd.*\(E_UNSAFE_PATH\)/,
      );
      assert.equal(
        readFileSync(join(files, 'share', 'doc', 'extras.txt'), 'utf8'),
        'kept\n',
        'left as it was',
      );
      assert.equal(readdirSync(dir).filter((n) => n.includes('kiln-')).length, 0, 'no temp files');

      // Nothing but the binary: no extras, and the old directory goes.
      rmSync(join(dir, 'evil'));
      rmSync(join(dir, 'extras.txt'));
      const lone = await compileFor(dir, 'linux/amd64');
      assert.equal(lone.source, 'build');
      assert.equal(lone.extras, undefined);
      assert.equal(existsSync(files), false);
    },
  );

  test(
    "Rust: linux/amd64 with the rust preset runs; linux/arm64 fails with rustc's error (Debian has no aarch64 std)",
    LONG,
    async () => {
      const registry = (await sharedRegistry('none')).host;
      const rustImage = await pushDebianToolchain(
        'rust',
        `${registry}/toolchains/rust:1.63`,
        join(work, 'push-store'),
      );
      const dir = writeTree(join(work, 'rust'), {
        'Cargo.toml': '[package]\nname = "hello-rust"\nversion = "0.1.0"\nedition = "2021"\n',
        'src/main.rs':
          'fn main() {\n    println!("native rust, {}", std::env::args().nth(1).unwrap_or_default());\n}\n',
        'kiln.yaml': `toolchain:\n  image: ${rustImage}\n`,
      });
      const r = await compileFor(dir, 'linux/amd64');
      assert.equal(r.source, 'build');
      assert.equal(elfHeader(r.output).machine, 62);
      const ran = await run(r.output, ['kiln']);
      assert.equal(ran.stdout, 'native rust, kiln\n', ran.stderr);

      const arm = await k(['compile', dir, '--platform', 'linux/arm64', '--runner', 'sandbox']);
      assert.equal(arm.code, 1, arm.stderr);
      assert.match(arm.stderr, /this rustc has no aarch64-unknown-linux-gnu standard library/);
      assert.match(arm.stderr, /the build for linux\/arm64 failed .*\(E_BUILD_FAILED\)/);
      assert.equal(existsSync(join(dir, 'rust-linux-arm64')), false);
    },
  );

  test('busyboxBaseIndex: a linux/amd64 + linux/arm64 base, the same digest twice', {
    ...LONG,
    skip: busyboxSkipReason(),
  }, async () => {
    const first = await busyboxBaseIndex(join(work, 'base-1'));
    const second = await busyboxBaseIndex(join(work, 'base-2'), 'base');
    assert.equal(first.descriptor.digest, second.descriptor.digest);
    assert.deepEqual(
      first.manifests.map((m) => m.platform),
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
    );
    const unpacked = join(work, 'base-arm64');
    ok(
      await k(['unpack', `oci:${join(work, 'base-1')}:busybox`, '--platform', 'linux/arm64', unpacked]),
      'kiln unpack',
    );
    assert.deepEqual(elfHeader(join(unpacked, 'bin', 'busybox')), {
      machine: 183,
      bits: 64,
      littleEndian: true,
    });
  });
});
