/**
 * Signing, attesting and verifying images in registries and `oci:` layouts (docs/signing.md):
 *
 * - `signImage` writes both forms verifiers read: cosign's classic one (the tag
 *   `sha256-<hex>.sig`, one simple-signing layer per signature, appended to what is there) and a
 *   Sigstore bundle v0.3 as an OCI 1.1 referrer (a DSSE-signed in-toto statement of predicate
 *   `https://sigstore.dev/cosign/sign/v1` about the digest).
 * - `attestImage` signs an in-toto statement with any predicate into a bundle attached as a
 *   referrer of each image manifest (every image of an index), never as an index entry.
 * - `verifyImage` checks them against a public key and reports each check.
 *
 * Referrers are attached through sbom/referrers.ts (the referrers API, else the fallback tag).
 */
import type { KeyObject } from 'node:crypto';
import { type KilnContext, withContext } from '../context.js';
import { KilnError } from '../errors.js';
import { readSmallBlob } from '../image/resolve.js';
import { defaultMtime } from '../layer/tar-writer.js';
import { sha256 } from '../oci/digest.js';
import { isManifestType, MediaType } from '../oci/media-types.js';
import { formatPlatform, type Platform } from '../oci/platform.js';
import type { Descriptor, ImageManifest } from '../oci/types.js';
import { encodeJson, parseManifest } from '../oci/validate.js';
import type { RegistryOptions } from '../registry/registry.js';
import { attachReferrer, listReferrers, referrersTag } from '../sbom/referrers.js';
import { openDestination, openSource } from '../transport/open.js';
import { type ImageLocation, parseLocation } from '../transport/parse.js';
import type { ImageSource } from '../transport/types.js';
import {
  BUNDLE_CONTENT_ANNOTATION,
  BUNDLE_MEDIA_TYPE,
  BUNDLE_PREDICATE_ANNOTATION,
  COSIGN_SIGN_PREDICATE,
  COSIGN_SIGNATURE_ANNOTATION,
  COSIGN_SIGNATURE_TYPE,
  openBundle,
  parseSimpleSigning,
  SIMPLE_SIGNING_MEDIA_TYPE,
  signBytes,
  signedStatement,
  simpleSigningPayload,
  statement,
  statementNames,
  verifyBytes,
  verifyEnvelope,
} from './envelope.js';

/** A signature payload, a bundle: small documents. */
const MAX_SIGNED_BYTES = 4 * 1024 * 1024;

export interface SigningScope {
  signal?: AbortSignal;
  /** Registry settings and connections, the abort signal; default: a context for this call. */
  context?: KilnContext;
  /** Registry settings on top of the context's. */
  registry?: RegistryOptions;
}

export interface SignOptions extends SigningScope {
  /** The private key (keys.ts loads one). */
  key: KeyObject;
  /** For an index: sign every image in it too. */
  recursive?: boolean;
}

export interface SignedManifest {
  /** The manifest or index signed. */
  subject: Descriptor;
  platform?: Platform;
  /** The cosign signature manifest, and the tag it is under (`sha256-<hex>.sig`). */
  signature: { tag: string; descriptor: Descriptor; signatures: number };
  /** The bundle referrer. */
  bundle: Descriptor;
  via: 'referrers-api' | 'fallback-tag';
}

export interface SignResult {
  signed: SignedManifest[];
}

interface Target {
  loc: ImageLocation & { transport: 'registry' | 'oci' };
  /** The repository (REGISTRY/REPO) or layout (oci:DIR) without tag or digest. */
  base: string;
  /** What a simple-signing payload and a statement's subject call the image. */
  name: string;
}

function target(ref: string): Target {
  const loc = parseLocation(ref);
  if (loc.transport === 'registry') {
    const name = `${loc.ref.registry}/${loc.ref.repository}`;
    return { loc, base: name, name };
  }
  if (loc.transport === 'oci') return { loc, base: `oci:${loc.path}`, name: loc.path };
  throw new KilnError('E_UNSUPPORTED', `can't sign or verify ${ref}`, {
    hint: 'signatures live beside the image in a registry (REGISTRY/REPO[:TAG]) or an OCI layout (oci:DIR[:TAG])',
  });
}

/** `REPO:tag` or `oci:DIR:tag`, beside the image. */
function sibling(t: Target, tag: string): string {
  return `${t.base}:${tag}`;
}

/** The cosign signature tag of a digest: `sha256-<hex>.sig`. */
export function signatureTag(digest: string): string {
  return `${referrersTag(digest)}.sig`;
}

interface Resolved {
  root: Descriptor;
  /** For an index: its image manifests (attestation entries and nested indexes left out). */
  images?: { descriptor: Descriptor; platform?: Platform }[];
}

async function resolveRef(source: ImageSource): Promise<Resolved> {
  const resolved = await source.resolve();
  const root: Descriptor = { mediaType: resolved.mediaType, digest: resolved.digest, size: resolved.size };
  const parsed = parseManifest(await source.fetchManifest(root), `${source.name} manifest`, root.mediaType);
  if (parsed.kind !== 'index') return { root };
  const images = parsed.index.manifests
    .filter(
      (m) =>
        (isManifestType(m.mediaType) || m.mediaType === undefined) &&
        !(m.platform?.os === 'unknown' && m.platform.architecture === 'unknown'),
    )
    .map((m) => ({
      descriptor: { mediaType: m.mediaType ?? MediaType.OciManifest, digest: m.digest, size: m.size },
      ...(m.platform ? { platform: m.platform } : {}),
    }));
  // The wasi/wasm alias lists a manifest twice: sign it once.
  const seen = new Set<string>();
  return {
    root,
    images: images.filter((i) => !seen.has(i.descriptor.digest) && seen.add(i.descriptor.digest)),
  };
}

function openFor(ref: string, scope: SigningScope & { context: KilnContext }): Promise<ImageSource> {
  return openSource(ref, {
    context: scope.context,
    ...(scope.registry ? { registry: scope.registry } : {}),
    ...(scope.signal ? { signal: scope.signal } : {}),
  });
}

/** Signs the image `ref` names (and, with `recursive`, every image of an index) in both forms. */
export async function signImage(ref: string, options: SignOptions): Promise<SignResult> {
  const t = target(ref);
  return withContext(options.context, async (context) => {
    const scope = { ...options, context };
    const source = await openFor(ref, scope);
    let resolved: Resolved;
    try {
      resolved = await resolveRef(source);
    } finally {
      await source.close();
    }
    const subjects: { descriptor: Descriptor; platform?: Platform }[] = [{ descriptor: resolved.root }];
    if (options.recursive) subjects.push(...(resolved.images ?? []));
    const signed: SignedManifest[] = [];
    for (const s of subjects) {
      const signature = await appendCosignSignature(t, s.descriptor, options.key, scope);
      const bundle = await attachBundle(ref, t, s.descriptor, COSIGN_SIGN_PREDICATE, {}, options.key, scope);
      signed.push({
        subject: s.descriptor,
        ...(s.platform ? { platform: s.platform } : {}),
        signature,
        bundle: bundle.descriptor,
        via: bundle.via,
      });
    }
    return { signed };
  });
}

export interface AttestOptions extends SigningScope {
  key: KeyObject;
  /** The predicate's type, a URI (`https://slsa.dev/provenance/v1`, `https://spdx.dev/Document`, …). */
  predicateType: string;
  predicate: unknown;
  /** Only these manifests (default: the image `ref` names, or every image of its index). */
  subjects?: Descriptor[];
}

export interface Attestation {
  subject: Descriptor;
  platform?: Platform;
  predicateType: string;
  referrer: Descriptor;
  via: 'referrers-api' | 'fallback-tag';
}

/**
 * Attaches a signed in-toto statement of `predicate` as a referrer of each image manifest `ref`
 * names: the manifest, or every image of an index (the index itself is not an image).
 */
export async function attestImage(ref: string, options: AttestOptions): Promise<Attestation[]> {
  const t = target(ref);
  if (!/^[a-z][a-z0-9+.-]*:\S+$/i.test(options.predicateType))
    throw new KilnError('E_USAGE', `the predicate type must be a URI, got '${options.predicateType}'`, {
      hint: 'e.g. https://slsa.dev/provenance/v1, https://spdx.dev/Document, https://example.com/test-result/v1',
    });
  return withContext(options.context, async (context) => {
    const scope = { ...options, context };
    let subjects: { descriptor: Descriptor; platform?: Platform }[];
    if (options.subjects) subjects = options.subjects.map((descriptor) => ({ descriptor }));
    else {
      const source = await openFor(ref, scope);
      try {
        const resolved = await resolveRef(source);
        subjects = resolved.images ?? [{ descriptor: resolved.root }];
      } finally {
        await source.close();
      }
    }
    const out: Attestation[] = [];
    for (const s of subjects) {
      const attached = await attachBundle(
        ref,
        t,
        s.descriptor,
        options.predicateType,
        options.predicate,
        options.key,
        scope,
      );
      out.push({
        subject: s.descriptor,
        ...(s.platform ? { platform: s.platform } : {}),
        predicateType: options.predicateType,
        referrer: attached.descriptor,
        via: attached.via,
      });
    }
    return out;
  });
}

async function attachBundle(
  ref: string,
  t: Target,
  subject: Descriptor,
  predicateType: string,
  predicate: unknown,
  key: KeyObject,
  scope: SigningScope & { context: KilnContext },
) {
  const data = signedStatement(statement(t.name, subject.digest, predicateType, predicate), key);
  return attachReferrer({
    to: ref,
    subject,
    artifactType: BUNDLE_MEDIA_TYPE,
    mediaType: BUNDLE_MEDIA_TYPE,
    data,
    annotations: {
      [BUNDLE_CONTENT_ANNOTATION]: 'dsse-envelope',
      [BUNDLE_PREDICATE_ANNOTATION]: predicateType,
    },
    context: scope.context,
    ...(scope.registry ? { registry: scope.registry } : {}),
    ...(scope.signal ? { signal: scope.signal } : {}),
  });
}

/** The cosign signature manifest under `sha256-<hex>.sig`, if there is one. */
async function readCosignManifest(
  t: Target,
  digest: string,
  scope: SigningScope & { context: KilnContext },
): Promise<{ source: ImageSource; descriptor: Descriptor; manifest: ImageManifest } | undefined> {
  const tag = signatureTag(digest);
  const source = await openFor(sibling(t, tag), scope);
  try {
    const descriptor = await source.resolve();
    const parsed = parseManifest(
      await source.fetchManifest(descriptor),
      `${source.name}`,
      descriptor.mediaType,
    );
    if (parsed.kind !== 'manifest')
      throw new KilnError('E_BAD_MANIFEST', `${source.name} is an index, not a cosign signature manifest`);
    return { source, descriptor, manifest: parsed.manifest };
  } catch (err) {
    await source.close();
    if (err instanceof KilnError && err.code === 'E_NOT_FOUND') return undefined;
    throw err;
  }
}

/** Adds one simple-signing layer for `subject` to its `.sig` manifest (made if missing). */
async function appendCosignSignature(
  t: Target,
  subject: Descriptor,
  key: KeyObject,
  scope: SigningScope & { context: KilnContext },
): Promise<SignedManifest['signature']> {
  const tag = signatureTag(subject.digest);
  const payload = simpleSigningPayload(t.name, subject.digest);
  const layer: Descriptor = {
    mediaType: SIMPLE_SIGNING_MEDIA_TYPE,
    digest: sha256(payload),
    size: payload.length,
    annotations: { [COSIGN_SIGNATURE_ANNOTATION]: signBytes(payload, key).toString('base64') },
  };
  const existing = await readCosignManifest(t, subject.digest, scope);
  await existing?.source.close();
  const layers = [...(existing?.manifest.layers ?? []), layer];
  // cosign's config: an image config whose rootfs lists the layers (their digests: uncompressed).
  const config = encodeJson({
    architecture: '',
    config: {},
    created: new Date(defaultMtime() * 1000).toISOString().replace('.000Z', 'Z'),
    history: layers.map(() => ({ created: '0001-01-01T00:00:00Z' })),
    os: '',
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
  });
  const configDesc: Descriptor = {
    mediaType: MediaType.OciConfig,
    digest: sha256(config),
    size: config.length,
  };
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: configDesc,
    layers,
  };
  const bytes = encodeJson(manifest);
  const descriptor: Descriptor = {
    mediaType: MediaType.OciManifest,
    digest: sha256(bytes),
    size: bytes.length,
  };
  const dest = await openDestination(sibling(t, tag), {
    context: scope.context,
    ...(scope.registry ? { registry: scope.registry } : {}),
    ...(scope.signal ? { signal: scope.signal } : {}),
  });
  try {
    for (const [desc, data] of [
      [configDesc, config],
      [layer, payload],
    ] as const) {
      const plain = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
      if (!(await dest.hasBlob(plain))) await dest.putBlob(plain, once(data), async () => once(data));
    }
    await dest.putManifest(descriptor, bytes);
    await dest.commit(descriptor);
  } catch (err) {
    await dest.abort();
    throw err;
  }
  return { tag, descriptor, signatures: layers.length };
}

async function* once(bytes: Buffer): AsyncGenerator<Uint8Array> {
  yield bytes;
}

// ---------------------------------------------------------------------------------------------------
// Verifying

export interface VerifyOptions extends SigningScope {
  /** The public key (keys.ts loads one). */
  key: KeyObject;
  /** Require a valid attestation of each of these predicate types on every image. */
  types?: string[];
  /** For an index: check every image's signatures too. */
  recursive?: boolean;
}

export type CheckKind = 'cosign-signature' | 'bundle-signature' | 'attestation';

export interface Check {
  kind: CheckKind;
  /** The manifest checked. */
  subject: string;
  platform?: string;
  ok: boolean;
  /** What was found (ok), or what was wrong. */
  detail: string;
  predicateType?: string;
}

export interface VerifyReport {
  ok: boolean;
  /** The manifest or index `ref` names. */
  root: Descriptor;
  checks: Check[];
  /** The failed checks, each as one line. */
  failures: string[];
}

/**
 * Checks the image `ref` names against `key`: a cosign signature whose payload names this digest, a
 * bundle whose statement names it, and attestations (every one signed by the key names it; each
 * `types` is present). Verification failures are in the report (`ok` false), not thrown.
 */
export async function verifyImage(ref: string, options: VerifyOptions): Promise<VerifyReport> {
  const t = target(ref);
  return withContext(options.context, async (context) => {
    const scope = { ...options, context };
    const source = await openFor(ref, scope);
    try {
      const resolved = await resolveRef(source);
      const checks: Check[] = [];
      const signedSubjects: { descriptor: Descriptor; platform?: Platform }[] = [
        { descriptor: resolved.root },
      ];
      if (options.recursive) signedSubjects.push(...(resolved.images ?? []));
      for (const s of signedSubjects) {
        const platform = s.platform ? formatPlatform(s.platform) : undefined;
        const at = (c: Omit<Check, 'subject' | 'platform'>): Check => ({
          ...c,
          subject: s.descriptor.digest,
          ...(platform ? { platform } : {}),
        });
        checks.push(at(await checkCosign(t, s.descriptor.digest, options.key, scope)));
        const bundles = await readBundles(ref, source, s.descriptor, options.key, scope);
        checks.push(at(checkSignBundle(bundles)));
        checks.push(...checkAttestations(bundles, []).map(at));
      }
      // Attestations belong to images: an index's are its images'.
      const attested = resolved.images ?? [{ descriptor: resolved.root }];
      const types = options.types ?? [];
      for (const s of attested) {
        const platform = s.platform ? formatPlatform(s.platform) : undefined;
        const already = signedSubjects.some((x) => x.descriptor.digest === s.descriptor.digest);
        if (already && types.length === 0) continue;
        const bundles = await readBundles(ref, source, s.descriptor, options.key, scope);
        for (const c of checkAttestations(bundles, types, already))
          checks.push({ ...c, subject: s.descriptor.digest, ...(platform ? { platform } : {}) });
      }
      const failures = checks
        .filter((c) => !c.ok)
        .map((c) => `${c.subject.slice(0, 19)}${c.platform ? ` (${c.platform})` : ''}: ${c.detail}`);
      return { ok: failures.length === 0, root: resolved.root, checks, failures };
    } finally {
      await source.close();
    }
  });
}

async function checkCosign(
  t: Target,
  digest: string,
  key: KeyObject,
  scope: SigningScope & { context: KilnContext },
): Promise<Omit<Check, 'subject' | 'platform'>> {
  const kind = 'cosign-signature' as const;
  const tag = signatureTag(digest);
  const found = await readCosignManifest(t, digest, scope);
  if (!found) return { kind, ok: false, detail: `no cosign signature (no tag ${tag})` };
  const problems: string[] = [];
  try {
    for (const layer of found.manifest.layers) {
      const sig = layer.annotations?.[COSIGN_SIGNATURE_ANNOTATION];
      if (layer.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE || !sig) continue;
      const payload = await readSmallBlob(found.source, layer, MAX_SIGNED_BYTES);
      if (!verifyBytes(payload, Buffer.from(sig, 'base64'), key)) {
        problems.push('a signature not made by this key (or over other bytes)');
        continue;
      }
      const p = parseSimpleSigning(payload);
      if (!p || p.critical.type !== COSIGN_SIGNATURE_TYPE) {
        problems.push('a signed payload that is not a cosign image signature');
        continue;
      }
      const claimed = p.critical.image['docker-manifest-digest'];
      if (claimed !== digest) {
        problems.push(`a signed payload naming another digest (${claimed})`);
        continue;
      }
      return { kind, ok: true, detail: `cosign signature by this key under ${tag}` };
    }
  } finally {
    await found.source.close();
  }
  return {
    kind,
    ok: false,
    detail: problems.length
      ? `no valid cosign signature under ${tag}: ${[...new Set(problems)].join('; ')}`
      : `no cosign signature layer under ${tag}`,
  };
}

interface ReadBundle {
  referrer: Descriptor;
  predicateType?: string;
  /** Why the bundle doesn't count (unreadable, another subject); undefined when it is sound. */
  problem?: string;
  /** Signed by the key. */
  byKey: boolean;
}

async function readBundles(
  ref: string,
  source: ImageSource,
  subject: Descriptor,
  key: KeyObject,
  scope: SigningScope & { context: KilnContext },
): Promise<ReadBundle[]> {
  const referrers = await listReferrers(ref, subject, BUNDLE_MEDIA_TYPE, {
    context: scope.context,
    ...(scope.registry ? { registry: scope.registry } : {}),
    ...(scope.signal ? { signal: scope.signal } : {}),
  });
  const out: ReadBundle[] = [];
  for (const referrer of referrers) {
    const where = `referrer ${referrer.digest.slice(0, 19)}`;
    try {
      const parsed = parseManifest(await source.fetchManifest(referrer), where, referrer.mediaType);
      if (parsed.kind !== 'manifest') {
        out.push({ referrer, byKey: false, problem: `${where} is not a manifest` });
        continue;
      }
      const m = parsed.manifest;
      const layer = m.layers.find((l) => l.mediaType === BUNDLE_MEDIA_TYPE);
      if (!layer) {
        out.push({ referrer, byKey: false, problem: `${where} holds no bundle` });
        continue;
      }
      const { bundle, statement: s } = openBundle(
        await readSmallBlob(source, layer, MAX_SIGNED_BYTES),
        where,
      );
      const byKey = verifyEnvelope(bundle.dsseEnvelope, key);
      const entry: ReadBundle = { referrer, byKey, predicateType: s.predicateType };
      if (m.subject?.digest !== subject.digest)
        entry.problem = `${where} is listed for ${subject.digest.slice(0, 19)} but its subject is ${m.subject?.digest ?? 'missing'}`;
      else if (!statementNames(s, subject.digest))
        entry.problem = `${s.predicateType === COSIGN_SIGN_PREDICATE ? 'a signature bundle' : `an attestation of ${s.predicateType}`} signed for another subject (${subjectNames(s.subject)})`;
      out.push(entry);
    } catch (err) {
      if (!(err instanceof KilnError) || err.code === 'E_ABORTED') throw err;
      out.push({ referrer, byKey: false, problem: err.message });
    }
  }
  return out;
}

function subjectNames(subjects: { digest?: Record<string, string> }[]): string {
  return subjects
    .map((s) => Object.entries(s?.digest ?? {}).map(([a, h]) => `${a}:${h}`)[0] ?? '?')
    .join(', ');
}

function checkSignBundle(bundles: ReadBundle[]): Omit<Check, 'subject' | 'platform'> {
  const kind = 'bundle-signature' as const;
  const sign = bundles.filter((b) => b.predicateType === COSIGN_SIGN_PREDICATE);
  const good = sign.find((b) => b.byKey && !b.problem);
  if (good)
    return { kind, ok: true, detail: `Sigstore bundle by this key (referrer ${good.referrer.digest})` };
  if (sign.length === 0) return { kind, ok: false, detail: 'no Sigstore bundle signature (referrer)' };
  const problems = sign.map((b) =>
    b.problem ? (b.byKey ? b.problem : `${b.problem}, not by this key`) : 'a bundle not signed by this key',
  );
  return {
    kind,
    ok: false,
    detail: `no valid Sigstore bundle signature: ${[...new Set(problems)].join('; ')}`,
  };
}

/**
 * Attestations by the key must name the subject; each type in `types` needs one that is sound.
 * `quiet`: report only what `types` asks (the subject's other attestations were checked already).
 */
function checkAttestations(
  bundles: ReadBundle[],
  types: string[],
  quiet = false,
): Omit<Check, 'subject' | 'platform'>[] {
  const kind = 'attestation' as const;
  const attestations = bundles.filter((b) => b.predicateType !== COSIGN_SIGN_PREDICATE);
  const out: Omit<Check, 'subject' | 'platform'>[] = [];
  if (!quiet)
    for (const a of attestations) {
      if (!a.byKey) continue;
      out.push(
        a.problem
          ? { kind, ok: false, detail: a.problem, predicateType: a.predicateType! }
          : { kind, ok: true, detail: `attestation of ${a.predicateType}`, predicateType: a.predicateType! },
      );
    }
  for (const type of types) {
    const good = attestations.some((a) => a.predicateType === type && a.byKey && !a.problem);
    if (good) continue; // reported above, or when the subject's signatures were checked
    const others = attestations.filter((a) => a.predicateType === type);
    out.push({
      kind,
      ok: false,
      predicateType: type,
      detail: others.length
        ? `no valid attestation of ${type}: ${[...new Set(others.map((a) => (a.byKey ? a.problem! : 'not signed by this key')))].join('; ')}`
        : `no attestation of ${type}`,
    });
  }
  return out;
}
