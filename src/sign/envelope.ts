/**
 * What kiln signs, and how, without I/O (docs/signing.md has the strings):
 *
 * - cosign's simple-signing payload, signed as is (ECDSA P-256 over SHA-256, ASN.1 DER signature);
 * - in-toto Statements (v1) in DSSE envelopes, the signature over DSSE's pre-authentication
 *   encoding (PAE) of the payload type and payload;
 * - Sigstore bundles v0.3 holding one envelope and the key's hint (no certificate, no tlog entry).
 */
import { type KeyObject, sign, verify } from 'node:crypto';
import { KilnError } from '../errors.js';
import { keyHint } from './keys.js';

export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const COSIGN_SIGNATURE_TYPE = 'cosign container image signature';
export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const DSSE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json';
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
/** The predicate of an image signature in a bundle (cosign v3): the statement says only "signed". */
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
export const BUNDLE_CONTENT_ANNOTATION = 'dev.sigstore.bundle.content';
export const BUNDLE_PREDICATE_ANNOTATION = 'dev.sigstore.bundle.predicateType';

/** ECDSA P-256 / SHA-256 over `data`: the ASN.1 DER signature. */
export function signBytes(data: Uint8Array, key: KeyObject): Buffer {
  return sign('sha256', data, key);
}

export function verifyBytes(data: Uint8Array, signature: Uint8Array, key: KeyObject): boolean {
  try {
    return verify('sha256', data, key, signature);
  } catch {
    return false;
  }
}

export interface SimpleSigningPayload {
  critical: {
    identity: { 'docker-reference': string };
    image: { 'docker-manifest-digest': string };
    type: string;
  };
  optional?: Record<string, unknown> | null;
}

/** cosign's payload for `digest` in `repository` (REGISTRY/REPO, no tag), as its bytes. */
export function simpleSigningPayload(repository: string, digest: string): Buffer {
  const payload: SimpleSigningPayload = {
    critical: {
      identity: { 'docker-reference': repository },
      image: { 'docker-manifest-digest': digest },
      type: COSIGN_SIGNATURE_TYPE,
    },
    optional: null,
  };
  return Buffer.from(JSON.stringify(payload));
}

/** A simple-signing payload read back; undefined when it is not one. */
export function parseSimpleSigning(bytes: Buffer): SimpleSigningPayload | undefined {
  try {
    const p = JSON.parse(bytes.toString('utf8')) as SimpleSigningPayload;
    if (
      typeof p?.critical?.image?.['docker-manifest-digest'] === 'string' &&
      typeof p.critical.type === 'string'
    )
      return p;
  } catch {}
  return undefined;
}

export interface Subject {
  name: string;
  digest: Record<string, string>;
}

export interface Statement {
  _type: string;
  subject: Subject[];
  predicateType: string;
  predicate: unknown;
}

/** An in-toto Statement v1 about one OCI manifest (`sha256:…`). */
export function statement(
  name: string,
  digest: string,
  predicateType: string,
  predicate: unknown,
): Statement {
  const [algorithm, hex] = digest.split(':') as [string, string];
  return {
    _type: STATEMENT_TYPE,
    subject: [{ name, digest: { [algorithm]: hex } }],
    predicateType,
    predicate,
  };
}

/** Whether the statement names `digest` (`sha256:…`) among its subjects. */
export function statementNames(s: Statement, digest: string): boolean {
  const [algorithm, hex] = digest.split(':') as [string, string];
  return Array.isArray(s.subject) && s.subject.some((x) => x?.digest?.[algorithm] === hex);
}

/** DSSE's pre-authentication encoding: "DSSEv1" SP len(type) SP type SP len(body) SP body. */
export function pae(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `),
    type,
    Buffer.from(` ${payload.length} `),
    payload,
  ]);
}

export interface Envelope {
  payloadType: string;
  /** base64 */
  payload: string;
  signatures: { keyid: string; sig: string }[];
}

/** A DSSE envelope over `payload`, signed once with `key` (keyid: the key's hint). */
export function signEnvelope(payloadType: string, payload: Uint8Array, key: KeyObject): Envelope {
  return {
    payloadType,
    payload: Buffer.from(payload).toString('base64'),
    signatures: [{ keyid: keyHint(key), sig: signBytes(pae(payloadType, payload), key).toString('base64') }],
  };
}

/** Whether any of the envelope's signatures is `key`'s over its PAE. */
export function verifyEnvelope(env: Envelope, key: KeyObject): boolean {
  const payload = Buffer.from(env.payload, 'base64');
  const message = pae(env.payloadType, payload);
  return env.signatures.some((s) => verifyBytes(message, Buffer.from(s.sig, 'base64'), key));
}

export interface Bundle {
  mediaType: string;
  verificationMaterial: { publicKey: { hint: string }; tlogEntries: unknown[] };
  dsseEnvelope: Envelope;
}

/** A Sigstore bundle v0.3: one DSSE envelope, the key by its hint, no transparency log entry. */
export function bundleOf(envelope: Envelope, key: KeyObject): Buffer {
  const bundle: Bundle = {
    mediaType: BUNDLE_MEDIA_TYPE,
    verificationMaterial: { publicKey: { hint: keyHint(key) }, tlogEntries: [] },
    dsseEnvelope: envelope,
  };
  return Buffer.from(JSON.stringify(bundle));
}

/** A signed in-toto statement as a bundle's bytes. */
export function signedStatement(s: Statement, key: KeyObject): Buffer {
  return bundleOf(signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from(JSON.stringify(s)), key), key);
}

export interface OpenedBundle {
  bundle: Bundle;
  statement: Statement;
}

/** Parses a bundle holding a DSSE envelope of an in-toto statement; throws E_BAD_MANIFEST when it isn't. */
export function openBundle(bytes: Buffer, where: string): OpenedBundle {
  const bad = (why: string) =>
    new KilnError('E_BAD_MANIFEST', `${where}: ${why}`, {
      hint: `kiln reads Sigstore bundles (${BUNDLE_MEDIA_TYPE}) holding a DSSE envelope of an in-toto statement`,
    });
  let bundle: Bundle;
  try {
    bundle = JSON.parse(bytes.toString('utf8')) as Bundle;
  } catch {
    throw bad('not JSON');
  }
  const env = bundle?.dsseEnvelope;
  if (!env || typeof env.payload !== 'string' || !Array.isArray(env.signatures))
    throw bad('no DSSE envelope');
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) throw bad(`payload type ${env.payloadType}`);
  let s: Statement;
  try {
    s = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8')) as Statement;
  } catch {
    throw bad('the payload is not JSON');
  }
  if (typeof s?.predicateType !== 'string' || !Array.isArray(s.subject))
    throw bad('not an in-toto statement');
  return { bundle, statement: s };
}
