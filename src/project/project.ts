/**
 * Loading the project file without paying for its validator on every build: yaml and zod together
 * cost ~90 ms of start-up, more than half a cached rebuild. A file once validated is remembered
 * under `<store>/projects/<key>.json`, the key being a hash of kiln's version, the directory and
 * the exact text of the project file(s); any edit changes the key and the file is validated again
 * (project-schema.ts, loaded only then).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { openStore } from '../store/kiln-store.js';
import { type OciLayout, writeFileAtomic } from '../store/layout.js';
import type { LoadedProject, LoadProjectOptions } from './project-schema.js';

export type { LoadedProject, LoadProjectOptions, Project } from './project-schema.js';

/** Bump when project-schema.ts changes what a valid file normalises to. */
const FORMAT = 'kiln-project-v1';
const NAMES = ['kiln.yaml', 'kiln.yml'];

async function readOrNull(file: string): Promise<string | null> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch {
    return null; // missing or unreadable: the validator says which, when it runs
  }
}

async function memoKey(dir: string, options: LoadProjectOptions): Promise<string> {
  const files =
    options.file !== undefined
      ? [path.resolve(options.file)]
      : NAMES.map((n) => path.join(path.resolve(dir), n));
  const texts = await Promise.all(files.map(readOrNull));
  return createHash('sha256')
    .update(JSON.stringify([FORMAT, path.resolve(dir), options.file ?? null, files, texts]))
    .digest('hex');
}

/** As project-schema.ts's loadProject, from the memo when the same file was validated before. */
export async function loadProject(
  dir: string,
  { store, ...options }: LoadProjectOptions & { store?: OciLayout } = {},
): Promise<LoadedProject> {
  const key = await memoKey(dir, options);
  // Opened (created when new) first: the memo lives inside kiln's store, which must be a layout.
  const memo = path.join((store ?? (await openStore())).dir, 'projects', `${key}.json`);
  try {
    const remembered = JSON.parse(await fs.readFile(memo, 'utf8')) as LoadedProject;
    // The source directory was checked when the file was validated; it must still be there.
    if ((await fs.stat(remembered.sourceDir)).isDirectory()) return remembered;
  } catch {}
  const { loadProject: validate } = await import('./project-schema.js');
  const loaded = await validate(dir, options);
  try {
    await fs.mkdir(path.dirname(memo), { recursive: true });
    await writeFileAtomic(memo, JSON.stringify(loaded));
  } catch {} // a read-only store only costs the next build the validation again
  return loaded;
}
