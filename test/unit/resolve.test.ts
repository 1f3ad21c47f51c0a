import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KilnError } from '../../src/errors.js';
import { selectManifest, selectWasmManifest } from '../../src/image/resolve.js';
import { sha256 } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/media-types.js';
import { hostPlatform, type Platform } from '../../src/oci/platform.js';
import type { Descriptor, ImageIndex } from '../../src/oci/types.js';

function entry(platform: Platform): Descriptor {
  return { mediaType: MediaType.OciManifest, digest: sha256(JSON.stringify(platform)), size: 1, platform };
}

const wasip1 = entry({ os: 'wasip1', architecture: 'wasm' });
const wasip2 = entry({ os: 'wasip2', architecture: 'wasm' });
const docker = entry({ os: 'wasi', architecture: 'wasm' });
const amd64 = entry({ os: 'linux', architecture: 'amd64' });
const arm64 = entry({ os: 'linux', architecture: 'arm64', variant: 'v8' });
const index = (...manifests: Descriptor[]): ImageIndex => ({
  schemaVersion: 2,
  mediaType: MediaType.OciIndex,
  manifests,
});

test('selectManifest: the platform asked for, with variants normalised', () => {
  const idx = index(amd64, arm64, wasip1);
  assert.equal(selectManifest(idx, { os: 'linux', architecture: 'arm64' }, 'x'), arm64);
  assert.equal(selectManifest(idx, { os: 'wasip1', architecture: 'wasm' }, 'x'), wasip1);
  assert.throws(
    () => selectManifest(idx, { os: 'linux', architecture: 's390x' }, 'x'),
    (e: KilnError) => e.code === 'E_NO_MATCHING_PLATFORM' && /linux\/amd64/.test(e.hint ?? ''),
  );
});

test("selectManifest: without a platform, the host's, else the only one, else an error naming the choices", () => {
  const host = entry(hostPlatform());
  assert.equal(selectManifest(index(wasip1, host), undefined, 'x'), host);
  assert.equal(selectManifest(index(wasip1), undefined, 'x'), wasip1);
  assert.throws(
    () => selectManifest(index(wasip1, wasip2), undefined, 'x'),
    (e: KilnError) => e.code === 'E_NO_MATCHING_PLATFORM' && /wasip1\/wasm, wasip2\/wasm/.test(e.hint ?? ''),
  );
});

test('selectWasmManifest: prefers wasip1, then Docker wasi/wasm, then any wasm; refuses an index with none', () => {
  assert.equal(selectWasmManifest(index(amd64, wasip2, wasip1), undefined, 'x'), wasip1);
  assert.equal(selectWasmManifest(index(amd64, wasip2, docker), undefined, 'x'), docker);
  assert.equal(selectWasmManifest(index(amd64, wasip2), undefined, 'x'), wasip2);
  assert.equal(
    selectWasmManifest(index(wasip1, wasip2), { os: 'wasip2', architecture: 'wasm' }, 'x'),
    wasip2,
  );
  assert.throws(
    () => selectWasmManifest(index(amd64, arm64), undefined, 'x'),
    (e: KilnError) => e.code === 'E_NO_MATCHING_PLATFORM',
  );
});
