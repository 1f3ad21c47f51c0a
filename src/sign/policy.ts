/**
 * Verification policies (`kiln verify --policy FILE`; docs/signing.md has the format): for the
 * images of each repository pattern, the keys that must have signed them, the attestations they
 * need, and for SLSA provenance the builders and source repositories allowed. YAML or JSON (YAML
 * is a superset), validated with zod in policy-document.ts, loaded only when a policy is read (zod
 * and yaml would double what `kiln sign` and `kiln verify --key` load); keys are public key files
 * named relative to the policy file (or `env://VAR`). Checking a policy against an image is
 * verify.ts's; this is the model.
 */
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ioError, KilnError } from '../errors.js';
import { loadPublicKey } from './keys.js';

/** A policy is a page of text; anything this large is a mistake. */
const MAX_POLICY_BYTES = 1 << 20;

/** The predicate types of SLSA provenance that a policy's `provenance:` reads. */
export const SLSA_PROVENANCE_TYPES: readonly string[] = [
  'https://slsa.dev/provenance/v1',
  'https://slsa.dev/provenance/v0.2',
];

/** A public key a policy names: as written there, and loaded. */
export interface PolicyKey {
  /** The path (or `env://VAR`) as the policy file writes it. */
  name: string;
  key: KeyObject;
}

/** One entry of a policy's `repositories`, keys loaded. */
export interface PolicyRule {
  /** Patterns of `REGISTRY/REPO` (or `oci:` and a layout's absolute path): `*` within a path segment, `**` across. */
  match: string[];
  /** Each entry is one requirement: a signature (both forms) by one of these keys. */
  signers: PolicyKey[][];
  /** Predicate types each image needs an attestation of, signed by one of `signers`. */
  attestations: { type: string; signers: PolicyKey[] }[];
  /** For SLSA provenance signed by the rule's keys: the builder ids and source repositories allowed (patterns). */
  provenance?: { builders?: string[]; sources?: string[] };
  /** Every key the rule names. */
  keys: PolicyKey[];
}

/** A verification policy, read and its keys loaded (`loadPolicy`). */
export interface Policy {
  /** Where it was read from, for messages. */
  file: string;
  rules: PolicyRule[];
}

/** Reads, validates and loads the policy in `file` (YAML or JSON) and the keys it names. */
export async function loadPolicy(file: string): Promise<Policy> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    const e = ioError(err, `policy ${file}`);
    throw new KilnError('E_BAD_POLICY', e.message, { cause: err });
  }
  if (bytes.length > MAX_POLICY_BYTES)
    throw new KilnError('E_BAD_POLICY', `policy ${file} is over ${MAX_POLICY_BYTES} bytes`);
  return parsePolicy(bytes.toString('utf8'), file);
}

/**
 * Validates the policy `text` (YAML or JSON) and loads the keys it names, relative to `file`'s
 * directory. E_BAD_POLICY points at the line and column of the first problem.
 */
export async function parsePolicy(text: string, file: string): Promise<Policy> {
  const { readPolicyDocument } = await import('./policy-document.js');
  const doc = readPolicyDocument(text, file);
  const dir = dirname(resolve(file));
  const loaded = new Map<string, Promise<KeyObject>>();
  const key = async (name: string, path: (string | number)[]): Promise<PolicyKey> => {
    const spec = name.startsWith('env://') || isAbsolute(name) ? name : resolve(dir, name);
    if (name === '-')
      throw new KilnError('E_BAD_POLICY', `${doc.at(path)}: a policy's keys are files, not stdin`);
    let pending = loaded.get(spec);
    if (!pending) {
      pending = loadPublicKey(spec);
      loaded.set(spec, pending);
    }
    try {
      return { name, key: await pending };
    } catch (err) {
      if (err instanceof KilnError)
        throw new KilnError(err.code, `${doc.at(path)}: ${err.message}`, {
          cause: err,
          hint: `key paths are relative to the policy's directory (${dir})`,
        });
      throw err;
    }
  };
  const rules: PolicyRule[] = [];
  for (const [i, r] of doc.repositories.entries()) {
    const base = ['repositories', i];
    const signers = await Promise.all(
      r.signers.map((s, j) =>
        Promise.all(
          (typeof s === 'string' ? [s] : s.anyOf).map((name, k) =>
            key(name, typeof s === 'string' ? [...base, 'signers', j] : [...base, 'signers', j, 'anyOf', k]),
          ),
        ),
      ),
    );
    const all = signers.flat();
    const attestations = await Promise.all(
      (r.attestations ?? []).map(async (a, j) =>
        typeof a === 'string' || !a.signers
          ? { type: typeof a === 'string' ? a : a.type, signers: all }
          : {
              type: a.type,
              signers: await Promise.all(
                a.signers.map((name, k) => key(name, [...base, 'attestations', j, 'signers', k])),
              ),
            },
      ),
    );
    const keys = [...all, ...attestations.flatMap((a) => a.signers)];
    rules.push({
      match: r.match,
      signers,
      attestations,
      ...(r.provenance
        ? {
            provenance: {
              ...(r.provenance.builders ? { builders: r.provenance.builders } : {}),
              ...(r.provenance.sources ? { sources: r.provenance.sources } : {}),
            },
          }
        : {}),
      keys: keys.filter((k, n) => keys.findIndex((x) => x.key.equals(k.key)) === n),
    });
  }
  return { file, rules };
}

/** Whether `name` matches the pattern: `**` anything, `*` anything but `/`, `?` one character but `/`. */
export function matchesPattern(pattern: string, name: string): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`).test(name);
}

/** The rules of `policy` whose patterns match the repository `name`. */
export function rulesFor(policy: Policy, name: string): PolicyRule[] {
  return policy.rules.filter((r) => r.match.some((p) => matchesPattern(p, name)));
}
