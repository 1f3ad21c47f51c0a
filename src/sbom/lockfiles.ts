/**
 * Packages named by the lock files of a source directory: Cargo.lock, go.mod (else go.sum),
 * package-lock.json (v1, v2, v3) and .NET packages.lock.json. Each gets a purl per the purl spec.
 * A lock file that is there but unreadable is an error (E_BAD_PROJECT): an SBOM silently missing its
 * dependencies would be worse than none.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ioError, KilnError } from '../errors.js';
import { type SbomPackage, sortedPackages } from './spdx.js';

/** Lock files are text a person could read; anything larger is not one. */
const MAX_LOCKFILE_BYTES = 64 * 1024 * 1024;
/** Directories never searched for packages.lock.json (build output, dependencies, VCS). */
const SKIP_DIRS = new Set(['node_modules', '.git', 'bin', 'obj', 'target', 'dist', 'out']);

/** Every package the lock files in `sourceDir` name: sorted, deduplicated. */
export async function lockfilePackages(sourceDir: string): Promise<SbomPackage[]> {
  const found: SbomPackage[] = [];
  const cargo = await readText(sourceDir, 'Cargo.lock');
  if (cargo !== undefined) found.push(...cargoPackages(cargo));
  const goMod = await readText(sourceDir, 'go.mod');
  if (goMod !== undefined) found.push(...goModPackages(goMod));
  else {
    const goSum = await readText(sourceDir, 'go.sum');
    if (goSum !== undefined) found.push(...goSumPackages(goSum));
  }
  const npm = await readText(sourceDir, 'package-lock.json');
  if (npm !== undefined) found.push(...npmPackages(npm, 'package-lock.json'));
  // .NET keeps one packages.lock.json beside each project, often a directory or two down.
  for (const rel of await findFiles(sourceDir, 'packages.lock.json', 2)) {
    const text = await readText(sourceDir, rel);
    if (text !== undefined) found.push(...nugetPackages(text, rel));
  }
  return sortedPackages(found);
}

async function readText(dir: string, rel: string): Promise<string | undefined> {
  const file = path.join(dir, rel);
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) return undefined;
    if (st.size > MAX_LOCKFILE_BYTES)
      throw new KilnError('E_TOO_LARGE', `${rel} is ${st.size} bytes; not a lock file kiln reads`);
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof KilnError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(err, file);
  }
}

async function findFiles(dir: string, name: string, depth: number, prefix = ''): Promise<string[]> {
  const entries = await fs.readdir(path.join(dir, prefix), { withFileTypes: true }).catch(() => []);
  const out: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isFile() && e.name === name) out.push(rel);
    else if (e.isDirectory() && depth > 0 && !SKIP_DIRS.has(e.name) && !e.name.startsWith('.'))
      out.push(...(await findFiles(dir, name, depth - 1, rel)));
  }
  return out;
}

function bad(file: string, why: string): KilnError {
  return new KilnError('E_BAD_PROJECT', `${file} can't be read: ${why}`, {
    hint: `regenerate it with its package manager, or remove it`,
  });
}

/**
 * Cargo.lock (TOML): the `[[package]]` tables. Only packages with a `source` (crates.io, another
 * registry, git) are dependencies; the workspace's own crates and path dependencies have none.
 */
export function cargoPackages(text: string, file = 'Cargo.lock'): SbomPackage[] {
  const out: SbomPackage[] = [];
  let current: Record<string, string> | undefined;
  const flush = () => {
    if (current?.name && current.source) {
      const p: SbomPackage = { name: current.name, source: file };
      if (current.version) p.version = current.version;
      p.purl = purl('cargo', undefined, current.name, current.version, cargoQualifiers(current.source));
      out.push(p);
    }
    current = undefined;
  };
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('[')) {
      flush();
      if (line === '[[package]]') current = {};
      continue;
    }
    if (!current) continue;
    const m = /^([A-Za-z0-9_-]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*$/.exec(line);
    if (m) current[m[1]!] = m[2]!.replace(/\\(.)/g, '$1');
  }
  flush();
  return out;
}

/** crates.io is purl's default repository for cargo; another registry or git is said so. */
function cargoQualifiers(source: string): Record<string, string> | undefined {
  if (
    source === 'registry+https://github.com/rust-lang/crates.io-index' ||
    source === 'sparse+https://index.crates.io/'
  )
    return undefined;
  if (source.startsWith('git+')) {
    const [url, rev] = source.slice(4).split('#');
    return rev ? { vcs_url: `git+${url!.replace(/\?.*$/, '')}@${rev}` } : { vcs_url: `git+${url}` };
  }
  return { repository_url: source.replace(/^(registry|sparse)\+/, '') };
}

/**
 * go.mod: the `require` directives (since Go 1.17 they list every module the build needs), with
 * `replace` applied; a module replaced by a local directory is not a download, and is left out.
 */
export function goModPackages(text: string, file = 'go.mod'): SbomPackage[] {
  const requires = new Map<string, string>();
  const replaces = new Map<string, { path: string; version?: string } | null>();
  let block: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/\/\/.*$/, '').trim();
    if (line === '') continue;
    if (block) {
      if (line === ')') {
        block = undefined;
        continue;
      }
      directive(block, line);
      continue;
    }
    const m = /^(require|replace|exclude|retract|module|go|toolchain|godebug|tool|ignore)\b\s*(.*)$/.exec(
      line,
    );
    if (!m) continue;
    if (m[2] === '(') block = m[1];
    else directive(m[1]!, m[2]!);
  }
  function directive(kind: string, args: string): void {
    const words = args.split(/\s+/).map(unquote);
    if (kind === 'require' && words.length >= 2) requires.set(words[0]!, words[1]!);
    if (kind === 'replace') {
      const arrow = words.indexOf('=>');
      if (arrow < 1) return;
      const from = words[0]!;
      const to = words.slice(arrow + 1);
      const local = to[0]!.startsWith('./') || to[0]!.startsWith('../') || to[0]!.startsWith('/');
      replaces.set(from, local ? null : to[1] ? { path: to[0]!, version: to[1] } : { path: to[0]! });
    }
  }
  const out: SbomPackage[] = [];
  for (const [module, version] of requires) {
    const r = replaces.get(module);
    if (r === null) continue;
    const mod = r?.path ?? module;
    const ver = r?.version ?? version;
    out.push({ name: mod, version: ver, purl: golangPurl(mod, ver), source: file });
  }
  return out;
}

function unquote(s: string): string {
  return s.startsWith('"') && s.endsWith('"') && s.length >= 2 ? s.slice(1, -1) : s;
}

/** go.sum without go.mod: the modules whose content (not only go.mod) was hashed. */
export function goSumPackages(text: string, file = 'go.sum'): SbomPackage[] {
  const out: SbomPackage[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const [module, version] = raw.trim().split(/\s+/);
    if (!module || !version || version.endsWith('/go.mod')) continue;
    out.push({ name: module, version, purl: golangPurl(module, version), source: file });
  }
  return out;
}

function golangPurl(module: string, version: string): string {
  // purl golang: namespace and name lowercased.
  const parts = module.toLowerCase().split('/');
  const name = parts.pop()!;
  return purl('golang', parts.join('/') || undefined, name, version);
}

interface NpmEntry {
  name?: string;
  version?: string;
  link?: boolean;
  dev?: boolean;
  resolved?: string;
  dependencies?: Record<string, NpmEntry>;
}

/**
 * package-lock.json v2/v3: `packages`, keyed by install path (`node_modules/a/node_modules/@s/b`);
 * v1: the nested `dependencies`. The root project and workspace links are not dependencies.
 */
export function npmPackages(text: string, file = 'package-lock.json'): SbomPackage[] {
  const lock = parseJson(text, file) as {
    lockfileVersion?: number;
    packages?: Record<string, NpmEntry>;
    dependencies?: Record<string, NpmEntry>;
  };
  const out: SbomPackage[] = [];
  const add = (name: string, entry: NpmEntry) => {
    if (!entry || typeof entry !== 'object' || entry.link || typeof entry.version !== 'string') return;
    // An aliased or git dependency records a URL-ish version; the purl wants the plain one.
    if (!/^\d/.test(entry.version) && entry.version.includes(':')) return;
    const p: SbomPackage = { name, version: entry.version, purl: npmPurl(name, entry.version), source: file };
    if (entry.dev) p.dev = true;
    out.push(p);
  };
  if (lock.packages && typeof lock.packages === 'object') {
    for (const [key, entry] of Object.entries(lock.packages)) {
      const i = key.lastIndexOf('node_modules/');
      if (i === -1) continue; // the root ("") and workspace folders
      add(entry?.name ?? key.slice(i + 'node_modules/'.length), entry);
    }
    return out;
  }
  if (lock.dependencies && typeof lock.dependencies === 'object') {
    const walk = (deps: Record<string, NpmEntry>) => {
      for (const [name, entry] of Object.entries(deps)) {
        add(name, entry);
        if (entry?.dependencies) walk(entry.dependencies);
      }
    };
    walk(lock.dependencies);
    return out;
  }
  throw bad(file, 'neither "packages" nor "dependencies" is there');
}

function npmPurl(name: string, version: string): string {
  if (name.startsWith('@') && name.includes('/')) {
    const [scope, pkg] = name.split('/', 2) as [string, string];
    return purl('npm', scope.toLowerCase(), pkg.toLowerCase(), version);
  }
  return purl('npm', undefined, name.toLowerCase(), version);
}

/**
 * .NET packages.lock.json: `dependencies.<target framework>.<package>.resolved`; project references
 * (`type: Project`) are this solution's code.
 */
export function nugetPackages(text: string, file = 'packages.lock.json'): SbomPackage[] {
  const lock = parseJson(text, file) as {
    dependencies?: Record<string, Record<string, { type?: string; resolved?: string }>>;
  };
  if (!lock.dependencies || typeof lock.dependencies !== 'object')
    throw bad(file, 'it has no "dependencies"');
  const out: SbomPackage[] = [];
  for (const framework of Object.values(lock.dependencies)) {
    if (!framework || typeof framework !== 'object') continue;
    for (const [name, dep] of Object.entries(framework)) {
      if (!dep || dep.type === 'Project' || typeof dep.resolved !== 'string') continue;
      out.push({
        name,
        version: dep.resolved,
        purl: purl('nuget', undefined, name, dep.resolved),
        source: file,
      });
    }
  }
  return out;
}

function parseJson(text: string, file: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw bad(file, `not valid JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw bad(file, 'not a JSON object');
  return value;
}

/**
 * A package URL: `pkg:type/namespace/name@version?qualifiers`, each part percent-encoded as the purl
 * spec says (a namespace's `/` separators kept; qualifiers sorted by key).
 */
export function purl(
  type: string,
  namespace: string | undefined,
  name: string,
  version?: string,
  qualifiers?: Record<string, string>,
): string {
  const ns = namespace ? `${namespace.split('/').map(encodePart).join('/')}/` : '';
  const v = version ? `@${encodePart(version)}` : '';
  const q = qualifiers
    ? Object.keys(qualifiers)
        .sort()
        .map((k) => `${k}=${encodePart(qualifiers[k]!).replace(/%2F/g, '/').replace(/%3A/g, ':')}`)
        .join('&')
    : '';
  return `pkg:${type}/${ns}${encodePart(name)}${v}${q ? `?${q}` : ''}`;
}

function encodePart(s: string): string {
  return encodeURIComponent(s);
}
