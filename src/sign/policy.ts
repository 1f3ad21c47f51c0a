/**
 * Verification policies (`kiln verify --policy FILE`; docs/signing.md has the format): for the
 * images of each repository pattern, the keys that must have signed them, the attestations they
 * need, and for SLSA provenance the builders and source repositories allowed. YAML or JSON (YAML
 * is a superset), validated with zod; keys are public key files named relative to the policy file
 * (or `env://VAR`). Checking a policy against an image is verify.ts's; this is the model.
 */
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isMap, isNode, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { ioError, KilnError } from '../errors.js';
import { loadPublicKey } from './keys.js';

/** A policy is a page of text; anything this large is a mistake. */
const MAX_POLICY_BYTES = 1 << 20;

/** The predicate types of SLSA provenance that a policy's `provenance:` reads. */
export const SLSA_PROVENANCE_TYPES: readonly string[] = [
  'https://slsa.dev/provenance/v1',
  'https://slsa.dev/provenance/v0.2',
];

const uri = z.string().regex(/^[a-z][a-z0-9+.-]*:\S+$/i, { error: 'expected a URI (https://…)' });
const keyPath = z.string().min(1, { error: 'a key path cannot be empty' });
const oneOrMore = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
  .transform((v): string[] => (typeof v === 'string' ? [v] : v));
const ruleSchema = z
  .object({
    match: oneOrMore,
    signers: z.array(z.union([keyPath, z.object({ anyOf: z.array(keyPath).min(1) }).strict()])).min(1),
    attestations: z
      .array(z.union([uri, z.object({ type: uri, signers: z.array(keyPath).min(1).optional() }).strict()]))
      .optional(),
    provenance: z
      .object({ builders: oneOrMore.optional(), sources: oneOrMore.optional() })
      .strict()
      .optional(),
  })
  .strict();
const policySchema = z.object({ version: z.literal(1), repositories: z.array(ruleSchema).min(1) }).strict();

/** The allowed keys of each mapping, for the message about an unknown one. */
const KEYS: Record<string, string[]> = {
  '': ['version', 'repositories'],
  rule: ['match', 'signers', 'attestations', 'provenance'],
  signer: ['anyOf'],
  attestation: ['type', 'signers'],
  provenance: ['builders', 'sources'],
};

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
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number) => {
    const { line, col } = lines.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  const syntax = doc.errors[0];
  if (syntax)
    throw new KilnError(
      'E_BAD_POLICY',
      `${at(syntax.pos[0])}: invalid YAML: ${syntax.message.split('\n')[0]!.replace(/\s+at line \d+, column \d+:?\s*$/, '')}`,
    );
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new KilnError('E_BAD_POLICY', `${file}: invalid YAML: ${(err as Error).message}`, { cause: err });
  }
  const offsetOf = (path: (string | number)[], key?: string): number => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n), true);
      if (!isNode(node)) continue;
      if (key !== undefined && n === path.length && isMap(node)) {
        const pair = node.items.find(
          (p) => isNode(p.key) && String((p.key as { value?: unknown }).value) === key,
        );
        if (pair && isNode(pair.key)) return pair.key.range?.[0] ?? 0;
      }
      return node.range?.[0] ?? 0;
    }
    return 0;
  };
  const result = policySchema.safeParse(data ?? {});
  if (!result.success) {
    const issue = deepest(result.error.issues[0]!, []);
    const path = issue.path as (string | number)[];
    const field = path.length ? `${path.join('.')}: ` : '';
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0]!;
      const kind = kindAt(path);
      throw new KilnError('E_BAD_POLICY', `${at(offsetOf(path, key))}: ${field}unknown key '${key}'`, {
        hint: `allowed here: ${(KEYS[kind] ?? []).join(', ')}; docs/signing.md describes the policy`,
      });
    }
    throw new KilnError('E_BAD_POLICY', `${at(offsetOf(path))}: ${field}${describe(issue, path)}`, {
      hint: 'docs/signing.md describes the policy format',
    });
  }
  const dir = dirname(resolve(file));
  const loaded = new Map<string, Promise<KeyObject>>();
  const key = async (name: string, path: (string | number)[]): Promise<PolicyKey> => {
    const spec = name.startsWith('env://') || isAbsolute(name) ? name : resolve(dir, name);
    if (name === '-')
      throw new KilnError('E_BAD_POLICY', `${at(offsetOf(path))}: a policy's keys are files, not stdin`);
    let pending = loaded.get(spec);
    if (!pending) {
      pending = loadPublicKey(spec);
      loaded.set(spec, pending);
    }
    try {
      return { name, key: await pending };
    } catch (err) {
      if (err instanceof KilnError)
        throw new KilnError(err.code, `${at(offsetOf(path))}: ${err.message}`, {
          cause: err,
          hint: `key paths are relative to the policy's directory (${dir})`,
        });
      throw err;
    }
  };
  const rules: PolicyRule[] = [];
  for (const [i, r] of result.data.repositories.entries()) {
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

/** Which mapping a path of the policy is (for the keys allowed in it). */
function kindAt(path: (string | number)[]): string {
  if (path.length === 0) return '';
  const last = path.filter((p) => typeof p === 'string').at(-1);
  if (last === 'repositories') return 'rule';
  if (last === 'signers' && path[path.length - 3] === 'repositories') return 'signer';
  if (last === 'attestations') return 'attestation';
  if (last === 'provenance') return 'provenance';
  return '';
}

type Issue = z.core.$ZodIssue;

/** A union's failure, as the branch that got past the type check when one did (an unknown key in a mapping, say). */
function deepest(issue: Issue, prefix: (string | number)[]): Issue {
  const path = [...prefix, ...(issue.path as (string | number)[])];
  if (issue.code === 'invalid_union') {
    const deeper = issue.errors.filter((branch) =>
      branch.some((i) => i.path.length > 0 || (i.code !== 'invalid_type' && i.code !== 'invalid_union')),
    );
    if (deeper.length === 1 && deeper[0]![0]) return deepest(deeper[0]![0], path);
  }
  return { ...issue, path } as Issue;
}

function describe(issue: Issue, path: (string | number)[]): string {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${issue.expected === 'array' ? 'a list' : issue.expected === 'object' ? 'a mapping' : `a ${issue.expected}`}`;
    case 'invalid_value':
      return `expected ${issue.values.map((v) => JSON.stringify(v)).join(' or ')}`;
    case 'too_small':
      return issue.origin === 'array' ? 'expected at least one entry' : issue.message;
    case 'invalid_union':
      if (path.includes('attestations'))
        return 'expected a predicate type (a URI), or a mapping with type: URI and signers: a list of key paths';
      if (path.includes('signers'))
        return 'expected a key path, or a mapping with anyOf: a list of key paths';
      return 'expected a pattern or a list of patterns';
    default:
      return issue.message;
  }
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
