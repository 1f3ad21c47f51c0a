/**
 * Signing, attesting and verifying images in registries and `oci:` layouts (docs/signing.md):
 *
 * - `signImage` writes both forms verifiers read: cosign's classic one (the tag
 *   `sha256-<hex>.sig`, one simple-signing layer per signature, appended to what is there) and a
 *   Sigstore bundle v0.3 as an OCI 1.1 referrer (a DSSE-signed in-toto statement of predicate
 *   `https://sigstore.dev/cosign/sign/v1` about the digest).
 * - `attestImage` signs an in-toto statement with any predicate into a bundle attached as a
 *   referrer of each image manifest (every image of an index), never as an index entry.
 *
 * verify.ts checks them. Referrers are attached through sbom/referrers.ts (the referrers API, else
 * the fallback tag); the `.sig` tag is amended through the destination's ReferrerStore, so parallel
 * signers each land their layer.
 */
import type { KeyObject } from 'node:crypto';
import { type KilnContext, withContext } from '../context.js';
import { KilnError } from '../errors.js';
import { defaultMtime } from '../layer/tar-writer.js';
import { sha256 } from '../oci/digest.js';
import { isManifestType, MediaType } from '../oci/media-types.js';
import type { Platform } from '../oci/platform.js';
import { cosignList, signatureTag } from '../oci/referrers.js';
import type { Descriptor, ImageManifest } from '../oci/types.js';
import { parseManifest } from '../oci/validate.js';
import type { RegistryOptions } from '../registry/registry.js';
import { attachReferrer } from '../sbom/referrers.js';
import { openReferrers, openSource } from '../transport/open.js';
import { type ImageLocation, parseLocation } from '../transport/parse.js';
import type { ImageSource } from '../transport/types.js';
import {
  BUNDLE_CONTENT_ANNOTATION,
  BUNDLE_MEDIA_TYPE,
  BUNDLE_PREDICATE_ANNOTATION,
  COSIGN_SIGN_PREDICATE,
  COSIGN_SIGNATURE_ANNOTATION,
  SIMPLE_SIGNING_MEDIA_TYPE,
  signBytes,
  signedStatement,
  simpleSigningPayload,
  statement,
} from './envelope.js';

export { signatureTag };

/** A signature payload, a bundle: small documents. */
export const MAX_SIGNED_BYTES = 4 * 1024 * 1024;

/** Where signing, attesting and verifying run: the context, registry settings, an abort signal. */
export interface SigningScope {
  signal?: AbortSignal;
  /** Registry settings and connections, the abort signal; default: a context for this call. */
  context?: KilnContext;
  /** Registry settings on top of the context's. */
  registry?: RegistryOptions;
}

/** Options of `signImage`: the private key, and whether an index's images are signed too. */
export interface SignOptions extends SigningScope {
  /**
   * The private key (keys.ts loads one), or the promise of one still being decrypted: the image is
   * read meanwhile, and nothing is written before the key is there.
   */
  key: KeyObject | Promise<KeyObject>;
  /** For an index: sign every image in it too. */
  recursive?: boolean;
}

/** One manifest `signImage` signed, and where each signature form went. */
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

/** What `signImage` signed. */
export interface SignResult {
  signed: SignedManifest[];
}

/** An image to sign or verify, and the names its signatures use. */
export interface Target {
  loc: ImageLocation & { transport: 'registry' | 'oci' };
  /** The repository (REGISTRY/REPO) or layout (oci:DIR) without tag or digest. */
  base: string;
  /** What a simple-signing payload and a statement's subject call the image. */
  name: string;
}

/** The target `ref` names; E_UNSUPPORTED for a transport that keeps no signatures (archives). */
export function target(ref: string): Target {
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
export function sibling(t: Target, tag: string): string {
  return `${t.base}:${tag}`;
}

/** What a reference resolved to: the root, and for an index its images. */
export interface Resolved {
  root: Descriptor;
  /** For an index: its image manifests (attestation entries and nested indexes left out). */
  images?: { descriptor: Descriptor; platform?: Platform }[];
}

/** The manifest `source` names and, for an index, its images (attestations and nested indexes left out). */
export async function resolveRef(source: ImageSource): Promise<Resolved> {
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

/** The source `ref` names, opened in the scope. */
export function openFor(ref: string, scope: SigningScope & { context: KilnContext }): Promise<ImageSource> {
  return openSource(ref, {
    context: scope.context,
    ...(scope.registry ? { registry: scope.registry } : {}),
    ...(scope.signal ? { signal: scope.signal } : {}),
  });
}

/**
 * Signs the image `ref` names (and, with `recursive`, every image of an index) in both forms. The
 * two forms of each manifest, and the manifests, are written at once: each amends its own tag, and
 * their settle windows (registry/referrers.ts) overlap instead of adding up.
 */
export async function signImage(ref: string, options: SignOptions): Promise<SignResult> {
  const t = target(ref);
  const keyReady = Promise.resolve(options.key);
  // Failing before the key is awaited must not leave its rejection unhandled.
  keyReady.catch(() => {});
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
    const key = await keyReady;
    const signed = await Promise.all(
      subjects.map(async (s): Promise<SignedManifest> => {
        const [signature, bundle] = await Promise.all([
          appendCosignSignature(ref, t, s.descriptor, key, scope),
          attachBundle(ref, t, s.descriptor, COSIGN_SIGN_PREDICATE, {}, key, scope),
        ]);
        return {
          subject: s.descriptor,
          ...(s.platform ? { platform: s.platform } : {}),
          signature,
          bundle: bundle.descriptor,
          via: bundle.via,
        };
      }),
    );
    return { signed };
  });
}

/** Options of `attestImage`: the private key, the predicate and its type, and which manifests. */
export interface AttestOptions extends SigningScope {
  key: KeyObject;
  /** The predicate's type, a URI (`https://slsa.dev/provenance/v1`, `https://spdx.dev/Document`, …). */
  predicateType: string;
  predicate: unknown;
  /** Only these manifests (default: the image `ref` names, or every image of its index). */
  subjects?: Descriptor[];
}

/** One attestation `attestImage` attached: its subject, type and referrer. */
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
export async function readCosignManifest(
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

/**
 * Adds one simple-signing layer for `subject` to its `.sig` manifest (made if missing), through
 * the ReferrerStore's amend: concurrent signers each keep their layer.
 */
async function appendCosignSignature(
  ref: string,
  t: Target,
  subject: Descriptor,
  key: KeyObject,
  scope: SigningScope & { context: KilnContext },
): Promise<SignedManifest['signature']> {
  const tag = signatureTag(subject.digest);
  const payload = simpleSigningPayload(t.name, subject.digest);
  const blob: Descriptor = {
    mediaType: SIMPLE_SIGNING_MEDIA_TYPE,
    digest: sha256(payload),
    size: payload.length,
  };
  const layer: Descriptor = {
    ...blob,
    annotations: { [COSIGN_SIGNATURE_ANNOTATION]: signBytes(payload, key).toString('base64') },
  };
  const store = await openReferrers(ref, {
    context: scope.context,
    ...(scope.registry ? { registry: scope.registry } : {}),
    ...(scope.signal ? { signal: scope.signal } : {}),
  });
  try {
    const created = new Date(defaultMtime() * 1000).toISOString().replace('.000Z', 'Z');
    const amended = await store.amend(tag, cosignList(created), [layer], [[blob, payload]]);
    const d = amended.descriptor;
    return {
      tag,
      descriptor: { mediaType: d.mediaType || MediaType.OciManifest, digest: d.digest, size: d.size },
      signatures: amended.entries,
    };
  } finally {
    await store.close();
  }
}
