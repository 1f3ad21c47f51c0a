/**
 * Multi-platform `kiln build` end to end, against real parts: a C project compiled in a Debian
 * toolchain image (clang for wasm32-wasi, x86_64 and aarch64 Linux, see toolchain-images.ts
 * `native`) by the sandbox runner, the native binaries put on a busybox base index
 * (linux/amd64 = the host's static busybox; linux/arm64 = a one-file stand-in), pushed as one OCI
 * index to a real registry.
 *
 * Checks: skopeo sees the index with every platform (and wasi/wasm with --wasi-alias); umoci unpacks
 * every manifest; the real Docker engine pulls the index and runs the native image; `kiln run
 * --platform wasip1/wasm` runs the wasm one; the annotations (created from SOURCE_DATE_EPOCH, git
 * revision and source, base name and digest); a rebuild after changing one source file uploads only
 * the top layer and config of each image (a counting proxy in front of the registry); a base without
 * a platform fails before anything is written; the same inputs give the same index digest.
 *
 * The kiln CLI must be built (`npm run build`). Outside CI a missing tool skips; in CI it fails.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { type DockerEngine, dockerSkipReason, sharedDocker } from '../support/docker.js';
import { kiln } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry, startRequestLog } from '../support/registry.js';
import {
  busyboxRootfs,
  busyboxSkipReason,
  debianToolchainRootfs,
  debootstrapSkipReason,
} from '../support/toolchain-images.js';
import { requireTool, run, toolSkipReason } from '../support/tools.js';

const skip =
  debootstrapSkipReason() ??
  busyboxSkipReason() ??
  toolSkipReason('bwrap', 'skopeo', 'umoci', 'git') ??
  dockerSkipReason() ??
  registrySkipReason('none');
const LONG = { timeout: 1_200_000 };
const EPOCH = '1700000000';
const CREATED = '2023-11-14T22:13:20Z';
const PLATFORMS = 'linux/amd64,linux/arm64,wasip1/wasm';

const work = mkdtempSync(join(tmpdir(), 'kiln-build-multi-'));
after(() => rmSync(work, { recursive: true, force: true }));
const home = join(work, 'home');

let docker: DockerEngine;
let registry: string;
let toolchain: string;
let base: string;
let baseIndex: ImageIndex;
let project: string;
let head: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function ok(r: Run, what: string): string {
  assert.equal(r.code, 0, `${what} exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

function k(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 900_000): Promise<Run> {
  return kiln(args, {
    env: { KILN_HOME: home, DOCKER_HOST: docker.host, SOURCE_DATE_EPOCH: EPOCH, ...env },
    timeoutMs,
  });
}

interface BuildJson {
  index?: Descriptor;
  images: Array<{
    platform: { os: string; architecture: string; variant?: string };
    descriptor: Descriptor;
    destination: string;
  }>;
  sboms?: Array<{ subject: string; descriptor: Descriptor }>;
  compiles: Array<{ source: string; target: { os: string; architecture: string } }>;
}

async function buildJson(dir: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<BuildJson> {
  const out = ok(
    await k(['build', dir, '--runner', 'sandbox', '--json', ...args], env),
    `kiln build ${args.join(' ')}`,
  );
  return JSON.parse(out) as BuildJson;
}

async function skopeoRaw(ref: string): Promise<{ text: string; json: unknown }> {
  const r = await run(requireTool('skopeo')!, ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`], {
    timeoutMs: 120_000,
  });
  const text = ok(r, `skopeo inspect --raw ${ref}`);
  return { text, json: JSON.parse(text) };
}

const sha256 = (s: string | Buffer) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const plat = (p: { os: string; architecture: string; variant?: string } | undefined) =>
  p ? `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}` : 'none';

async function manifestOf(repo: string, digest: string): Promise<ImageManifest> {
  const { text, json } = await skopeoRaw(`${repo}@${digest}`);
  assert.equal(sha256(text), digest);
  return json as ImageManifest;
}

async function blobJson<T>(repo: string, digest: string): Promise<T> {
  const res = await fetch(`http://${repo.replace('/', '/v2/')}/blobs/${digest}`);
  assert.equal(res.status, 200, `GET blob ${digest}`);
  return (await res.json()) as T;
}

function git(dir: string, ...args: string[]): string {
  return execFileSync('git', ['-C', dir, ...args], {
    env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' },
  })
    .toString()
    .trim();
}

const MAIN_C = (greeting: string) => `#include <stdio.h>
int main(int argc, char **argv) {
#ifdef __wasm__
  const char *where = "wasm";
#else
  const char *where = "native";
#endif
  printf("${greeting} from %s, %s\\n", where, argc > 1 ? argv[1] : "nobody");
  return 0;
}
`;

function writeProject(dir: string, greeting: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'main.c'), MAIN_C(greeting));
  writeFileSync(
    join(dir, 'kiln.yaml'),
    `lang: c\ntoolchain:\n  image: ${toolchain}\nimage:\n  name: hello\n  base: ${base}\n  env:\n    GREETING_MODE: test\n`,
  );
  writeFileSync(join(dir, '.gitignore'), 'hello*\nkiln.lock\n');
  return dir;
}

describe('kiln build for several platforms', { skip }, () => {
  before(async () => {
    docker = await sharedDocker();
    registry = (await sharedRegistry('none')).host;
    toolchain = `${registry}/toolchains/native:1`;
    ok(
      await k(
        [
          'append',
          'scratch',
          '--platform',
          'linux/amd64',
          '--layer',
          await debianToolchainRootfs('native'),
          '--to',
          toolchain,
        ],
        {},
        900_000,
      ),
      'push the toolchain',
    );
    // The base index: busybox for amd64, and an arm64 stand-in (no arm64 busybox here).
    const amd64 = await busyboxRootfs(join(work, 'busybox-amd64'));
    const arm64 = join(work, 'base-arm64');
    mkdirSync(join(arm64, 'etc'), { recursive: true });
    writeFileSync(join(arm64, 'etc', 'base-release'), 'arm64 stand-in\n');
    base = `${registry}/bases/busybox:1`;
    for (const [dir, p] of [
      [amd64, 'linux/amd64'],
      [arm64, 'linux/arm64'],
    ] as const) {
      ok(
        await k([
          'append',
          'scratch',
          '--platform',
          p,
          '--layer',
          dir,
          '--to',
          `${registry}/bases/busybox:${p.replace('/', '-')}`,
        ]),
        `base ${p}`,
      );
    }
    ok(
      await k([
        'index',
        'create',
        `${registry}/bases/busybox:linux-amd64`,
        `${registry}/bases/busybox:linux-arm64`,
        '--to',
        base,
      ]),
      'base index',
    );
    baseIndex = (await skopeoRaw(base)).json as ImageIndex;

    project = writeProject(join(work, 'hello'), 'hello');
    git(project, 'init', '-q');
    git(project, 'add', '.');
    git(project, '-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-qm', 'first');
    git(project, 'remote', 'add', 'origin', 'git@git.example:kiln/hello.git');
    head = git(project, 'rev-parse', 'HEAD');
  }, LONG);

  let first: BuildJson;
  const repo = () => `${registry}/apps/hello`;

  test('one index with every platform: skopeo, annotations, layers, config', LONG, async () => {
    first = await buildJson(project, ['--platform', PLATFORMS, '--to', `${repo()}:1`]);
    assert.ok(first.index, 'an index is written');
    assert.deepEqual(
      first.images.map((i) => plat(i.platform)),
      ['linux/amd64', 'linux/arm64', 'wasip1/wasm'],
    );
    const { text, json } = await skopeoRaw(`${repo()}:1`);
    assert.equal(sha256(text), first.index.digest, 'the registry has the index kiln reported');
    const index = json as ImageIndex;
    assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(
      index.manifests.map((m) => plat(m.platform)),
      ['linux/amd64', 'linux/arm64', 'wasip1/wasm'],
    );
    assert.deepEqual(index.annotations, {
      'org.opencontainers.image.created': CREATED,
      'org.opencontainers.image.revision': head,
      'org.opencontainers.image.source': 'https://git.example/kiln/hello',
    });

    for (const entry of index.manifests) {
      const manifest = await manifestOf(repo(), entry.digest);
      assert.deepEqual(
        entry.annotations,
        manifest.annotations,
        'index entries carry their manifest annotations',
      );
      assert.equal(manifest.annotations?.['org.opencontainers.image.revision'], head);
      assert.equal(manifest.annotations?.['org.opencontainers.image.created'], CREATED);
      if (entry.platform?.os !== 'linux') continue;
      const baseEntry = baseIndex.manifests.find(
        (m) => m.platform?.architecture === entry.platform?.architecture,
      )!;
      assert.equal(manifest.annotations?.['org.opencontainers.image.base.name'], base);
      assert.equal(manifest.annotations?.['org.opencontainers.image.base.digest'], baseEntry.digest);
      // The base's layers, untouched, then the binary alone on top.
      const baseManifest = await manifestOf(`${registry}/bases/busybox`, baseEntry.digest);
      assert.deepEqual(manifest.layers.slice(0, -1), baseManifest.layers);
      assert.equal(manifest.layers.length, baseManifest.layers.length + 1);
      const config = await blobJson<ImageConfig>(repo(), manifest.config.digest);
      assert.equal(config.architecture, entry.platform.architecture);
      assert.deepEqual(config.config?.Entrypoint, ['/usr/local/bin/hello']);
      assert.equal(config.config?.Cmd, undefined);
      assert.ok(config.config?.Env?.includes('GREETING_MODE=test'));
      assert.equal(config.created, CREATED);
      assert.equal(config.rootfs.diff_ids.length, manifest.layers.length);
    }
  });

  test('every image has an SPDX SBOM referrer listing the files kiln added', LONG, async () => {
    assert.deepEqual(
      first.sboms?.map((s) => s.subject),
      first.images.map((i) => i.descriptor.digest),
    );
    const doc = JSON.parse(
      ok(await k(['sbom', `${repo()}:1`, '--platform', 'linux/arm64']), 'kiln sbom'),
    ) as {
      spdxVersion: string;
      files?: Array<{ fileName: string }>;
    };
    assert.equal(doc.spdxVersion, 'SPDX-2.3');
    assert.deepEqual(
      doc.files?.map((f) => f.fileName),
      ['./usr/local/bin/hello'],
      "the binary, not the base's files",
    );
  });

  test('docker pulls the index and runs the native image; kiln run runs the wasm one', LONG, async () => {
    const pulled = await docker.docker(['pull', `${repo()}:1`], { timeoutMs: 300_000 });
    ok(pulled, 'docker pull');
    assert.match(pulled.stdout, new RegExp(`Digest: ${first.index!.digest}`));
    const ran = await docker.docker(['run', '--rm', `${repo()}:1`, 'docker'], { timeoutMs: 120_000 });
    assert.equal(ok(ran, 'docker run').trim(), 'hello from native, docker');
    const wasm = await k(['run', '--platform', 'wasip1/wasm', `${repo()}:1`, '--', 'kiln']);
    assert.equal(ok(wasm, 'kiln run').trim(), 'hello from wasm, kiln');
  });

  test('umoci unpacks every manifest', LONG, async () => {
    const layout = join(work, 'layout');
    for (const p of PLATFORMS.split(',')) {
      const tag = p.replaceAll('/', '-');
      ok(await k(['copy', `${repo()}:1`, `oci:${layout}:${tag}`, '--platform', p]), `kiln copy ${p}`);
      const bundle = join(work, `bundle-${tag}`);
      if (!p.startsWith('linux')) mkdirSync(bundle);
      // umoci's full unpack refuses a non-linux os; its raw unpack reads the wasm image's layers.
      const args = p.startsWith('linux')
        ? ['unpack', '--rootless', '--image', `${layout}:${tag}`, bundle]
        : ['raw', 'unpack', '--rootless', '--image', `${layout}:${tag}`, join(bundle, 'rootfs')];
      ok(await run(requireTool('umoci')!, args, { timeoutMs: 120_000 }), `umoci ${args.join(' ')}`);
      const rootfs = join(bundle, 'rootfs');
      if (p.startsWith('linux')) {
        const bin = readFileSync(join(rootfs, 'usr/local/bin/hello'));
        assert.equal(bin.readUInt32BE(0), 0x7f454c46, `${p}: an ELF binary`);
        assert.equal(bin.readUInt16LE(18), p === 'linux/amd64' ? 62 : 183, `${p}: built for its machine`);
        assert.ok(
          existsSync(join(rootfs, p === 'linux/amd64' ? 'bin/busybox' : 'etc/base-release')),
          'on its base',
        );
      } else {
        assert.equal(readFileSync(join(rootfs, 'hello.wasm')).subarray(0, 4).toString('latin1'), '\0asm');
      }
    }
  });

  test('--wasi-alias lists the wasm manifest under wasi/wasm too', LONG, async () => {
    const built = await buildJson(project, [
      '--platform',
      PLATFORMS,
      '--wasi-alias',
      '--to',
      `${repo()}:alias`,
    ]);
    const index = (await skopeoRaw(`${repo()}:alias`)).json as ImageIndex;
    assert.equal(sha256((await skopeoRaw(`${repo()}:alias`)).text), built.index?.digest);
    assert.deepEqual(
      index.manifests.map((m) => plat(m.platform)),
      ['linux/amd64', 'linux/arm64', 'wasip1/wasm', 'wasi/wasm'],
    );
    assert.equal(index.manifests[3]!.digest, index.manifests[2]!.digest);
  });

  test('the same inputs give the same index digest, even compiled again', LONG, async () => {
    const again = await buildJson(project, [
      '--platform',
      PLATFORMS,
      '--no-cache',
      '--to',
      `${repo()}:again`,
    ]);
    assert.deepEqual(
      again.compiles.map((c) => c.source),
      ['build', 'build', 'build'],
      'compiled again, not taken from the cache',
    );
    assert.equal(again.index?.digest, first.index?.digest);
    // The epoch is part of the input: another one gives another index.
    const later = await buildJson(project, ['--platform', PLATFORMS, '--to', `${repo()}:later`], {
      SOURCE_DATE_EPOCH: '1700000001',
    });
    assert.notEqual(later.index?.digest, first.index?.digest);
  });

  test('a base without one of the platforms fails before anything is written', LONG, async () => {
    const r = await k([
      'build',
      project,
      '--runner',
      'sandbox',
      '--platform',
      'linux/amd64,linux/s390x',
      '--to',
      `${repo()}:missing`,
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /has no image for linux\/s390x \(E_NO_MATCHING_PLATFORM\)/);
    assert.match(r.stderr, /linux\/amd64, linux\/arm64/);
    const tags = await fetch(`http://${registry}/v2/apps/hello/tags/list`).then(
      (res) => res.json() as Promise<{ tags: string[] }>,
    );
    assert.ok(!tags.tags.includes('missing'), 'no tag written');
  });

  test(
    'a rebuild after changing one source file uploads only the top layer and config of each image',
    LONG,
    async () => {
      const dir = join(work, 'rebuild');
      cpSync(project, dir, { recursive: true });
      const log = await startRequestLog(`http://${registry}`);
      try {
        const to = `${log.host}/apps/rebuild:1`;
        await buildJson(dir, ['--platform', PLATFORMS, '--no-sbom', '--to', to]);
        writeFileSync(join(dir, 'main.c'), MAIN_C('changed'));
        log.clear();
        const second = await buildJson(dir, [
          '--platform',
          PLATFORMS,
          '--no-sbom',
          '--to',
          `${log.host}/apps/rebuild:2`,
        ]);
        const uploads = log.requests.filter((r) => r.method === 'POST' && /\/blobs\/uploads\/$/.test(r.path));
        const put = log.requests
          .filter((r) => r.method === 'PUT' && r.path.includes('/blobs/uploads/'))
          .map((r) => new URL(r.url, 'http://x').searchParams.get('digest'))
          .sort();
        const expected: string[] = [];
        const baseLayers = new Set<string>();
        for (const image of second.images) {
          const m = await manifestOf(`${registry}/apps/rebuild`, image.descriptor.digest);
          expected.push(m.config.digest, m.layers.at(-1)!.digest);
          for (const l of m.layers.slice(0, -1)) baseLayers.add(l.digest);
        }
        expected.sort();
        assert.deepEqual(put, expected, 'exactly the new top layers and configs');
        assert.equal(uploads.length, expected.length, 'one upload session per new blob, no mounts');
        assert.ok(
          put.every((d) => !baseLayers.has(d!)),
          'no base layer uploaded',
        );
        const run2 = await k([
          'run',
          '--platform',
          'wasip1/wasm',
          `${registry}/apps/rebuild:2`,
          '--',
          'again',
        ]);
        assert.equal(ok(run2, 'kiln run').trim(), 'changed from wasm, again');
      } finally {
        await log.stop();
      }
    },
  );
});
