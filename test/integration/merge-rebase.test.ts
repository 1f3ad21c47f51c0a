/**
 * `kiln merge` and `kiln rebase` through the built CLI (`npm run build`): layers reused as they are
 * (same digests), later layers winning (whiteouts included) as kiln, umoci and skopeo read them,
 * blobs a registry has never sent again, and a rebased image run in a real Docker engine.
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { dockerSkipReason, sharedDocker } from '../support/docker.js';
import { file, tarOf, writeImage } from '../support/hostile.js';
import {
  BASE_DIGEST_ANNOTATION,
  BASE_NAME_ANNOTATION,
  type Descriptor,
  DOCKER_MANIFEST,
  HELLO_WASM,
  type ImageConfig,
  type ImageIndex,
  layoutJson,
  OCI_LAYER,
  OCI_LAYER_GZIP,
  OCI_MANIFEST,
  sha256,
  tagged,
} from '../support/images.js';
import { kilnAppend, kilnDigest, kilnFails, kilnIndexCreate, kilnJson, kilnOk } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry, startRequestLog } from '../support/registry.js';
import { workDir, writeTree } from '../support/temp.js';
import { busyboxRootfs, busyboxSkipReason } from '../support/toolchain-images.js';
import { ok, requireTool, run, toolSkipReason } from '../support/tools.js';

const TIMEOUT = 120_000;

const work = workDir('kiln-merge');

/** Files of a directory tree, relative path → content (symlinks and directories left out). */
function readTree(dir: string, prefix = ''): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of readdirSync(join(dir, prefix))) {
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = lstatSync(join(dir, rel));
    if (st.isDirectory()) for (const [k, v] of readTree(dir, rel)) out.set(k, v);
    else if (st.isFile()) out.set(rel, readFileSync(join(dir, rel), 'utf8'));
  }
  return out;
}

const tree = (name: string, files: Record<string, string>) => writeTree(join(work, name), files);

/** `kiln rebase IMAGE --old-base OLD --new-base NEW --to TO`. */
const rebaseArgs = (image: string, oldBase: string, newBase: string, to: string) => [
  'rebase',
  image,
  ...['--old-base', oldBase, '--new-base', newBase, '--to', to],
];

/** skopeo with no policy file, which must succeed. */
async function skopeo(args: string[]): Promise<string> {
  const r = await run(requireTool('skopeo')!, ['--insecure-policy', ...args], { timeoutMs: TIMEOUT });
  return ok(r, `skopeo ${args.join(' ')}`);
}

/**
 * Three images, each with its own kind of layer: A from `kiln append` (gzip, two layers), B written
 * by hand with an uncompressed tar layer and an Entrypoint, C a tar with a whiteout of A's file.
 */
async function threeImages(): Promise<{ a: string; b: string; c: string; layouts: Record<string, string> }> {
  const la = join(work, 'three-a');
  const a1 = tree('a1', {
    'etc/motd': 'A\n',
    'etc/shared': 'from A\n',
    'data/gone': 'gone\n',
    'data/keep': 'keep\n',
  });
  const a2 = tree('a2', { 'etc/a2': 'second layer of A\n' });
  await kilnAppend('scratch', [a1, a2], `oci:${la}:a0`, { platform: 'linux/amd64' });
  await kilnDigest(['mutate', `oci:${la}:a0`, '--cmd', '/bin/sh', '--env', 'FROM=A', '--to', `oci:${la}:a`]);
  const b = await writeImage(
    join(work, 'three-b'),
    [{ entries: [file('etc/shared', 'from B\n'), file('app/run.sh', '#!/bin/sh\necho run\n', 0o755)] }],
    { config: { Entrypoint: ['/app/run.sh'], Env: ['FROM=B'] } },
  );
  const whiteout = join(work, 'whiteout.tar');
  writeFileSync(whiteout, await tarOf([file('data/.wh.gone', ''), file('etc/shared', 'from C\n')]));
  const lc = join(work, 'three-c');
  await kilnAppend('scratch', [whiteout], `oci:${lc}:c`, { platform: 'linux/amd64' });
  return { a: `oci:${la}:a`, b: b.ref, c: `oci:${lc}:c`, layouts: { a: la, b: b.layout, c: lc } };
}

test('merge of three images: their layers in order, the same blobs; later wins, a whiteout deletes; kiln, umoci and skopeo agree', async (t) => {
  const { a, b, c, layouts } = await threeImages();
  const inputs = (['a', 'b', 'c'] as const).map((k) => {
    const digest = tagged(layouts[k]!, k === 'b' ? 'test' : k).digest;
    const manifest = layoutJson(layouts[k]!, digest);
    return { digest, manifest, config: layoutJson<ImageConfig>(layouts[k]!, manifest.config.digest) };
  });
  const out = join(work, 'merged');
  const result = await kilnJson<{
    descriptor: Descriptor;
    images: { layers: number; configFrom: string }[];
  }>(['merge', a, b, c, '--to', `oci:${out}:m`]);
  const digest = result.descriptor.digest;
  const manifest = layoutJson(out, digest);
  const config = layoutJson<ImageConfig>(out, manifest.config.digest);

  assert.deepEqual(
    manifest.layers.map((l) => [l.mediaType, l.digest, l.size]),
    inputs.flatMap((i) => i.manifest.layers.map((l) => [l.mediaType, l.digest, l.size])),
    'the inputs’ layers, in order, as they were',
  );
  assert.deepEqual(
    manifest.layers.map((l) => l.mediaType),
    [OCI_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER, OCI_LAYER_GZIP],
    'gzip and plain tar layers mix',
  );
  for (const l of manifest.layers) assert.ok(existsSync(join(out, 'blobs', l.digest.replace(':', '/'))));
  assert.deepEqual(
    config.rootfs.diff_ids,
    inputs.flatMap((i) => i.config.rootfs.diff_ids),
  );
  assert.equal(config.history?.filter((h) => !h.empty_layer).length, 4, 'one history entry per layer');
  assert.equal(result.images[0]!.configFrom, b, 'auto: the last input with an Entrypoint or Cmd');
  assert.deepEqual(config.config?.Entrypoint, ['/app/run.sh']);
  assert.deepEqual(config.config?.Env, ['FROM=B']);
  assert.equal(manifest.annotations?.[BASE_DIGEST_ANNOTATION], inputs[0]!.digest);
  assert.equal(manifest.annotations?.[BASE_NAME_ANNOTATION], undefined, 'a local base has no pullable name');

  // The same inputs merge to the same digest; --config-from picks the whole container config.
  assert.equal(await kilnDigest(['merge', a, b, c, '--to', `oci:${join(work, 'merged-2')}:m`]), digest);
  const fromBase = await kilnDigest(['merge', a, b, c, '--config-from', 'base', '--to', `oci:${out}:base`]);
  const baseConfig = layoutJson<ImageConfig>(out, layoutJson(out, fromBase).config.digest);
  assert.deepEqual(baseConfig.config, { Cmd: ['/bin/sh'], Env: ['FROM=A'] });
  const fromLast = await kilnDigest(['merge', a, b, c, '--config-from', 'last', '--to', `oci:${out}:last`]);
  assert.equal(
    layoutJson<ImageConfig>(out, layoutJson(out, fromLast).config.digest).config?.Entrypoint,
    undefined,
  );
  await kilnFails(['merge', a, b, '--config-from', 'first', '--to', `oci:${out}:x`], 'E_USAGE');

  // Later wins, and C's whiteout removes A's data/gone: kiln's own unpack...
  const expected = new Map([
    ['app/run.sh', '#!/bin/sh\necho run\n'],
    ['data/keep', 'keep\n'],
    ['etc/a2', 'second layer of A\n'],
    ['etc/motd', 'A\n'],
    ['etc/shared', 'from C\n'],
  ]);
  const rootfs = join(work, 'merged-rootfs');
  await kilnOk(['unpack', `oci:${out}:m`, rootfs]);
  assert.deepEqual(new Map([...readTree(rootfs)].sort()), expected);
  // ... and without C, B's file wins and A's data/gone is there.
  const ab = join(work, 'merged-ab-rootfs');
  await kilnDigest(['merge', a, b, '--to', `oci:${out}:ab`]);
  await kilnOk(['unpack', `oci:${out}:ab`, ab]);
  assert.equal(readFileSync(join(ab, 'etc/shared'), 'utf8'), 'from B\n');
  assert.equal(readFileSync(join(ab, 'data/gone'), 'utf8'), 'gone\n');

  const reason = toolSkipReason('skopeo', 'umoci');
  if (reason !== undefined) return t.skip(reason);
  assert.equal(sha256(await skopeo(['inspect', '--raw', `oci:${out}:m`])), digest);
  const bundle = join(work, 'merged-umoci');
  ok(
    await run(requireTool('umoci')!, ['unpack', '--rootless', '--image', `${out}:m`, bundle], {
      timeoutMs: TIMEOUT,
    }),
    'umoci unpack',
  );
  assert.deepEqual(new Map([...readTree(join(bundle, 'rootfs'))].sort()), expected);
});

test('merge: Docker v2 and OCI inputs give an OCI manifest with the same blobs; indexes merge per platform; wrong inputs refused', async (t) => {
  const reason = toolSkipReason('skopeo');
  if (reason !== undefined) return t.skip(reason);
  const dir = join(work, 'families');
  const base = tree('fam-base', { 'etc/base': 'base\n' });
  const app = tree('fam-app', { 'opt/app': 'app\n' });
  for (const platform of ['linux/amd64', 'linux/arm64']) {
    const tag = platform.replace('/', '-');
    await kilnAppend('scratch', [base], `oci:${dir}:base-${tag}`, { platform });
    await kilnAppend('scratch', [app], `oci:${dir}:app-${tag}`, { platform });
  }
  const v2 = join(work, 'families-v2');
  await skopeo(['copy', '--format', 'v2s2', `oci:${dir}:base-linux-amd64`, `oci:${v2}:b`]);
  const dockerBase = layoutJson(v2, tagged(v2, 'b').digest);
  assert.equal(dockerBase.mediaType, DOCKER_MANIFEST);
  const mixed = await kilnDigest([
    'merge',
    `oci:${v2}:b`,
    `oci:${dir}:app-linux-amd64`,
    '--to',
    `oci:${dir}:mixed`,
  ]);
  const m = layoutJson(dir, mixed);
  assert.equal(m.mediaType, OCI_MANIFEST);
  assert.equal(m.layers[0]!.digest, dockerBase.layers[0]!.digest, 'the Docker layer blob, renamed');
  assert.equal(m.layers[0]!.mediaType, OCI_LAYER_GZIP);
  // Docker only: OCI too (a manifest kiln creates is OCI unless Docker v2 is asked for).
  const docker = await kilnDigest(['merge', `oci:${v2}:b`, `oci:${v2}:b`, '--to', `oci:${dir}:docker`]);
  assert.equal(layoutJson(dir, docker).mediaType, OCI_MANIFEST);

  const at = (tag: string) => `oci:${dir}:${tag}`;
  for (const kind of ['base', 'app'])
    await kilnIndexCreate(at(`${kind}-multi`), [at(`${kind}-linux-amd64`), at(`${kind}-linux-arm64`)]);
  const multi = await kilnDigest(['merge', at('base-multi'), at('app-multi'), '--to', at('m')]);
  const index = layoutJson<ImageIndex>(dir, multi);
  assert.deepEqual(
    index.manifests.map((e) => `${e.platform?.os}/${e.platform?.architecture}`),
    ['linux/amd64', 'linux/arm64'],
  );
  for (const [i, p] of ['linux-amd64', 'linux-arm64'].entries()) {
    const merged = layoutJson(dir, index.manifests[i]!.digest);
    const want = [`base-${p}`, `app-${p}`].map(
      (tag) => layoutJson(dir, tagged(dir, tag).digest).layers[0]!.digest,
    );
    assert.deepEqual(
      merged.layers.map((l) => l.digest),
      want,
    );
    assert.equal(layoutJson<ImageConfig>(dir, merged.config.digest).architecture, p.split('-')[1]);
  }
  // --platform picks out of indexes; a single image among the inputs sets the platform too.
  const arm = await kilnDigest([
    'merge',
    at('base-multi'),
    at('app-multi'),
    '--platform',
    'linux/arm64',
    '--to',
    at('arm'),
  ]);
  assert.equal(arm, index.manifests[1]!.digest);
  const picked = await kilnDigest(['merge', at('base-multi'), at('app-linux-arm64'), '--to', at('p')]);
  assert.equal(picked, index.manifests[1]!.digest);

  const wrong = await kilnFails(
    ['merge', `oci:${dir}:base-linux-amd64`, `oci:${dir}:app-linux-arm64`, '--to', `oci:${dir}:x`],
    'E_NO_MATCHING_PLATFORM',
  );
  assert.match(wrong.message, /linux\/arm64/);
  await kilnDigest(['package', HELLO_WASM, '--to', `oci:${dir}:wasm`]);
  const wasm = await kilnFails(
    ['merge', `oci:${dir}:wasm`, `oci:${dir}:wasm`, '--to', `oci:${dir}:x`],
    'E_UNSUPPORTED',
  );
  assert.match(wasm.message, /WebAssembly/);
  await kilnFails(['merge', `oci:${dir}:base-multi`, '--to', `oci:${dir}:x`], 'E_USAGE');
});

test('merge into a registry: the blobs it has are mounted or skipped, never read or sent again', {
  skip: registrySkipReason('none'),
}, async () => {
  const reg = await sharedRegistry('none');
  const { a, b, c, layouts } = await threeImages();
  await kilnDigest(['copy', a, `${reg.host}/merge/a:1`]);
  await kilnDigest(['copy', b, `${reg.host}/merge/b:1`]);
  const log = await startRequestLog(reg.url);
  after(() => log.stop());
  const result = await kilnJson<{ blobsCopied: number; blobsMounted: number; descriptor: Descriptor }>([
    'merge',
    `${log.host}/merge/a:1`,
    `${log.host}/merge/b:1`,
    c,
    '--to',
    `${log.host}/merge/app:1`,
  ]);
  const layerDigests = [a, b].flatMap((_, i) => {
    const layout = i === 0 ? layouts.a! : layouts.b!;
    return layoutJson(layout, tagged(layout, i === 0 ? 'a' : 'test').digest).layers.map((l) => l.digest);
  });
  const uploads = log.requests.filter((r) => r.method === 'PUT' && r.path.includes('/blobs/uploads/'));
  assert.equal(uploads.length, 2, `C's layer and the new config only: ${JSON.stringify(log.requests)}`);
  assert.equal(result.blobsCopied, 2);
  assert.equal(result.blobsMounted, layerDigests.length, 'A and B layers mounted from their repositories');
  const reads = log.requests.filter(
    (r) => r.method === 'GET' && layerDigests.some((d) => r.path.endsWith(d)),
  );
  assert.deepEqual(reads, [], 'no base layer read');

  // Merged again into the same repository: every blob is there.
  log.clear();
  const again = await kilnJson<{ blobsCopied: number; descriptor: Descriptor }>([
    'merge',
    `${log.host}/merge/a:1`,
    `${log.host}/merge/b:1`,
    c,
    '--to',
    `${log.host}/merge/app:2`,
  ]);
  assert.equal(again.descriptor.digest, result.descriptor.digest);
  assert.equal(again.blobsCopied, 0);
  // Only the inputs' configs are read (GET); nothing is uploaded, no layer is read.
  assert.deepEqual(
    log.requests.filter(
      (r) =>
        r.path.includes('/blobs/') &&
        r.method !== 'HEAD' &&
        !(r.method === 'GET' && !layerDigests.some((d) => r.path.endsWith(d))),
    ),
    [],
  );
  const pulled = join(work, 'registry-merged');
  await kilnDigest(['copy', `${reg.host}/merge/app:1`, `oci:${pulled}:m`]);
  const m = layoutJson(pulled, result.descriptor.digest);
  assert.equal(m.annotations?.[BASE_NAME_ANNOTATION], `${log.host}/merge/a:1`, 'a registry base is named');
});

test('rebase: the app layer kept, the new base under it, run by Docker; a wrong old base writes nothing', {
  timeout: 300_000,
}, async (t) => {
  const reason = busyboxSkipReason() ?? dockerSkipReason();
  if (reason !== undefined) return t.skip(reason);
  const dir = join(work, 'rebase');
  const rootfs = await busyboxRootfs(join(work, 'busybox-rootfs'));
  const at = (tag: string) => `oci:${dir}:${tag}`;
  const base1 = await kilnAppend(
    'scratch',
    [rootfs, tree('motd-1', { 'etc/motd': 'base one\n' })],
    at('base1'),
  );
  // The new base has another layer shape: its own history and layer count.
  const motd2 = tree('motd-2', { 'etc/motd': 'base two\n' });
  const base2 = await kilnAppend(
    'scratch',
    [rootfs, motd2, tree('extra-2', { 'etc/extra': 'x\n' })],
    at('base2'),
  );
  const appTree = tree('app', { 'hello.sh': '#!/bin/sh\necho "app on $(cat /etc/motd)"\n' });
  await kilnAppend(at('base1'), [`${appTree}:/app`], at('app0'));
  const app = await kilnDigest(['mutate', at('app0'), '--entrypoint', '/app/hello.sh', '--to', at('app')]);
  const appManifest = layoutJson(dir, app);
  const appConfig = layoutJson<ImageConfig>(dir, appManifest.config.digest);
  const b2 = layoutJson(dir, base2);
  assert.deepEqual(
    appManifest.layers.slice(0, 2).map((l) => l.digest),
    layoutJson(dir, base1).layers.map((l) => l.digest),
    'the app is built on base1',
  );
  const b2Config = layoutJson<ImageConfig>(dir, b2.config.digest);

  const result = await kilnJson<{
    descriptor: Descriptor;
    images: { removed: number; added: number; kept: number }[];
  }>(rebaseArgs(at('app'), at('base1'), at('base2'), at('rebased')));
  assert.deepEqual(
    result.images.map((i) => [i.removed, i.added, i.kept]),
    [[2, 3, 1]],
  );
  const rebased = layoutJson(dir, result.descriptor.digest);
  const config = layoutJson<ImageConfig>(dir, rebased.config.digest);
  assert.deepEqual(
    rebased.layers.map((l) => l.digest),
    [...b2.layers.map((l) => l.digest), appManifest.layers[2]!.digest],
    "NEW's layers, then the app layer, the same blob",
  );
  assert.deepEqual(config.rootfs.diff_ids, [...b2Config.rootfs.diff_ids, appConfig.rootfs.diff_ids[2]!]);
  assert.equal(config.history?.length, 4);
  assert.deepEqual(config.config?.Entrypoint, ['/app/hello.sh'], "SRC's config");
  assert.equal(rebased.annotations?.[BASE_DIGEST_ANNOTATION], base2);

  const engine = await sharedDocker();
  const env = { DOCKER_HOST: engine.host };
  await kilnOk(['copy', at('app'), 'docker-daemon:kiln-rebase-app:1'], { env });
  await kilnOk(['copy', at('rebased'), 'docker-daemon:kiln-rebase-app:2'], { env });
  const before = await engine.docker(['run', '--rm', 'kiln-rebase-app:1'], { timeoutMs: TIMEOUT });
  assert.equal(ok(before, 'docker run app').trim(), 'app on base one');
  const ran = await engine.docker(['run', '--rm', 'kiln-rebase-app:2'], { timeoutMs: TIMEOUT });
  assert.equal(ok(ran, 'docker run rebased').trim(), 'app on base two');

  // The wrong old base: a clear error naming the first layer that differs, and no destination.
  const target = join(work, 'rebase-wrong');
  const err = await kilnFails(
    rebaseArgs(at('app'), at('base2'), at('base1'), `oci:${target}:r`),
    'E_BASE_MISMATCH',
  );
  const quoted =
    /is not built on .*base2: its layer 2 has diff_id (sha256:[0-9a-f]{64}), the old base's (sha256:[0-9a-f]{64})$/.exec(
      err.message,
    );
  assert.ok(quoted, err.message);
  assert.equal(existsSync(target), false, 'nothing written');
  // The hint names a command that shows what the message quotes: run it on both images.
  const shown = /kiln inspect IMAGE (--config(?: --platform \S+)?)/.exec(err.hint ?? '');
  assert.ok(shown, `the hint names an inspect command: ${err.hint}`);
  const diffIds = async (image: string) =>
    (JSON.parse(await kilnOk(['inspect', image, ...shown[1]!.split(' ')])) as ImageConfig).rootfs.diff_ids;
  assert.equal((await diffIds(`oci:${dir}:app`))[1], quoted[1], "the image's diff_id, as quoted");
  assert.equal((await diffIds(`oci:${dir}:base2`))[1], quoted[2], "the old base's diff_id, as quoted");
  const shorter = await kilnFails(
    rebaseArgs(at('base1'), at('base2'), at('base1'), `oci:${target}:r`),
    'E_BASE_MISMATCH',
  );
  assert.match(shorter.message, /3 layers, the image only 2/);
  assert.equal(existsSync(target), false, 'nothing written');
});

test('rebase of an index: every platform onto the new base index; --platform and single images agree', async () => {
  const dir = join(work, 'rebase-index');
  const platforms = ['linux/amd64', 'linux/arm64'];
  const appTree = tree('ri-app', { 'opt/app': 'app\n' });
  const at = (tag: string) => `oci:${dir}:${tag}`;
  for (const platform of platforms) {
    const tag = platform.replace('/', '-');
    for (const kind of ['old', 'new']) {
      const layer = tree(`ri-${kind}-${tag}`, { [`etc/${kind}`]: `${kind} ${platform}\n` });
      await kilnAppend('scratch', [layer], at(`${kind}-${tag}`), { platform });
    }
    await kilnAppend(at(`old-${tag}`), [appTree], at(`app-${tag}`));
  }
  for (const kind of ['old', 'new', 'app'])
    await kilnIndexCreate(
      at(kind),
      platforms.map((p) => at(`${kind}-${p.replace('/', '-')}`)),
    );
  const args = ['--old-base', `oci:${dir}:old`, '--new-base', `oci:${dir}:new`];
  const digest = await kilnDigest(['rebase', `oci:${dir}:app`, ...args, '--to', `oci:${dir}:rebased`]);
  const index = layoutJson<ImageIndex>(dir, digest);
  assert.deepEqual(
    index.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`),
    platforms,
  );
  for (const [i, p] of platforms.entries()) {
    const tag = p.replace('/', '-');
    const m = layoutJson(dir, index.manifests[i]!.digest);
    const app = layoutJson(dir, tagged(dir, `app-${tag}`).digest);
    const newBase = tagged(dir, `new-${tag}`).digest;
    assert.deepEqual(
      m.layers.map((l) => l.digest),
      [layoutJson(dir, newBase).layers[0]!.digest, app.layers[1]!.digest],
    );
    assert.equal(m.annotations?.[BASE_DIGEST_ANNOTATION], newBase, "the new base's image for this platform");
    assert.equal(layoutJson<ImageConfig>(dir, m.config.digest).architecture, p.split('/')[1]);
  }
  const arm = await kilnDigest([
    'rebase',
    at('app'),
    ...args,
    '--platform',
    'linux/arm64',
    '--to',
    at('arm'),
  ]);
  assert.equal(arm, index.manifests[1]!.digest);
  const single = await kilnDigest(['rebase', at('app-linux-arm64'), ...args, '--to', at('single')]);
  assert.equal(single, index.manifests[1]!.digest);
  // An old base for another platform is refused, not guessed around.
  const err = await kilnFails(
    rebaseArgs(at('app-linux-arm64'), at('old-linux-amd64'), at('new'), at('x')),
    'E_NO_MATCHING_PLATFORM',
  );
  assert.match(err.message, /linux\/amd64/);
});
