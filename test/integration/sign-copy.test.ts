/**
 * Signatures travelling with images and checked before use, against real parts: Debian's
 * docker-registry (distribution 2.8, no referrers API: the fallback tag) as source and as a mirror
 * (a second one), and `oci:` layouts.
 *
 * - `kiln copy --referrers`: cosign's `.sig` tags, Sigstore bundles, attestations and an SBOM, and a
 *   signature of the SBOM (a referrer of a referrer), copied registry to registry, layout to
 *   registry and back; the copy verifies at the mirror; a mirror's own `.sig` is merged, not lost;
 *   archives refused (E_UNSUPPORTED), an image with none copies with a note;
 * - `--verify-key` on `copy` and `run`: a signed image passes, and an unsigned one, one signed by
 *   another key, and a replayed signature each fail E_VERIFY_FAILED with nothing written or run;
 * - `kiln verify --policy`: signers per repository (and anyOf), attestation types, SLSA builders
 *   and sources, each failed requirement listed; YAML and JSON; bad policies pointed at;
 * - 16 parallel `kiln sign` and 16 parallel `kiln attest` of one image through the fallback tag,
 *   and 16 signers into one layout: every `.sig` layer and every referrer lands.
 *
 * The kiln CLI must be built (`npm run build`).
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { attachReferrer } from '../../src/sbom/referrers.js';
import {
  type Descriptor,
  HELLO_WASM,
  type ImageIndex,
  type ImageManifest,
  layoutIndex,
  layoutJson,
  makeImage,
  makeMultiPlatform,
  OCI_INDEX,
  OCI_MANIFEST,
} from '../support/images.js';
import type { KilnJsonError } from '../support/kiln.js';
import { type OpenRegistry, registrySkipReason, sharedRegistry, startRegistry } from '../support/registry.js';
import { BUNDLE, SLSA, signingFile, TEST_RESULT } from '../support/signing.js';
import { ok } from '../support/tools.js';

const SPDX = 'application/spdx+json';
const KILN_BUILDER = 'https://www.npmjs.com/package/kiln-oci';

const skip = registrySkipReason('none');
const OTHER_PASSWORD = 'sign-copy password 2';
const { work, k, kOk, kJson, kFails, keys, packed, attest } = signingFile(
  'kiln-sign-copy',
  'sign-copy password 1',
  OTHER_PASSWORD,
);
const otherEnv = { env: { KILN_PASSWORD: OTHER_PASSWORD } };

let mirrorStarted: Promise<OpenRegistry> | undefined;
/** A second registry, the mirror: distribution 2.8 as well. */
function mirror(): Promise<OpenRegistry> {
  mirrorStarted ??= startRegistry();
  return mirrorStarted;
}
after(async () => (await mirrorStarted)?.stop());

async function registryGet(base: string, path: string, accept?: string): Promise<Buffer | undefined> {
  const res = await fetch(`${base}/v2/${path}`, {
    headers: { Accept: accept ?? `${OCI_MANIFEST}, ${OCI_INDEX}` },
  });
  if (res.status === 404) return undefined;
  assert.equal(res.status, 200, `GET ${path}: ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}
async function registryJson<T>(base: string, path: string): Promise<T> {
  const bytes = await registryGet(base, path);
  assert.ok(bytes, `${path} is in ${base}`);
  return JSON.parse(bytes.toString()) as T;
}

/** Our keys, and hello.wasm packed (`seed`) to `path:tag` in the shared registry: its digest. */
async function packedInRegistry(path: string, tag: string, seed: string) {
  const { mine, other } = await keys();
  const reg = await sharedRegistry('none');
  const repo = `${reg.host}/${path}`;
  return { mine, other, reg, repo, digest: await packed(`${repo}:${tag}`, seed) };
}

function writeFile(name: string, value: string | object): string {
  const file = join(work, name);
  writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value));
  return file;
}

/** SLSA provenance as kiln build writes it, for a source repository. */
function provenance(source: string, builder = KILN_BUILDER): string {
  return writeFile(`slsa-${Math.random().toString(36).slice(2)}.json`, {
    buildDefinition: {
      buildType: 'https://www.npmjs.com/package/kiln-oci#build/v1',
      externalParameters: { platform: 'wasip1/wasm', source: { uri: source, revision: 'abc123' } },
      resolvedDependencies: [{ uri: `git+${source}@abc123`, digest: { gitCommit: 'abc123' } }],
    },
    runDetails: { builder: { id: builder } },
  });
}

interface CopyJson {
  descriptor: { digest: string };
  referrers?: {
    referrers: { subject: string; descriptor: Descriptor; via: string }[];
    tags: { tag: string; descriptor: Descriptor; how: string }[];
    skipped: { digest: string; reason: string }[];
  };
  verified?: { ok: boolean; root: { digest: string }; checks: unknown[] };
}

const tagOf = (digest: string, suffix = '') => `sha256-${digest.slice(7)}${suffix}`;
const sorted = (xs: string[]) => [...xs].sort();

// ---------------------------------------------------------------------------------------------------
// copy --referrers

test('copy --referrers: signatures, attestations, an SBOM and its signature land in a mirror, which verifies', {
  skip,
}, async () => {
  const { mine, other } = await keys();
  const reg = await sharedRegistry('none');
  const mir = await mirror();
  const repo = `${reg.host}/copy/app`;
  const digest = await packed(`${repo}:v1`, 'copy-v1');
  await kOk(['sign', `${repo}:v1`, '--key', mine.key]);
  await attest(`${repo}:v1`, writeFile('r.json', { passed: 3 }), TEST_RESULT, mine.key);
  const subject: Descriptor = {
    mediaType: OCI_MANIFEST,
    digest: digest as Descriptor['digest'],
    size: (await registryGet(reg.url, `copy/app/manifests/${digest}`))!.length,
  };
  const sbom = await attachReferrer({
    to: `${repo}:v1`,
    subject,
    artifactType: SPDX,
    mediaType: SPDX,
    data: Buffer.from('{"spdxVersion":"SPDX-2.3","name":"copy-v1"}'),
  });
  // A signature of the SBOM: a referrer (and a .sig) of a referrer.
  const sbomDigest = sbom.descriptor.digest;
  await kOk(['sign', `${repo}@${sbomDigest}`, '--key', mine.key]);

  const dst = `${mir.host}/mirror/app:v1`;
  const copied = await kJson<CopyJson>(['copy', `${repo}:v1`, dst, '--referrers']);
  assert.equal(copied.descriptor.digest, digest);
  const source = await registryJson<ImageIndex>(reg.url, `copy/app/manifests/${tagOf(digest)}`);
  const sourceOfSbom = await registryJson<ImageIndex>(reg.url, `copy/app/manifests/${tagOf(sbomDigest)}`);
  assert.equal(source.manifests.length, 3, 'the signature bundle, the attestation, the SBOM');
  const r = copied.referrers!;
  assert.deepEqual(
    sorted(r.referrers.map((x) => x.descriptor.digest)),
    sorted([...source.manifests, ...sourceOfSbom.manifests].map((m) => m.digest)),
  );
  assert.ok(r.referrers.every((x) => x.via === 'fallback-tag'));
  assert.deepEqual(
    sorted(r.tags.map((t) => `${t.tag} ${t.how}`)),
    sorted([`${tagOf(digest, '.sig')} copied`, `${tagOf(sbomDigest, '.sig')} copied`]),
  );
  assert.deepEqual(r.skipped, []);

  // At the mirror: the same .sig bytes, and fallback indexes listing the same artifacts, typed.
  for (const d of [digest, sbomDigest])
    assert.deepEqual(
      await registryGet(mir.url, `mirror/app/manifests/${tagOf(d, '.sig')}`),
      await registryGet(reg.url, `copy/app/manifests/${tagOf(d, '.sig')}`),
    );
  const listed = await registryJson<ImageIndex>(mir.url, `mirror/app/manifests/${tagOf(digest)}`);
  assert.deepEqual(
    sorted(listed.manifests.map((m) => `${m.digest} ${m.artifactType}`)),
    sorted(source.manifests.map((m) => `${m.digest} ${m.artifactType}`)),
  );
  assert.ok(listed.manifests.some((m) => m.artifactType === SPDX));
  await kOk(['verify', dst, '--key', mine.pub, '--type', TEST_RESULT]);
  await kOk(['verify', `${mir.host}/mirror/app@${sbomDigest}`, '--key', mine.pub]);
  assert.match(await kOk(['sbom', dst]), /copy-v1/);

  // Again: everything is there already.
  const again = await kJson<CopyJson>(['copy', `${repo}:v1`, dst, '--referrers']);
  assert.ok(again.referrers!.tags.every((t) => t.how === 'present'));

  // Without --referrers the mirror's copy carries no signature.
  await kOk(['copy', `${repo}:v1`, `${mir.host}/bare/app:v1`]);
  const bare = await kFails(['verify', `${mir.host}/bare/app:v1`, '--key', mine.pub], 'E_VERIFY_FAILED');
  assert.match(bare.message, /no cosign signature/);

  // A mirror that signed the image itself keeps its signature: the source's layers are merged in.
  const own = `${mir.host}/own/app:v1`;
  await kOk(['copy', `${repo}:v1`, own]);
  await kOk(['sign', own, '--key', other.key], otherEnv);
  const merged = await kJson<CopyJson>(['copy', `${repo}:v1`, own, '--referrers']);
  assert.deepEqual(
    merged.referrers!.tags.map((t) => `${t.tag} ${t.how}`),
    [`${tagOf(digest, '.sig')} merged`, `${tagOf(sbomDigest, '.sig')} copied`],
  );
  const sig = await registryJson<ImageManifest>(mir.url, `own/app/manifests/${tagOf(digest, '.sig')}`);
  assert.equal(sig.layers.length, 2);
  await kOk(['verify', own, '--key', mine.pub]);
  await kOk(['verify', own, '--key', other.pub]);
});

test('copy --referrers: an index signed --recursive and attested per image, layout to registry to layout', {
  skip,
}, async () => {
  const { mine } = await keys();
  const reg = await sharedRegistry('none');
  const dir = join(work, 'idx-src');
  const { index, images } = await makeMultiPlatform(dir, 'idx', ['linux/amd64', 'linux/arm64']);
  await kOk(['sign', `oci:${dir}:idx`, '--key', mine.key, '--recursive']);
  await attest(`oci:${dir}:idx`, writeFile('i.json', { ok: 1 }), TEST_RESULT, mine.key);

  const remote = `${reg.host}/copy/idx:1`;
  const up = await kJson<CopyJson>(['copy', `oci:${dir}:idx`, remote, '--referrers']);
  assert.equal(up.descriptor.digest, index.digest);
  // The index's bundle, each image's bundle and attestation; a .sig for each of the three.
  assert.equal(up.referrers!.referrers.length, 5);
  assert.deepEqual(
    sorted(up.referrers!.tags.map((t) => t.tag)),
    sorted([index, ...images.map((i) => i.descriptor)].map((d) => tagOf(d.digest, '.sig'))),
  );
  await kOk(['verify', remote, '--key', mine.pub, '--recursive', '--type', TEST_RESULT]);

  const back = join(work, 'idx-back');
  await kOk(['copy', remote, `oci:${back}:idx`, '--referrers']);
  await kOk(['verify', `oci:${back}:idx`, '--key', mine.pub, '--recursive', '--type', TEST_RESULT]);
  const names = layoutIndex(back).manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']);
  for (const d of [index, ...images.map((i) => i.descriptor)]) {
    assert.ok(names.includes(tagOf(d.digest)), `fallback tag of ${d.digest}`);
    assert.ok(names.includes(tagOf(d.digest, '.sig')), `.sig of ${d.digest}`);
  }
  // The tags beside it are not images: the untagged layout still names the one index.
  assert.equal((await kOk(['verify', `oci:${back}`, '--key', mine.pub])).trim(), index.digest);
});

test('copy --referrers: archives refused before anything is written; an image with none copies with a note', {
  skip,
}, async () => {
  const reg = await sharedRegistry('none');
  const dir = join(work, 'plain');
  const img = await makeImage(dir, 'p', { layers: 1, layerBytes: 64 });
  const tar = join(work, 'plain.tar');
  await kOk(['copy', `oci:${dir}:p`, `oci-archive:${tar}`]);

  const from = await kFails(
    ['copy', `oci-archive:${tar}`, `${reg.host}/copy/none:1`, '--referrers'],
    'E_UNSUPPORTED',
  );
  assert.match(from.message, /oci-archive: transport can't hold referrers to copy/);
  assert.match(from.hint ?? '', /REGISTRY\/REPO.*oci:DIR.*copy it without --referrers/);
  assert.equal(await registryGet(reg.url, 'copy/none/manifests/1'), undefined, 'nothing written');
  const out = join(work, 'out.tar');
  const to = await kFails(['copy', `oci:${dir}:p`, `oci-archive:${out}`, '--referrers'], 'E_UNSUPPORTED');
  assert.match(to.message, /can't keep referrers/);
  assert.ok(!existsSync(out), 'no archive written');
  const format = await kFails(
    ['copy', `oci:${dir}:p`, `oci:${join(work, 'fmt')}:p`, '--referrers', '--format', 'docker'],
    'E_USAGE',
  );
  assert.match(format.message, /--format docker gives them new digests/);
  assert.ok(!existsSync(join(work, 'fmt')));

  const none = await kJson<CopyJson>(['copy', `oci:${dir}:p`, `${reg.host}/copy/none:2`, '--referrers']);
  assert.equal(none.descriptor.digest, img.descriptor.digest);
  assert.deepEqual(none.referrers, { referrers: [], tags: [], skipped: [] });
  const human = await k(['copy', `oci:${dir}:p`, `${reg.host}/copy/none:3`, '--referrers']);
  ok(human, 'copy --referrers');
  assert.match(human.stderr, /note: no referrers or cosign tags found/);
});

// ---------------------------------------------------------------------------------------------------
// --verify-key

test('copy --verify-key: a signed image is copied; unsigned, another key, a replayed signature: nothing written', {
  skip,
}, async () => {
  const { mine, other, reg, repo, digest: signed } = await packedInRegistry('vk/app', 'signed', 'vk-signed');
  await kOk(['sign', `${repo}:signed`, '--key', mine.key]);
  await packed(`${repo}:unsigned`, 'vk-unsigned');
  await packed(`${repo}:other`, 'vk-other');
  await kOk(['sign', `${repo}:other`, '--key', other.key], otherEnv);
  // A .sig replayed: the signed image's signature manifest put under the replayed image's tag.
  const replayed = await packed(`${repo}:replayed`, 'vk-replayed');
  const sig = (await registryGet(reg.url, `vk/app/manifests/${tagOf(signed, '.sig')}`))!;
  const put = await fetch(`${reg.url}/v2/vk/app/manifests/${tagOf(replayed, '.sig')}`, {
    method: 'PUT',
    headers: { 'Content-Type': OCI_MANIFEST },
    body: sig,
  });
  assert.equal(put.status, 201);

  const good = await kJson<CopyJson>([
    'copy',
    `${repo}:signed`,
    `${reg.host}/vk/copied:1`,
    '--verify-key',
    mine.pub,
  ]);
  assert.equal(good.descriptor.digest, signed);
  assert.equal(good.verified?.ok, true);
  assert.equal(good.verified?.root.digest, signed);
  // With --referrers too: the copy verifies where it landed.
  const layout = join(work, 'vk-layout');
  await kOk(['copy', `${repo}:signed`, `oci:${layout}:s`, '--verify-key', mine.pub, '--referrers']);
  await kOk(['verify', `oci:${layout}:s`, '--key', mine.pub]);

  const cases: [string, RegExp][] = [
    ['unsigned', /no cosign signature \(no tag sha256-[0-9a-f]{64}\.sig\)/],
    ['other', /a signature not made by this key/],
    ['replayed', new RegExp(`a signed payload naming another digest \\(${signed}\\)`)],
  ];
  for (const [tag, why] of cases) {
    for (const dst of [`${reg.host}/vk/refused-${tag}:1`, `oci:${join(work, `refused-${tag}`)}:x`]) {
      const e = await kFails(['copy', `${repo}:${tag}`, dst, '--verify-key', mine.pub], 'E_VERIFY_FAILED');
      assert.match(e.message, why);
      assert.match(
        e.message,
        new RegExp(`^${repo.replace(/[.]/g, '\\.')}:${tag}: \\d+ of \\d+ checks failed`),
      );
    }
    assert.equal(
      await registryGet(reg.url, `vk/refused-${tag}/manifests/1`),
      undefined,
      `${tag}: no tag written`,
    );
    assert.ok(!existsSync(join(work, `refused-${tag}`)), `${tag}: no layout made`);
  }

  // An oci: layout as the source: signed, then its tag moved to an unsigned image.
  const src = join(work, 'vk-src');
  await packed(`oci:${src}:a`, 'vk-layout-a');
  await kOk(['sign', `oci:${src}:a`, '--key', mine.key]);
  await kOk(['copy', `oci:${src}:a`, `${reg.host}/vk/from-layout:1`, '--verify-key', mine.pub]);
  await packed(`oci:${src}:a`, 'vk-layout-b');
  const moved = await kFails(
    ['copy', `oci:${src}:a`, `${reg.host}/vk/from-layout:2`, '--verify-key', mine.pub],
    'E_VERIFY_FAILED',
  );
  assert.match(moved.message, /no cosign signature/);
  assert.equal(await registryGet(reg.url, 'vk/from-layout/manifests/2'), undefined);
  // An archive carries no signatures to check.
  const tar = join(work, 'vk.tar');
  await kOk(['copy', `oci:${src}:a`, `oci-archive:${tar}`]);
  const archive = await kFails(
    ['copy', `oci-archive:${tar}`, `oci:${join(work, 'vk-x')}:x`, '--verify-key', mine.pub],
    'E_UNSUPPORTED',
  );
  assert.match(archive.message, /can't sign or verify/);
});

test('run --verify-key: a signed wasm image runs; unsigned or signed by another key, nothing runs', {
  skip,
}, async () => {
  const { mine, other } = await keys();
  const reg = await sharedRegistry('none');
  const dir = join(work, 'run');
  await packed(`oci:${dir}:signed`, 'run-signed');
  await kOk(['sign', `oci:${dir}:signed`, '--key', mine.key]);
  await packed(`oci:${dir}:unsigned`, 'run-unsigned');
  await packed(`oci:${dir}:other`, 'run-other');
  await kOk(['sign', `oci:${dir}:other`, '--key', other.key], otherEnv);

  assert.match(
    await kOk(['run', `oci:${dir}:signed`, '--verify-key', mine.pub, '--', 'from a signed image']),
    /hello, from a signed image/,
  );
  for (const [tag, why] of [
    ['unsigned', /no cosign signature/],
    ['other', /a signature not made by this key/],
  ] as const) {
    const r = await k(['run', `oci:${dir}:${tag}`, '--verify-key', mine.pub, '--json', '--', 'ran']);
    assert.notEqual(r.code, 0);
    assert.doesNotMatch(r.stdout, /hello/, 'the guest did not run');
    const { error } = JSON.parse(r.stdout) as { error: KilnJsonError };
    assert.equal(error.code, 'E_VERIFY_FAILED');
    assert.match(error.message, why);
  }
  const remote = `${reg.host}/run/app:1`;
  await packed(remote, 'run-remote');
  await kOk(['sign', remote, '--key', mine.key]);
  assert.match(await kOk(['run', remote, '--verify-key', mine.pub, '--', 'remote']), /hello, remote/);
  const file = await kFails(['run', HELLO_WASM, '--verify-key', mine.pub], 'E_USAGE');
  assert.match(file.message, /is a file/);
});

test("copy and run --verify-policy: the policy's signers must hold before anything is written or run", {
  skip,
}, async () => {
  const { mine, reg, repo, digest: signed } = await packedInRegistry('vp/app', 'signed', 'vp-signed');
  await kOk(['sign', `${repo}:signed`, '--key', mine.key]);
  await packed(`${repo}:unsigned`, 'vp-unsigned');
  const policy = writeFile(
    'vp.yaml',
    `version: 1\nrepositories:\n  - match: ${reg.host}/vp/*\n    signers: [mine.pub]\n`,
  );

  const good = await kJson<CopyJson>([
    'copy',
    `${repo}:signed`,
    `${reg.host}/vp/copied:1`,
    '--verify-policy',
    policy,
  ]);
  assert.equal(good.descriptor.digest, signed);
  assert.equal(good.verified?.ok, true);
  const refused = await kFails(
    ['copy', `${repo}:unsigned`, `${reg.host}/vp/refused:1`, '--verify-policy', policy],
    'E_VERIFY_FAILED',
  );
  assert.match(refused.message, /no cosign signature/);
  assert.equal(await registryGet(reg.url, 'vp/refused/manifests/1'), undefined, 'nothing written');
  // A repository the policy has no rule for is refused too.
  await packed(`${reg.host}/elsewhere/app:1`, 'vp-elsewhere');
  await kFails(
    ['copy', `${reg.host}/elsewhere/app:1`, `${reg.host}/vp/x:1`, '--verify-policy', policy],
    'E_VERIFY_FAILED',
  );

  assert.match(
    await kOk(['run', `${repo}:signed`, '--verify-policy', policy, '--', 'by policy']),
    /hello, by policy/,
  );
  const r = await k(['run', `${repo}:unsigned`, '--verify-policy', policy, '--json', '--', 'ran']);
  assert.notEqual(r.code, 0);
  assert.doesNotMatch(r.stdout, /hello/, 'the guest did not run');
  assert.equal((JSON.parse(r.stdout) as { error: KilnJsonError }).error.code, 'E_VERIFY_FAILED');
});

// ---------------------------------------------------------------------------------------------------
// verify --policy

test('verify --policy: signers per repository, attestation types, SLSA builders and sources', {
  skip,
}, async () => {
  // other.pub, which the policies name, is made with our keys
  const { mine, reg, repo } = await packedInRegistry('policy/app', '1', 'policy-1');
  await kOk(['sign', `${repo}:1`, '--key', mine.key]);
  await attest(`${repo}:1`, writeFile('t.json', { ok: true }), TEST_RESULT, mine.key);
  await attest(`${repo}:1`, provenance('https://git.example.com/team/app'), SLSA, mine.key);

  const pass = writeFile(
    'pass.yaml',
    `# what the team's images need
version: 1
repositories:
  - match: ${reg.host}/policy/*
    signers:
      - mine.pub
    attestations:
      - ${SLSA}
      - type: ${TEST_RESULT}
        signers: [mine.pub]
    provenance:
      builders: [${KILN_BUILDER}]
      sources: ['https://git.example.com/team/**']
`,
  );
  const report = await kJson<{ ok: boolean; checks: { kind: string; ok: boolean; key?: string }[] }>([
    'verify',
    `${repo}:1`,
    '--policy',
    pass,
  ]);
  assert.equal(report.ok, true);
  assert.deepEqual(
    sorted(report.checks.map((c) => c.kind)),
    sorted(['signer', 'attestation', 'attestation', 'provenance']),
  );
  // The same as JSON, and with --key besides.
  const json = writeFile('pass.json', {
    version: 1,
    repositories: [
      {
        match: [`${reg.host}/policy/app`],
        signers: [{ anyOf: ['other.pub', 'mine.pub'] }],
        attestations: [SLSA],
      },
    ],
  });
  await kOk(['verify', `${repo}:1`, '--policy', json, '--key', mine.pub, '--type', SLSA]);

  // Each failed requirement is listed.
  const fail = writeFile(
    'fail.yaml',
    `version: 1
repositories:
  - match: ${reg.host}/policy/**
    signers:
      - mine.pub
      - other.pub
    attestations:
      - https://example.com/missing/v1
    provenance:
      builders: [https://builder.example.com/ci]
      sources: [https://git.example.com/other/*]
`,
  );
  const r = await k(['verify', `${repo}:1`, '--policy', fail]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /E_VERIFY_FAILED/);
  assert.match(r.stderr, /4 of \d+ checks failed/);
  assert.match(
    r.stderr,
    /not signed by other\.pub: no valid cosign signature .*a signature not made by other\.pub/,
  );
  assert.match(
    r.stderr,
    /no attestation of https:\/\/example\.com\/missing\/v1 signed by mine\.pub \| other\.pub/,
  );
  assert.match(
    r.stderr,
    /SLSA provenance builder https:\/\/www\.npmjs\.com\/package\/kiln-oci is not allowed \(allowed: https:\/\/builder\.example\.com\/ci\)/,
  );
  assert.match(r.stderr, /SLSA provenance source https:\/\/git\.example\.com\/team\/app is not allowed/);
  assert.match(r.stderr, /ok {3}sha256:[0-9a-f]+ signer \[mine\.pub\]: signed by mine\.pub/);

  // A repository no rule matches fails; a signer missing from an anyOf is named.
  const elsewhere = writeFile(
    'elsewhere.yaml',
    'version: 1\nrepositories:\n  - match: elsewhere.example.com/**\n    signers: [mine.pub]\n',
  );
  const unmatched = await kFails(['verify', `${repo}:1`, '--policy', elsewhere], 'E_VERIFY_FAILED');
  assert.match(
    unmatched.message,
    new RegExp(
      `no rule of the policy .*elsewhere\\.yaml matches ${reg.host.replace(/\./g, '\\.')}/policy/app`,
    ),
  );
  const unsignedRepo = `${reg.host}/policy/unsigned`;
  await packed(`${unsignedRepo}:1`, 'policy-unsigned');
  const any = await kFails(['verify', `${unsignedRepo}:1`, '--policy', json], 'E_VERIFY_FAILED');
  assert.match(any.message, /no rule of the policy/, 'the JSON policy names policy/app only');
  const anyOf = writeFile(
    'anyof.yaml',
    `version: 1\nrepositories:\n  - match: '**'\n    signers:\n      - anyOf: [other.pub, mine.pub]\n`,
  );
  const none = await kFails(['verify', `${unsignedRepo}:1`, '--policy', anyOf], 'E_VERIFY_FAILED');
  assert.match(none.message, /signed by none of other\.pub \| mine\.pub: other\.pub: no cosign signature/);

  // Layouts are matched as oci: and their absolute path.
  const dir = join(work, 'policy-layout');
  await packed(`oci:${dir}:l`, 'policy-layout');
  await kOk(['sign', `oci:${dir}:l`, '--key', mine.key]);
  const layouts = writeFile(
    'layouts.yaml',
    `version: 1\nrepositories:\n  - match: "oci:${work}/*"\n    signers: [mine.pub]\n`,
  );
  await kOk(['verify', `oci:${dir}:l`, '--policy', layouts]);
});

test('verify --policy: a bad policy is refused, pointing at the line', { skip }, async () => {
  const { mine } = await keys();
  const ref = `oci:${join(work, 'bad-policy')}:x`;
  await packed(ref, 'bad-policy');
  const bad = async (name: string, text: string, code = 'E_BAD_POLICY') =>
    (await kFails(['verify', ref, '--policy', writeFile(name, text)], code)).message;
  assert.match(
    await bad(
      'unknown.yaml',
      'version: 1\nrepositories:\n  - match: "**"\n    signers: [mine.pub]\n    attestation: [x]\n',
    ),
    /unknown\.yaml:5:5: repositories\.0: unknown key 'attestation'/,
  );
  assert.match(await bad('v2.yaml', 'version: 2\nrepositories: []\n'), /v2\.yaml:1:10: version: expected 1/);
  assert.match(
    await bad('nosigners.yaml', 'version: 1\nrepositories:\n  - match: "**"\n'),
    /repositories\.0\.signers: expected a list/,
  );
  assert.match(
    await bad(
      'type.yaml',
      'version: 1\nrepositories:\n  - match: "**"\n    signers: [mine.pub]\n    attestations: [not a uri]\n',
    ),
    /type\.yaml:5:20: repositories\.0\.attestations\.0: expected a URI/,
  );
  assert.match(await bad('yaml.yaml', 'version: 1\nrepositories: [\n'), /yaml\.yaml:\d+:\d+: invalid YAML/);
  assert.match(
    await bad(
      'nokey.yaml',
      'version: 1\nrepositories:\n  - match: "**"\n    signers: [nope.pub]\n',
      'E_BAD_KEY',
    ),
    /nokey\.yaml:4:15: .*nope\.pub: no such file/,
  );
  assert.match(
    await bad(
      'private.yaml',
      `version: 1\nrepositories:\n  - match: "**"\n    signers: [${mine.key}]\n`,
      'E_BAD_KEY',
    ),
    /is a private key/,
  );
  const neither = await kFails(['verify', ref], 'E_USAGE');
  assert.match(neither.message, /needs --key PUB, --policy FILE, or both/);
  await kFails(
    [
      'verify',
      ref,
      '--type',
      SLSA,
      '--policy',
      writeFile('ok.yaml', 'version: 1\nrepositories:\n  - match: "**"\n    signers: [mine.pub]\n'),
    ],
    'E_USAGE',
  );
});

// ---------------------------------------------------------------------------------------------------
// Concurrent signers

test('16 parallel kiln sign and 16 parallel kiln attest of one image: every .sig layer and referrer lands', {
  skip,
}, async () => {
  const { mine, reg, repo, digest } = await packedInRegistry('parallel/app', '1', 'parallel');
  const N = 16;
  const signers = await Promise.all(
    Array.from({ length: N }, () => k(['sign', `${repo}:1`, '--key', mine.key])),
  );
  for (const s of signers) ok(s, 'kiln sign');
  const sig = await registryJson<ImageManifest>(reg.url, `parallel/app/manifests/${tagOf(digest, '.sig')}`);
  assert.equal(sig.layers.length, N, `${sig.layers.length} of ${N} cosign signatures landed`);
  assert.equal(new Set(sig.layers.map((l) => l.annotations?.['dev.cosignproject.cosign/signature'])).size, N);
  const fallback = await registryJson<ImageIndex>(reg.url, `parallel/app/manifests/${tagOf(digest)}`);
  assert.equal(
    fallback.manifests.filter((m) => m.artifactType === BUNDLE).length,
    N,
    'every bundle is listed',
  );

  const attesters = await Promise.all(
    Array.from({ length: N }, (_, i) =>
      k([
        'attest',
        `${repo}:1`,
        '--predicate',
        writeFile(`p${i}.json`, { run: i }),
        '--type',
        `${TEST_RESULT}/${i}`,
        '--key',
        mine.key,
      ]),
    ),
  );
  for (const a of attesters) ok(a, 'kiln attest');
  const after = await registryJson<ImageIndex>(reg.url, `parallel/app/manifests/${tagOf(digest)}`);
  assert.equal(after.manifests.length, 2 * N, `${after.manifests.length} of ${2 * N} referrers listed`);
  await kOk([
    'verify',
    `${repo}:1`,
    '--key',
    mine.pub,
    ...Array.from({ length: N }, (_, i) => ['--type', `${TEST_RESULT}/${i}`]).flat(),
  ]);

  // A layout: the same through index.json's compare-and-swap.
  const dir = join(work, 'parallel-layout');
  const img = await makeImage(dir, 'p', { layers: 1, layerBytes: 64 });
  const layoutSigners = await Promise.all(
    Array.from({ length: N }, () => k(['sign', `oci:${dir}:p`, '--key', mine.key])),
  );
  for (const s of layoutSigners) ok(s, 'kiln sign (layout)');
  const entry = layoutIndex(dir).manifests.find(
    (m) => m.annotations?.['org.opencontainers.image.ref.name'] === tagOf(img.descriptor.digest, '.sig'),
  )!;
  assert.equal(layoutJson<ImageManifest>(dir, entry.digest).layers.length, N);
});
