import * as assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { parseLayerSpec } from '../../src/cli/commands/append.js';
import { parseChanges, parseCommand } from '../../src/cli/commands/mutate.js';
import type { KilnError } from '../../src/errors.js';
import { appendLayers } from '../../src/image/append.js';
import { ComposedSource, loadImage, loadRoot } from '../../src/image/compose.js';
import { createIndex } from '../../src/image/index-create.js';
import { mergeEnv, mutateImage } from '../../src/image/mutate.js';
import { readSmallBlob } from '../../src/image/resolve.js';
import { listTar, readFileFromTar } from '../../src/layer/tar-reader.js';
import { tarStream } from '../../src/layer/tar-writer.js';
import { sha256 } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/media-types.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { OciLayout } from '../../src/store/layout.js';
import { copyImage } from '../../src/transport/copy.js';
import { openDestination, openSource } from '../../src/transport/open.js';
import type { BlobOrigin, ImageSource } from '../../src/transport/types.js';
import { indexEntry, makeIndex, makeImage as makeTestImage } from '../support/images.js';

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-compose-'));
after(() => fs.rm(work, { recursive: true, force: true }));
const store = await OciLayout.open(path.join(work, 'store'), { create: true });
const CREATED = new Date(Number(process.env.SOURCE_DATE_EPOCH ?? 0) * 1000)
  .toISOString()
  .replace('.000Z', 'Z');

let counter = 0;
/** A fresh path under the work dir. */
const fresh = (name: string) => path.join(work, `${name}-${++counter}`);

interface BaseOptions {
  docker?: boolean;
  config?: Record<string, unknown>;
  files?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** A one-layer image (etc/base.txt unless `files`) in the layout at `dir` under `tag`, the way other tools would write it. */
async function makeImage(dir: string, tag: string | undefined, o: BaseOptions = {}): Promise<Descriptor> {
  const image = await makeTestImage(dir, tag, {
    files: o.files ?? { 'etc/base.txt': 'base' },
    config: {
      config: { Env: ['PATH=/usr/bin:/bin'] },
      history: [{ created: '2020-01-01T00:00:00Z', created_by: 'base' }],
      ...o.config,
    },
    ...(o.docker ? { docker: true } : {}),
    ...(o.annotations ? { annotations: o.annotations } : {}),
  });
  return image.descriptor;
}

/** An index entry: the manifest descriptor plus the platform of its config. */
const entry = (desc: Descriptor, os: string, architecture: string, variant?: string): Descriptor =>
  indexEntry(desc, variant ? { os, architecture, variant } : { os, architecture });

interface ReadImage {
  root: Descriptor;
  manifest: ImageManifest;
  config: ImageConfig;
  configBytes: Buffer;
  source: ImageSource;
}

async function readImage(ref: string): Promise<ReadImage> {
  const source = await openSource(ref);
  const { root, bytes, parsed } = await loadRoot(source);
  assert.equal(parsed.kind, 'manifest', `${ref} is an image`);
  const image = await loadImage(source, root, bytes);
  return { root, manifest: image.manifest, config: image.config, configBytes: image.configBytes, source };
}

async function readIndex(ref: string): Promise<{ root: Descriptor; index: ImageIndex; source: ImageSource }> {
  const source = await openSource(ref);
  const { root, parsed } = await loadRoot(source);
  assert.equal(parsed.kind, 'index', `${ref} is an index`);
  return { root, index: (parsed as { index: ImageIndex }).index, source };
}

async function blobBytes(source: ImageSource, desc: Descriptor): Promise<Buffer> {
  return readSmallBlob(source, desc, 64 << 20);
}

async function layerPaths(source: ImageSource, desc: Descriptor): Promise<string[]> {
  return (await listTar(await source.fetchBlob(desc))).map((e) => e.path);
}

async function makeTree(): Promise<{ dir: string; file: string }> {
  const dir = fresh('tree');
  await fs.mkdir(path.join(dir, 'sub'), { recursive: true });
  await fs.writeFile(path.join(dir, 'a.txt'), 'alpha');
  await fs.writeFile(path.join(dir, 'sub', 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o700 });
  const file = path.join(fresh('file'), 'tool.bin');
  await fs.mkdir(path.dirname(file));
  await fs.writeFile(file, 'tool');
  return { dir, file };
}

test('append to scratch: deterministic, platform from --platform, diff_ids and history, files at DEST', async () => {
  const { dir, file } = await makeTree();
  const layers = [{ source: dir, dest: '/app' }, { source: file, dest: '/usr/local/bin' }, { source: dir }];
  const platform = { os: 'linux', architecture: 'arm64', variant: 'v8' };
  const one = await appendLayers({ base: 'scratch', layers, platform, to: `oci:${fresh('a')}:x`, store });
  const two = await appendLayers({ base: 'scratch', layers, platform, to: `oci:${fresh('a')}:x`, store });
  assert.equal(one.descriptor.digest, two.descriptor.digest, 'same inputs, same digest');
  assert.deepEqual(one.platform, platform);

  const img = await readImage(one.destination);
  assert.equal(img.root.digest, one.descriptor.digest);
  assert.equal(img.manifest.mediaType, MediaType.OciManifest);
  assert.equal(img.manifest.config.mediaType, MediaType.OciConfig);
  assert.equal(img.config.os, 'linux');
  assert.equal(img.config.architecture, 'arm64');
  assert.equal(img.config.variant, 'v8');
  assert.equal(img.config.created, CREATED);
  assert.deepEqual(
    img.config.rootfs.diff_ids,
    one.layers.map((l) => l.diffId),
  );
  assert.deepEqual(
    img.config.history,
    layers.map(() => ({ created: CREATED, created_by: 'kiln append' })),
  );
  assert.equal(img.manifest.layers.length, 3);
  for (const [i, layer] of img.manifest.layers.entries()) {
    assert.equal(layer.mediaType, MediaType.OciLayerGzip);
    const blob = await blobBytes(img.source, layer);
    assert.equal(sha256(gunzipSync(blob)), img.config.rootfs.diff_ids[i], `diff_id of layer ${i}`);
  }
  assert.deepEqual(await layerPaths(img.source, img.manifest.layers[0]!), [
    'app',
    'app/a.txt',
    'app/sub',
    'app/sub/run.sh',
  ]);
  assert.deepEqual(await layerPaths(img.source, img.manifest.layers[1]!), [
    'usr',
    'usr/local',
    'usr/local/bin',
    'usr/local/bin/tool.bin',
  ]);
  assert.deepEqual(await layerPaths(img.source, img.manifest.layers[2]!), ['a.txt', 'sub', 'sub/run.sh']);
  const script = await readFileFromTar(
    await img.source.fetchBlob(img.manifest.layers[0]!),
    (e) => e.path === 'app/sub/run.sh',
    1024,
  );
  assert.equal(script?.data.toString(), '#!/bin/sh\necho hi\n');
  assert.equal(script?.entry.mode, 0o755, 'modes normalised');
  assert.equal(script?.entry.uid, 0);
});

test('append: a .tar is gzipped deterministically, a .tar.gz/.tgz is kept byte for byte', async () => {
  const dir = fresh('tars');
  await fs.mkdir(dir);
  const chunks: Buffer[] = [];
  const big = Buffer.alloc(3 << 20, 7); // several members when kiln gzips it
  for await (const c of tarStream(
    [
      { path: 'data', type: 'dir' },
      { path: 'data/big.bin', type: 'file', content: big },
      { path: 'data/small.txt', type: 'file', content: Buffer.from('small') },
    ],
    { mtime: 0 },
  ))
    chunks.push(c);
  const tarBytes = Buffer.concat(chunks);
  await fs.writeFile(path.join(dir, 'plain.tar'), tarBytes);
  // Two concatenated gzip members, as pigz and kiln write: the diff_id covers both.
  const half = 1 << 20;
  const gz = Buffer.concat([gzipSync(tarBytes.subarray(0, half)), gzipSync(tarBytes.subarray(half))]);
  await fs.writeFile(path.join(dir, 'layer.tar.gz'), gz);
  await fs.writeFile(path.join(dir, 'layer.tgz'), gzipSync(tarBytes, { level: 1 }));

  const layers = ['plain.tar', 'layer.tar.gz', 'layer.tgz'].map((n) => ({ source: path.join(dir, n) }));
  const result = await appendLayers({
    base: 'scratch',
    layers,
    platform: { os: 'linux', architecture: 'amd64' },
    to: `oci-archive:${fresh('tars')}.tar`,
    store,
  });
  const again = await appendLayers({
    base: 'scratch',
    layers,
    platform: { os: 'linux', architecture: 'amd64' },
    to: `oci:${fresh('tars')}`,
    store,
  });
  assert.equal(result.descriptor.digest, again.descriptor.digest);
  const tarDiff = sha256(tarBytes);
  assert.deepEqual(
    result.layers.map((l) => l.diffId),
    [tarDiff, tarDiff, tarDiff],
  );
  assert.equal(result.layers[1]!.descriptor.digest, sha256(gz), 'a .tar.gz keeps its bytes');
  assert.equal(result.layers[1]!.descriptor.size, gz.length);
  const img = await readImage(result.destination);
  const plainBlob = await blobBytes(img.source, img.manifest.layers[0]!);
  assert.deepEqual(gunzipSync(plainBlob), tarBytes, 'the plain tar, gzipped');
  assert.equal(plainBlob[9], 3, "kiln's gzip header");
  assert.deepEqual(await layerPaths(img.source, img.manifest.layers[2]!), [
    'data',
    'data/big.bin',
    'data/small.txt',
  ]);

  await fs.writeFile(path.join(dir, 'not.tar'), 'this is not a tar archive at all'.repeat(40));
  await fs.writeFile(path.join(dir, 'broken.tgz'), gz.subarray(0, gz.length - 100));
  for (const name of ['not.tar', 'broken.tgz'])
    await assert.rejects(
      appendLayers({
        base: 'scratch',
        layers: [{ source: path.join(dir, name) }],
        to: `oci:${fresh('bad')}`,
        store,
      }),
      (e: KilnError) => e.code === 'E_BAD_TAR',
      name,
    );
  await assert.rejects(
    appendLayers({
      base: 'scratch',
      layers: [{ source: path.join(dir, 'plain.tar'), dest: '/opt' }],
      to: `oci:${fresh('bad')}`,
      store,
    }),
    (e: KilnError) => e.code === 'E_USAGE',
  );
});

test('append to a base keeps its config and layers; a Docker v2 base gives OCI unless Docker is asked for', async () => {
  const { dir } = await makeTree();
  const extra = {
    config: { Env: ['PATH=/bin'], ExposedPorts: { '80/tcp': {} }, Entrypoint: ['/init'] },
    'x-vendor': { keep: [1, 2, 3] },
    created: '2021-02-03T04:05:06Z',
  };
  const cases = [
    { docker: true, format: undefined, out: 'oci' },
    { docker: true, format: 'docker', out: 'docker' },
    { docker: false, format: undefined, out: 'oci' },
  ] as const;
  for (const { docker, format, out } of cases) {
    const baseDir = fresh('base');
    const baseDesc = await makeImage(baseDir, 'b', { docker, config: extra, annotations: { 'a.b': 'c' } });
    const base = await readImage(`oci:${baseDir}:b`);
    const result = await appendLayers({
      base: `oci:${baseDir}:b`,
      layers: [{ source: dir, dest: '/srv' }],
      to: `oci:${baseDir}:appended`,
      store,
      ...(format ? { format } : {}),
    });
    assert.notEqual(result.descriptor.digest, baseDesc.digest);
    const img = await readImage(`oci:${baseDir}:appended`);
    const family = `${docker ? 'Docker' : 'OCI'} base, ${format ?? 'no'} format`;
    const outDocker = out === 'docker';
    assert.equal(
      img.manifest.mediaType,
      outDocker ? MediaType.DockerManifest : MediaType.OciManifest,
      family,
    );
    assert.equal(img.root.mediaType, img.manifest.mediaType);
    assert.equal(img.manifest.config.mediaType, outDocker ? MediaType.DockerConfig : MediaType.OciConfig);
    assert.deepEqual(
      img.manifest.layers[0],
      {
        ...base.manifest.layers[0]!,
        mediaType: outDocker ? MediaType.DockerLayerGzip : MediaType.OciLayerGzip,
      },
      'the base layer: the same blob, typed in the manifest family',
    );
    assert.equal(
      img.manifest.layers[1]!.mediaType,
      outDocker ? MediaType.DockerLayerGzip : MediaType.OciLayerGzip,
    );
    assert.deepEqual(img.manifest.annotations, outDocker ? undefined : { 'a.b': 'c' }, 'Docker v2 has none');
    // Everything but rootfs and history is what the base had, in the same order.
    const { rootfs, history, ...rest } = img.config;
    const { rootfs: baseRootfs, history: baseHistory, ...baseRest } = base.config;
    assert.deepEqual(Object.keys(rest), Object.keys(baseRest));
    assert.deepEqual(rest, baseRest);
    assert.deepEqual(rootfs.diff_ids, [...baseRootfs.diff_ids, result.layers[0]!.diffId]);
    assert.deepEqual(history, [...baseHistory!, { created: CREATED, created_by: 'kiln append' }]);
  }
});

test('append: an index base needs --platform when it holds several images; with one image it is used', async () => {
  const { file } = await makeTree();
  const dir = fresh('idx');
  const amd = await makeImage(dir, undefined, { config: { architecture: 'amd64' } });
  const arm = await makeImage(dir, undefined, { config: { architecture: 'arm64' }, files: { arm: 'arm' } });
  await makeIndex(dir, 'two', [entry(amd, 'linux', 'amd64'), entry(arm, 'linux', 'arm64')]);
  const attestation = { ...amd, platform: { os: 'unknown', architecture: 'unknown' } };
  await makeIndex(dir, 'one', [entry(arm, 'linux', 'arm64'), attestation]);
  const layers = [{ source: file }];

  await assert.rejects(
    appendLayers({ base: `oci:${dir}:two`, layers, to: `oci:${fresh('o')}`, store }),
    (e: KilnError) => e.code === 'E_AMBIGUOUS' && /linux\/amd64, linux\/arm64/.test(e.hint ?? ''),
  );
  const picked = await appendLayers({
    base: `oci:${dir}:two`,
    layers,
    platform: { os: 'linux', architecture: 'arm64' },
    to: `oci:${fresh('o')}:x`,
    store,
  });
  assert.equal((await readImage(picked.destination)).config.architecture, 'arm64');
  const only = await appendLayers({ base: `oci:${dir}:one`, layers, to: `oci:${fresh('o')}:x`, store });
  assert.equal(only.descriptor.digest, picked.descriptor.digest, 'the only image (attestations aside)');
  /** Appending to `base` for linux/ARCHITECTURE, which it does not have. */
  const noMatch = (base: string, architecture: string) =>
    assert.rejects(
      appendLayers({ base, layers, platform: { os: 'linux', architecture }, to: `oci:${fresh('o')}`, store }),
      (e: KilnError) => e.code === 'E_NO_MATCHING_PLATFORM',
    );
  await noMatch(`oci:${dir}:two`, 's390x');
  const single = fresh('single');
  await makeImage(single, 's');
  await noMatch(`oci:${single}:s`, 'arm64');
});

/** Wraps a source, counting blob reads and claiming a registry origin. */
class CountingSource implements ImageSource {
  readonly fetched: string[] = [];
  readonly name: string;
  constructor(
    private readonly inner: ImageSource,
    private readonly origin: BlobOrigin,
  ) {
    this.name = inner.name;
  }
  resolve() {
    return this.inner.resolve();
  }
  fetchManifest(desc: Descriptor) {
    return this.inner.fetchManifest(desc);
  }
  fetchBlob(desc: Descriptor) {
    this.fetched.push(desc.digest);
    return this.inner.fetchBlob(desc);
  }
  blobOrigin(_desc: Descriptor) {
    return this.origin;
  }
  close() {
    return this.inner.close();
  }
}

test('ComposedSource: base blobs are read only when the destination lacks them, and keep their origin', async () => {
  const baseDir = fresh('cbase');
  await makeImage(baseDir, 'b');
  const origin = { registry: 'registry.example:5000', repository: 'team/base' };
  const base = new CountingSource(await openSource(`oci:${baseDir}:b`), origin);
  const image = await loadImage(base, await base.resolve());
  base.fetched.length = 0; // the config read above is not what is measured
  const layer = image.manifest.layers[0]!;

  const compose = async () => {
    const composed = new ComposedSource('test', store);
    composed.addBase(layer, base);
    const config = await composed.putJson(MediaType.OciConfig, { ...image.config, 'x-new': true });
    const manifest = await composed.putJson(MediaType.OciManifest, {
      ...image.manifest,
      config,
    });
    composed.setRoot(manifest);
    return { composed, config, manifest };
  };

  const { composed, config } = await compose();
  assert.deepEqual(composed.blobOrigin(layer), origin, 'a base blob keeps its origin');
  assert.equal(composed.blobOrigin(config), undefined, 'a new blob has none');
  // A destination that has the base's blobs already: only new content is read.
  const warm = fresh('warm');
  await copyImage(await openSource(`oci:${baseDir}:b`), await openDestination(`oci:${warm}:base`));
  await copyImage(composed, await openDestination(`oci:${warm}:new`));
  assert.deepEqual(base.fetched, [], 'the base layer was not read');
  // An empty destination: the base layer is read once, from the base.
  const second = await compose();
  await copyImage(second.composed, await openDestination(`oci:${fresh('cold')}:new`));
  assert.deepEqual(base.fetched, [layer.digest]);
  await assert.rejects(
    second.composed.fetchBlob({ ...layer, digest: sha256('unknown') }),
    (e: KilnError) => e.code === 'E_NOT_FOUND',
  );
  await composed.close();
});

test('mutate: config edits merge by key; everything else of the config is kept; no change keeps the digest', async () => {
  const dir = fresh('mut');
  const baseDesc = await makeImage(dir, 'b', {
    config: {
      config: {
        Env: ['PATH=/bin', 'A=1', 'GONE=x'],
        Labels: { b: '2', a: '1' },
        Entrypoint: ['/old'],
        Cmd: ['--flag'],
        ExposedPorts: { '80/tcp': {} },
      },
      'x-vendor': 'kept',
    },
    annotations: { keep: 'me' },
  });
  const base = await readImage(`oci:${dir}:b`);
  const options = {
    source: `oci:${dir}:b`,
    entrypoint: ['/new', 'arg'],
    cmd: [],
    env: { A: '2', NEW: '', GONE: null },
    labels: { c: '3', a: null },
    annotations: { added: 'yes' },
    workdir: '/work',
    user: '1000:1000',
    store,
  };
  const one = await mutateImage({ ...options, to: `oci:${dir}:m1` });
  const two = await mutateImage({ ...options, to: `oci-archive:${fresh('m')}.tar` });
  assert.equal(one.descriptor.digest, two.descriptor.digest, 'deterministic');
  assert.equal(one.changed, 1);
  const img = await readImage(`oci:${dir}:m1`);
  assert.deepEqual(img.config.config, {
    Env: ['PATH=/bin', 'A=2', 'NEW='],
    Labels: { b: '2', c: '3' },
    Entrypoint: ['/new', 'arg'],
    ExposedPorts: { '80/tcp': {} },
    WorkingDir: '/work',
    User: '1000:1000',
  });
  assert.equal(img.config['x-vendor'], 'kept');
  assert.deepEqual(img.config.rootfs, base.config.rootfs);
  assert.deepEqual(img.config.history, base.config.history, 'mutate adds no layer, so no history');
  assert.deepEqual(img.manifest.layers, base.manifest.layers);
  assert.deepEqual(img.manifest.annotations, { added: 'yes', keep: 'me' });

  const same = await mutateImage({ source: `oci:${dir}:b`, to: `oci:${fresh('m')}:x`, store });
  assert.equal(same.descriptor.digest, baseDesc.digest, 'nothing asked, nothing changed');
  assert.equal(same.changed, 0);
  const annotated = await mutateImage({
    source: `oci:${dir}:b`,
    annotations: { keep: null },
    to: `oci:${fresh('m')}:x`,
    store,
  });
  const a = await readImage(annotated.destination);
  assert.equal(a.manifest.annotations, undefined);
  assert.equal(a.manifest.config.digest, base.manifest.config.digest, 'the config is the base’s own');
});

test('mutate an index: every image changes, attestations are kept, annotations go on the index too', async () => {
  const dir = fresh('midx');
  const amd = await makeImage(dir, undefined, { config: { architecture: 'amd64' } });
  const arm = await makeImage(dir, undefined, { config: { architecture: 'arm64' }, files: { arm: 'arm' } });
  const attestation = { ...amd, platform: { os: 'unknown', architecture: 'unknown' } };
  await makeIndex(dir, 'multi', [entry(amd, 'linux', 'amd64'), entry(arm, 'linux', 'arm64'), attestation], {
    'index.note': 'kept',
  });
  const result = await mutateImage({
    source: `oci:${dir}:multi`,
    env: { MODE: 'prod' },
    annotations: { stamp: '1' },
    to: `oci:${dir}:mutated`,
    store,
  });
  assert.equal(result.changed, 2);
  const { index, source } = await readIndex(`oci:${dir}:mutated`);
  assert.deepEqual(index.annotations, { 'index.note': 'kept', stamp: '1' });
  assert.deepEqual(
    index.manifests.map((m) => m.platform),
    [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
      { os: 'unknown', architecture: 'unknown' },
    ],
  );
  assert.deepEqual(index.manifests[2], attestation, 'an attestation is not an image to change');
  for (const m of index.manifests.slice(0, 2)) {
    const image = await loadImage(source, m);
    assert.deepEqual(image.config.config?.Env, ['PATH=/usr/bin:/bin', 'MODE=prod']);
    assert.equal(image.config.architecture, m.platform!.architecture);
    assert.deepEqual(image.manifest.annotations, { stamp: '1' });
  }

  const one = await mutateImage({
    source: `oci:${dir}:multi`,
    platform: { os: 'linux', architecture: 'arm64' },
    env: { MODE: 'prod' },
    annotations: { stamp: '1' },
    to: `oci:${dir}:arm`,
    store,
  });
  assert.equal(one.descriptor.mediaType, MediaType.OciManifest, 'one image, written alone');
  assert.equal(one.descriptor.digest, index.manifests[1]!.digest, 'the same image as in the mutated index');
});

test('createIndex: platforms from configs, indexes flattened, the same image once, two for one platform refused', async () => {
  const dir = fresh('ci');
  const wasm = await makeImage(dir, 'wasm', {
    config: { os: 'wasip1', architecture: 'wasm' },
    files: { 'hello.wasm': '\0asm' },
  });
  const armv7 = await makeImage(dir, 'armv7', { config: { architecture: 'arm', variant: 'v7' } });
  const arm64 = await makeImage(dir, 'arm64', { config: { architecture: 'arm64' }, files: { a: '64' } });
  const win = await makeImage(dir, 'win', {
    config: { os: 'windows', 'os.version': '10.0.17763.1', 'os.features': ['win32k'] },
    files: { w: 'w' },
  });
  await makeIndex(dir, 'arms', [entry(armv7, 'linux', 'arm', 'v7'), entry(arm64, 'linux', 'arm64')]);

  const to = `oci-archive:${fresh('multi')}.tar:multi`;
  const result = await createIndex({
    sources: [`oci:${dir}:wasm`, `oci:${dir}:arms`, `oci:${dir}:armv7`, `oci:${dir}:win`],
    annotations: { 'org.opencontainers.image.version': '1' },
    to,
    store,
  });
  const { root, index } = await readIndex(to);
  assert.equal(root.digest, result.descriptor.digest);
  assert.equal(index.mediaType, MediaType.OciIndex);
  assert.deepEqual(index.annotations, { 'org.opencontainers.image.version': '1' });
  assert.deepEqual(
    index.manifests.map((m) => [m.digest, m.platform]),
    [
      [wasm.digest, { os: 'wasip1', architecture: 'wasm' }],
      [armv7.digest, { os: 'linux', architecture: 'arm', variant: 'v7' }],
      [arm64.digest, { os: 'linux', architecture: 'arm64' }],
      [
        win.digest,
        { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1', 'os.features': ['win32k'] },
      ],
    ],
  );
  assert.ok(
    index.manifests.every((m) => m.annotations === undefined),
    'no ref.name from the layouts',
  );
  const again = await createIndex({
    sources: [`oci:${dir}:wasm`, `oci:${dir}:arms`, `oci:${dir}:armv7`, `oci:${dir}:win`],
    annotations: { 'org.opencontainers.image.version': '1' },
    to: `oci:${fresh('multi')}`,
    store,
  });
  assert.equal(again.descriptor.digest, result.descriptor.digest, 'deterministic');

  const other = await makeImage(dir, 'other64', { config: { architecture: 'aarch64' }, files: { o: 'o' } });
  assert.notEqual(other.digest, arm64.digest);
  await assert.rejects(
    createIndex({ sources: [`oci:${dir}:arms`, `oci:${dir}:other64`], to: `oci:${fresh('x')}`, store }),
    (e: KilnError) => e.code === 'E_AMBIGUOUS' && e.message.includes('linux/arm64'),
  );
});

test('config helpers: env merges by name, commands and key changes parse as documented', () => {
  assert.deepEqual(mergeEnv(['A=1', 'B=2', 'B=3', 'C'], { B: 'x', D: '', C: null }), [
    'A=1',
    'B=x',
    'B=3',
    'D=',
  ]);
  assert.deepEqual(parseCommand('["/bin/sh","-c","echo a, b"]', '--cmd'), ['/bin/sh', '-c', 'echo a, b']);
  assert.deepEqual(parseCommand('/app', '--cmd'), ['/app']);
  assert.deepEqual(parseCommand('', '--cmd'), []);
  for (const bad of ['/bin/sh -c x', 'a,b', '[1]', '["x"'])
    assert.throws(
      () => parseCommand(bad, '--cmd'),
      (e: KilnError) => e.code === 'E_USAGE',
      bad,
    );
  assert.deepEqual(parseChanges(['A=1', 'B=', 'C-', 'D=x=y'], '--env'), { A: '1', B: '', C: null, D: 'x=y' });
  assert.throws(
    () => parseChanges(['=x'], '--env'),
    (e: KilnError) => e.code === 'E_USAGE',
  );
  assert.throws(
    () => parseChanges(['plain'], '--env'),
    (e: KilnError) => e.code === 'E_USAGE',
  );
  assert.deepEqual(parseLayerSpec('./dir:/app'), { source: './dir', dest: '/app' });
  assert.deepEqual(parseLayerSpec('./dir'), { source: './dir' });
  assert.deepEqual(parseLayerSpec('a:b:c.tar'), { source: 'a:b:c.tar' });
  assert.deepEqual(parseLayerSpec('/x:y/z:/opt/q'), { source: '/x:y/z', dest: '/opt/q' });
});
