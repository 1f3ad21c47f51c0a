/**
 * kiln.lock: the toolchain images a project was built with, pinned by digest on first use so a
 * build next month runs the same compiler. JSON, keys sorted, one line per image: diffs stay small.
 *
 * It also lists the outputs kiln wrote into the project's sources under a name of the user's
 * choosing (`-o app.wasm`, `-o bin/app` and its `bin/app.files/`), relative to the lock file's
 * directory, so later builds leave them out of the build key whatever `-o` they are given. Outputs
 * at the default names (`<name>.wasm`, `<name>-<os>-<arch>`) need no entry: a rule leaves those out.
 * The list lives here rather than in kiln's store because it describes the project: it travels
 * with it to other machines and CI (same files counted, same key) and survives a wiped store.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { KilnError } from '../errors.js';
import { writeFileAtomic } from '../store/layout.js';

export const LOCK_FILE = 'kiln.lock';
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

interface LockData {
  version: 1;
  toolchains: Record<string, string>;
  /** Posix paths relative to the lock file's directory, sorted, none leaving it. */
  outputs: string[];
}

/** A relative posix path that stays inside the directory (no `..`, not absolute, not empty). */
function isInside(rel: string): boolean {
  if (rel === '' || path.posix.isAbsolute(rel) || rel.includes('\\')) return false;
  const normal = path.posix.normalize(rel);
  return normal === rel && normal !== '.' && normal !== '..' && !normal.startsWith('../');
}

async function readLock(file: string): Promise<LockData | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KilnError('E_IO', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new KilnError('E_BAD_PROJECT', `${file} is not valid JSON`, {
      hint: 'delete it to pin the toolchain images again on the next build',
    });
  }
  const toolchains = (data as LockData | null)?.toolchains;
  if (
    typeof toolchains !== 'object' ||
    toolchains === null ||
    Object.values(toolchains).some((d) => typeof d !== 'string' || !DIGEST_RE.test(d))
  )
    throw new KilnError('E_BAD_PROJECT', `${file}: toolchains must map image names to sha256 digests`);
  const outputs = (data as { outputs?: unknown }).outputs ?? [];
  if (!Array.isArray(outputs) || outputs.some((o) => typeof o !== 'string' || !isInside(o)))
    throw new KilnError(
      'E_BAD_PROJECT',
      `${file}: outputs must list relative paths inside ${path.dirname(file)}`,
      { hint: 'remove the outputs entry: kiln writes it again on the next build with -o' },
    );
  return { version: 1, toolchains: { ...toolchains }, outputs: [...new Set(outputs as string[])].sort() };
}

/** kiln.lock: the toolchain images (by digest) and sources a project's builds are pinned to; read, changed and written back. */
export class LockFile {
  private changed = false;

  private constructor(
    readonly file: string,
    private readonly data: LockData,
  ) {}

  /** The lock file in `dir`; an empty one when there is none yet (written by save() when pinned). */
  static async load(dir: string): Promise<LockFile> {
    const file = path.join(dir, LOCK_FILE);
    return new LockFile(file, (await readLock(file)) ?? { version: 1, toolchains: {}, outputs: [] });
  }

  get(name: string): string | undefined {
    return Object.hasOwn(this.data.toolchains, name) ? this.data.toolchains[name] : undefined;
  }

  set(name: string, digest: string): void {
    if (this.data.toolchains[name] === digest) return;
    this.data.toolchains[name] = digest;
    this.changed = true;
  }

  /** The outputs kiln wrote at names of the user's choosing, relative to the lock file's directory. */
  outputs(): readonly string[] {
    return this.data.outputs;
  }

  /** Records an output kiln wrote (a path relative to the lock file's directory, inside it). */
  addOutput(rel: string): void {
    if (!isInside(rel) || this.data.outputs.includes(rel)) return;
    this.data.outputs = [...this.data.outputs, rel].sort();
    this.changed = true;
  }

  /**
   * Writes the file if a pin or an output was added or changed. Outputs another kiln recorded
   * since this one was loaded (a build of another target running at the same time) are kept.
   */
  async save(): Promise<void> {
    if (!this.changed) return;
    const onDisk = await readLock(this.file).catch(() => undefined);
    const outputs = [...new Set([...(onDisk?.outputs ?? []), ...this.data.outputs])].sort();
    const sorted = Object.fromEntries(
      Object.entries(this.data.toolchains).sort(([a], [b]) => (a < b ? -1 : 1)),
    );
    const doc = { version: 1, toolchains: sorted, ...(outputs.length ? { outputs } : {}) };
    await writeFileAtomic(this.file, `${JSON.stringify(doc, null, 2)}\n`);
    this.data.outputs = outputs;
    this.changed = false;
  }
}
