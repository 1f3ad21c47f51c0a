/**
 * Every `oci:` layout kiln writes is a valid OCI image layout, as two independent readers see it:
 * `umoci unpack --rootless` (umoci 0.4.7 refuses any manifest that is not an OCI image manifest) and
 * `oci-image-tool validate --type image` (1.0.0-rc1: Debian's name for the later `imageLayout` type;
 * it checks index.json, every manifest, config and descriptor, and refuses Docker media types).
 *
 * 1. `kiln package`, each --format. The image formats (image, istio) unpack with umoci. The artifact
 *    formats (artifact, istio-oci, wasm-to-oci) are no images: their config is not an image config,
 *    which umoci's unpack and oci-image-tool's layout check both require, so for them index.json
 *    and each manifest are validated alone (oci-image-tool --type imageIndex / manifest) and umoci
 *    must list the tag.
 * 2. `kiln index create`: one image (umoci unpacks the tag) and two platforms (umoci 0.4.7 calls a tag
 *    of several images ambiguous: each entry is unpacked from a copy of the layout that names it).
 * 3. merge, append, mutate, flatten, rebase, diff and index create of a base Docker pushed (Docker
 *    v2 schema 2, Docker media types) write OCI images, which both tools take.
 * 4. `kiln copy` keeps a Docker v2 manifest byte for byte; `--format oci` converts it (and a Docker
 *    manifest list) to OCI, `--format docker` back to Docker v2.
 *
 * The Docker v2 images are pushed by a private dockerd (test/support/docker.ts) into a private
 * docker-registry; where no engine can run (not root, outside CI) skopeo `copy --format v2s2` makes
 * them instead. Needs `npm run build`. Outside CI a missing tool skips; in CI it fails.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatPlatform, hostPlatform } from '../../src/oci/platform.js';
import { dockerSkipReason, sharedDocker } from '../support/docker.js';
import { kiln, kilnDigest, kilnIndexCreate } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { busyboxRootfs, busyboxSkipReason } from '../support/toolchain-images.js';
import { inCI, ok, requireTool, run, toolSkipReason } from '../support/tools.js';

const TIMEOUT = 120_000;
const LONG = { timeout: 600_000 };
const HELLO_WASM = fileURLToPath(new URL('../../examples/hello/hello.wasm', import.meta.url));
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYERS = ['application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.v1.tar+gzip'];
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
/** The native images' platform: the host's busybox, under linux (what umoci unpacks fully). */
const NATIVE = formatPlatform({ ...hostPlatform(), os: 'linux' });

const work = mkdtempSync(join(tmpdir(), 'kiln-oci-validity-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string };
}
interface Manifest {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  manifests?: Descriptor[];
}

const blob = (dir: string, digest: string) => readFileSync(join(dir, 'blobs', digest.replace(':', '/')));
const json = <T = Manifest>(dir: string, digest: string) => JSON.parse(blob(dir, digest).toString()) as T;
const indexJson = (dir: string) => JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as Manifest;

const toolsSkip = () => toolSkipReason('umoci', 'oci-image-tool');

/** `oci-image-tool validate --type image DIR`: the layout, every tag's manifest, config and layers. */
async function validateLayout(dir: string): Promise<void> {
  const r = await run(requireTool('oci-image-tool')!, ['validate', '--type', 'image', dir], {
    timeoutMs: TIMEOUT,
  });
  ok(r, `oci-image-tool validate --type image ${dir}`);
  assert.match(r.stdout + r.stderr, /Validation succeeded/);
}

let bundles = 0;

/**
 * `umoci unpack --rootless` of DIR:TAG; returns the rootfs. `raw` is `umoci raw unpack` (the layers
 * only): umoci's full unpack writes a runtime config.json, which it refuses for an os not linux.
 */
async function umociUnpack(dir: string, tag: string, raw = false): Promise<string> {
  const bundle = join(work, `bundle-${++bundles}`);
  const rootfs = join(bundle, 'rootfs');
  const args = raw
    ? ['raw', 'unpack', '--rootless', '--image', `${dir}:${tag}`, rootfs]
    : ['unpack', '--rootless', '--image', `${dir}:${tag}`, bundle];
  if (raw) mkdirSync(bundle);
  ok(await run(requireTool('umoci')!, args, { timeoutMs: TIMEOUT }), `umoci ${args.join(' ')}`);
  return rootfs;
}

/** The checks an image tag must pass: umoci unpacks it, oci-image-tool validates the layout. */
async function assertValidImage(dir: string, tag: string, files: string[], raw = false): Promise<void> {
  const rootfs = await umociUnpack(dir, tag, raw);
  for (const f of files) assert.ok(existsSync(join(rootfs, f)), `${dir}:${tag}: ${f} unpacked`);
  await validateLayout(dir);
}

/** An OCI image manifest, config and layers (no Docker type left). */
function assertOciImage(dir: string, digest: string): Manifest {
  const m = json(dir, digest);
  assert.equal(m.mediaType, OCI_MANIFEST);
  assert.equal(m.config.mediaType, OCI_CONFIG);
  for (const l of m.layers) assert.ok(OCI_LAYERS.includes(l.mediaType), `layer type ${l.mediaType}`);
  return m;
}

test('kiln package, each --format, writes a valid layout', LONG, async (t) => {
  const reason = toolsSkip();
  if (reason !== undefined) return t.skip(reason);
  for (const [format, file] of [
    ['image', 'hello.wasm'],
    ['istio', 'plugin.wasm'],
  ] as const) {
    await t.test(
      `${format}: umoci unpacks it (wasip1: raw; linux: full), oci-image-tool validates`,
      async () => {
        const dir = join(work, `package-${format}`);
        await kilnDigest(['package', HELLO_WASM, '--format', format, '--to', `oci:${dir}:wasi`]);
        await assertValidImage(dir, 'wasi', [file], true);
        await kilnDigest([
          'package',
          HELLO_WASM,
          '--format',
          format,
          '--platform',
          NATIVE,
          '--to',
          `oci:${dir}:linux`,
        ]);
        await assertValidImage(dir, 'linux', [file]);
      },
    );
  }
  for (const format of ['artifact', 'istio-oci', 'wasm-to-oci']) {
    await t.test(
      `${format}: an artifact; index.json and its manifest validate, umoci lists the tag`,
      async () => {
        const dir = join(work, `package-${format}`);
        const digest = await kilnDigest(['package', HELLO_WASM, '--format', format, '--to', `oci:${dir}:a`]);
        const tool = requireTool('oci-image-tool')!;
        const index = join(dir, 'index.json');
        ok(
          await run(tool, ['validate', '--type', 'imageIndex', index]),
          'oci-image-tool validate index.json',
        );
        const manifest = join(dir, 'blobs', digest.replace(':', '/'));
        ok(await run(tool, ['validate', '--type', 'manifest', manifest]), 'oci-image-tool validate manifest');
        assert.equal(json(dir, digest).mediaType, OCI_MANIFEST);
        const listed = ok(await run(requireTool('umoci')!, ['ls', '--layout', dir]), 'umoci ls');
        assert.deepEqual(listed.trim().split('\n'), ['a']);
        // What these formats are not: an image (the reason for the checks above).
        const refused = await run(requireTool('umoci')!, [
          'unpack',
          '--rootless',
          '--image',
          `${dir}:a`,
          join(work, `no-${format}`),
        ]);
        assert.notEqual(refused.code, 0);
        assert.match(refused.stderr + refused.stdout, /config blob is not correct mediatype/);
      },
    );
  }
});

test(
  '--format runwasi: an image config with no diff_ids and a raw wasm layer; oci-image-tool validates index, manifest and config, umoci lists the tag',
  LONG,
  async (t) => {
    const reason = toolsSkip();
    if (reason !== undefined) return t.skip(reason);
    const dir = join(work, 'package-runwasi');
    const digest = await kilnDigest(['package', HELLO_WASM, '--format', 'runwasi', '--to', `oci:${dir}:a`]);
    const tool = requireTool('oci-image-tool')!;
    ok(await run(tool, ['validate', '--type', 'imageIndex', join(dir, 'index.json')]), 'validate index.json');
    const manifest = await run(tool, [
      'validate',
      '--type',
      'manifest',
      join(dir, 'blobs', digest.replace(':', '/')),
    ]);
    ok(manifest, 'validate manifest');
    // Valid, with a warning for a layer type the image spec does not list (runwasi's own).
    assert.match(
      manifest.stderr + manifest.stdout,
      /unknown media type: application\/vnd\.bytecodealliance\.wasm\.component\.layer\.v0\+wasm/,
    );
    const m = json(dir, digest);
    assert.equal(m.config.mediaType, OCI_CONFIG);
    ok(
      await run(tool, [
        'validate',
        '--type',
        'config',
        join(dir, 'blobs', m.config.digest.replace(':', '/')),
      ]),
      'validate config',
    );
    assert.deepEqual(
      ok(await run(requireTool('umoci')!, ['ls', '--layout', dir]), 'umoci ls')
        .trim()
        .split('\n'),
      ['a'],
    );
  },
);

test('kiln index create writes a valid layout; umoci unpacks each image', LONG, async (t) => {
  const reason = toolsSkip() ?? busyboxSkipReason();
  if (reason !== undefined) return t.skip(reason);
  const images = join(work, 'index-images');
  const rootfs = await busyboxRootfs(join(work, 'index-rootfs'));
  await kilnDigest([
    'append',
    'scratch',
    '--platform',
    NATIVE,
    '--layer',
    rootfs,
    '--to',
    `oci:${images}:bb`,
  ]);
  await kilnDigest(['package', HELLO_WASM, '--to', `oci:${images}:wasm`]);

  const one = join(work, 'index-one');
  const single = await kilnIndexCreate(`oci:${one}:i`, [`oci:${images}:bb`]);
  assert.equal(json(one, single).mediaType, OCI_INDEX);
  await assertValidImage(one, 'i', ['bin/busybox']);

  const two = join(work, 'index-two');
  const multi = await kilnIndexCreate(`oci:${two}:i`, [`oci:${images}:bb`, `oci:${images}:wasm`]);
  await validateLayout(two);
  const entries = json(two, multi).manifests!;
  assert.equal(entries.length, 2);
  for (const entry of entries) {
    // A copy of the layout whose index.json names the entry itself under tag `e`.
    const copy = join(work, `index-two-${entry.platform!.os}`);
    cpSync(two, copy, { recursive: true });
    const named = { ...entry, annotations: { 'org.opencontainers.image.ref.name': 'e' } };
    writeFileSync(join(copy, 'index.json'), JSON.stringify({ ...indexJson(two), manifests: [named] }));
    assertOciImage(copy, entry.digest);
    const linux = entry.platform!.os === 'linux';
    await assertValidImage(copy, 'e', [linux ? 'bin/busybox' : 'hello.wasm'], !linux);
  }
});

interface DockerImages {
  /** REGISTRY/docker/NAME:1 for base, base2, app (base + /srv), apponly (/srv alone). */
  refs: Record<'base' | 'base2' | 'app' | 'apponly', string>;
  /** The pushed manifests' digests. */
  digests: Record<string, string>;
  /** The kiln-written images they were pushed from. */
  staging: string;
}

let dockerBuilt: Promise<DockerImages> | undefined;
const dockerImagesSkip = () =>
  toolsSkip() ?? busyboxSkipReason() ?? registrySkipReason('none') ?? toolSkipReason('skopeo');
/** Docker pushes them when an engine can run here; else (outside CI only) skopeo converts. */
const useDocker = () => inCI() || dockerSkipReason() === undefined;

/** Builds the images with kiln, then has Docker push each (Docker v2 schema 2, Docker media types). */
function dockerImages(): Promise<DockerImages> {
  dockerBuilt ??= (async () => {
    const reg = await sharedRegistry('none');
    const staging = join(work, 'staging');
    const rootfs = await busyboxRootfs(join(work, 'busybox-rootfs'));
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'app.txt'), 'the app\n');
    const extra = join(work, 'base2');
    mkdirSync(extra);
    writeFileSync(join(extra, 'base2.txt'), 'the new base\n');
    const to = (name: string) => ['--to', `oci:${staging}:${name}`];
    await kilnDigest(['append', 'scratch', '--platform', NATIVE, '--layer', rootfs, ...to('base')]);
    await kilnDigest(['append', `oci:${staging}:base`, '--layer', `${extra}:/etc`, ...to('base2')]);
    await kilnDigest(['append', `oci:${staging}:base`, '--layer', `${app}:/srv`, ...to('app')]);
    await kilnDigest(['append', 'scratch', '--platform', NATIVE, '--layer', `${app}:/srv`, ...to('apponly')]);

    const names = ['base', 'base2', 'app', 'apponly'] as const;
    const refs = Object.fromEntries(
      names.map((n) => [n, `${reg.host}/docker/${n}:1`]),
    ) as DockerImages['refs'];
    const digests: Record<string, string> = {};
    const engine = useDocker() ? await sharedDocker() : undefined;
    for (const name of names) {
      if (engine) {
        const kilnRef = `${reg.host}/kiln/${name}:1`;
        await kilnDigest(['copy', `oci:${staging}:${name}`, kilnRef]);
        for (const args of [
          ['pull', kilnRef],
          ['tag', kilnRef, refs[name]],
        ])
          ok(await engine.docker(args, { timeoutMs: TIMEOUT }), `docker ${args.join(' ')}`);
        const push = ok(await engine.docker(['push', refs[name]], { timeoutMs: TIMEOUT }), 'docker push');
        const pushed = /^1: digest: (sha256:[0-9a-f]{64}) size: \d+$/m.exec(push)?.[1];
        assert.ok(pushed, `docker push reports no digest:\n${push}`);
        digests[name] = pushed;
      } else {
        const args = ['--insecure-policy', 'copy', '--format', 'v2s2', '--dest-tls-verify=false'];
        ok(
          await run(requireTool('skopeo')!, [...args, `oci:${staging}:${name}`, `docker://${refs[name]}`], {
            timeoutMs: TIMEOUT,
          }),
          'skopeo copy --format v2s2',
        );
        digests[name] = await kilnDigest(['digest', refs[name]]);
      }
      const seen = JSON.parse(ok(await kiln(['inspect', refs[name], '--json']), 'kiln inspect')) as {
        digest: string;
        mediaType: string;
        image: { config: Descriptor; layers: Descriptor[] };
      };
      assert.equal(seen.digest, digests[name]);
      assert.equal(seen.mediaType, DOCKER_MANIFEST, `${refs[name]} is a Docker v2 manifest`);
      assert.equal(seen.image.config.mediaType, DOCKER_CONFIG);
      for (const l of seen.image.layers) assert.equal(l.mediaType, DOCKER_LAYER);
    }
    return { refs, digests, staging };
  })();
  dockerBuilt.catch(() => {
    dockerBuilt = undefined; // let the next test retry and report its own failure
  });
  return dockerBuilt;
}

test(
  'merge, append, mutate, flatten, rebase, diff and index create of a Docker-pushed base write valid OCI layouts',
  LONG,
  async (t) => {
    const reason = dockerImagesSkip();
    if (reason !== undefined) return t.skip(reason);
    const { refs } = await dockerImages();
    const { base, base2, app, apponly } = refs;
    const cases: [string, string[], string[]][] = [
      ['merge', ['merge', base, apponly], ['bin/busybox', 'srv/app.txt']],
      ['append', ['append', base, '--layer', `${join(work, 'app')}:/opt`], ['bin/busybox', 'opt/app.txt']],
      ['mutate', ['mutate', base, '--env', 'KILN=1', '--label', 'a=b'], ['bin/busybox']],
      ['flatten', ['flatten', app], ['bin/busybox', 'srv/app.txt']],
      ['rebase', ['rebase', app, '--old-base', base, '--new-base', base2], ['etc/base2.txt', 'srv/app.txt']],
      ['diff', ['diff', base, app], ['srv/app.txt']],
    ];
    for (const [name, args, files] of cases) {
      await t.test(name, async () => {
        const dir = join(work, `docker-${name}`);
        const digest = await kilnDigest([...args, '--to', `oci:${dir}:${name}`]);
        await assertValidImage(dir, name, files);
        assertOciImage(dir, digest);
      });
    }
    await t.test('index create', async () => {
      // An OCI index lists OCI images: the Docker one converted (same blobs).
      const dir = join(work, 'docker-index');
      const digest = await kilnDigest(['index', 'create', '--to', `oci:${dir}:index`, base]);
      const index = json(dir, digest);
      assert.equal(index.mediaType, OCI_INDEX);
      await assertValidImage(dir, 'index', ['bin/busybox']);
      assertOciImage(dir, index.manifests![0]!.digest);
    });
  },
);

test(
  'kiln copy keeps a Docker v2 manifest; --format oci converts it (and a manifest list), --format docker back',
  LONG,
  async (t) => {
    const reason = dockerImagesSkip();
    if (reason !== undefined) return t.skip(reason);
    const { refs, digests, staging } = await dockerImages();
    const dir = join(work, 'copied');

    // Without --format: the bytes and the digest Docker pushed.
    assert.equal(await kilnDigest(['copy', refs.base, `oci:${dir}:kept`]), digests['base']);
    const docker = json(dir, digests['base']!);
    assert.equal(docker.mediaType, DOCKER_MANIFEST);
    assert.equal(
      await kilnDigest(['copy', refs.base, `oci:${dir}:same`, '--format', 'docker']),
      digests['base'],
    );

    // --format oci: a new manifest over the same config and layer blobs.
    const oci = join(work, 'copied-oci');
    const converted = await kilnDigest(['copy', refs.base, `oci:${oci}:b`, '--format', 'oci']);
    assert.notEqual(converted, digests['base']);
    const m = assertOciImage(oci, converted);
    assert.equal(m.config.digest, docker.config.digest, 'the config blob, unchanged');
    assert.deepEqual(
      m.layers.map((l) => l.digest),
      docker.layers.map((l) => l.digest),
      'the layer blobs, unchanged',
    );
    await assertValidImage(oci, 'b', ['bin/busybox']);
    // An OCI image asked for as OCI is kept as it is.
    assert.equal(
      await kilnDigest(['copy', `oci:${oci}:b`, `oci:${oci}:again`, '--format', 'oci']),
      converted,
    );

    // --format docker: back to Docker's types (the same blobs).
    const back = join(work, 'copied-docker');
    const d = json(back, await kilnDigest(['copy', `oci:${oci}:b`, `oci:${back}:d`, '--format', 'docker']));
    assert.equal(d.mediaType, DOCKER_MANIFEST);
    assert.equal(d.config.mediaType, DOCKER_CONFIG);
    assert.deepEqual(
      d.layers.map((l) => [l.mediaType, l.digest]),
      docker.layers.map((l) => [DOCKER_LAYER, l.digest]),
    );

    // A Docker manifest list (skopeo converts kiln's index): --format oci converts the list and its image.
    const list = refs.base.replace('/base:1', '/list:1');
    await kilnDigest(['index', 'create', '--to', `oci:${staging}:list`, `oci:${staging}:base`]);
    const args = ['--insecure-policy', 'copy', '--all', '--format', 'v2s2', '--dest-tls-verify=false'];
    ok(
      await run(requireTool('skopeo')!, [...args, `oci:${staging}:list`, `docker://${list}`], {
        timeoutMs: TIMEOUT,
      }),
      'skopeo copy --all --format v2s2',
    );
    const listDir = join(work, 'copied-list');
    const kept = await kilnDigest(['copy', list, `oci:${listDir}:kept`]);
    assert.equal(json(listDir, kept).mediaType, DOCKER_LIST, 'skopeo wrote a Docker manifest list');
    const listOci = join(work, 'copied-list-oci');
    const index = json(listOci, await kilnDigest(['copy', list, `oci:${listOci}:l`, '--format', 'oci']));
    assert.equal(index.mediaType, OCI_INDEX);
    assert.equal(index.manifests!.length, 1);
    assert.equal(index.manifests![0]!.mediaType, OCI_MANIFEST);
    assertOciImage(listOci, index.manifests![0]!.digest);
    await assertValidImage(listOci, 'l', ['bin/busybox']);
  },
);
