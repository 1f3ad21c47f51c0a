/**
 * A policy's text read (YAML or JSON, with the `yaml` package) and checked against its zod schema,
 * keeping where each part is for messages. Kept apart from policy.ts, which loads it only when a policy
 * is read: zod and yaml are most of what `kiln sign` and `kiln verify --key` would load otherwise.
 */
import { isMap, isNode, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { KilnError } from '../errors.js';

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

/** A policy as written, checked against the schema; `at` gives `FILE:LINE:COL` of a path in it. */
export interface PolicyDocument {
  repositories: z.infer<typeof ruleSchema>[];
  at(path: (string | number)[]): string;
}

/** Reads the policy `text` (YAML or JSON); E_BAD_POLICY points at the line and column of the first problem. */
export function readPolicyDocument(text: string, file: string): PolicyDocument {
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
  return { repositories: result.data.repositories, at: (path) => at(offsetOf(path)) };
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
