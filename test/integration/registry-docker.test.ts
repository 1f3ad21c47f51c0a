/**
 * Round trips between kiln, a real registry (Debian's docker-registry, open over HTTP on loopback) and a
 * real Docker engine (a private dockerd 20.10, see test/support/docker.ts), cross-checked with skopeo:
 *
 * 1. kiln pushes a wasm image labelled linux, docker pulls it: same digest for kiln, docker and skopeo.
 * 2. kiln builds a busybox image from scratch and changes its config, straight in the registry; docker
 *    pulls and runs it.
 * 3. docker pushes (Docker v2 schema 2), kiln reads: copy, digest and inspect agree with docker.
 * 4. kiln makes a multi-platform index in the registry: docker pulls and runs the native image, kiln
 *    runs the wasm one.
 *
 * docker treats 127.0.0.0/8 registries as insecure, so the private engine needs no daemon config. The
 * kiln CLI must be built (`npm run build`). Outside CI a missing tool skips; in CI it fails.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatPlatform, hostPlatform } from '../../src/oci/platform.js';
import { type DockerEngine, dockerSkipReason, sharedDocker } from '../support/docker.js';
import {
  type Descriptor,
  DOCKER_CONFIG,
  DOCKER_LAYER,
  DOCKER_MANIFEST,
  HELLO_WASM,
  type ImageIndex,
  layoutBlob,
  OCI_INDEX,
  sha256,
} from '../support/images.js';
import { kilnAppend, kilnDigest, kilnIndexCreate, kilnJson, kilnOk } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { workDir } from '../support/temp.js';
import { busyboxRootfs, busyboxSkipReason } from '../support/toolchain-images.js';
import { ok, requireTool, run, toolSkipReason } from '../support/tools.js';

const TIMEOUT = 120_000;
const TEST_TIMEOUT = { timeout: 300_000 };
const GREETING = 'hello from kiln via registry';
/**
 * The platform of the native images: linux/amd64 on an amd64 host. The busybox binary is the host's,
 * and docker 20.10 only pulls an image whose os is linux, so the wasm image of test 1 is labelled so too.
 */
const HOST = hostPlatform();
const NATIVE = formatPlatform({ ...HOST, os: 'linux' });

const work = workDir('kiln-registry-docker');

/** Runs the docker CLI of the private engine, which must succeed; returns the whole result. */
async function docker(engine: DockerEngine, args: string[]) {
  const r = await engine.docker(args, { timeoutMs: TIMEOUT });
  ok(r, `docker ${args.join(' ')}`);
  return r;
}

/** `docker pull`; returns the digest docker reports (`Digest: sha256:…`). */
async function dockerPull(engine: DockerEngine, ref: string): Promise<string> {
  const r = await docker(engine, ['pull', ref]);
  const digest = /^Digest: (sha256:[0-9a-f]{64})$/m.exec(r.stdout)?.[1];
  assert.ok(digest, `docker pull ${ref} reports no digest:\n${r.stdout}`);
  return digest;
}

interface DockerImage {
  Id: string;
  RepoDigests: string[];
  Os: string;
  Architecture: string;
  Config: { Entrypoint: string[] | null; Cmd: string[] | null };
}

async function dockerImage(engine: DockerEngine, ref: string): Promise<DockerImage> {
  const r = await docker(engine, ['image', 'inspect', ref]);
  const [info] = JSON.parse(r.stdout) as DockerImage[];
  assert.ok(info, `docker image inspect ${ref}: no image`);
  return info;
}

/** The RepoDigests of `ref`'s image in repository `repo` (an image ID can be in several repositories). */
async function repoDigests(engine: DockerEngine, ref: string, repo: string): Promise<string[]> {
  return (await dockerImage(engine, ref)).RepoDigests.filter((d) => d.startsWith(`${repo}@`));
}

function skopeoInspect(ref: string): Promise<{ Digest: string; Os: string; Architecture: string }> {
  return run(requireTool('skopeo')!, ['inspect', '--tls-verify=false', `docker://${ref}`], {
    timeoutMs: TIMEOUT,
  }).then((r) => JSON.parse(ok(r, `skopeo inspect docker://${ref}`)));
}

interface Inspected {
  digest: string;
  mediaType: string;
  image: {
    digest: string;
    mediaType: string;
    platform: { os: string; architecture: string; variant?: string };
    config: Descriptor & { entrypoint?: string[]; cmd?: string[] };
    layers: Descriptor[];
  };
}

const kilnInspect = (ref: string) => kilnJson<Inspected>(['inspect', ref]);

async function diffIds(ref: string): Promise<string[]> {
  return (JSON.parse(await kilnOk(['inspect', ref, '--config'])) as { rootfs: { diff_ids: string[] } }).rootfs
    .diff_ids;
}

const baseSkipReason = () => dockerSkipReason() ?? registrySkipReason('none');
/** The tests on busybox images: skipped (the reason given) where they cannot run. */
const BUSYBOX = { ...TEST_TIMEOUT, skip: baseSkipReason() ?? busyboxSkipReason() };

/** The registry, the engine and the busybox images, for a test on them. */
async function busyboxSetup() {
  return { reg: await sharedRegistry('none'), engine: await sharedDocker(), ...(await busyboxImages()) };
}

interface Busybox {
  /** REGISTRY/busybox:1 and its digest: the rootfs alone, from scratch. */
  base: string;
  baseDigest: string;
  /** REGISTRY/busybox:2 and its digest: entrypoint `/bin/sh -c`, cmd echoing GREETING. */
  app: string;
  appDigest: string;
}

let busyboxBuilt: Promise<Busybox> | undefined;

/**
 * Builds the busybox images once per file, straight in the registry: `kiln append scratch` of a rootfs
 * (bin/busybox and its applets linking to it), then `kiln mutate` registry to registry.
 */
function busyboxImages(): Promise<Busybox> {
  busyboxBuilt ??= (async () => {
    const reg = await sharedRegistry('none');
    const rootfs = await busyboxRootfs(join(work, 'busybox-rootfs'));
    const base = `${reg.host}/busybox:1`;
    const app = `${reg.host}/busybox:2`;
    const baseDigest = await kilnAppend('scratch', [rootfs], base, { platform: NATIVE });
    const appDigest = await kilnDigest([
      'mutate',
      base,
      '--to',
      app,
      '--entrypoint',
      '["/bin/sh","-c"]',
      '--cmd',
      JSON.stringify([`echo ${GREETING}`]),
    ]);
    assert.notEqual(appDigest, baseDigest);
    return { base, baseDigest, app, appDigest };
  })();
  busyboxBuilt.catch(() => {
    busyboxBuilt = undefined; // let the next test retry and report its own failure
  });
  return busyboxBuilt;
}

/** `docker run --rm REF` prints GREETING; with `echo $((6*7))` as the command, 42. */
async function assertRunsBusybox(engine: DockerEngine, ref: string): Promise<void> {
  const greeting = await docker(engine, ['run', '--rm', ref]);
  assert.equal(greeting.stdout, `${GREETING}\n`);
  const answer = await docker(engine, ['run', '--rm', ref, 'echo $((6*7))']);
  assert.equal(answer.stdout, '42\n');
}

test(
  'kiln pushes a wasm image labelled linux, docker pulls it: kiln, docker and skopeo see one digest',
  TEST_TIMEOUT,
  async (t) => {
    const reason = baseSkipReason() ?? toolSkipReason('skopeo');
    if (reason !== undefined) return t.skip(reason);
    const reg = await sharedRegistry('none');
    const engine = await sharedDocker();
    const repo = `${reg.host}/wasm/hello`;
    const ref = `${repo}:1`;
    const digest = await kilnDigest(['package', HELLO_WASM, '--platform', NATIVE, '--to', ref]);

    assert.equal(await dockerPull(engine, ref), digest);
    assert.deepEqual(await repoDigests(engine, ref, repo), [`${repo}@${digest}`]);
    const image = await dockerImage(engine, ref);
    assert.deepEqual([image.Os, image.Architecture], ['linux', HOST.architecture]);
    assert.deepEqual(image.Config.Entrypoint, ['/hello.wasm']);

    const seen = await skopeoInspect(ref);
    assert.equal(seen.Digest, digest);
    assert.equal(await kilnDigest(['digest', ref]), digest);

    // The module docker unpacked is the one kiln packaged, byte for byte.
    const created = await docker(engine, ['create', ref, '/hello.wasm']);
    const container = created.stdout.trim();
    try {
      const out = join(work, 'from-docker.wasm');
      await docker(engine, ['cp', `${container}:/hello.wasm`, out]);
      assert.deepEqual(readFileSync(out), readFileSync(HELLO_WASM));
    } finally {
      await engine.docker(['rm', '-f', container], { timeoutMs: TIMEOUT });
    }
  },
);

test(
  'kiln append and mutate a busybox image in the registry; docker pulls it with the digest kiln printed and runs it',
  BUSYBOX,
  async () => {
    const { reg, engine, base, baseDigest, app, appDigest } = await busyboxSetup();
    const repo = `${reg.host}/busybox`;

    // Read back through the registry: kiln sees what it wrote.
    assert.equal(await kilnDigest(['digest', base]), baseDigest);
    assert.equal(await kilnDigest(['digest', app]), appDigest);
    const inspected = await kilnInspect(app);
    assert.deepEqual(inspected.image.config.entrypoint, ['/bin/sh', '-c']);
    assert.deepEqual(inspected.image.config.cmd, [`echo ${GREETING}`]);
    assert.deepEqual(await diffIds(app), await diffIds(base), 'mutate leaves the layers alone');

    assert.equal(await dockerPull(engine, app), appDigest);
    assert.deepEqual(await repoDigests(engine, app, repo), [`${repo}@${appDigest}`]);
    const image = await dockerImage(engine, app);
    assert.equal(image.Id, inspected.image.config.digest, 'docker image ID is the config digest');
    assert.deepEqual(image.Config.Entrypoint, ['/bin/sh', '-c']);
    assert.deepEqual(image.Config.Cmd, [`echo ${GREETING}`]);
    await assertRunsBusybox(engine, app);
  },
);

test(
  'docker pushes (Docker v2 schema 2), kiln reads: copy, digest and inspect agree with docker',
  BUSYBOX,
  async () => {
    const { reg, engine, app } = await busyboxSetup();
    const pushed = `${reg.host}/pushed-by-docker:1`;

    await dockerPull(engine, app);
    await docker(engine, ['tag', app, pushed]);
    const push = await docker(engine, ['push', pushed]);
    const pushedDigest = /^1: digest: (sha256:[0-9a-f]{64}) size: (\d+)$/m.exec(push.stdout);
    assert.ok(pushedDigest, `docker push reports no digest:\n${push.stdout}`);
    const [, digest, size] = pushedDigest;

    const layout = join(work, 'pushed-by-docker');
    assert.equal(await kilnDigest(['copy', pushed, `oci:${layout}:x`]), digest);
    assert.equal(await kilnDigest(['digest', pushed]), digest);
    assert.equal(await kilnDigest(['digest', `oci:${layout}:x`]), digest);
    // The manifest is kept byte for byte in the layout.
    const stored = layoutBlob(layout, digest!);
    assert.equal(sha256(stored), digest);
    assert.equal(stored.length, Number(size));

    const inspected = await kilnInspect(pushed);
    assert.equal(inspected.digest, digest);
    assert.equal(inspected.mediaType, DOCKER_MANIFEST);
    assert.equal(inspected.image.mediaType, DOCKER_MANIFEST);
    assert.equal(inspected.image.config.mediaType, DOCKER_CONFIG);
    assert.deepEqual(
      inspected.image.layers.map((l) => l.mediaType),
      [DOCKER_LAYER],
    );
    assert.equal(formatPlatform(inspected.image.platform), NATIVE);
    assert.deepEqual(inspected.image.config.entrypoint, ['/bin/sh', '-c']);
    assert.deepEqual(inspected.image.config.cmd, [`echo ${GREETING}`]);
    assert.deepEqual(await diffIds(pushed), await diffIds(app), 'the same filesystem as kiln built');
    assert.equal(
      inspected.image.config.digest,
      (await dockerImage(engine, pushed)).Id,
      'docker pushed its own config, which kiln reads unchanged',
    );
  },
);

test(
  'kiln index create of busybox and wasm in the registry: docker pulls and runs the native image, kiln run the wasm one',
  BUSYBOX,
  async () => {
    const { reg, engine, app, appDigest } = await busyboxSetup();
    const wasm = `${reg.host}/wasm/hello-wasip1:1`;
    const wasmDigest = await kilnDigest(['package', HELLO_WASM, '--to', wasm]);
    const repo = `${reg.host}/app`;
    const multi = `${repo}:multi`;
    const indexDigest = await kilnIndexCreate(multi, [app, wasm]);

    const raw = await kilnOk(['inspect', multi, '--raw']);
    assert.equal(sha256(raw), indexDigest);
    const index = JSON.parse(raw) as ImageIndex;
    assert.equal(index.mediaType, OCI_INDEX);
    assert.deepEqual(
      index.manifests.map((m) => [m.platform ? formatPlatform(m.platform) : '?', m.digest]),
      [
        [NATIVE, appDigest],
        ['wasip1/wasm', wasmDigest],
      ],
    );
    assert.equal(await kilnDigest(['digest', multi, '--platform', NATIVE]), appDigest);

    // Forget the busybox image locally, so docker must fetch it through the index.
    const configDigest = (await kilnInspect(app)).image.config.digest;
    await engine.docker(['image', 'rm', '-f', configDigest], { timeoutMs: TIMEOUT });
    const gone = await engine.docker(['image', 'inspect', configDigest], { timeoutMs: TIMEOUT });
    assert.notEqual(gone.code, 0, 'the busybox image is no longer in the engine');

    assert.equal(await dockerPull(engine, multi), indexDigest);
    assert.deepEqual(await repoDigests(engine, multi, repo), [`${repo}@${indexDigest}`]);
    const image = await dockerImage(engine, multi);
    assert.equal(image.Id, configDigest, 'docker picked the busybox image');
    assert.deepEqual([image.Os, image.Architecture], ['linux', HOST.architecture]);
    await assertRunsBusybox(engine, multi);

    assert.equal(await kilnOk(['run', multi, '--', 'hi']), 'hello, hi\n');
  },
);
