/**
 * The media-type policy (src/oci/media-type-policy.ts): created manifests are OCI unless Docker v2 is
 * asked for, a conversion renames types over the same blobs, what is in its family keeps its bytes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { KilnError } from '../../src/errors.js';
import { Image } from '../../src/image/image.js';
import { writeJsonBlob } from '../../src/image/write.js';
import { sha256 } from '../../src/oci/digest.js';
import { manifestInFamily, parseFormat } from '../../src/oci/media-type-policy.js';
import { MediaType } from '../../src/oci/media-types.js';
import type { ImageManifest } from '../../src/oci/types.js';
import { parseManifest } from '../../src/oci/validate.js';
import { OciLayout } from '../../src/store/layout.js';
import { inFormat } from '../../src/transport/format.js';
import { OciDirSource } from '../../src/transport/oci-dir.js';
import { makeImage } from '../support/images.js';

const blob = (mediaType: string, seed: string) => ({ mediaType, digest: sha256(seed), size: 1 });

function dockerManifest(): ImageManifest {
  return {
    schemaVersion: 2,
    mediaType: MediaType.DockerManifest,
    config: blob(MediaType.DockerConfig, 'c'),
    layers: [blob(MediaType.DockerLayerGzip, 'l'), blob(MediaType.DockerForeignLayerGzip, 'f')],
  };
}

const unsupported = (e: KilnError) => e.code === 'E_UNSUPPORTED' && (e.hint ?? '') !== '';

describe('media-type policy', () => {
  it('converts a Docker v2 manifest to OCI over the same blobs, and back', () => {
    const docker = dockerManifest();
    const oci = manifestInFamily(docker, 'oci', 'x');
    assert.equal(oci.mediaType, MediaType.OciManifest);
    assert.equal(oci.config.mediaType, MediaType.OciConfig);
    assert.deepEqual(
      oci.layers.map((l) => l.mediaType),
      [MediaType.OciLayerGzip, MediaType.OciLayerNondistributableGzip],
    );
    assert.deepEqual(
      [oci.config, ...oci.layers].map((d) => d.digest),
      [docker.config, ...docker.layers].map((d) => d.digest),
    );
    assert.deepEqual(manifestInFamily({ ...oci, annotations: { a: 'b' } }, 'docker', 'x'), docker);
    // In its family already: the very object, so its bytes are kept.
    assert.equal(manifestInFamily(docker, 'docker', 'x'), docker);
    assert.equal(manifestInFamily(oci, 'oci', 'x'), oci);
  });

  it('refuses what Docker v2 has no type for, with a hint', () => {
    const zstd = { ...manifestInFamily(dockerManifest(), 'oci', 'x') };
    zstd.layers = [blob(MediaType.OciLayerZstd, 'z')];
    assert.throws(() => manifestInFamily(zstd, 'docker', 'x'), unsupported);
    const artifact = { ...zstd, layers: [], config: blob(MediaType.WasmConfigV0, 'w') };
    assert.throws(() => manifestInFamily(artifact, 'docker', 'x'), unsupported);
    assert.throws(
      () => parseFormat('v2s2'),
      (e: KilnError) => e.code === 'E_USAGE',
    );
  });

  it('an image kiln derives is OCI unless Docker is asked for; one nothing changed keeps its bytes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-policy-'));
    const made = await makeImage(dir, 'd', { docker: true });
    const source = await OciDirSource.open(`oci:${dir}:d`, dir, 'd');
    const image = await Image.load(source, made.descriptor);
    assert.equal(image.created().descriptor.digest, made.descriptor.digest, 'unchanged: kept');
    const changed = image.withConfig({ user: 'nobody' });
    assert.equal(changed.family, 'docker');
    const created = changed.created().manifest();
    assert.equal(created.mediaType, MediaType.OciManifest);
    assert.equal(created.config.mediaType, MediaType.OciConfig);
    assert.equal(created.layers[0]!.mediaType, MediaType.OciLayerGzip);
    assert.equal(created.layers[0]!.digest, made.layers[0]!.digest);
    assert.equal(changed.created('docker').manifest().mediaType, MediaType.DockerManifest);
    await source.close();
  });

  it('a source in a format: Docker manifests and lists converted, OCI ones kept byte for byte', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-policy-'));
    const docker = await makeImage(dir, 'd', { docker: true });
    const oci = await makeImage(dir, 'o', {});
    const entry = (d: typeof docker.descriptor) => ({
      ...d,
      platform: { os: 'linux', architecture: 'amd64' },
    });
    const store = await OciLayout.open(dir);
    const listed = [entry(docker.descriptor)];
    const index = { schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: listed };
    await store.tag(await writeJsonBlob(store, MediaType.DockerManifestList, index), 'list');

    const kept = inFormat(await OciDirSource.open(`oci:${dir}:o`, dir, 'o'), 'oci');
    assert.equal((await kept.resolve()).digest, oci.descriptor.digest);
    await kept.close();

    const list = inFormat(await OciDirSource.open(`oci:${dir}:list`, dir, 'list'), 'oci');
    const root = await list.resolve();
    assert.equal(root.mediaType, MediaType.OciIndex);
    const parsed = parseManifest(await list.fetchManifest(root), 'index', root.mediaType);
    assert.equal(parsed.kind, 'index');
    const child = parsed.kind === 'index' ? parsed.index.manifests[0]! : undefined;
    assert.equal(child?.mediaType, MediaType.OciManifest);
    assert.deepEqual(child?.platform, { os: 'linux', architecture: 'amd64' });
    assert.notEqual(child?.digest, docker.descriptor.digest);
    const manifest = parseManifest(await list.fetchManifest(child!), 'manifest', child!.mediaType);
    assert.equal(manifest.kind === 'manifest' && manifest.manifest.config.digest, docker.config.digest);
    await list.close();
  });
});
