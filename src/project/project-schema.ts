/**
 * The project file, `kiln.yaml`: what to compile, with which toolchain, and how to pack and where
 * to push the result. Every key is optional; no file at all is an empty project. The zod schema is
 * the one definition: it validates, types (`Project`) and generates `schema/kiln.schema.json` for
 * editors (`node --import tsx scripts/kiln-schema.ts`).
 *
 * Errors point at the file, line and column and name the field:
 * `kiln.yaml:7:3: image.format: expected one of image, artifact, ... (got 'imag')`.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { type Document, isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { CONSUMERS } from '../check/consumer.js';
import { ioError, KilnError } from '../errors.js';
import { formatPlatform, parsePlatform } from '../oci/platform.js';
import { parseReference } from '../oci/reference.js';
import { LANGUAGES } from '../toolchain/presets/index.js';
import { OUT_DIR } from '../toolchain/runner.js';
import { parseLocation } from '../transport/parse.js';
import { WASM_FORMATS } from '../wasm/package.js';
import { expectDirectory } from './sources.js';

/** The names looked for, in this order, in a project directory. */
export const PROJECT_FILES = ['kiln.yaml', 'kiln.yml'] as const;
/** A project file is a few hundred bytes; anything this large is a mistake. */
const MAX_PROJECT_BYTES = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Schema

/** Runs a parser that throws KilnError and turns its message into a zod issue. */
function checkedBy(parse: (value: string) => unknown) {
  return (value: string, ctx: z.core.$RefinementCtx<string>) => {
    try {
      parse(value);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
    }
  };
}

const nonEmpty = (what: string) => z.string().min(1, { error: `${what} cannot be empty` });

const imageRef = nonEmpty('the image reference').superRefine(checkedBy(parseReference));
const location = nonEmpty('the location').superRefine(checkedBy(parseLocation));
/** The build cache tags entries by key, so its locations are registry repositories (no tag). */
const cacheRepository = nonEmpty('the repository').superRefine(
  checkedBy((value) => {
    parseReference(value);
    const last = value.slice(value.lastIndexOf('/') + 1);
    if (value.includes('@') || last.includes(':'))
      throw new Error(`'${value}' names a tag or digest; give only the repository (registry/name)`);
  }),
);
const oneOrMore = (item: z.ZodType<string>) =>
  z.union([item, z.array(item)]).transform((v): string[] => (typeof v === 'string' ? [v] : v));

const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const stringMap = (key: z.ZodType<string>) => z.record(key, z.string());

const patterns = () => z.array(nonEmpty('a pattern'));

/** `/out/x.wasm` and `x.wasm` both become `x.wasm`; nothing may point outside /out. */
function normaliseArtifact(value: string, ctx: z.core.$RefinementCtx<string>): string {
  let rel = value;
  if (rel.startsWith('/')) {
    if (!rel.startsWith(`${OUT_DIR}/`)) {
      ctx.addIssue({
        code: 'custom',
        message: `'${value}' is outside ${OUT_DIR}; give a path relative to ${OUT_DIR} or starting with ${OUT_DIR}/`,
      });
      return z.NEVER;
    }
    rel = rel.slice(OUT_DIR.length + 1);
  }
  const normal = path.posix.normalize(rel).replace(/\/+$/, '');
  if (normal === '' || normal === '.' || normal === '..' || normal.startsWith('../')) {
    ctx.addIssue({ code: 'custom', message: `'${value}' does not name a file under ${OUT_DIR}` });
    return z.NEVER;
  }
  return normal;
}

const platformsSchema = z
  .array(nonEmpty('the platform').superRefine(checkedBy(parsePlatform)))
  .min(1, { error: 'list at least one platform, or leave the key out for the default' })
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.forEach((p, i) => {
      let key: string;
      try {
        key = formatPlatform(parsePlatform(p));
      } catch {
        return; // reported by the item's own check
      }
      if (seen.has(key)) ctx.addIssue({ code: 'custom', path: [i], message: `'${p}' is listed twice` });
      seen.add(key);
    });
  })
  .transform((list) => list.map(parsePlatform));

const toolchainShape = {
  image: imageRef.optional().describe("Toolchain image to build in; overrides the language preset's image"),
  command: nonEmpty('the command')
    .optional()
    .describe(
      "Build command, run by /bin/sh -c in /src (the source, read-only); overrides the preset's command",
    ),
  artifact: nonEmpty('the artifact')
    .transform(normaliseArtifact)
    .optional()
    .describe('The built .wasm file: a path relative to /out, or an absolute one starting with /out/'),
  network: z.boolean().optional().describe('Give the build network access (default: false)'),
};

const imageShape = {
  format: z.enum(WASM_FORMATS).optional().describe('How the module is packed (default: image)'),
  name: nonEmpty('the name')
    .optional()
    .describe("The module's name, used for its file in the image, annotations and tags"),
  annotations: stringMap(nonEmpty('an annotation key'))
    .optional()
    .describe("Annotations on the image's manifest"),
  labels: stringMap(nonEmpty('a label key')).optional().describe("Labels in the image's config"),
  platforms: platformsSchema
    .optional()
    .describe('Platforms (os/arch[/variant]) to build for, e.g. wasip1/wasm (default: from the module)'),
  base: imageRef
    .optional()
    .describe('Base image of native images (an index gives the image for each platform; default: none)'),
  entrypoint: oneOrMore(nonEmpty('the entrypoint'))
    .optional()
    .describe(
      'Entrypoint of native images: a path, or a list (program and arguments; default: /usr/local/bin/<name>)',
    ),
  cmd: oneOrMore(z.string())
    .optional()
    .describe("Default arguments of native images: one or a list (default: none; the base's is dropped)"),
  user: nonEmpty('the user').optional().describe('User of native images: name, uid, or uid:gid'),
  workdir: nonEmpty('the working directory')
    .refine((v) => v.startsWith('/'), { error: 'the working directory must be an absolute path' })
    .optional()
    .describe('Working directory of native images (absolute)'),
  env: stringMap(
    z.string().regex(ENV_NAME_RE, {
      error: "variable names are letters, digits and '_', not starting with a digit",
    }),
  )
    .optional()
    .describe("Environment of native images, on top of the base's"),
  layers: z
    .number()
    .refine(Number.isInteger, { error: 'the layer budget is a whole number' })
    .min(1, { error: 'the layer budget is at least 1' })
    .max(32, { error: 'the layer budget is at most 32' })
    .optional()
    .describe(
      'Layer budget of native images (default 3): the binary alone on top, the other files the build wrote grouped by top-level directory below',
    ),
  wasiAlias: z
    .boolean()
    .optional()
    .describe("Also list the wasm image under wasi/wasm in the index (Docker's name)"),
  nodeAliases: z
    .array(nonEmpty('the platform').superRefine(checkedBy(parsePlatform)))
    .optional()
    .describe(
      'Also list the wasm image under these node platforms in the index (e.g. linux/amd64), so a Kubernetes node pulling by its own platform gets it (runwasi RuntimeClass)',
    ),
};

const cacheShape = {
  to: cacheRepository
    .optional()
    .describe('Registry repository compiled artifacts are pushed to (tagged with the build key)'),
  from: oneOrMore(cacheRepository)
    .default([])
    .describe('Registry repositories to look for compiled artifacts in: one or a list'),
};

/** `sign:`: where the signing key is (never the key or its password: those stay out of kiln.yaml). */
const signShape = {
  key: nonEmpty('the key')
    .refine((k) => k !== '-', { error: "kiln.yaml's key is a file or env://VAR, not stdin" })
    .describe(
      'The private key that signs what the build writes: a file relative to kiln.yaml, or env://VAR (the PEM in a variable); its password comes from KILN_PASSWORD or the terminal',
    ),
  attest: z
    .array(z.enum(['provenance']))
    .min(1, { error: 'list what to attest (provenance)' })
    .optional()
    .describe('What each image gets a signed attestation of (default and today only: provenance, SLSA v1)'),
};

const rootShape = {
  source: nonEmpty('the source directory')
    .optional()
    .describe("Source directory, relative to this file's directory (default: that directory)"),
  include: patterns()
    .min(1, { error: 'list at least one pattern, or leave the key out to include every file' })
    .optional()
    .describe(
      'Only files matching one of these patterns count (gitignore syntax, relative to the source; default: every file)',
    ),
  exclude: patterns()
    .optional()
    .describe(
      'Files left out on top of .gitignore and .kilnignore (gitignore syntax, relative to the source)',
    ),
  lang: z.enum(LANGUAGES).optional().describe('Language preset: the toolchain image and command'),
  toolchain: z
    .strictObject(toolchainShape)
    .optional()
    .describe("Overrides of the language preset's toolchain"),
  env: stringMap(
    z.string().regex(ENV_NAME_RE, {
      error: "variable names are letters, digits and '_', not starting with a digit",
    }),
  )
    .optional()
    .describe('Environment variables for the build (values are strings: quote numbers and booleans)'),
  image: z.strictObject(imageShape).optional().describe('How the artifact is packed into an OCI image'),
  to: oneOrMore(location)
    .default([])
    .describe('Where the image goes: a destination (registry reference, oci:dir[:tag], ...) or a list'),
  cache: z.strictObject(cacheShape).optional().describe('Sharing compiled artifacts between machines'),
  sbom: z
    .boolean()
    .optional()
    .describe('Attach an SPDX SBOM to every image built, as an OCI referrer (default: true)'),
  check: z
    .array(z.enum(CONSUMERS))
    .optional()
    .describe(
      'Consumers that must run the image (kiln check --for): a build whose image one of them would not run writes nothing',
    ),
  sign: z
    .strictObject(signShape)
    .optional()
    .describe(
      'Sign what kiln build writes (cosign signature and Sigstore bundle) and attest each image (docs/signing.md); --sign-key overrides the key',
    ),
  workspace: z
    .array(nonEmpty('a project directory'))
    .min(1, { error: 'list at least one project directory' })
    .optional()
    .describe(
      "Makes this a workspace: its projects' directories, relative to this file (DIR/... for every project under DIR); `kiln build` builds each with its own kiln.yaml",
    ),
};

/** The whole of kiln.yaml. Strict: unknown keys are errors, at every level. */
export const projectSchema = z
  .strictObject(rootShape)
  .superRefine((project, ctx) => {
    if (!project.workspace) return;
    // A workspace's file lists projects; what to build is in each project's own kiln.yaml.
    for (const [key, value] of Object.entries(project)) {
      if (key === 'workspace' || value === undefined || (Array.isArray(value) && value.length === 0))
        continue;
      ctx.addIssue({
        code: 'custom',
        path: [key],
        message: "a workspace's kiln.yaml holds only `workspace:`; move this to each project's kiln.yaml",
      });
    }
  })
  .describe('A kiln project: how to compile the source to WebAssembly and pack it into an OCI image');

/** A parsed kiln.yaml: `to` and `cache.from` always lists, platforms parsed, artifact relative to /out. */
export type Project = z.output<typeof projectSchema>;

/** The keys allowed in each mapping, for "did you mean". */
const KEYS: Record<string, string[]> = {
  '': Object.keys(rootShape),
  toolchain: Object.keys(toolchainShape),
  image: Object.keys(imageShape),
  cache: Object.keys(cacheShape),
  sign: Object.keys(signShape),
};

/** Common other names for kiln's keys. */
const ALIASES: Record<string, string> = {
  environment: 'env',
  language: 'lang',
  src: 'source',
  sources: 'source',
  ignore: 'exclude',
  platform: 'platforms',
  destination: 'to',
  destinations: 'to',
  push: 'to',
  tag: 'to',
  tags: 'to',
  cmd: 'command',
  run: 'command',
  script: 'command',
  output: 'artifact',
  wasm: 'artifact',
  annotation: 'annotations',
  label: 'labels',
  from: 'base',
  entry: 'entrypoint',
  workingdir: 'workdir',
  working_dir: 'workdir',
};

// ---------------------------------------------------------------------------------------------
// Parsing

/** A kiln.yaml read and checked: the project, the file it came from, its directory and source directory. */
export interface LoadedProject {
  /** The project file (absolute), or undefined when there is none. */
  file: string | undefined;
  /** The project file's directory, or the given directory when there is no file (absolute). */
  dir: string;
  /** Where the source is: `source` resolved against `dir` (absolute). */
  sourceDir: string;
  project: Project;
}

export interface LoadProjectOptions {
  /** An explicit project file (relative to the working directory); it must exist. */
  file?: string;
}

/**
 * Reads `<dir>/kiln.yaml` (or `kiln.yml`; both is an error), or the explicit file (then `dir` is
 * not used: everything is relative to the file's directory). No file in `dir` is an empty project
 * over `dir`; a missing explicit file is E_NOT_FOUND. Relative paths in the file (`source`, and the
 * paths of oci:, oci-archive: and docker-archive: destinations in `to`) are resolved against the
 * file's directory; a `source` that is not a directory is E_BAD_PROJECT.
 */
export async function loadProject(dir: string, options: LoadProjectOptions = {}): Promise<LoadedProject> {
  let file: string | undefined;
  let text: string | undefined;
  if (options.file !== undefined) {
    file = path.resolve(options.file);
    text = await readProjectFile(file, true);
  } else {
    const base = path.resolve(dir);
    await expectDirectory(base, dir);
    for (const name of PROJECT_FILES) {
      const candidate = path.join(base, name);
      const found = await readProjectFile(candidate, false);
      if (found === undefined) continue;
      if (file !== undefined)
        throw new KilnError('E_BAD_PROJECT', `both ${PROJECT_FILES.join(' and ')} in ${displayPath(base)}`, {
          hint: 'keep one of them',
        });
      file = candidate;
      text = found;
    }
    if (file === undefined) {
      const project = projectSchema.parse({});
      return { file: undefined, dir: base, sourceDir: base, project };
    }
  }
  const parsed = parse(text!, displayPath(file));
  const fileDir = path.dirname(file);
  const project = parsed.project;
  const sourceDir = path.resolve(fileDir, project.source ?? '.');
  if (project.source !== undefined) {
    const why = await notADirectory(sourceDir);
    if (why !== undefined) throw parsed.problemAt(['source'], `'${project.source}' ${why}`);
  }
  project.to = project.to.map((l) => resolveLocation(l, fileDir));
  return { file, dir: fileDir, sourceDir, project };
}

/** Parses and validates the text of a project file; `file` is only used in messages. */
export function parseProject(text: string, file: string): Project {
  return parse(text, file).project;
}

type PathSegment = string | number;

interface Parsed {
  project: Project;
  /** An E_BAD_PROJECT error pointing at a field. */
  problemAt(at: PathSegment[], message: string): KilnError;
}

interface Problem {
  offset: number;
  line: number;
  col: number;
  message: string;
  hint?: string;
}

function parse(text: string, file: string): Parsed {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  const syntax = doc.errors[0];
  if (syntax) {
    const more = doc.errors.length > 1 ? ` (and ${doc.errors.length - 1} more)` : '';
    const message = syntax.message.split('\n')[0]!.replace(/\s+at line \d+, column \d+:?\s*$/, '');
    throw new KilnError('E_BAD_PROJECT', `${at(syntax.pos[0])}: invalid YAML: ${message}${more}`);
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new KilnError('E_BAD_PROJECT', `${file}: invalid YAML: ${(err as Error).message}`, { cause: err });
  }
  const locate = (p: PathSegment[], key?: string) => locateNode(doc, p, key);
  const problemAt = (p: PathSegment[], message: string) => {
    const { offset } = locate(p);
    return new KilnError('E_BAD_PROJECT', `${at(offset)}: ${fieldPrefix(p)}${message}`);
  };

  const result = projectSchema.safeParse(data ?? {}, { reportInput: true });
  if (result.success) return { project: result.data, problemAt };

  const problems: Problem[] = [];
  for (const issue of flatten(result.error.issues, [])) {
    for (const { path: p, message, key, hint } of describeIssue(issue, (q) => locate(q).node, text)) {
      const { offset } = locate(p, key);
      const { line, col } = lineCounter.linePos(offset);
      problems.push({ offset, line, col, message: `${fieldPrefix(p)}${message}`, ...(hint ? { hint } : {}) });
    }
  }
  problems.sort((a, b) => a.offset - b.offset);
  const first = problems[0]!;
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
  throw new KilnError(
    'E_BAD_PROJECT',
    `${file}:${first.line}:${first.col}: ${first.message}${more}`,
    first.hint ? { hint: first.hint } : {},
  );
}

// ---------------------------------------------------------------------------------------------
// Issues to messages

type Issue = z.core.$ZodIssue;

/** Unions report every branch's failure; keep the branch that got past the type check, if one did. */
function flatten(issues: readonly Issue[], prefix: PathSegment[]): Issue[] {
  const out: Issue[] = [];
  for (const issue of issues) {
    const full = [...prefix, ...(issue.path as PathSegment[])];
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const deeper = issue.errors.filter((branch) =>
        branch.every((i) => i.path.length > 0 || (i.code !== 'invalid_type' && i.code !== 'invalid_union')),
      );
      if (deeper.length === 1) {
        out.push(...flatten(deeper[0]!, full));
        continue;
      }
      const expected = issue.errors
        .map((branch) => branch.find((i) => i.code === 'invalid_type' && i.path.length === 0))
        .map((i) => (i && i.code === 'invalid_type' ? i.expected : undefined));
      if (expected.every((e) => e !== undefined)) {
        out.push({ ...issue, path: full, code: 'invalid_type', expected: expected.join('|') } as Issue);
        continue;
      }
    }
    out.push({ ...issue, path: full } as Issue);
  }
  return out;
}

interface Described {
  path: PathSegment[];
  message: string;
  /** For unknown keys: point at this key of the mapping at `path`. */
  key?: string;
  hint?: string;
}

function describeIssue(issue: Issue, nodeAt: (p: PathSegment[]) => unknown, text: string): Described[] {
  const p = issue.path as PathSegment[];
  const input = (issue as { input?: unknown }).input;
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = KEYS[p.join('.')] ?? [];
      return issue.keys.map((key) => {
        const suggestion = suggestKey(key, allowed, p.length === 0);
        return {
          path: p,
          key,
          message: `unknown key '${key}'${suggestion ? ` (did you mean '${suggestion}'?)` : ''}`,
          hint: `allowed here: ${allowed.join(', ')}`,
        };
      });
    }
    case 'invalid_type': {
      const expected = issue.expected.split('|').map(describeExpected).join(' or ');
      let got = describeValue(input, nodeAt(p), text);
      let hint: string | undefined;
      if (issue.expected.includes('string')) {
        if (typeof input === 'number' || typeof input === 'boolean') got += `; quote it: "${got}"`;
        else if (input !== null && typeof input === 'object' && !Array.isArray(input))
          hint = `in YAML, text with ': ' in it or ending in ':' is a mapping; quote it`;
      }
      return [{ path: p, message: `expected ${expected} (got ${got})`, ...(hint ? { hint } : {}) }];
    }
    case 'invalid_value': {
      const values = issue.values.map(String);
      const suggestion = typeof input === 'string' ? closest(input, values) : undefined;
      return [
        {
          path: p,
          message: `expected one of ${values.join(', ')} (got ${describeValue(input, nodeAt(p), text)})`,
          ...(suggestion ? { hint: `did you mean '${suggestion}'?` } : {}),
        },
      ];
    }
    case 'invalid_key': {
      const inner = issue.issues[0];
      return [{ path: p, key: String(p[p.length - 1]), message: inner?.message ?? issue.message }];
    }
    default:
      return [{ path: p, message: issue.message }];
  }
}

function describeExpected(expected: string): string {
  switch (expected) {
    case 'object':
    case 'record':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'boolean':
      return 'true or false';
    default:
      return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
  }
}

function describeValue(value: unknown, node: unknown, text: string): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'object') return value instanceof Uint8Array ? 'binary data' : 'a mapping';
  // Numbers and booleans as written (1.10, not 1.1).
  if (isScalar(node) && node.range) return text.slice(node.range[0], node.range[1]).trim() || String(value);
  return String(value);
}

function quote(s: string): string {
  const shown = s.length > 60 ? `${s.slice(0, 57)}...` : s;
  return `'${JSON.stringify(shown).slice(1, -1)}'`;
}

/** `image.platforms[0]: `, `env.RUSTFLAGS: `, or nothing at the top level. */
function fieldPrefix(p: PathSegment[]): string {
  if (p.length === 0) return '';
  let out = '';
  for (const seg of p) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][\w-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return `${out}: `;
}

/** Where a path points in the document: the value's start, or the key's for unknown keys. */
function locateNode(doc: Document, p: PathSegment[], key?: string): { offset: number; node: unknown } {
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? 0;
  for (const seg of key === undefined ? p : [...p, key]) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((item) => keyString(item.key) === String(seg));
      if (!pair) break;
      // A mapping's entry is pointed at by its key, where the field's name is.
      offset = rangeStart(pair.key) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      offset = rangeStart(item) ?? offset;
      node = item;
    } else {
      break;
    }
  }
  return { offset, node };
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range ? range[0] : undefined;
}

function keyString(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key);
}

// ---------------------------------------------------------------------------------------------
// Did you mean

function suggestKey(key: string, allowed: string[], topLevel: boolean): string | undefined {
  const lower = key.toLowerCase();
  const alias = ALIASES[lower];
  if (alias && allowed.includes(alias)) return alias;
  const near = closest(key, allowed);
  if (near) return near;
  if (topLevel) {
    // A nested key written at the top level: `command:` for `toolchain.command`.
    for (const [section, keys] of Object.entries(KEYS)) {
      if (section === '') continue;
      const inSection = keys.includes(lower) ? lower : closest(key, keys);
      if (inSection) return `${section}.${inSection}`;
    }
  }
  const prefixed = allowed.filter(
    (a) => (lower.startsWith(a) && a.length >= 2) || (a.startsWith(lower) && lower.length >= 3),
  );
  return prefixed.sort((a, b) => b.length - a.length)[0];
}

/** The candidate nearest by edit distance, if it is near enough to be a typo. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  for (const c of candidates) {
    const d = editDistance(lower, c.toLowerCase());
    if (d <= bestDistance && (best === undefined || d < bestDistance)) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** Optimal string alignment distance: Levenshtein plus swaps of neighbours. */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) rows.push([i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

// ---------------------------------------------------------------------------------------------
// Files

/** The file's text, or undefined when it does not exist and did not have to. */
async function readProjectFile(file: string, required: boolean): Promise<string | undefined> {
  let bytes: Buffer;
  try {
    const stat = await fs.stat(file);
    if (stat.isDirectory()) throw new KilnError('E_IO', `${displayPath(file)} is a directory, not a file`);
    if (stat.size > MAX_PROJECT_BYTES)
      throw new KilnError(
        'E_BAD_PROJECT',
        `${displayPath(file)}: ${stat.size} bytes is too large for a project file (at most 1 MiB)`,
      );
    bytes = await fs.readFile(file);
  } catch (err) {
    if (err instanceof KilnError) throw err;
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(err, displayPath(file));
  }
  try {
    // Strips a byte order mark.
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new KilnError('E_BAD_PROJECT', `${displayPath(file)}: not UTF-8 text`);
  }
}

async function notADirectory(abs: string): Promise<string | undefined> {
  try {
    return (await fs.stat(abs)).isDirectory() ? undefined : 'is not a directory';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT'
      ? 'does not exist'
      : `cannot be read (${(err as Error).message})`;
  }
}

/** Relative to the working directory when inside it (as users type paths), else absolute. */
function displayPath(abs: string): string {
  const rel = path.relative(process.cwd(), abs);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : abs;
}

/** Resolves the path of a local location (`oci:dir:tag`) against the project file's directory. */
function resolveLocation(location: string, dir: string): string {
  const m = /^(oci|oci-archive|docker-archive):([^:]+)(:.*)?$/s.exec(location);
  if (!m) return location;
  const resolved = path.resolve(dir, m[2]!);
  // A path with ':' in it would not parse back; leave such a location as written.
  if (resolved.includes(':')) return location;
  return `${m[1]}:${resolved}${m[3] ?? ''}`;
}
