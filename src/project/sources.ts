/**
 * The files that count for a build, and one digest over them for the build cache. A file counts
 * unless git would ignore it (`.gitignore` files, at the root and in subdirectories), `.kilnignore`
 * (same syntax, same places) or the project's `exclude` leave it out; with `include`, it must also
 * match one of those patterns. Symlinks are recorded, never followed. The digest covers paths,
 * contents, file types and the executable bit: not mtimes, owners, inode order or where the tree is.
 */
import { createHash } from 'node:crypto';
import { createReadStream, type Dirent } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import ignore, { type Ignore } from 'ignore';
import { ioError, KilnError } from '../errors.js';

export interface SourceFile {
  /** Posix, relative to the source directory. */
  path: string;
  type: 'file' | 'symlink';
  /** The owner's execute bit, as git records it (always false for symlinks). */
  executable: boolean;
  /** Bytes of content, or of the link target for symlinks. */
  size: number;
  /** `sha256:<hex>` of the content, or of the link target for symlinks. */
  digest: string;
}

export interface ListSourcesOptions {
  /**
   * Only files matching these count (default: every file): gitignore-syntax patterns, the last
   * one matching a file or one of its directories deciding (`!` patterns leave files out).
   */
  include?: string[];
  /** Files left out on top of the ignore files (gitignore syntax, relative to `dir`). */
  exclude?: string[];
}

/** Files holding ignore patterns, read in every directory (later ones win within a directory). */
export const IGNORE_FILES = ['.gitignore', '.kilnignore'] as const;
/** Never part of a build: version control, kiln's own state, tool caches. */
const SKIP_NAMES = new Set(['.git']);
const SKIP_DIRS = new Set(['.kiln']);
const HASH_CONCURRENCY = 8;

interface Level {
  /** The directory the patterns belong to, relative to the root ('' for the root). */
  prefix: string;
  rules: Ignore;
}

interface Found {
  rel: string;
  abs: string;
}

/** Fails with E_USAGE unless `abs` is a directory; `shown` is how messages name it. */
export async function expectDirectory(abs: string, shown: string): Promise<void> {
  let stat: Awaited<ReturnType<typeof fs.stat>>;
  try {
    stat = await fs.stat(abs);
  } catch (err) {
    throw ioError(err, shown);
  }
  if (!stat.isDirectory()) throw new KilnError('E_USAGE', `${shown} is not a directory`);
}

/**
 * The files under `dir` that count, sorted by path (byte order), each with its digest. Content is
 * streamed through the hash, a few files at a time.
 */
export async function listSources(dir: string, options: ListSourcesOptions = {}): Promise<SourceFile[]> {
  const root = path.resolve(dir);
  await expectDirectory(root, dir);

  const exclude = options.exclude?.length ? rules(options.exclude) : undefined;
  const include = options.include ? includeMatcher(options.include) : undefined;
  const found: Found[] = [];

  const walk = async (abs: string, rel: string, levels: Level[]): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await fs.readdir(abs, { withFileTypes: true });
    } catch (err) {
      throw ioError(err, rel === '' ? dir : rel);
    }
    let local: Ignore | undefined;
    for (const name of IGNORE_FILES) {
      const entry = entries.find((e) => e.name === name);
      if (!entry?.isFile()) continue;
      try {
        // A string is split into lines (an array would be taken as one pattern per element).
        local = (local ?? rules([])).add(await fs.readFile(path.join(abs, name), 'utf8'));
      } catch (err) {
        throw ioError(err, join(rel, name));
      }
    }
    const here = local ? [...levels, { prefix: rel, rules: local }] : levels;
    const subdirs: Promise<void>[] = [];
    for (const entry of entries) {
      if (SKIP_NAMES.has(entry.name)) continue;
      const childRel = join(rel, entry.name);
      const isDir = entry.isDirectory();
      if (
        isDir &&
        (SKIP_DIRS.has(entry.name) ||
          (entry.name === '.cache' && path.posix.basename(rel) === 'node_modules'))
      )
        continue;
      if (!isDir && !entry.isFile() && !entry.isSymbolicLink()) continue; // sockets, fifos, devices
      if (ignored(here, childRel, isDir)) continue;
      if (exclude?.ignores(isDir ? `${childRel}/` : childRel)) continue;
      if (isDir) subdirs.push(walk(path.join(abs, entry.name), childRel, here));
      else if (!include || include(childRel)) found.push({ rel: childRel, abs: path.join(abs, entry.name) });
    }
    await Promise.all(subdirs);
  };
  await walk(root, '', []);

  const files = await mapLimit(found, HASH_CONCURRENCY, describe);
  return sortByPath(files.filter((f): f is SourceFile => f !== undefined));
}

/**
 * One digest for a set of files: sha256 over a canonical encoding of each file's path, type,
 * executable bit and content digest, in path order. The same tree anywhere, checked out at any
 * time, in any order, gives the same digest.
 */
export function sourcesDigest(files: readonly SourceFile[]): string {
  const hash = createHash('sha256');
  hash.update('kiln-sources-v1\n');
  for (const f of sortByPath(files)) {
    // JSON keeps every field unambiguous whatever characters a path holds.
    hash.update(`${JSON.stringify([f.path, f.type, f.executable, f.digest])}\n`);
  }
  return `sha256:${hash.digest('hex')}`;
}

/** One pattern per element (a pattern from kiln.yaml is never split at newlines). */
function rules(patterns: readonly string[]): Ignore {
  // Case-sensitive, as git on Linux: the same tree must select the same files everywhere.
  return ignore({ ignorecase: false }).add(patterns);
}

/**
 * `include`: the last pattern that matches the file or one of its directories decides, so
 * `['src/', '!src/gen/']` is src without src/gen and `['src/**', '!*.md']` src without its .md files.
 * (Unlike an ignore file, a pattern can carve files out of a directory an earlier one took in.)
 */
function includeMatcher(patterns: readonly string[]): (rel: string) => boolean {
  const each = patterns.map((p) => {
    const negative = p.startsWith('!');
    return { negative, rules: rules([negative ? p.slice(1) : p]) };
  });
  return (rel) => {
    for (let i = each.length - 1; i >= 0; i--) {
      // `ignores` is true when the pattern matches the path or one of its directories.
      if (each[i]!.rules.ignores(rel)) return !each[i]!.negative;
    }
    return false;
  };
}

/**
 * Git's precedence: the deepest ignore file with a rule matching the path decides, so a nested
 * `!pattern` re-includes what an outer file left out. Excluded directories are never entered.
 */
function ignored(levels: readonly Level[], rel: string, isDir: boolean): boolean {
  for (let i = levels.length - 1; i >= 0; i--) {
    const { prefix, rules } = levels[i]!;
    const sub = prefix === '' ? rel : rel.slice(prefix.length + 1);
    const result = rules.test(isDir ? `${sub}/` : sub);
    if (result.unignored) return false;
    if (!result.ignored) continue;
    // `ignore` also reports a path as ignored when its directory is. The walk entered that
    // directory, so a deeper file re-included it; git then applies this level's rules to the
    // path alone, which `ignore` cannot tell apart, so this level is passed over (the safe side:
    // a file too many rather than one missing from the build).
    const slash = sub.lastIndexOf('/');
    if (slash !== -1 && rules.test(`${sub.slice(0, slash)}/`).ignored) continue;
    return true;
  }
  return false;
}

async function describe({ rel, abs }: Found): Promise<SourceFile | undefined> {
  try {
    const stat = await fs.lstat(abs);
    if (stat.isSymbolicLink()) {
      const target = await fs.readlink(abs, { encoding: 'buffer' });
      const digest = `sha256:${createHash('sha256').update(target).digest('hex')}`;
      return { path: rel, type: 'symlink', executable: false, size: target.length, digest };
    }
    if (!stat.isFile()) return undefined; // replaced since the walk
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of createReadStream(abs)) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    const executable = (stat.mode & 0o100) !== 0;
    return { path: rel, type: 'file', executable, size, digest: `sha256:${hash.digest('hex')}` };
  } catch (err) {
    throw ioError(err, rel);
  }
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function sortByPath<T extends { path: string }>(files: readonly T[]): T[] {
  return [...files].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
}

function join(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}
