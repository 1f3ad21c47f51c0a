/** Image values (src/image/image.ts): changes return new values, the manifest is computed, unchanged keeps bytes. */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ComposedSource } from '../../src/image/compose.js';
import { Image, mergeEnv } from '../../src/image/image.js';
import { sha256 } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/media-types.js';
import { parseManifest } from '../../src/oci/validate.js';
import { OciLayout } from '../../src/store/layout.js';
import { OciDirSource } from '../../src/transport/oci-dir.js';
import { makeImage } from '../support/images.js';

async function fixture() {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-image-value-'));
  const made = await makeImage(join(dir, 'base'), 'v1', { layers: 2, layerBytes: 64 });
  const source = await OciDirSource.open(`oci:${made.layout}:v1`, made.layout, 'v1');
  const image = await Image.load(source, made.descriptor);
  const store = await OciLayout.open(join(dir, 'store'), { create: true });
  return { made, source, image, store };
}

describe('image values', () => {
  it('an unchanged image keeps its base bytes and digest; a no-op change is no change', async () => {
    const { made, image } = await fixture();
    assert.equal(image.unchanged, true);
    assert.equal(image.descriptor.digest, made.descriptor.digest);
    const same = image.withConfig({ cmd: ['/bin/sh'] }).withAnnotations({});
    assert.equal(same.unchanged, true);
    assert.equal(same.descriptor.digest, made.descriptor.digest);
  });

  it('changes return new values and leave the old one as it was', async () => {
    const { made, image } = await fixture();
    const changed = image.withConfig({ env: { A: '1' }, entrypoint: ['/app'] }).withAnnotations({ x: 'y' });
    assert.equal(image.unchanged, true);
    assert.equal(image.config.config?.Env, undefined);
    assert.notEqual(changed.descriptor.digest, made.descriptor.digest);
    assert.deepEqual(changed.config.config?.Env, ['A=1']);
    assert.deepEqual(changed.manifest().annotations, { x: 'y' });
    // The manifest's digest is its bytes' digest, its config descriptor the config's.
    const { bytes, descriptor } = changed.manifestBlob();
    assert.equal(descriptor.digest, sha256(bytes));
    assert.equal(changed.manifest().config.digest, sha256(changed.configBlob().bytes));
  });

  it('appendLayers adds layers, diff_ids and history in the image family', async () => {
    const { image } = await fixture();
    const docker = image.withFamily('docker');
    assert.equal(docker.manifest().mediaType, MediaType.DockerManifest);
    assert.equal(docker.manifest().config.mediaType, MediaType.DockerConfig);
    const layer = { mediaType: MediaType.OciLayerGzip, digest: sha256('x'), size: 1 };
    const next = docker.appendLayers([{ descriptor: layer, diffId: sha256('y') }], [{ created_by: 'test' }]);
    const m = next.manifest();
    assert.equal(m.layers.length, 3);
    assert.ok(m.layers.every((l) => l.mediaType === MediaType.DockerLayerGzip));
    assert.equal(next.config.rootfs.diff_ids.at(-1), sha256('y'));
    assert.equal(next.config.history?.at(-1)?.created_by, 'test');
    assert.equal(next.withFamily('oci').manifest().layers[2]!.mediaType, MediaType.OciLayerGzip);
  });

  it('write puts only what changed into the store and serves the rest from the base', async () => {
    const { made, source, image, store } = await fixture();
    const composed = new ComposedSource('test', store);
    composed.addSource(source);
    const next = image.withConfig({ user: 'nobody' });
    const root = await next.write(composed);
    composed.setRoot(root);
    const bytes = await composed.fetchManifest(root);
    const m = parseManifest(bytes);
    assert.equal(m.kind, 'manifest');
    if (m.kind !== 'manifest') return;
    assert.deepEqual(
      m.manifest.layers.map((l) => l.digest),
      made.layers.map((l) => l.digest),
    );
    assert.equal(
      await store.hasBlob(made.layers[0]!.digest),
      false,
      'a base layer is not copied into the store',
    );
    assert.equal(await store.hasBlob(root.digest), true);
    await composed.close();
  });

  it('the one env merge: set in place, append new, null removes', () => {
    assert.deepEqual(mergeEnv(['A=1', 'B=2', 'C'], { B: 'x', D: '4', C: null }), ['A=1', 'B=x', 'D=4']);
  });
});
