/**
 * `kiln.packages.lock`: the packages an image from packages was made of, so a rebuild months later
 * fetches the same bytes or fails clearly: the suite, mirror and architecture, what was asked for, and
 * every package in install order with its version, architecture, archive path, size and SHA-256.
 * JSON with sorted keys, written atomically (a temp file renamed over it).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { KilnError, unlessMissing } from '../errors.js';
import { writeFileAtomic } from '../store/layout.js';
import type { IndexPackage } from './resolve.js';
import { parseVersion } from './version.js';

/** The lock file's name, in the directory the command runs in unless `--lock` names another. */
export const PACKAGES_LOCK_FILE = 'kiln.packages.lock';

/** One package as locked: what names and verifies its .deb, as the Packages index lists it. */
export type LockedPackage = Pick<
  IndexPackage,
  'name' | 'version' | 'architecture' | 'filename' | 'size' | 'sha256'
>;

/** What `kiln.packages.lock` holds. */
export interface PackagesLock {
  lockVersion: 1;
  suite: string;
  /** The archive the packages were resolved from (downloads may use another mirror of it). */
  mirror: string;
  architecture: string;
  components: string[];
  /** The packages asked for, as given (`NAME` or `NAME=VERSION`), sorted. */
  requested: string[];
  /** Every package, in install order. */
  packages: LockedPackage[];
}

const NAME = /^[a-z0-9][a-z0-9+.-]*$/;

function bad(file: string, why: string): KilnError {
  return new KilnError('E_BAD_PROJECT', `${file}: ${why}`, {
    hint: 'restore it from version control, or delete it (or pass --update-lock) to resolve the packages again',
  });
}

/** Reads and checks a lock file; undefined when there is none. */
export async function readPackagesLock(file: string): Promise<PackagesLock | undefined> {
  const text = await unlessMissing(fs.readFile(file, 'utf8'), file);
  if (text === undefined) return undefined;
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(text);
  } catch {
    throw bad(file, 'not valid JSON');
  }
  if (typeof data !== 'object' || data === null || data.lockVersion !== 1)
    throw bad(file, 'not a kiln.packages.lock of version 1');
  const str = (v: unknown, what: string): string => {
    if (typeof v !== 'string' || v === '') throw bad(file, `${what} must be a string`);
    return v;
  };
  const strings = (v: unknown, what: string): string[] => {
    if (!Array.isArray(v)) throw bad(file, `${what} must be a list of strings`);
    return v.map((s, i) => str(s, `${what}[${i}]`));
  };
  if (!Array.isArray(data.packages) || data.packages.length === 0)
    throw bad(file, 'packages must be a non-empty list');
  const packages = data.packages.map((p: Record<string, unknown>, i: number): LockedPackage => {
    const at = `packages[${i}]`;
    if (typeof p !== 'object' || p === null) throw bad(file, `${at} must be an object`);
    const name = str(p.name, `${at}.name`);
    if (!NAME.test(name)) throw bad(file, `${at}.name '${name}' is not a package name`);
    const version = str(p.version, `${at}.version`);
    try {
      parseVersion(version);
    } catch {
      throw bad(file, `${at}.version '${version}' is not a Debian version`);
    }
    const filename = str(p.filename, `${at}.filename`);
    const normal = path.posix.normalize(filename);
    if (
      normal !== filename ||
      filename.startsWith('/') ||
      filename.startsWith('../') ||
      !filename.endsWith('.deb')
    )
      throw bad(file, `${at}.filename '${filename}' is not a .deb path inside the archive`);
    const size = p.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0)
      throw bad(file, `${at}.size must be a positive whole number`);
    const sha256 = str(p.sha256, `${at}.sha256`);
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw bad(file, `${at}.sha256 must be 64 lowercase hex digits`);
    return { name, version, architecture: str(p.architecture, `${at}.architecture`), filename, size, sha256 };
  });
  return {
    lockVersion: 1,
    suite: str(data.suite, 'suite'),
    mirror: str(data.mirror, 'mirror'),
    architecture: str(data.architecture, 'architecture'),
    components: strings(data.components, 'components'),
    requested: strings(data.requested, 'requested'),
    packages,
  };
}

/** The lock as written: keys sorted at every level, two-space indent, a final newline. */
export function encodePackagesLock(lock: PackagesLock): string {
  return `${JSON.stringify(sortedKeys(lock), null, 2)}\n`;
}

/** Writes the lock file atomically (a reader sees the old file or the new one, never half). */
export async function writePackagesLock(file: string, lock: PackagesLock): Promise<void> {
  try {
    await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    await writeFileAtomic(file, encodePackagesLock(lock));
  } catch (err) {
    throw new KilnError('E_IO', `cannot write ${file}: ${(err as Error).message}`, {
      cause: err,
      hint: 'check that its directory exists and is writable, or name another with --lock FILE (--no-lock for none)',
    });
  }
}

function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) out[k] = sortedKeys((value as Record<string, unknown>)[k]);
  return out;
}
