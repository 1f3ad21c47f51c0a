/**
 * SBOMs as OCI referrers against real parts: images packed by the built CLI into the real registry
 * (Debian's docker-registry 2.8, which has no referrers API, so the fallback tag `sha256-<hex>` is what
 * is exercised) and into OCI layouts; SBOMs attached with the library; `kiln sbom` reads them back;
 * skopeo and umoci check what was written. The kiln CLI must be built (`npm run build`).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MediaType } from '../../src/oci/media-types.js';
import type { Descriptor } from '../../src/oci/types.js';
import { imageFiles } from '../../src/sbom/files.js';
import { attachSbom, EMPTY_DESCRIPTOR, referrersTag, SPDX_MEDIA_TYPE } from '../../src/sbom/referrers.js';
import type { SbomInput } from '../../src/sbom/spdx.js';
import { openSource } from '../../src/transport/open.js';
import { attachOctetReferrer, HELLO_WASM, sha256hex } from '../support/images.js';
import { kiln, kilnIndexCreate, kilnOk } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { workDir } from '../support/temp.js';
import { ok, requireTool, run, toolSkipReason } from '../support/tools.js';

const HELLO = HELLO_WASM;
const work = workDir('kiln-sbom');

const skip = registrySkipReason('none') ?? toolSkipReason('skopeo', 'umoci');

async function skopeoRaw(ref: string): Promise<Record<string, unknown>> {
  const args = ['inspect', '--raw', ...(ref.startsWith('docker://') ? ['--tls-verify=false'] : []), ref];
  const r = await run(requireTool('skopeo')!, args, { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `skopeo ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Packs hello.wasm to `to` with the CLI; the manifest's descriptor, read back with the library. */
async function packed(to: string, extra: string[] = []): Promise<Descriptor> {
  await kilnOk(['package', HELLO, '--to', to, ...extra]);
  const source = await openSource(to);
  try {
    const d = await source.resolve();
    return { mediaType: d.mediaType, digest: d.digest, size: d.size };
  } finally {
    await source.close();
  }
}

async function sbomFor(to: string, name: string, subject: Descriptor): Promise<SbomInput> {
  const source = await openSource(to);
  try {
    return {
      name,
      subject,
      platform: { os: 'wasip1', architecture: 'wasm' },
      files: await imageFiles(source, subject),
      toolchain: { image: 'docker.io/library/rust:1.84', digest: `sha256:${'a'.repeat(64)}` },
      packages: [
        { name: 'serde', version: '1.0.200', purl: 'pkg:cargo/serde@1.0.200', source: 'Cargo.lock' },
      ],
      created: '1970-01-01T00:00:00Z',
      creatorTool: 'kiln-test',
    };
  } finally {
    await source.close();
  }
}

test('registry without the referrers API: the SBOM goes under the fallback tag; kiln sbom prints it', {
  skip,
}, async () => {
  const reg = await sharedRegistry('none');
  const repo = `${reg.host}/sbom/app`;
  const ref = `${repo}:v1`;
  const subject = await packed(ref);
  const input = await sbomFor(ref, repo, subject);
  // The files are the image's: hello.wasm, with the digest of the file packed.
  assert.deepEqual(
    input.files.map((f) => [f.path, f.sha256, f.size]),
    [['hello.wasm', sha256hex(readFileSync(HELLO)), readFileSync(HELLO).length]],
  );
  const first = await attachSbom({ ...input, to: ref });
  assert.equal(first.via, 'fallback-tag');

  // kiln sbom prints the document exactly as stored.
  const printed = await kilnOk(['sbom', ref]);
  assert.equal(sha256hex(printed), first.document.digest.slice(7));
  const doc = JSON.parse(printed);
  assert.equal(doc.spdxVersion, 'SPDX-2.3');
  assert.equal(doc.files[0].fileName, './hello.wasm');
  assert.match(doc.documentNamespace, new RegExp(`${subject.digest.slice(7)}$`));
  const json = JSON.parse(await kilnOk(['sbom', ref, '--json']));
  assert.equal(json.subject.digest, subject.digest);
  assert.equal(json.referrer.digest, first.descriptor.digest);
  assert.deepEqual(json.document, doc);
  // By digest too: the same image.
  assert.equal(await kilnOk(['sbom', `${repo}@${subject.digest}`]), printed);

  // skopeo sees the fallback tag: an OCI index listing the artifact with its artifactType.
  const tag = referrersTag(subject.digest);
  assert.equal(tag, `sha256-${subject.digest.slice(7)}`);
  const index = await skopeoRaw(`docker://${repo}:${tag}`);
  assert.equal(index.mediaType, MediaType.OciIndex);
  assert.deepEqual(
    (index.manifests as Descriptor[]).map((m) => [m.digest, m.artifactType, m.mediaType]),
    [[first.descriptor.digest, SPDX_MEDIA_TYPE, MediaType.OciManifest]],
  );
  // ...and the artifact: image-spec 1.1 guidance, subject = the image.
  const artifact = await skopeoRaw(`docker://${repo}@${first.descriptor.digest}`);
  assert.equal(artifact.artifactType, SPDX_MEDIA_TYPE);
  assert.deepEqual(artifact.config, EMPTY_DESCRIPTOR);
  assert.deepEqual(artifact.subject, subject);
  assert.deepEqual(
    (artifact.layers as Descriptor[]).map((l) => [l.mediaType, l.digest]),
    [[SPDX_MEDIA_TYPE, first.document.digest]],
  );

  // A second referrer keeps the first; attaching the same SBOM again adds nothing.
  const sig = await attachOctetReferrer(ref, subject, 'application/vnd.example.signature', 'signature');
  assert.equal(sig.via, 'fallback-tag');
  const again = await attachSbom({ ...input, to: ref });
  assert.deepEqual(again, first);
  const both = await skopeoRaw(`docker://${repo}:${tag}`);
  assert.deepEqual(
    (both.manifests as Descriptor[]).map((m) => [m.digest, m.artifactType]),
    [
      [first.descriptor.digest, SPDX_MEDIA_TYPE],
      [sig.descriptor.digest, 'application/vnd.example.signature'],
    ],
  );
  // The signature is not an SBOM: kiln sbom still prints the SBOM.
  assert.equal(await kilnOk(['sbom', ref]), printed);

  // An image without an SBOM: E_NOT_FOUND with a hint naming the fallback tag.
  const bare = await packed(`${repo}:bare`, ['--name', 'other']);
  const none = await kiln(['sbom', `${repo}:bare`]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no SBOM is attached .*\(E_NOT_FOUND\)/);
  assert.match(none.stderr, new RegExp(`hint: .*sha256-${bare.digest.slice(7)}`));
});

test('oci: layout: the fallback tag is an entry of index.json; skopeo and umoci read it', {
  skip,
}, async () => {
  const dir = join(work, 'layout');
  const subject = await packed(`oci:${dir}:v1`);
  const input = await sbomFor(`oci:${dir}:v1`, 'hello', subject);
  const first = await attachSbom({ ...input, to: `oci:${dir}:v1` });
  assert.equal(first.via, 'fallback-tag');
  const sig = await attachOctetReferrer(
    `oci:${dir}`,
    subject,
    'application/vnd.example.signature',
    'signature',
  );
  assert.deepEqual(await attachSbom({ ...input, to: `oci:${dir}` }), first);

  const tag = referrersTag(subject.digest);
  const indexJson = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  assert.deepEqual(
    indexJson.manifests.map((m: Descriptor) => m.annotations?.['org.opencontainers.image.ref.name']).sort(),
    [tag, 'v1'],
  );
  const fallback = await skopeoRaw(`oci:${dir}:${tag}`);
  assert.deepEqual(
    (fallback.manifests as Descriptor[]).map((m) => [m.digest, m.artifactType]),
    [
      [first.descriptor.digest, SPDX_MEDIA_TYPE],
      [sig.descriptor.digest, 'application/vnd.example.signature'],
    ],
  );
  const umoci = ok(await run(requireTool('umoci')!, ['ls', '--layout', dir]), 'umoci ls');
  assert.deepEqual(umoci.trim().split('\n').sort(), [tag, 'v1']);

  // kiln sbom by tag, and untagged (the fallback tag is not an image of its own).
  const printed = await kilnOk(['sbom', `oci:${dir}:v1`]);
  assert.equal(sha256hex(printed), first.document.digest.slice(7));
  assert.equal(await kilnOk(['sbom', `oci:${dir}`]), printed);
  // The image itself is untouched: still inspectable and runnable by tag.
  await kilnOk(['inspect', `oci:${dir}:v1`]);
});

test('an index: kiln sbom wants --platform, and reads the chosen image SBOM', { skip }, async () => {
  const dir = join(work, 'multi');
  const a = await packed(`oci:${dir}:p1`);
  const b = await packed(`oci:${dir}:wasi`, ['--platform', 'wasi/wasm']);
  await kilnIndexCreate(`oci:${dir}:multi`, [`oci:${dir}:p1`, `oci:${dir}:wasi`]);
  const forB = await attachSbom({ ...(await sbomFor(`oci:${dir}:wasi`, 'hello', b)), to: `oci:${dir}` });
  const ambiguous = await kiln(['sbom', `oci:${dir}:multi`]);
  assert.equal(ambiguous.code, 1);
  assert.match(ambiguous.stderr, /index of 2 images.*\(E_AMBIGUOUS\)/);
  assert.match(ambiguous.stderr, /hint: choose one with --platform: .*wasip1\/wasm/);
  assert.match(ambiguous.stderr, /wasi\/wasm/);
  const chosen = JSON.parse(await kilnOk(['sbom', `oci:${dir}:multi`, '--platform', 'wasi/wasm', '--json']));
  assert.equal(chosen.subject.digest, b.digest);
  assert.equal(chosen.referrer.digest, forB.descriptor.digest);
  const missing = await kiln(['sbom', `oci:${dir}:multi`, '--platform', 'wasip1/wasm']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, new RegExp(`no SBOM is attached .*${a.digest}.*E_NOT_FOUND`));
});
