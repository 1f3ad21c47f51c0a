/**
 * Verifying images (docs/signing.md): against a public key (`kiln verify --key`), a policy
 * (`--policy`: keys per repository, attestations, SLSA builders and sources), or both.
 *
 * What an image carries is read once (`Evidence`: its cosign signature layers and its Sigstore
 * bundles, parsed) and then checked against each key, so a policy of several keys costs the reads
 * of one. `requireVerified` is what `copy --verify-key` and `run --verify-key` call: the same
 * checks, an E_VERIFY_FAILED error when one fails, and the image pinned to the digest verified.
 */
import type { KeyObject } from 'node:crypto';
import { resolve } from 'node:path';
import { type KilnContext, withContext } from '../context.js';
import { KilnError } from '../errors.js';
import { readSmallBlob } from '../image/resolve.js';
import { formatPlatform, type Platform } from '../oci/platform.js';
import { signatureTag } from '../oci/referrers.js';
import type { Descriptor } from '../oci/types.js';
import { parseManifest } from '../oci/validate.js';
import { listReferrers } from '../sbom/referrers.js';
import { pinnedLocation } from '../transport/parse.js';
import type { ImageSource } from '../transport/types.js';
import {
  BUNDLE_MEDIA_TYPE,
  COSIGN_SIGN_PREDICATE,
  COSIGN_SIGNATURE_ANNOTATION,
  COSIGN_SIGNATURE_TYPE,
  type Envelope,
  openBundle,
  parseSimpleSigning,
  SIMPLE_SIGNING_MEDIA_TYPE,
  type Statement,
  statementNames,
  verifyBytes,
  verifyEnvelope,
} from './envelope.js';
import {
  matchesPattern,
  type Policy,
  type PolicyKey,
  type PolicyRule,
  rulesFor,
  SLSA_PROVENANCE_TYPES,
} from './policy.js';
import {
  MAX_SIGNED_BYTES,
  openFor,
  readCosignManifest,
  resolveRef,
  type SigningScope,
  type Target,
  target,
} from './sign.js';

/** Options of `verifyImage`: a public key, a policy, or both; the attestation types required; `recursive`. */
export interface VerifyOptions extends SigningScope {
  /** The public key (keys.ts loads one). */
  key?: KeyObject;
  /** A policy (policy.ts `loadPolicy`): the rules matching the image's repository must all hold. */
  policy?: Policy;
  /** Require a valid attestation of each of these predicate types on every image (by `key`). */
  types?: string[];
  /** For an index: check every image's signatures too. */
  recursive?: boolean;
}

/** What a check is about: a signature form, an attestation, a policy's signer, SLSA provenance, a policy with no rule for the image. */
export type CheckKind =
  | 'cosign-signature'
  | 'bundle-signature'
  | 'attestation'
  | 'signer'
  | 'provenance'
  | 'policy';

/** One check `verifyImage` made, and how it came out. */
export interface Check {
  kind: CheckKind;
  /** The manifest checked. */
  subject: string;
  platform?: string;
  ok: boolean;
  /** What was found (ok), or what was wrong. */
  detail: string;
  predicateType?: string;
  /** For a policy's checks: the key (or keys, `a | b`) as the policy names it. */
  key?: string;
}

/** Every check `verifyImage` made on an image, and the failed ones as lines. */
export interface VerifyReport {
  ok: boolean;
  /** The manifest or index `ref` names. */
  root: Descriptor;
  checks: Check[];
  /** The failed checks, each as one line. */
  failures: string[];
}

type Finding = Omit<Check, 'subject' | 'platform'>;
interface Subject {
  descriptor: Descriptor;
  platform?: Platform;
}

/**
 * Checks the image `ref` names: against `key` a cosign signature whose payload names this digest, a
 * bundle whose statement names it, and attestations (every one signed by the key names it; each
 * `types` is present); against `policy` the requirements of each rule matching its repository.
 * Verification failures are in the report (`ok` false), not thrown.
 */
export async function verifyImage(ref: string, options: VerifyOptions): Promise<VerifyReport> {
  const t = target(ref);
  if (!options.key && !options.policy)
    throw new KilnError('E_USAGE', 'verifying needs a public key or a policy', {
      hint: 'kiln verify IMAGE --key PREFIX.pub, or --policy FILE',
    });
  return withContext(options.context, async (context) => {
    const scope = { ...options, context };
    const source = await openFor(ref, scope);
    try {
      const resolved = await resolveRef(source);
      const evidence = new Evidence(t, ref, source, scope);
      const signed: Subject[] = [{ descriptor: resolved.root }];
      if (options.recursive) signed.push(...(resolved.images ?? []));
      // Attestations belong to images: an index's are its images'.
      const attested: Subject[] = resolved.images ?? [{ descriptor: resolved.root }];
      const checks: Check[] = [];
      const push = (s: Subject, found: Finding[]) => {
        const platform = s.platform ? formatPlatform(s.platform) : undefined;
        for (const f of found)
          checks.push({ ...f, subject: s.descriptor.digest, ...(platform ? { platform } : {}) });
      };
      if (options.key) await keyChecks(evidence, options.key, options.types ?? [], signed, attested, push);
      if (options.policy) {
        const name = policyName(t);
        const rules = rulesFor(options.policy, name);
        if (rules.length === 0)
          push({ descriptor: resolved.root }, [
            {
              kind: 'policy',
              ok: false,
              detail: `no rule of the policy ${options.policy.file} matches ${name}`,
            },
          ]);
        for (const rule of rules) await policyChecks(evidence, rule, signed, attested, push);
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

/** What `requireVerified` gives back: the image pinned to the digest verified, and the report. */
export interface VerifiedImage {
  /** `ref` naming the digest verified (`REGISTRY/REPO[:TAG]@DIGEST`, `oci:DIR:DIGEST`): read this, not `ref`. */
  ref: string;
  report: VerifyReport;
}

/**
 * Verifies the image `ref` names as `verifyImage` does and throws E_VERIFY_FAILED (the error
 * `kiln verify` exits with) when a check fails; else gives `ref` pinned to the digest verified, so
 * a copy or a run reads that image even if the tag moves meanwhile.
 */
export async function requireVerified(ref: string, options: VerifyOptions): Promise<VerifiedImage> {
  const report = await verifyImage(ref, options);
  if (!report.ok) throw verificationError(ref, report);
  return { ref: pinnedLocation(ref, report.root.digest), report };
}

/** The E_VERIFY_FAILED error for a report that did not pass, naming each failed check. */
export function verificationError(ref: string, report: VerifyReport): KilnError {
  return new KilnError(
    'E_VERIFY_FAILED',
    `${ref}: ${report.failures.length} of ${report.checks.length} checks failed: ${report.failures.join('; ')}`,
    {
      hint: 'sign with kiln sign IMAGE --key PREFIX.key (attest with kiln attest); check with the matching PREFIX.pub',
    },
  );
}

// ---------------------------------------------------------------------------------------------------
// What an image carries, read once

interface CosignEvidence {
  tag: string;
  /** False when there is no `.sig` tag. */
  found: boolean;
  /** Its simple-signing layers that carry a signature annotation. */
  signatures: { payload: Buffer; signature: Buffer }[];
}

interface BundleEvidence {
  referrer: Descriptor;
  predicateType?: string;
  /** Why the bundle doesn't count (unreadable, another subject); undefined when it is sound. */
  problem?: string;
  envelope?: Envelope;
  statement?: Statement;
}

class Evidence {
  private readonly cosigns = new Map<string, Promise<CosignEvidence>>();
  private readonly bundleLists = new Map<string, Promise<BundleEvidence[]>>();

  constructor(
    private readonly t: Target,
    private readonly ref: string,
    private readonly source: ImageSource,
    private readonly scope: SigningScope & { context: KilnContext },
  ) {}

  cosign(digest: string): Promise<CosignEvidence> {
    let found = this.cosigns.get(digest);
    if (!found) {
      found = this.readCosign(digest);
      this.cosigns.set(digest, found);
    }
    return found;
  }

  bundles(subject: Descriptor): Promise<BundleEvidence[]> {
    let found = this.bundleLists.get(subject.digest);
    if (!found) {
      found = this.readBundles(subject);
      this.bundleLists.set(subject.digest, found);
    }
    return found;
  }

  private async readCosign(digest: string): Promise<CosignEvidence> {
    const tag = signatureTag(digest);
    const found = await readCosignManifest(this.t, digest, this.scope);
    if (!found) return { tag, found: false, signatures: [] };
    try {
      const signed = found.manifest.layers.flatMap((layer) => {
        const sig = layer.annotations?.[COSIGN_SIGNATURE_ANNOTATION];
        return layer.mediaType === SIMPLE_SIGNING_MEDIA_TYPE && sig ? [{ layer, sig }] : [];
      });
      const signatures = await Promise.all(
        signed.map(async ({ layer, sig }) => ({
          payload: await readSmallBlob(found.source, layer, MAX_SIGNED_BYTES),
          signature: Buffer.from(sig, 'base64'),
        })),
      );
      return { tag, found: true, signatures };
    } finally {
      await found.source.close();
    }
  }

  private async readBundles(subject: Descriptor): Promise<BundleEvidence[]> {
    const scope = this.scope;
    const referrers = await listReferrers(this.ref, subject, BUNDLE_MEDIA_TYPE, {
      context: scope.context,
      ...(scope.registry ? { registry: scope.registry } : {}),
      ...(scope.signal ? { signal: scope.signal } : {}),
    });
    // Each referrer is read at once: the round trips overlap.
    return Promise.all(referrers.map((referrer) => this.readBundle(subject, referrer)));
  }

  private async readBundle(subject: Descriptor, referrer: Descriptor): Promise<BundleEvidence> {
    const where = `referrer ${referrer.digest.slice(0, 19)}`;
    try {
      const parsed = parseManifest(await this.source.fetchManifest(referrer), where, referrer.mediaType);
      if (parsed.kind !== 'manifest') return { referrer, problem: `${where} is not a manifest` };
      const m = parsed.manifest;
      const layer = m.layers.find((l) => l.mediaType === BUNDLE_MEDIA_TYPE);
      if (!layer) return { referrer, problem: `${where} holds no bundle` };
      const { bundle, statement: s } = openBundle(
        await readSmallBlob(this.source, layer, MAX_SIGNED_BYTES),
        where,
      );
      const entry: BundleEvidence = {
        referrer,
        predicateType: s.predicateType,
        envelope: bundle.dsseEnvelope,
        statement: s,
      };
      if (m.subject?.digest !== subject.digest)
        entry.problem = `${where} is listed for ${subject.digest.slice(0, 19)} but its subject is ${m.subject?.digest ?? 'missing'}`;
      else if (!statementNames(s, subject.digest))
        entry.problem = `${s.predicateType === COSIGN_SIGN_PREDICATE ? 'a signature bundle' : `an attestation of ${s.predicateType}`} signed for another subject (${subjectNames(s.subject)})`;
      return entry;
    } catch (err) {
      if (!(err instanceof KilnError) || err.code === 'E_ABORTED') throw err;
      return { referrer, problem: err.message };
    }
  }
}

function byKey(b: BundleEvidence, key: KeyObject): boolean {
  return b.envelope ? verifyEnvelope(b.envelope, key) : false;
}

function subjectNames(subjects: { digest?: Record<string, string> }[]): string {
  return subjects
    .map((s) => Object.entries(s?.digest ?? {}).map(([a, h]) => `${a}:${h}`)[0] ?? '?')
    .join(', ');
}

// ---------------------------------------------------------------------------------------------------
// Checks against one key (kiln verify --key)

async function keyChecks(
  evidence: Evidence,
  key: KeyObject,
  types: string[],
  signed: Subject[],
  attested: Subject[],
  push: (s: Subject, found: Finding[]) => void,
): Promise<void> {
  // Every read starts at once (Evidence keeps each); the checks then take them in order.
  for (const s of signed) {
    evidence.cosign(s.descriptor.digest).catch(() => {});
    evidence.bundles(s.descriptor).catch(() => {});
  }
  for (const s of attested) evidence.bundles(s.descriptor).catch(() => {});
  for (const s of signed) {
    const bundles = await evidence.bundles(s.descriptor);
    push(s, [
      checkCosign(await evidence.cosign(s.descriptor.digest), s.descriptor.digest, key),
      checkSignBundle(bundles, key),
      ...checkAttestations(bundles, key, []),
    ]);
  }
  for (const s of attested) {
    const already = signed.some((x) => x.descriptor.digest === s.descriptor.digest);
    if (already && types.length === 0) continue;
    push(s, checkAttestations(await evidence.bundles(s.descriptor), key, types, already));
  }
}

function checkCosign(found: CosignEvidence, digest: string, key: KeyObject): Finding {
  const kind = 'cosign-signature' as const;
  if (!found.found) return { kind, ok: false, detail: `no cosign signature (no tag ${found.tag})` };
  const problems: string[] = [];
  for (const { payload, signature } of found.signatures) {
    if (!verifyBytes(payload, signature, key)) {
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
    return { kind, ok: true, detail: `cosign signature by this key under ${found.tag}` };
  }
  return {
    kind,
    ok: false,
    detail: problems.length
      ? `no valid cosign signature under ${found.tag}: ${[...new Set(problems)].join('; ')}`
      : `no cosign signature layer under ${found.tag}`,
  };
}

function checkSignBundle(bundles: BundleEvidence[], key: KeyObject): Finding {
  const kind = 'bundle-signature' as const;
  const sign = bundles.filter((b) => b.predicateType === COSIGN_SIGN_PREDICATE);
  const good = sign.find((b) => !b.problem && byKey(b, key));
  if (good)
    return { kind, ok: true, detail: `Sigstore bundle by this key (referrer ${good.referrer.digest})` };
  if (sign.length === 0) return { kind, ok: false, detail: 'no Sigstore bundle signature (referrer)' };
  const problems = sign.map((b) =>
    b.problem
      ? byKey(b, key)
        ? b.problem
        : `${b.problem}, not by this key`
      : 'a bundle not signed by this key',
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
  bundles: BundleEvidence[],
  key: KeyObject,
  types: string[],
  quiet = false,
): Finding[] {
  const kind = 'attestation' as const;
  const attestations = bundles.filter((b) => b.predicateType !== COSIGN_SIGN_PREDICATE);
  const out: Finding[] = [];
  if (!quiet)
    for (const a of attestations) {
      if (!byKey(a, key)) continue;
      out.push(
        a.problem
          ? { kind, ok: false, detail: a.problem, predicateType: a.predicateType! }
          : { kind, ok: true, detail: `attestation of ${a.predicateType}`, predicateType: a.predicateType! },
      );
    }
  for (const type of types) {
    const good = attestations.some((a) => a.predicateType === type && !a.problem && byKey(a, key));
    if (good) continue; // reported above, or when the subject's signatures were checked
    const others = attestations.filter((a) => a.predicateType === type);
    out.push({
      kind,
      ok: false,
      predicateType: type,
      detail: others.length
        ? `no valid attestation of ${type}: ${[...new Set(others.map((a) => (byKey(a, key) ? a.problem! : 'not signed by this key')))].join('; ')}`
        : `no attestation of ${type}`,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Checks against a policy's rule

const names = (keys: PolicyKey[]) => keys.map((k) => k.name).join(' | ');

async function policyChecks(
  evidence: Evidence,
  rule: PolicyRule,
  signed: Subject[],
  attested: Subject[],
  push: (s: Subject, found: Finding[]) => void,
): Promise<void> {
  // Signers: each requirement met by both signature forms of one of its keys.
  for (const s of signed) {
    const cosign = await evidence.cosign(s.descriptor.digest);
    const bundles = await evidence.bundles(s.descriptor);
    push(
      s,
      rule.signers.map((keys): Finding => {
        const reasons: string[] = [];
        for (const k of keys) {
          const c = checkCosign(cosign, s.descriptor.digest, k.key);
          const b = checkSignBundle(bundles, k.key);
          if (c.ok && b.ok)
            return { kind: 'signer', ok: true, key: names(keys), detail: `signed by ${k.name}` };
          const why = [c, b].filter((x) => !x.ok).map((x) => x.detail.replaceAll('this key', k.name));
          reasons.push(keys.length > 1 ? `${k.name}: ${why.join('; ')}` : why.join('; '));
        }
        return {
          kind: 'signer',
          ok: false,
          key: names(keys),
          detail:
            keys.length > 1
              ? `signed by none of ${names(keys)}: ${reasons.join('; ')}`
              : `not signed by ${keys[0]!.name}: ${reasons[0]}`,
        };
      }),
    );
  }
  for (const s of attested) {
    const bundles = await evidence.bundles(s.descriptor);
    const found: Finding[] = [];
    // Attestations by the rule's keys must be sound (name this image), whatever their type.
    for (const b of bundles)
      if (b.problem && b.predicateType !== COSIGN_SIGN_PREDICATE && rule.keys.some((k) => byKey(b, k.key)))
        found.push({ kind: 'attestation', ok: false, detail: b.problem, predicateType: b.predicateType! });
    for (const { type, signers } of rule.attestations) {
      const good = bundles.find(
        (b) => b.predicateType === type && !b.problem && signers.some((k) => byKey(b, k.key)),
      );
      const by = good && signers.find((k) => byKey(good, k.key));
      if (good && by) {
        found.push({
          kind: 'attestation',
          ok: true,
          predicateType: type,
          key: by.name,
          detail: `attestation of ${type} by ${by.name}`,
        });
        continue;
      }
      const others = bundles.filter((b) => b.predicateType === type && !b.problem);
      found.push({
        kind: 'attestation',
        ok: false,
        predicateType: type,
        key: names(signers),
        detail: others.length
          ? `no attestation of ${type} signed by ${names(signers)} (${others.length} by other keys)`
          : `no attestation of ${type} signed by ${names(signers)}`,
      });
    }
    if (rule.provenance) found.push(...provenanceChecks(bundles, rule, rule.provenance));
    push(s, found);
  }
}

/**
 * SLSA provenance by the rule's keys: there must be some, and each must name an allowed builder
 * and only allowed source repositories.
 */
function provenanceChecks(
  bundles: BundleEvidence[],
  rule: PolicyRule,
  allowed: NonNullable<PolicyRule['provenance']>,
): Finding[] {
  const kind = 'provenance' as const;
  const provenance = bundles.filter(
    (b) =>
      b.predicateType &&
      SLSA_PROVENANCE_TYPES.includes(b.predicateType) &&
      !b.problem &&
      rule.keys.some((k) => byKey(b, k.key)),
  );
  if (provenance.length === 0)
    return [{ kind, ok: false, detail: `no SLSA provenance signed by ${names(rule.keys)}` }];
  const out: Finding[] = [];
  for (const b of provenance) {
    const facts = provenanceFacts(b.statement!);
    const problems: string[] = [];
    if (allowed.builders) {
      if (!facts.builder) problems.push('SLSA provenance names no builder id');
      else if (!allowed.builders.some((p) => matchesPattern(p, facts.builder!)))
        problems.push(
          `SLSA provenance builder ${facts.builder} is not allowed (allowed: ${allowed.builders.join(', ')})`,
        );
    }
    if (allowed.sources) {
      if (facts.sources.length === 0) problems.push('SLSA provenance names no source repository');
      for (const source of facts.sources)
        if (!allowed.sources.some((p) => matchesPattern(p, source)))
          problems.push(
            `SLSA provenance source ${source} is not allowed (allowed: ${allowed.sources.join(', ')})`,
          );
    }
    const predicateType = b.predicateType!;
    if (problems.length) for (const p of problems) out.push({ kind, ok: false, predicateType, detail: p });
    else
      out.push({
        kind,
        ok: true,
        predicateType,
        detail: `SLSA provenance by builder ${facts.builder ?? '(any)'}${facts.sources.length ? ` from ${facts.sources.join(', ')}` : ''}`,
      });
  }
  return out;
}

/**
 * The builder id and source repositories SLSA provenance names. v1: `runDetails.builder.id`; the
 * sources are `externalParameters.source.uri` (kiln), `externalParameters.workflow.repository`
 * (GitHub's generator) and `git+` resolved dependencies. v0.2: `builder.id`,
 * `invocation.configSource.uri` and `git+` materials. `git+` and an `@revision` are taken off.
 */
function provenanceFacts(s: Statement): { builder?: string; sources: string[] } {
  // biome-ignore lint/suspicious/noExplicitAny: a predicate is any JSON; each field read is checked
  const p = (s.predicate ?? {}) as Record<string, any>;
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const repo = (uri: string) => {
    const plain = uri.replace(/^git\+/, '');
    // The revision: an @ in the path (after scheme://host/), as in git+https://host/org/repo@<commit>.
    const path = plain.indexOf('/', plain.indexOf('://') + 3);
    const at = path < 0 ? -1 : plain.indexOf('@', path);
    return at < 0 ? plain : plain.slice(0, at);
  };
  const sources: string[] = [];
  let builder: string | undefined;
  if (s.predicateType === 'https://slsa.dev/provenance/v0.2') {
    builder = str(p.builder?.id);
    const config = str(p.invocation?.configSource?.uri);
    if (config) sources.push(repo(config));
    for (const m of Array.isArray(p.materials) ? p.materials : [])
      if (str(m?.uri)?.startsWith('git+')) sources.push(repo(m.uri));
  } else {
    builder = str(p.runDetails?.builder?.id);
    const params = p.buildDefinition?.externalParameters ?? {};
    for (const v of [params.source?.uri, params.workflow?.repository]) if (str(v)) sources.push(repo(v));
    const deps = p.buildDefinition?.resolvedDependencies;
    for (const d of Array.isArray(deps) ? deps : [])
      if (str(d?.uri)?.startsWith('git+')) sources.push(repo(d.uri));
  }
  return { ...(builder ? { builder } : {}), sources: [...new Set(sources)] };
}

/** The name a policy matches an image's repository by: `REGISTRY/REPO`, or `oci:` and the layout's absolute path. */
function policyName(t: Target): string {
  return t.loc.transport === 'oci' ? `oci:${resolve(t.loc.path)}` : t.name;
}
