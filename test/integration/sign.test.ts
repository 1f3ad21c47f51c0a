/**
 * kiln keygen, sign, attest, verify and build --sign-key against real parts, checked by verifiers
 * that are not kiln's:
 *
 * - keys: OpenSSL reads the encrypted PKCS#8 key (PBES2, scrypt, AES-256-CBC) with the password;
 * - cosign's classic form, read from the registry over plain HTTP: `openssl dgst -sha256 -verify`
 *   checks the signature annotation over the simple-signing payload;
 * - the Sigstore bundle: `@sigstore/verify` with the public key as its only trust material, and
 *   DSSE's PAE computed here from the spec;
 * - tampering, each refused with its own message: the tag moved to another image, a signature by
 *   another key, a signature payload naming another digest, attestations for another subject;
 * - a registry without the referrers API (Debian's docker-registry 2.8: the fallback tag) and `oci:`
 *   layouts, an index signed --recursive and attested per image;
 * - key handling: a wrong password, an unreadable key, env:// and stdin keys, and no password or
 *   key material in anything kiln printed or left under KILN_HOME.
 *
 * The kiln CLI must be built (`npm run build`).
 */
import assert from 'node:assert/strict';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bundleFromJSON } from '@sigstore/bundle';
import { PublicKeyDetails, type TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { attachReferrer } from '../../src/sbom/referrers.js';
import { pae as kilnPae } from '../../src/sign/envelope.js';
import {
  type Descriptor,
  HELLO_WASM,
  type ImageIndex,
  type ImageManifest,
  layoutBlob,
  layoutIndex,
  layoutJson,
  makeImage,
  makeMultiPlatform,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_MANIFEST,
  sha256,
  tagged,
} from '../support/images.js';
import { kiln, kilnHome } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { BUNDLE, type KeyPair, SLSA, signingFile, TEST_RESULT } from '../support/signing.js';
import { writeTree } from '../support/temp.js';
import { ok, requireTool, run, toolSkipReason } from '../support/tools.js';

const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
const SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';

const skip = registrySkipReason('none') ?? toolSkipReason('openssl');
const PASSWORD = 'correct horse battery staple 42';
const OTHER_PASSWORD = 'another password 7';

/** Everything kiln printed in this file: searched for secrets at the end. */
const printed: string[] = [];

const {
  work,
  kOk,
  kFails,
  keys: pairs,
  packed,
  attest,
} = signingFile('kiln-sign', PASSWORD, OTHER_PASSWORD, (r) => printed.push(r.stdout, r.stderr));

interface Keys extends KeyPair {
  publicKey: KeyObject;
}
/** Two key pairs made with kiln keygen: ours, and another one, each with its public key read. */
async function keys(): Promise<{ mine: Keys; other: Keys }> {
  const withKey = (p: KeyPair): Keys => ({ ...p, publicKey: createPublicKey(readFileSync(p.pub)) });
  const { mine, other } = await pairs();
  return { mine: withKey(mine), other: withKey(other) };
}

// ---------------------------------------------------------------------------------------------------
// Independent readers: the registry's HTTP API, PAE from the DSSE spec, openssl, @sigstore/verify.

async function registryGet(base: string, path: string, accept?: string): Promise<Buffer> {
  const res = await fetch(`${base}/v2/${path}`, {
    headers: { Accept: accept ?? `${OCI_MANIFEST}, ${OCI_INDEX}` },
  });
  assert.equal(res.status, 200, `GET ${path}: ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

async function registryPut(base: string, repo: string, reference: string, bytes: Buffer, type: string) {
  const res = await fetch(`${base}/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'Content-Type': type },
    body: bytes,
  });
  assert.equal(res.status, 201, `PUT ${repo}:${reference}: ${res.status} ${await res.text()}`);
}

/** PAE as DSSE's protocol.md defines it, written here from the spec. */
function specPae(type: string, body: Buffer): Buffer {
  const t = Buffer.from(type, 'utf8');
  return Buffer.concat([
    Buffer.from('DSSEv1', 'ascii'),
    Buffer.from(` ${t.length} `, 'ascii'),
    t,
    Buffer.from(` ${body.length} `, 'ascii'),
    body,
  ]);
}

interface BundleJson {
  mediaType: string;
  verificationMaterial: { publicKey: { hint: string }; tlogEntries: unknown[] };
  dsseEnvelope: { payloadType: string; payload: string; signatures: { keyid: string; sig: string }[] };
}

/** Checks a bundle with @sigstore/verify (the public key its only trust) and PAE from the spec; its statement. */
function checkBundle(bytes: Buffer, publicKey: KeyObject, digest: string) {
  const json = JSON.parse(bytes.toString('utf8')) as BundleJson;
  assert.equal(json.mediaType, BUNDLE);
  assert.deepEqual(json.verificationMaterial.tlogEntries, []);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const hint = json.verificationMaterial.publicKey.hint;
  assert.equal(
    hint,
    createHash('sha256').update(spki).digest('base64'),
    'the hint: base64 SHA-256 of the SPKI DER',
  );
  const root: TrustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    certificateAuthorities: [],
    ctlogs: [],
    timestampAuthorities: [],
  };
  const trust = toTrustMaterial(root, {
    [hint]: {
      rawBytes: spki,
      keyDetails: PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
      validFor: { start: new Date(0) },
    },
  });
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  verifier.verify(toSignedEntity(bundleFromJSON(json)));
  // The same signature, checked over PAE computed here.
  const env = json.dsseEnvelope;
  assert.equal(env.payloadType, 'application/vnd.in-toto+json');
  const payload = Buffer.from(env.payload, 'base64');
  assert.ok(
    cryptoVerify(
      'sha256',
      specPae(env.payloadType, payload),
      publicKey,
      Buffer.from(env.signatures[0]!.sig, 'base64'),
    ),
    'the DSSE signature is over PAE(payloadType, payload)',
  );
  const statement = JSON.parse(payload.toString('utf8'));
  assert.equal(statement._type, 'https://in-toto.io/Statement/v1');
  assert.deepEqual(
    statement.subject.map((s: { digest: Record<string, string> }) => s.digest),
    [{ sha256: digest.slice(7) }],
  );
  return statement as {
    predicateType: string;
    predicate: Record<string, unknown>;
    subject: { name: string }[];
  };
}

/** `openssl dgst -sha256 -verify PUB -signature SIG.der PAYLOAD`: true when OpenSSL says Verified OK. */
async function opensslVerifies(pub: string, signatureB64: string, payload: Buffer): Promise<boolean> {
  const dir = join(work, `openssl-${Math.random().toString(36).slice(2)}`);
  writeTree(dir, { 'sig.der': Buffer.from(signatureB64, 'base64'), payload });
  const r = await run(requireTool('openssl')!, [
    'dgst',
    '-sha256',
    '-verify',
    pub,
    '-signature',
    join(dir, 'sig.der'),
    join(dir, 'payload'),
  ]);
  return r.code === 0 && r.stdout.includes('Verified OK');
}

/** Packs hello.wasm to `ref`, an annotation making each seed's image its own; its digest. */
async function verifyFails(ref: string, pub: string, extra: string[] = []): Promise<string> {
  const error = await kFails(['verify', ref, '--key', pub, ...extra], 'E_VERIFY_FAILED');
  return error.message;
}

// ---------------------------------------------------------------------------------------------------

test('kiln keygen: an encrypted PKCS#8 key OpenSSL reads with the password, an SPKI public key', {
  skip,
}, async () => {
  const { mine } = await keys();
  const pem = readFileSync(mine.key, 'utf8');
  assert.match(pem, /^-----BEGIN ENCRYPTED PRIVATE KEY-----\n/);
  assert.equal(statSync(mine.key).mode & 0o777, 0o600);
  assert.match(readFileSync(mine.pub, 'utf8'), /^-----BEGIN PUBLIC KEY-----\n/);
  const openssl = requireTool('openssl')!;
  const parsed = ok(await run(openssl, ['asn1parse', '-in', mine.key]), 'openssl asn1parse');
  assert.match(parsed, /:PBES2/);
  assert.match(parsed, /:scrypt/);
  assert.match(parsed, /:aes-256-cbc/);
  // OpenSSL decrypts it with the password, and its public half is the .pub.
  const env = { ...process.env, PW: PASSWORD };
  const pub = ok(
    await run(openssl, ['pkey', '-in', mine.key, '-passin', 'env:PW', '-pubout'], { env }),
    'openssl pkey',
  );
  assert.equal(pub, readFileSync(mine.pub, 'utf8'));
  const wrong = await run(openssl, ['pkey', '-in', mine.key, '-passin', 'pass:nope', '-noout']);
  assert.notEqual(wrong.code, 0, 'OpenSSL refuses a wrong password too');
  // keygen does not overwrite a key.
  const again = await kFails(['keygen', '--output-key-prefix', join(work, 'mine')], 'E_USAGE');
  assert.match(again.message, /exists/);
});

test('sign and verify through a registry without the referrers API: cosign .sig, bundle referrer', {
  skip,
}, async () => {
  const { mine } = await keys();
  const reg = await sharedRegistry('none');
  const repo = `${reg.host}/sign/app`;
  const digest = await packed(`${repo}:v1`, 'app-v1');
  const hex = digest.slice(7);
  const signed = JSON.parse(await kOk(['sign', `${repo}:v1`, '--key', mine.key, '--json'])) as {
    signed: { subject: { digest: string }; via: string; signature: { tag: string; signatures: number } }[];
  };
  assert.equal(signed.signed[0]!.subject.digest, digest);
  assert.equal(signed.signed[0]!.via, 'fallback-tag');
  assert.equal(signed.signed[0]!.signature.tag, `sha256-${hex}.sig`);

  // cosign's classic form, read straight from the registry.
  const sig = JSON.parse(
    (await registryGet(reg.url, `sign/app/manifests/sha256-${hex}.sig`)).toString(),
  ) as ImageManifest;
  assert.equal(sig.mediaType, OCI_MANIFEST);
  assert.equal(sig.config.mediaType, OCI_CONFIG);
  assert.equal(sig.layers.length, 1);
  const layer = sig.layers[0]!;
  assert.equal(layer.mediaType, SIMPLE_SIGNING);
  const payload = await registryGet(reg.url, `sign/app/blobs/${layer.digest}`, '*/*');
  assert.equal(sha256(payload), layer.digest);
  assert.deepEqual(JSON.parse(payload.toString()).critical, {
    identity: { 'docker-reference': repo },
    image: { 'docker-manifest-digest': digest },
    type: 'cosign container image signature',
  });
  const signature = layer.annotations!['dev.cosignproject.cosign/signature']!;
  assert.ok(await opensslVerifies(mine.pub, signature, payload), 'openssl verifies the cosign signature');
  assert.ok(!(await opensslVerifies(mine.pub, signature, Buffer.concat([payload, Buffer.from(' ')]))));

  // The bundle: an OCI 1.1 artifact under the fallback tag sha256-<hex>.
  const fallback = JSON.parse(
    (await registryGet(reg.url, `sign/app/manifests/sha256-${hex}`)).toString(),
  ) as ImageIndex;
  const entries = fallback.manifests.filter((m) => m.artifactType === BUNDLE);
  assert.equal(entries.length, 1);
  assert.equal(entries[0]!.annotations?.['dev.sigstore.bundle.predicateType'], SIGN_PREDICATE);
  const art = JSON.parse(
    (await registryGet(reg.url, `sign/app/manifests/${entries[0]!.digest}`)).toString(),
  ) as ImageManifest;
  assert.equal(art.artifactType, BUNDLE);
  assert.equal(art.config.mediaType, 'application/vnd.oci.empty.v1+json');
  assert.equal(art.subject?.digest, digest);
  assert.equal(art.layers[0]!.mediaType, BUNDLE);
  const statement = checkBundle(
    await registryGet(reg.url, `sign/app/blobs/${art.layers[0]!.digest}`, '*/*'),
    mine.publicKey,
    digest,
  );
  assert.equal(statement.predicateType, SIGN_PREDICATE);
  assert.deepEqual(statement.predicate, {});

  const report = JSON.parse(await kOk(['verify', `${repo}:v1`, '--key', mine.pub, '--json'])) as {
    ok: boolean;
    checks: { kind: string; ok: boolean }[];
  };
  assert.equal(report.ok, true);
  assert.deepEqual(
    report.checks.map((c) => [c.kind, c.ok]),
    [
      ['cosign-signature', true],
      ['bundle-signature', true],
    ],
  );
  assert.equal((await kOk(['verify', `${repo}:v1`, '--key', mine.pub])).trim(), digest);

  // Signing again appends a layer to the .sig manifest.
  await kOk(['sign', `${repo}:v1`, '--key', mine.key]);
  const twice = JSON.parse(
    (await registryGet(reg.url, `sign/app/manifests/sha256-${hex}.sig`)).toString(),
  ) as ImageManifest;
  assert.equal(twice.layers.length, 2);
  assert.deepEqual(twice.layers[0], layer);
});

test('tampering: each refused with its own message', { skip }, async () => {
  const { mine, other } = await keys();
  const reg = await sharedRegistry('none');
  const repo = `${reg.host}/sign/tamper`;

  // The tag moved to another image after signing: that image has no signature.
  const a = await packed(`${repo}:v1`, 'tamper-a');
  await kOk(['sign', `${repo}:v1`, '--key', mine.key]);
  await attest(`${repo}:v1`, writeJson('a.json', { a: 1 }), TEST_RESULT, mine.key);
  const b = await packed(`${repo}:v1`, 'tamper-b');
  const moved = await verifyFails(`${repo}:v1`, mine.pub);
  assert.match(moved, new RegExp(`no cosign signature \\(no tag sha256-${b.slice(7)}\\.sig\\)`));
  assert.match(moved, /no Sigstore bundle signature/);
  // ...while the signed image, by digest, still verifies.
  await kOk(['verify', `${repo}@${a}`, '--key', mine.pub]);

  // Signed by another key only.
  const c = await packed(`${repo}:c`, 'tamper-c');
  await kOk(['sign', `${repo}:c`, '--key', other.key], { env: { KILN_PASSWORD: OTHER_PASSWORD } });
  const foreign = await verifyFails(`${repo}:c`, mine.pub);
  assert.match(foreign, /a signature not made by this key/);
  assert.match(foreign, /a bundle not signed by this key/);
  await kOk(['verify', `${repo}:c`, '--key', other.pub]);
  assert.ok(c);

  // A .sig whose payload names another digest (a's signature manifest put under d's tag).
  const d = await packed(`${repo}:d`, 'tamper-d');
  await kOk(['sign', `${repo}:d`, '--key', mine.key]);
  const aSig = await registryGet(reg.url, `sign/tamper/manifests/sha256-${a.slice(7)}.sig`);
  await registryPut(reg.url, 'sign/tamper', `sha256-${d.slice(7)}.sig`, aSig, OCI_MANIFEST);
  const replayed = await verifyFails(`${repo}:d`, mine.pub);
  assert.match(replayed, new RegExp(`a signed payload naming another digest \\(${a}\\)`));
  assert.doesNotMatch(replayed, /bundle/, 'the bundle still verifies: only the cosign check fails');

  // Attestations for another subject: a's bundle attached to e (a referrer whose subject is e, a
  // statement naming a), then a's own referrer listed under e's fallback tag.
  const e = await packed(`${repo}:e`, 'tamper-e');
  await kOk(['sign', `${repo}:e`, '--key', mine.key]);
  await kOk(['verify', `${repo}:e`, '--key', mine.pub]);
  const aIndex = JSON.parse(
    (await registryGet(reg.url, `sign/tamper/manifests/sha256-${a.slice(7)}`)).toString(),
  ) as ImageIndex;
  const aAttestation = aIndex.manifests.find(
    (m) => m.annotations?.['dev.sigstore.bundle.predicateType'] === TEST_RESULT,
  )!;
  const aArt = JSON.parse(
    (await registryGet(reg.url, `sign/tamper/manifests/${aAttestation.digest}`)).toString(),
  ) as ImageManifest;
  const aBundle = await registryGet(reg.url, `sign/tamper/blobs/${aArt.layers[0]!.digest}`, '*/*');
  const eDesc: Descriptor = {
    mediaType: OCI_MANIFEST,
    digest: e as Descriptor['digest'],
    size: (await registryGet(reg.url, `sign/tamper/manifests/${e}`)).length,
  };
  await attachReferrer({
    to: `${repo}:e`,
    subject: eDesc,
    artifactType: BUNDLE,
    mediaType: BUNDLE,
    data: aBundle,
    annotations: { 'dev.sigstore.bundle.predicateType': TEST_RESULT },
  });
  const otherSubject = await verifyFails(`${repo}:e`, mine.pub);
  assert.match(
    otherSubject,
    new RegExp(`an attestation of ${TEST_RESULT} signed for another subject \\(${a}\\)`),
  );
  const eIndex = JSON.parse(
    (await registryGet(reg.url, `sign/tamper/manifests/sha256-${e.slice(7)}`)).toString(),
  ) as ImageIndex;
  const listed = { ...eIndex, manifests: [...eIndex.manifests.slice(0, 1), aAttestation] };
  await registryPut(
    reg.url,
    'sign/tamper',
    `sha256-${e.slice(7)}`,
    Buffer.from(JSON.stringify(listed)),
    OCI_INDEX,
  );
  const misfiled = await verifyFails(`${repo}:e`, mine.pub);
  assert.match(misfiled, new RegExp(`is listed for ${e.slice(0, 19)} but its subject is ${a}`));
});

function writeJson(name: string, value: unknown): string {
  const file = join(work, name);
  writeFileSync(file, JSON.stringify(value));
  return file;
}

test('an oci: layout: an index signed --recursive, attested per image, verified with --type', {
  skip,
}, async () => {
  const { mine } = await keys();
  const dir = join(work, 'layout');
  const { index, images } = await makeMultiPlatform(dir, 'idx', ['linux/amd64', 'linux/arm64']);
  const ref = `oci:${dir}:idx`;
  const signed = JSON.parse(await kOk(['sign', ref, '--key', mine.key, '--recursive', '--json'])) as {
    signed: { subject: { digest: string } }[];
  };
  assert.deepEqual(
    signed.signed.map((s) => s.subject.digest),
    [index.digest, ...images.map((i) => i.descriptor.digest)],
  );
  const predicate = writeJson('result.json', { passed: 12, failed: 0 });
  const attested = JSON.parse(
    await kOk(['attest', ref, '--predicate', predicate, '--type', TEST_RESULT, '--key', mine.key, '--json']),
  ) as { attestations: { subject: { digest: string }; referrer: { digest: string } }[] };
  assert.deepEqual(
    attested.attestations.map((a) => a.subject.digest),
    images.map((i) => i.descriptor.digest),
  );
  // The index is as it was: no attestation entries (unknown/unknown) were added to it.
  assert.equal(tagged(dir, 'idx').digest, index.digest);
  assert.deepEqual(
    layoutJson<ImageIndex>(dir, index.digest).manifests.map((m) => m.digest),
    images.map((i) => i.descriptor.digest),
  );
  // Each image's attestation, read from disk: a bundle @sigstore/verify accepts, about that image.
  for (const [i, image] of images.entries()) {
    const art = layoutJson<ImageManifest>(dir, attested.attestations[i]!.referrer.digest);
    assert.equal(art.subject?.digest, image.descriptor.digest);
    const s = checkBundle(layoutBlob(dir, art.layers[0]!.digest), mine.publicKey, image.descriptor.digest);
    assert.equal(s.predicateType, TEST_RESULT);
    assert.deepEqual(s.predicate, { passed: 12, failed: 0 });
  }
  // The index's own bundle, too.
  const tags = layoutIndex(dir).manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']);
  assert.ok(tags.includes(`sha256-${index.digest.slice(7)}.sig`));
  await kOk(['verify', ref, '--key', mine.pub, '--recursive', '--type', TEST_RESULT]);
  const missing = await verifyFails(ref, mine.pub, ['--type', SLSA]);
  assert.match(missing, new RegExp(`no attestation of ${SLSA.replace(/[/.]/g, '\\$&')}`));
  // An untagged oci:DIR still names the one image, not the .sig tags beside it.
  const single = join(work, 'single');
  const img = await makeImage(single, 'only', { layers: 1, layerBytes: 64 });
  await kOk(['sign', `oci:${single}`, '--key', mine.key]);
  assert.equal((await kOk(['verify', `oci:${single}`, '--key', mine.pub])).trim(), img.descriptor.digest);
});

test('kiln build --sign-key: signed SLSA provenance as a referrer of the image', { skip }, async () => {
  const { mine } = await keys();
  const app = writeTree(join(work, 'app'), {
    'hello.wasm': readFileSync(HELLO_WASM),
    'kiln.yaml': [
      'toolchain:',
      '  image: docker.io/library/busybox:1.36',
      '  command: cp hello.wasm "$KILN_OUT/app.wasm"',
      '  artifact: app.wasm',
      'env:',
      '  GREETING: hi',
      '',
    ].join('\n'),
  });
  const out = join(work, 'built');
  const env = { SOURCE_DATE_EPOCH: '1700000000' };
  const built = JSON.parse(
    await kOk(
      ['build', app, '--runner', 'local', '--to', `oci:${out}:v1`, '--sign-key', mine.key, '--json'],
      {
        env,
      },
    ),
  ) as { images: { descriptor: { digest: string } }[]; provenance: { subject: string; referrer: string }[] };
  const digest = built.images[0]!.descriptor.digest;
  assert.equal(built.provenance[0]!.subject, digest);
  const art = layoutJson<ImageManifest>(out, built.provenance[0]!.referrer);
  const s = checkBundle(layoutBlob(out, art.layers[0]!.digest), mine.publicKey, digest);
  assert.equal(s.predicateType, SLSA);
  const p = s.predicate as {
    buildDefinition: { buildType: string; externalParameters: Record<string, unknown> };
    runDetails: { builder: { id: string }; metadata?: unknown };
  };
  assert.equal(p.buildDefinition.externalParameters.command, 'cp hello.wasm "$KILN_OUT/app.wasm"');
  assert.deepEqual(p.buildDefinition.externalParameters.env, { GREETING: 'hi' });
  assert.match(
    JSON.stringify((p.buildDefinition.externalParameters.source as { digest: unknown }).digest),
    /^\{"sha256":"[0-9a-f]{64}"\}$/,
  );
  assert.ok(p.runDetails.builder.id);
  assert.equal(p.runDetails.metadata, undefined, 'SOURCE_DATE_EPOCH: no times');
  await kOk(['verify', `oci:${out}:v1`, '--key', mine.pub, '--type', SLSA]);
});

test("kiln.yaml's sign: the build signs and attests with the key it names, kept out of kiln.lock", {
  skip,
}, async () => {
  const { mine } = await keys();
  const yaml = (sign: string[]) =>
    [
      'toolchain:',
      '  image: docker.io/library/busybox:1.36',
      '  command: cp hello.wasm "$KILN_OUT/app.wasm"',
      '  artifact: app.wasm',
      ...sign,
      '',
    ].join('\n');
  // The key is named relative to kiln.yaml.
  const app = writeTree(join(work, 'yaml-app'), {
    'hello.wasm': readFileSync(HELLO_WASM),
    'keys/release.key': readFileSync(mine.key),
    'kiln.yaml': yaml(['sign:', '  key: keys/release.key', '  attest: [provenance]']),
  });
  const out = join(work, 'yaml-built');
  const built = JSON.parse(
    await kOk(['build', app, '--runner', 'local', '--to', `oci:${out}:v1`, '--json'], {
      env: { SOURCE_DATE_EPOCH: '1700000000' },
    }),
  ) as { images: { descriptor: { digest: string } }[]; provenance?: { subject: string }[] };
  assert.equal(built.provenance?.[0]?.subject, built.images[0]!.descriptor.digest);
  await kOk(['verify', `oci:${out}:v1`, '--key', mine.pub, '--type', SLSA]);
  const pem = readFileSync(mine.key, 'utf8');
  for (const f of readdirSync(app).filter((f) => f.startsWith('kiln.lock'))) {
    const lock = readFileSync(join(app, f), 'utf8');
    assert.ok(!lock.includes(pem.split('\n')[1]!) && !lock.includes(PASSWORD), `${f} holds the key`);
  }
  // Its password never goes in kiln.yaml, and what is not a key file is refused before building.
  writeFileSync(
    join(app, 'kiln.yaml'),
    yaml(['sign:', '  key: keys/release.key', `  password: ${PASSWORD}`]),
  );
  const password = await kFails(
    ['build', app, '--runner', 'local', '--to', `oci:${out}:v2`],
    'E_BAD_PROJECT',
  );
  assert.match(password.message, /unknown key 'password'/);
  assert.ok(!password.message.includes(PASSWORD));
  writeFileSync(join(app, 'kiln.yaml'), yaml(['sign:', '  key: keys/missing.key']));
  const missing = await kFails(['build', app, '--runner', 'local', '--to', `oci:${out}:v3`], 'E_BAD_KEY');
  assert.match(missing.message, /missing\.key/);
  // In a workspace, a project's sign: is not silently left out.
  writeFileSync(join(app, 'kiln.yaml'), yaml(['sign:', '  key: keys/release.key']));
  const ws = await kFails(['build', `${join(work, 'yaml-app')}/...`, '--runner', 'local'], 'E_USAGE');
  assert.match(ws.message, /sign: is read when building that project alone/);
});

test('keys: wrong password, unreadable key, env:// and stdin, no secrets in output or KILN_HOME', {
  skip,
}, async () => {
  const { mine } = await keys();
  const dir = join(work, 'keys-layout');
  await makeImage(dir, 'k', { layers: 1, layerBytes: 64 });
  const ref = `oci:${dir}:k`;
  const wrong = await kFails(['sign', ref, '--key', mine.key], 'E_BAD_PASSWORD', {
    env: { KILN_PASSWORD: 'not it' },
  });
  assert.match(wrong.message, /wrong password/);
  const none = await kiln(['sign', ref, '--key', mine.key, '--json']); // no KILN_PASSWORD, no terminal
  printed.push(none.stdout, none.stderr);
  assert.equal(JSON.parse(none.stdout).error.code, 'E_BAD_PASSWORD');
  const missing = await kFails(['sign', ref, '--key', join(work, 'nope.key')], 'E_BAD_KEY');
  assert.match(missing.message, /nope\.key: no such file/);
  await kFails(['sign', ref, '--key', work], 'E_BAD_KEY');
  await kFails(['sign', ref, '--key', mine.pub], 'E_BAD_KEY');
  await kFails(['verify', ref, '--key', mine.key], 'E_BAD_KEY');
  await kFails(['sign', ref, '--key', 'env://KILN_TEST_UNSET_KEY'], 'E_BAD_KEY');
  // The key from the environment and from stdin.
  const pem = readFileSync(mine.key, 'utf8');
  await kOk(['sign', ref, '--key', 'env://KILN_TEST_KEY'], { env: { KILN_TEST_KEY: pem } });
  await kOk(['sign', ref, '--key', '-'], { input: pem });
  await kOk(['verify', ref, '--key', '-'], { input: readFileSync(mine.pub) });
  // A key OpenSSL encrypted (PBES2 with PBKDF2, not kiln's scrypt) is OpenSSL's to read.
  const pbkdf2 = join(work, 'pbkdf2.key');
  const pass = `pass:${PASSWORD}`;
  ok(
    await run(
      'openssl',
      ['pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-in', mine.key, '-passin', pass].concat([
        '-passout',
        pass,
        '-out',
        pbkdf2,
      ]),
    ),
    'openssl pkcs8 -topk8',
  );
  assert.match(readFileSync(pbkdf2, 'utf8'), /BEGIN ENCRYPTED PRIVATE KEY/);
  await kOk(['sign', ref, '--key', pbkdf2]);
  await kFails(['sign', ref, '--key', pbkdf2], 'E_BAD_PASSWORD', { env: { KILN_PASSWORD: 'not it' } });
  await kOk(['verify', ref, '--key', mine.pub]);

  // Nothing printed, and nothing under KILN_HOME, holds the password or the key.
  const privateKey = createPrivateKey({ key: pem, passphrase: PASSWORD });
  const d = privateKey.export({ format: 'jwk' }).d!;
  const secrets = [
    PASSWORD,
    OTHER_PASSWORD,
    d,
    Buffer.from(d, 'base64url').toString('hex'),
    Buffer.from(d, 'base64url').toString('base64'),
    pem.split('\n')[1]!,
    privateKey.export({ type: 'pkcs8', format: 'der' }).toString('base64').slice(0, 40),
  ];
  for (const text of printed) for (const s of secrets) assert.ok(!text.includes(s), 'a secret was printed');
  const files = (root: string): string[] =>
    readdirSync(root, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? files(join(root, e.name)) : e.isFile() ? [join(root, e.name)] : [],
    );
  const home = files(kilnHome());
  assert.ok(home.length > 0, 'KILN_HOME was used');
  const raw = Buffer.from(d, 'base64url');
  for (const f of home) {
    const bytes = readFileSync(f);
    for (const s of [...secrets.map((x) => Buffer.from(x)), raw])
      assert.equal(bytes.indexOf(s), -1, `${f} holds a secret`);
  }
});

test('DSSE PAE: kiln encodes the spec example', () => {
  // DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world").
  const expected = 'DSSEv1 29 http://example.com/HelloWorld 11 hello world';
  assert.equal(kilnPae('http://example.com/HelloWorld', Buffer.from('hello world')).toString(), expected);
  assert.equal(specPae('http://example.com/HelloWorld', Buffer.from('hello world')).toString(), expected);
});
