/**
 * Multi-platform `kiln build` end to end, against real parts: a C project compiled in a Debian
 * toolchain image (clang for wasm32-wasi, x86_64 and aarch64 Linux, see toolchain-images.ts
 * `native`) by the sandbox runner, the native binaries put on a busybox base index
 * (busyboxBaseIndex: the host's static busybox for linux/amd64, Debian's arm64 busybox-static for
 * linux/arm64), pushed as one OCI index to a real registry.
 *
 * Checks: skopeo sees the index with every platform (and wasi/wasm with --wasi-alias); umoci unpacks
 * every manifest; the real Docker engine pulls the index and runs the native image; `kiln run
 * --platform wasip1/wasm` runs the wasm one; the annotations (created from SOURCE_DATE_EPOCH, git
 * revision and source, base name and digest); a rebuild after changing one source file uploads only
 * the top layer and config of each image (a counting proxy in front of the registry); a base without
 * a platform fails before anything is written; the same inputs give the same index digest.
 *
 * Extras: a build command that writes the binary plus `share/greeting.txt` (read by the program at
 * run time) and a bigger `lib/` tree with a symlink gives base + 3 kiln layers (lib, share, app), runs
 * in Docker printing the greeting; a cached build restores the extras without a runner, from the
 * local cache and from `--cache-from` (the cache artifact: the binary as application/octet-stream
 * titled `app`, the extras as its second layer); changing main.c uploads only the top layer and
 * the configs; changing the greeting uploads only its layer and the configs.
 *
 * The kiln CLI must be built (`npm run build`). Outside CI a missing tool skips; in CI it fails.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { listTar } from '../../src/layer/tar-reader.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { type DockerEngine, dockerSkipReason, NO_ENGINE, sharedDocker } from '../support/docker.js';
import { seededBytes, sha256 } from '../support/images.js';
import { kilnStore } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry, startRequestLog } from '../support/registry.js';
import {
  busyboxBaseIndex,
  busyboxSkipReason,
  debianToolchainRootfs,
  debootstrapSkipReason,
} from '../support/toolchain-images.js';
import { ok, requireTool, run, toolSkipReason } from '../support/tools.js';

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

let docker: DockerEngine;
/** kiln with the file's store, the private engine and a fixed SOURCE_DATE_EPOCH, unless env overrides them. */
const { work, k } = kilnStore(
  'kiln-build-multi',
  () => ({ DOCKER_HOST: docker.host, SOURCE_DATE_EPOCH: EPOCH }),
  900_000,
);
let registry: string;
let toolchain: string;
let base: string;
let baseIndex: ImageIndex;
let project: string;
let head: string;

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

/** `kiln build DIR --runner sandbox --json --platform PLATFORMS [extra…] --to TO`, which must succeed. */
async function buildJson(
  dir: string,
  platforms: string,
  to: string,
  extra: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<BuildJson> {
  const args = ['--platform', platforms, ...extra, '--to', to];
  return JSON.parse(
    ok(
      await k(['build', dir, '--runner', 'sandbox', '--json', ...args], env),
      `kiln build ${args.join(' ')}`,
    ),
  ) as BuildJson;
}

async function skopeoRaw(ref: string): Promise<{ text: string; json: unknown }> {
  const r = await run(requireTool('skopeo')!, ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`], {
    timeoutMs: 120_000,
  });
  const text = ok(r, `skopeo inspect --raw ${ref}`);
  return { text, json: JSON.parse(text) };
}

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

/** A C program that reads its greeting at run time from the extras the build installs. */
const EXTRAS_MAIN_C = (tag: string) => `#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
  char greeting[128] = "no greeting";
  FILE *f = fopen("/usr/local/share/greeting.txt", "r");
  if (f) {
    if (!fgets(greeting, sizeof greeting, f)) greeting[0] = 0;
    greeting[strcspn(greeting, "\\n")] = 0;
    fclose(f);
  }
  FILE *d = fopen("/usr/local/lib/hello/current", "rb");
  long size = -1;
  if (d) {
    fseek(d, 0, SEEK_END);
    size = ftell(d);
    fclose(d);
  }
  printf("%s, %s (${tag}, data %ld)\\n", greeting, argc > 1 ? argv[1] : "nobody", size);
  return 0;
}
`;

/**
 * One command for every target (it switches on $KILN_TARGET_*): the static binary, then the extras:
 * share/greeting.txt and a bigger lib/hello/ with a data file and a relative symlink to it.
 */
const EXTRAS_COMMAND = [
  'set -e',
  'case "$KILN_TARGET_OS/$KILN_TARGET_ARCH" in linux/amd64|linux/arm64) ;; *) echo "no $KILN_TARGET_PLATFORM here" >&2; exit 1;; esac',
  'CLANG=$(command -v clang || ls /usr/bin/clang-[0-9]* | sort -V | tail -n 1)',
  'LD=; command -v "$KILN_TARGET_TRIPLE-ld" >/dev/null || LD=-fuse-ld=lld',
  '$CLANG --target="$KILN_TARGET_TRIPLE" $LD -O2 -static -o "$KILN_OUT/app" main.c',
  'mkdir -p "$KILN_OUT/share" "$KILN_OUT/lib/hello"',
  'cp greeting.txt "$KILN_OUT/share/greeting.txt"',
  'cp data.bin "$KILN_OUT/lib/hello/data-1.bin"',
  'ln -s data-1.bin "$KILN_OUT/lib/hello/current"',
].join('\n');

function writeExtrasProject(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'main.c'), EXTRAS_MAIN_C('v1'));
  writeFileSync(join(dir, 'greeting.txt'), 'hello from the extras\n');
  writeFileSync(join(dir, 'data.bin'), seededBytes('kiln extras', 256 * 1024)); // the largest group: the lowest kiln layer
  writeFileSync(
    join(dir, 'kiln.yaml'),
    `toolchain:\n  image: ${toolchain}\n  command: ${JSON.stringify(EXTRAS_COMMAND)}\nimage:\n  name: hello\n  base: ${base}\n`,
  );
  writeFileSync(join(dir, '.gitignore'), 'hello*\nkiln.lock\n');
  return dir;
}

interface NativeLayerJson {
  descriptor: Descriptor;
  groups: string[];
}

async function layerFiles(repo: string, digest: string): Promise<string[]> {
  const res = await fetch(`http://${repo.replace('/', '/v2/')}/blobs/${digest}`);
  assert.equal(res.status, 200, `GET blob ${digest}`);
  const entries = await listTar(res.body as unknown as AsyncIterable<Uint8Array>);
  return entries
    .filter((e) => e.type !== 'dir')
    .map((e) => (e.linkname ? `${e.path} -> ${e.linkname}` : `${e.path} ${e.mode.toString(8)}`));
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
    // The base index: real static busybox for amd64 and arm64.
    const layout = await busyboxBaseIndex(join(work, 'base-layout'));
    base = `${registry}/bases/busybox:1`;
    ok(await k(['copy', layout.ref, base]), 'push the base index');
    baseIndex = (await skopeoRaw(base)).json as ImageIndex;
    assert.equal(sha256((await skopeoRaw(base)).text), layout.descriptor.digest);

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
    first = await buildJson(project, PLATFORMS, `${repo()}:1`);
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
        const busybox = readFileSync(join(rootfs, 'bin/busybox'));
        assert.equal(busybox.readUInt16LE(18), bin.readUInt16LE(18), `${p}: on its own busybox`);
      } else {
        assert.equal(readFileSync(join(rootfs, 'hello.wasm')).subarray(0, 4).toString('latin1'), '\0asm');
      }
    }
  });

  test('--wasi-alias lists the wasm manifest under wasi/wasm too', LONG, async () => {
    const built = await buildJson(project, PLATFORMS, `${repo()}:alias`, ['--wasi-alias']);
    const index = (await skopeoRaw(`${repo()}:alias`)).json as ImageIndex;
    assert.equal(sha256((await skopeoRaw(`${repo()}:alias`)).text), built.index?.digest);
    assert.deepEqual(
      index.manifests.map((m) => plat(m.platform)),
      ['linux/amd64', 'linux/arm64', 'wasip1/wasm', 'wasi/wasm'],
    );
    assert.equal(index.manifests[3]!.digest, index.manifests[2]!.digest);
  });

  test('the same inputs give the same index digest, even compiled again', LONG, async () => {
    const again = await buildJson(project, PLATFORMS, `${repo()}:again`, ['--no-cache']);
    assert.deepEqual(
      again.compiles.map((c) => c.source),
      ['build', 'build', 'build'],
      'compiled again, not taken from the cache',
    );
    assert.equal(again.index?.digest, first.index?.digest);
    // The epoch is part of the input: another one gives another index.
    const later = await buildJson(project, PLATFORMS, `${repo()}:later`, [], {
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
        await buildJson(dir, PLATFORMS, to, ['--no-sbom']);
        writeFileSync(join(dir, 'main.c'), MAIN_C('changed'));
        log.clear();
        const second = await buildJson(dir, PLATFORMS, `${log.host}/apps/rebuild:2`, ['--no-sbom']);
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

  describe('a native build that writes more than the binary', () => {
    const PLATS = 'linux/amd64,linux/arm64';
    let dir: string;
    let firstBuild: BuildJson & { images: Array<{ layers?: NativeLayerJson[] }> };
    let firstManifests: ImageManifest[];
    const extrasRepo = () => `${registry}/apps/extras`;
    const cacheRepo = () => `${registry}/cache/extras`;

    /** PUT blob digests while `fn` runs, through a counting proxy; `fn` gets the proxy's host. */
    async function uploads(fn: (host: string) => Promise<void>): Promise<string[]> {
      const log = await startRequestLog(`http://${registry}`);
      try {
        await fn(log.host);
        const sessions = log.requests.filter(
          (r) => r.method === 'POST' && /\/blobs\/uploads\/$/.test(r.path),
        );
        const put = log.requests
          .filter((r) => r.method === 'PUT' && r.path.includes('/blobs/uploads/'))
          .map((r) => new URL(r.url, 'http://x').searchParams.get('digest')!)
          .sort();
        assert.equal(sessions.length, put.length, 'one upload session per blob, no mounts');
        return put;
      } finally {
        await log.stop();
      }
    }

    /** `kiln build` of the project to extras:TAG through {@link uploads}: the blobs PUT, each image's manifest. */
    async function buildCounted(tag: string): Promise<{ put: string[]; manifests: ImageManifest[] }> {
      let built!: BuildJson;
      const put = await uploads(async (host) => {
        built = await buildJson(dir, PLATS, `${host}/apps/extras:${tag}`, ['--no-sbom']);
      });
      const manifests: ImageManifest[] = [];
      for (const image of built.images)
        manifests.push(await manifestOf(extrasRepo(), image.descriptor.digest));
      return { put, manifests };
    }

    test(
      'base layers + lib, share, app layers, in that order; runs in Docker reading its extras',
      LONG,
      async () => {
        dir = writeExtrasProject(join(work, 'extras'));
        firstBuild = await buildJson(dir, PLATS, `${extrasRepo()}:1`, ['--cache-to', cacheRepo()]);
        assert.deepEqual(
          firstBuild.compiles.map((c) => c.source),
          ['build', 'build'],
        );
        firstManifests = [];
        for (const image of firstBuild.images) {
          const arch = image.platform.architecture;
          assert.deepEqual(
            image.layers?.map((l) => l.groups),
            [['lib'], ['share'], ['app']],
            `${arch}: the plan`,
          );
          const manifest = await manifestOf(extrasRepo(), image.descriptor.digest);
          firstManifests.push(manifest);
          const baseEntry = baseIndex.manifests.find((m) => m.platform?.architecture === arch)!;
          const baseManifest = await manifestOf(`${registry}/bases/busybox`, baseEntry.digest);
          assert.equal(manifest.layers.length, baseManifest.layers.length + 3, `${arch}: base + 3`);
          assert.deepEqual(manifest.layers.slice(0, -3), baseManifest.layers);
          assert.deepEqual(
            manifest.layers.slice(-3).map((l) => l.digest),
            image.layers!.map((l) => l.descriptor.digest),
          );
          const [lib, share, app] = manifest.layers.slice(-3) as [Descriptor, Descriptor, Descriptor];
          assert.deepEqual(await layerFiles(extrasRepo(), lib.digest), [
            'usr/local/lib/hello/current -> data-1.bin',
            'usr/local/lib/hello/data-1.bin 644',
          ]);
          assert.deepEqual(await layerFiles(extrasRepo(), share.digest), [
            'usr/local/share/greeting.txt 644',
          ]);
          assert.deepEqual(await layerFiles(extrasRepo(), app.digest), ['usr/local/bin/hello 755']);
          const config = await blobJson<ImageConfig>(extrasRepo(), manifest.config.digest);
          assert.equal(config.rootfs.diff_ids.length, manifest.layers.length);
          assert.deepEqual(
            config.history?.slice(-3).map((h) => h.created_by),
            ['kiln build (lib)', 'kiln build (share)', 'kiln build (app)'],
          );
        }
        // The compile left the extras beside the binary.
        assert.equal(
          readFileSync(join(dir, 'hello-linux-amd64.files', 'share', 'greeting.txt'), 'utf8'),
          'hello from the extras\n',
        );
        assert.equal(
          readlinkSync(join(dir, 'hello-linux-arm64.files', 'lib', 'hello', 'current')),
          'data-1.bin',
        );

        const ran = await docker.docker(['run', '--rm', `${extrasRepo()}:1`, 'docker'], {
          timeoutMs: 300_000,
        });
        assert.equal(ok(ran, 'docker run').trim(), `hello from the extras, docker (v1, data ${256 * 1024})`);
      },
    );

    test(
      'a cached build restores the extras without a runner, locally and from --cache-from',
      LONG,
      async () => {
        // Gone from the host: only the cache can bring them back.
        rmSync(join(dir, 'hello-linux-amd64.files'), { recursive: true, force: true });
        const cached = await buildJson(dir, PLATS, `${extrasRepo()}:cached`);
        assert.deepEqual(
          cached.compiles.map((c) => c.source),
          ['cache', 'cache'],
          'no runner started',
        );
        assert.equal(cached.index?.digest, firstBuild.index?.digest, 'the same index');
        assert.equal(
          readFileSync(join(dir, 'hello-linux-amd64.files', 'share', 'greeting.txt'), 'utf8'),
          'hello from the extras\n',
        );

        // The cache artifact: the binary under its own name and type, the extras as a second layer.
        const key = (firstBuild.compiles[0] as unknown as { key: string }).key;
        const entry = (await skopeoRaw(`${cacheRepo()}:${key}`)).json as ImageManifest;
        assert.deepEqual(
          entry.layers.map((l) => [l.mediaType, l.annotations?.['org.opencontainers.image.title']]),
          [
            ['application/octet-stream', 'app'],
            ['application/vnd.oci.image.layer.v1.tar+gzip', 'extras.tar.gz'],
          ],
        );

        // Another machine: an empty kiln home, the toolchain pinned by kiln.lock, no engine needed.
        const fresh = join(work, 'extras-fresh');
        cpSync(dir, fresh, { recursive: true });
        rmSync(join(fresh, 'hello-linux-amd64.files'), { recursive: true, force: true });
        rmSync(join(fresh, 'hello-linux-arm64.files'), { recursive: true, force: true });
        const remote = await buildJson(
          fresh,
          PLATS,
          `${extrasRepo()}:remote`,
          ['--cache-from', cacheRepo()],
          { KILN_HOME: join(work, 'home-fresh'), DOCKER_HOST: NO_ENGINE },
        );
        assert.deepEqual(
          remote.compiles.map((c) => c.source),
          ['remote-cache', 'remote-cache'],
        );
        assert.equal(remote.index?.digest, firstBuild.index?.digest, 'the same index from the remote cache');
        assert.equal(
          readlinkSync(join(fresh, 'hello-linux-arm64.files', 'lib', 'hello', 'current')),
          'data-1.bin',
        );
      },
    );

    test('changing main.c uploads only the top layer and the configs', LONG, async () => {
      writeFileSync(join(dir, 'main.c'), EXTRAS_MAIN_C('v2'));
      const { put, manifests } = await buildCounted('2');
      const expected: string[] = [];
      for (const [i, m] of manifests.entries()) {
        assert.deepEqual(m.layers.slice(0, -1), firstManifests[i]!.layers.slice(0, -1), 'lower layers kept');
        assert.notEqual(m.layers.at(-1)!.digest, firstManifests[i]!.layers.at(-1)!.digest);
        expected.push(m.config.digest, m.layers.at(-1)!.digest);
      }
      assert.deepEqual(put, expected.sort(), 'exactly the new binary layers and configs');
      const ran = await docker.docker(['run', '--rm', `${extrasRepo()}:2`, 'again'], { timeoutMs: 300_000 });
      assert.equal(ok(ran, 'docker run').trim(), `hello from the extras, again (v2, data ${256 * 1024})`);
    });

    test('changing the greeting uploads only its layer and the configs', LONG, async () => {
      const before: ImageManifest[] = [];
      for (const image of (await buildJson(dir, PLATS, `${extrasRepo()}:2b`)).images)
        before.push(await manifestOf(extrasRepo(), image.descriptor.digest));
      writeFileSync(join(dir, 'greeting.txt'), 'hi from new extras\n');
      const { put, manifests } = await buildCounted('3');
      const expected: string[] = [];
      for (const [i, m] of manifests.entries()) {
        const was = before[i]!.layers;
        assert.deepEqual(m.layers.slice(0, -2), was.slice(0, -2), 'base and lib layers kept');
        assert.notEqual(m.layers.at(-2)!.digest, was.at(-2)!.digest, 'the share layer changed');
        // The binary is compiled again from the same main.c: the same bytes, the same layer.
        assert.equal(m.layers.at(-1)!.digest, was.at(-1)!.digest, 'the binary layer kept');
        expected.push(m.config.digest, m.layers.at(-2)!.digest);
      }
      // Both platforms' share layers are the same bytes: one upload.
      assert.deepEqual(put, [...new Set(expected)].sort(), 'exactly the new greeting layer and configs');
      const ran = await docker.docker(['run', '--rm', `${extrasRepo()}:3`, 'you'], { timeoutMs: 300_000 });
      assert.equal(ok(ran, 'docker run').trim(), `hi from new extras, you (v2, data ${256 * 1024})`);
    });
  });
});
