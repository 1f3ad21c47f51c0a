import type { Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/** One entry under a host directory: its path, its path below the root ('/'-joined), its lstat. */
export interface HostEntry {
  full: string;
  rel: string;
  stat: Stats;
}

/**
 * The entries under `dir`, depth first with names in sorted order (a directory before what it holds),
 * symlinks not followed: the same order whatever the filesystem lists. `fail` turns a failed read of
 * a path into the caller's error.
 */
export async function* hostTree(
  dir: string,
  fail: (err: unknown, p: string) => Error,
  prefix = '',
): AsyncGenerator<HostEntry> {
  let names: string[];
  try {
    names = (await fs.readdir(dir)).sort();
  } catch (err) {
    throw fail(err, dir);
  }
  for (const name of names) {
    const full = path.join(dir, name);
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    let stat: Stats;
    try {
      stat = await fs.lstat(full);
    } catch (err) {
      throw fail(err, full);
    }
    yield { full, rel, stat };
    if (stat.isDirectory()) yield* hostTree(full, fail, rel);
  }
}
