/**
 * Interoperability: what kiln writes is accepted by real tools (skopeo, umoci, Docker), and kiln reads
 * what they write. Media types and annotations are the ones of docs/formats.md.
 *
 * Needs: the WASI C toolchain (test/support/wasi.ts), skopeo, umoci, and for the Docker tests root plus
 * docker.io (a private engine, test/support/docker.ts). Outside CI a missing tool skips; in CI it fails.
 * The kiln CLI must be built (`npm run build`).
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { dockerSkipReason, sharedDocker } from '../support/docker.js';
import { readTar } from '../support/hostile.js';
import {
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  OCI_CONFIG,
  OCI_LAYER,
  OCI_LAYER_GZIP,
  OCI_MANIFEST,
  sha256,
  TITLE_ANNOTATION,
  VARIANT_ANNOTATION,
} from '../support/images.js';
import { kiln, kilnDigest, kilnJson, kilnOk } from '../support/kiln.js';
import { workDir } from '../support/temp.js';
import { ok, type RunResult, requireTool, run, toolSkipReason } from '../support/tools.js';
import { buildWasiProgram, HELLO_C, wasiSkipReason } from '../support/wasi.js';

const TIMEOUT = 120_000;

const work = workDir('kiln-interop');

let helloPromise: Promise<string> | undefined;
/** hello.wasm built from HELLO_C (cached across runs by the builder). */
function helloWasm(): Promise<string> {
  helloPromise ??= buildWasiProgram('hello', HELLO_C);
  return helloPromise;
}

/** Skip reason (outside CI) when the WASI toolchain or one of `tools` is missing; throws in CI. */
function missing(...tools: string[]): string | undefined {
  return wasiSkipReason() ?? (tools.length ? toolSkipReason(...tools) : undefined);
}

/** skopeo, which must succeed; returns its stdout. */
async function skopeo(args: string[]): Promise<string> {
  // Local transports only; --insecure-policy so no /etc/containers/policy.json is needed for copy.
  const r = await run(requireTool('skopeo')!, ['--insecure-policy', ...args], { timeoutMs: TIMEOUT });
  return ok(r, `skopeo ${args.join(' ')}`);
}

function umoci(args: string[]): Promise<RunResult> {
  return run(requireTool('umoci')!, args, { timeoutMs: TIMEOUT });
}

/** hello.wasm packaged into oci:WORK/NAME:TAG; the digest kiln printed. */
async function packaged(name: string, tag = 'hello', extra: string[] = []) {
  const wasm = await helloWasm();
  const dir = join(work, name);
  return { wasm, dir, digest: await kilnPackage(wasm, `oci:${dir}:${tag}`, extra) };
}

/** `kiln package` that must succeed; returns the manifest digest it prints on stdout. */
const kilnPackage = (wasm: string, to: string, extra: string[] = []) =>
  kilnDigest(['package', wasm, '--to', to, ...extra]);

type Manifest = ImageManifest;

/** All regular files of a tar stream, by name without a leading `./`. */
async function tarFiles(data: Buffer): Promise<Map<string, { mode: number; data: Buffer }>> {
  const files = (await readTar(data)).filter((e) => (e.header.type ?? 'file') === 'file');
  return new Map(
    files.map((e) => [e.header.name.replace(/^\.\//, ''), { mode: e.header.mode ?? 0, data: e.data }]),
  );
}

/** A blob of an oci-archive (an OCI layout in a tar), read directly from the archive. */
async function archiveBlob(archive: string, digest: string): Promise<Buffer> {
  const files = await tarFiles(readFileSync(archive));
  const blob = files.get(`blobs/${digest.replace(':', '/')}`);
  assert.ok(blob, `${archive} has no blob ${digest}; members: ${[...files.keys()].join(', ')}`);
  return blob.data;
}

test('skopeo reads a packaged wasm image: wasip1/wasm, kiln’s manifest digest, compat-smart, one gzip layer, /hello.wasm entrypoint', async (t) => {
  const reason = missing('skopeo');
  if (reason !== undefined) return t.skip(reason);
  const { dir, digest } = await packaged('skopeo-image');

  const info = await skopeo(['inspect', `oci:${dir}:hello`]);
  const parsed = JSON.parse(info) as { Architecture: string; Os: string; Digest: string };
  assert.equal(parsed.Architecture, 'wasm');
  assert.equal(parsed.Os, 'wasip1');
  assert.equal(parsed.Digest, digest);

  const raw = await skopeo(['inspect', '--raw', `oci:${dir}:hello`]);
  assert.equal(sha256(raw), digest, 'the raw manifest hashes to the printed digest');
  const manifest = JSON.parse(raw) as Manifest;
  assert.equal(manifest.mediaType, OCI_MANIFEST);
  assert.equal(manifest.config.mediaType, OCI_CONFIG);
  assert.equal(manifest.annotations?.[VARIANT_ANNOTATION], 'compat-smart');
  assert.equal(manifest.layers.length, 1);
  assert.equal(manifest.layers[0]!.mediaType, OCI_LAYER_GZIP);

  const config = await skopeo(['inspect', '--config', '--raw', `oci:${dir}:hello`]);
  const cfg = JSON.parse(config) as {
    architecture: string;
    os: string;
    config: { Entrypoint?: string[] };
    rootfs: { diff_ids: string[] };
  };
  assert.deepEqual(cfg.config.Entrypoint, ['/hello.wasm']);
  assert.equal(cfg.architecture, 'wasm');
  assert.equal(cfg.os, 'wasip1');
  assert.equal(cfg.rootfs.diff_ids.length, 1);
});

test('umoci raw unpack extracts /hello.wasm from a wasm image byte-identical with mode 0755 (full unpack refuses os wasip1)', async (t) => {
  const reason = missing('umoci');
  if (reason !== undefined) return t.skip(reason);
  const { wasm, dir } = await packaged('umoci-wasm');

  const rootfs = join(work, 'umoci-wasm-rootfs');
  ok(await umoci(['raw', 'unpack', '--rootless', '--image', `${dir}:hello`, rootfs]), 'umoci raw unpack');
  const unpacked = join(rootfs, 'hello.wasm');
  assert.ok(readFileSync(unpacked).equals(readFileSync(wasm)), 'hello.wasm differs from the input module');
  assert.equal(statSync(unpacked).mode & 0o7777, 0o755);

  // Why the raw form: umoci cannot generate a runtime config.json for a non-Linux OS.
  const full = await umoci([
    'unpack',
    '--rootless',
    '--image',
    `${dir}:hello`,
    join(work, 'umoci-wasm-bundle'),
  ]);
  t.diagnostic(`umoci unpack of a wasip1 image: exit ${full.code}: ${full.stderr.trim().split('\n').at(-1)}`);
  assert.notEqual(full.code, 0);
  assert.match(full.stderr, /wasip1/);
});

test('umoci unpack makes a runtime bundle of a linux/amd64 image whose process.args[0] is /hello.wasm', async (t) => {
  const reason = missing('umoci');
  if (reason !== undefined) return t.skip(reason);
  const { wasm, dir } = await packaged('umoci-amd64', 'amd64', ['--platform', 'linux/amd64']);

  const bundle = join(work, 'umoci-amd64-bundle');
  ok(await umoci(['unpack', '--rootless', '--image', `${dir}:amd64`, bundle]), 'umoci unpack');
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
    process: { args: string[] };
  };
  assert.equal(config.process.args[0], '/hello.wasm');
  assert.ok(readFileSync(join(bundle, 'rootfs', 'hello.wasm')).equals(readFileSync(wasm)));
});

interface FormatCase {
  format: string;
  /** Checks the manifest (and blobs) read back by skopeo against docs/formats.md. */
  check(m: Manifest, ctx: { wasm: Buffer; archive: string; config: Buffer }): Promise<void> | void;
}

const FORMATS: FormatCase[] = [
  {
    format: 'artifact',
    check(m, { wasm, config }) {
      assert.equal(m.config.mediaType, 'application/vnd.wasm.config.v0+json');
      assert.equal(m.layers.length, 1, 'exactly one layer');
      const layer = m.layers[0]!;
      assert.equal(layer.mediaType, 'application/wasm');
      assert.equal(layer.digest, sha256(wasm), 'the layer is the raw module bytes');
      assert.equal(layer.annotations?.[TITLE_ANNOTATION], 'hello.wasm');
      const body = JSON.parse(config.toString('utf8')) as Record<string, unknown>;
      assert.equal(body['architecture'], 'wasm');
      assert.equal(body['os'], 'wasip1');
      assert.equal(typeof body['created'], 'string');
      assert.deepEqual(body['layerDigests'], [layer.digest]);
      assert.equal(body['component'], null, 'a core module has component: null');
    },
  },
  {
    format: 'istio',
    async check(m, { wasm, archive, config }) {
      assert.equal(m.config.mediaType, OCI_CONFIG);
      assert.equal(m.annotations?.[VARIANT_ANNOTATION], 'compat');
      assert.equal(m.layers.length, 1, 'exactly one layer');
      assert.equal(m.layers[0]!.mediaType, OCI_LAYER_GZIP);
      const files = await tarFiles(gunzipSync(await archiveBlob(archive, m.layers[0]!.digest)));
      assert.ok(
        files.get('plugin.wasm')?.data.equals(wasm),
        `plugin.wasm in the layer: ${[...files.keys()]}`,
      );
      const body = JSON.parse(config.toString('utf8')) as { architecture: string; os: string };
      assert.equal(body.architecture, 'wasm');
      assert.equal(body.os, 'wasip1');
    },
  },
  {
    format: 'istio-oci',
    check(m, { wasm, config }) {
      assert.equal(m.config.mediaType, 'application/vnd.module.wasm.config.v1+json');
      assert.equal(m.layers.length, 2, 'exactly two layers');
      const [rc, content] = m.layers as [Descriptor, Descriptor];
      assert.equal(rc.mediaType, 'application/vnd.module.wasm.config.v1+json');
      assert.equal(rc.digest, m.config.digest, 'the first layer is the config blob');
      assert.equal(rc.annotations?.[TITLE_ANNOTATION], 'runtime-config.json');
      assert.equal(content.mediaType, 'application/vnd.module.wasm.content.layer.v1+wasm');
      assert.equal(content.digest, sha256(wasm));
      assert.equal(content.annotations?.[TITLE_ANNOTATION], 'filter.wasm');
      const runtimeConfig = JSON.parse(config.toString('utf8')) as { type?: string };
      assert.equal(runtimeConfig.type, 'envoy_proxy');
      assert.equal(m.annotations?.['module.wasm.runtime/type'], 'envoy_proxy');
    },
  },
  {
    format: 'wasm-to-oci',
    check(m, { wasm, config }) {
      assert.equal(m.config.mediaType, 'application/vnd.wasm.config.v1+json');
      assert.equal(config.toString('utf8'), '{}');
      assert.equal(m.layers.length, 1, 'exactly one layer');
      const layer = m.layers[0]!;
      assert.equal(layer.mediaType, 'application/vnd.wasm.content.layer.v1+wasm');
      assert.equal(layer.digest, sha256(wasm));
      assert.equal(layer.annotations?.[TITLE_ANNOTATION], 'hello.wasm', 'title = the file name');
    },
  },
];

for (const { format, check } of FORMATS) {
  test(`--format ${format} in an oci-archive: skopeo reads the media types and annotations of docs/formats.md, and kiln run prints 'hello x'`, async (t) => {
    const reason = missing('skopeo');
    if (reason !== undefined) return t.skip(reason);
    const wasmPath = await helloWasm();
    const wasm = readFileSync(wasmPath);
    const archive = join(work, `format-${format}.tar`);
    const ref = `oci-archive:${archive}:v1`;
    const digest = await kilnPackage(wasmPath, ref, ['--format', format]);

    const raw = await skopeo(['inspect', '--raw', ref]);
    assert.equal(sha256(raw), digest);
    const manifest = JSON.parse(raw) as Manifest;
    assert.equal(manifest.schemaVersion, 2);
    assert.equal(manifest.mediaType, OCI_MANIFEST);
    assert.equal(manifest.artifactType, undefined, 'no artifactType');
    const config = await skopeo(['inspect', '--config', '--raw', ref]);
    const configBytes = Buffer.from(config);
    assert.equal(sha256(configBytes), manifest.config.digest);
    await check(manifest, { wasm, archive, config: configBytes });

    assert.equal(await kilnOk(['run', ref, '--', 'x']), 'hello x\n');
  });
}

test('--format istio-oci records module.wasm.runtime/abi_version as wasme does (all abiVersions, comma-joined)', async (t) => {
  const reason = missing('skopeo');
  if (reason !== undefined) return t.skip(reason);
  const wasmPath = await helloWasm();
  const versions = ['v0-4689a30309abf31aee9ae36e73d34b1bb182685f', 'v0.2.1'];
  const rcFile = join(work, 'runtime-config.json');
  writeFileSync(
    rcFile,
    JSON.stringify({ type: 'envoy_proxy', abiVersions: versions, config: { rootIds: [] } }),
  );
  const withVersions = join(work, 'istio-oci-abi.tar');
  await kilnPackage(wasmPath, `oci-archive:${withVersions}:v1`, [
    '--format',
    'istio-oci',
    '--runtime-config',
    rcFile,
  ]);
  const raw = await skopeo(['inspect', '--raw', `oci-archive:${withVersions}:v1`]);
  const m = JSON.parse(raw) as Manifest;
  assert.equal(m.annotations?.['module.wasm.runtime/abi_version'], versions.join(','));

  // docs/formats.md lists both annotations as the istio-oci markers; wasme always writes both.
  const plain = join(work, 'istio-oci-default.tar');
  await kilnPackage(wasmPath, `oci-archive:${plain}:v1`, ['--format', 'istio-oci']);
  const rawPlain = await skopeo(['inspect', '--raw', `oci-archive:${plain}:v1`]);
  const annotations = (JSON.parse(rawPlain) as Manifest).annotations ?? {};
  assert.ok('module.wasm.runtime/abi_version' in annotations, JSON.stringify(annotations));
});

/** The docker load tests, skipped (the reason given) where no private engine can run. */
const DOCKER = { timeout: 300_000, skip: wasiSkipReason() ?? dockerSkipReason() };

/** hello.wasm packaged into the docker-archive NAME.tar under `tag`, and `docker load` of it. */
async function packageAndLoad(name: string, tag: string, extra: string[] = []) {
  const engine = await sharedDocker();
  const archive = join(work, `${name}.tar`);
  const ref = `docker-archive:${archive}:${tag}`;
  await kilnPackage(await helloWasm(), ref, extra);
  return { engine, ref, load: await engine.docker(['load', '-i', archive], { timeoutMs: TIMEOUT }) };
}

test(
  'docker load accepts a linux/amd64 docker-archive: Entrypoint /hello.wasm, and the image ID is kiln’s config digest',
  DOCKER,
  async () => {
    const { engine, ref, load } = await packageAndLoad('docker-amd64', 'hello:1', [
      '--platform',
      'linux/amd64',
    ]);
    ok(load, 'docker load');
    assert.match(load.stdout, /Loaded image: hello:1/);

    const inspect = await engine.docker(['image', 'inspect', 'hello:1'], { timeoutMs: TIMEOUT });
    ok(inspect, 'docker image inspect');
    const [image] = JSON.parse(inspect.stdout) as {
      Id: string;
      Os: string;
      Architecture: string;
      Config: { Entrypoint: string[] | null };
    }[];
    assert.ok(image);
    assert.deepEqual(image.Config.Entrypoint, ['/hello.wasm']);
    assert.equal(image.Os, 'linux');
    assert.equal(image.Architecture, 'amd64');

    const ours = await kilnJson<{ image: { config: { digest: string } } }>(['inspect', ref]);
    assert.equal(image.Id, ours.image.config.digest);
  },
);

test(
  'docker load (20.10, no containerd image store) refuses a wasip1 image: unknown operating system',
  DOCKER,
  async (t) => {
    const { engine, ref, load } = await packageAndLoad('docker-wasm', 'hello:wasm');
    const version = await engine.docker(['version', '--format', '{{.Server.Version}}']);
    t.diagnostic(`docker ${version.stdout.trim()} load: exit ${load.code}: ${load.stderr.trim()}`);
    assert.notEqual(load.code, 0, `docker load unexpectedly accepted a wasip1 image: ${load.stdout}`);
    // Recorded on docker.io 20.10.24: `"wasip1": unknown operating system or architecture: invalid argument`
    assert.match(load.stderr, /wasip1/);
    assert.match(load.stderr, /unknown operating system/);
    // kiln check predicted it: the classic image store's gate on a wasm os.
    const checked = JSON.parse((await kiln(['check', ref, '--for', 'docker', '--json'])).stdout) as {
      verdicts: { findings: { rule: string }[] }[];
    };
    const rules = checked.verdicts[0]!.findings.map((f) => f.rule);
    assert.ok(rules.includes('docker.classic-store'), JSON.stringify(checked));
  },
);

test('skopeo copies an oci-archive written by kiln copy, and the copy keeps the manifest digest', async (t) => {
  const reason = missing('skopeo');
  if (reason !== undefined) return t.skip(reason);
  const { dir, digest } = await packaged('copy-src');

  const archive = join(work, 'X.tar');
  assert.equal(await kilnDigest(['copy', `oci:${dir}:hello`, `oci-archive:${archive}:t`]), digest);

  const other = join(work, 'copy-other');
  await skopeo(['copy', `oci-archive:${archive}:t`, `oci:${other}:t`]);
  assert.equal((await kilnJson<{ digest: string }>(['inspect', `oci:${other}:t`])).digest, digest);
});

/** A docker-archive written by skopeo (uncompressed layers), tagged hello:2. */
async function skopeoDockerArchive(name: string): Promise<{ archive: string; configDigest: string }> {
  const { dir } = await packaged(`${name}-src`);
  const archive = join(work, `${name}.tar`);
  await skopeo(['copy', `oci:${dir}:hello`, `docker-archive:${archive}:hello:2`]);
  const raw = await skopeo(['inspect', '--raw', `oci:${dir}:hello`]);
  return { archive, configDigest: (JSON.parse(raw) as Manifest).config.digest };
}

interface KilnInspect {
  image: {
    platform: { os: string; architecture: string };
    config: { digest: string; entrypoint?: string[] };
    layers: Descriptor[];
  };
}

/** kiln reads the skopeo docker-archive: same config, uncompressed layer whose digest is its diff_id. */
async function checkSkopeoArchive(ref: string, configDigest: string): Promise<void> {
  const { image } = await kilnJson<KilnInspect>(['inspect', ref]);
  assert.equal(image.config.digest, configDigest);
  assert.deepEqual(image.platform, { os: 'wasip1', architecture: 'wasm' });
  assert.deepEqual(image.config.entrypoint, ['/hello.wasm']);
  assert.equal(image.layers.length, 1);
  assert.equal(image.layers[0]!.mediaType, OCI_LAYER);
  const diffIds = (JSON.parse(await kilnOk(['inspect', ref, '--config'])) as ImageConfig).rootfs.diff_ids;
  assert.deepEqual(
    image.layers.map((l) => l.digest),
    diffIds,
    'the digest kiln computes for an uncompressed layer is its diff_id',
  );
  assert.equal(await kilnOk(['run', ref, '--', 'y']), 'hello y\n');
}

test('kiln reads a docker-archive written by skopeo (uncompressed layers: kiln computes their digests)', async (t) => {
  const reason = missing('skopeo');
  if (reason !== undefined) return t.skip(reason);
  const { archive, configDigest } = await skopeoDockerArchive('Y');
  await checkSkopeoArchive(`docker-archive:${archive}`, configDigest);
});

test('kiln finds an image in a skopeo docker-archive by NAME:TAG (skopeo writes RepoTags docker.io/library/hello:2)', async (t) => {
  const reason = missing('skopeo');
  if (reason !== undefined) return t.skip(reason);
  const { archive, configDigest } = await skopeoDockerArchive('Y-named');
  await checkSkopeoArchive(`docker-archive:${archive}:hello:2`, configDigest);
});
