/**
 * kiln.lock: the toolchain images a project was built with, pinned by digest on first use so a
 * build next month runs the same compiler. JSON, keys sorted, one line per image: diffs stay small.
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
}

export class LockFile {
  private changed = false;

  private constructor(
    readonly file: string,
    private readonly data: LockData,
  ) {}

  /** The lock file in `dir`; an empty one when there is none yet (written by save() when pinned). */
  static async load(dir: string): Promise<LockFile> {
    const file = path.join(dir, LOCK_FILE);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        return new LockFile(file, { version: 1, toolchains: {} });
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
    return new LockFile(file, { version: 1, toolchains: { ...toolchains } });
  }

  get(name: string): string | undefined {
    return Object.hasOwn(this.data.toolchains, name) ? this.data.toolchains[name] : undefined;
  }

  set(name: string, digest: string): void {
    if (this.data.toolchains[name] === digest) return;
    this.data.toolchains[name] = digest;
    this.changed = true;
  }

  /** Writes the file if a pin was added or changed. */
  async save(): Promise<void> {
    if (!this.changed) return;
    const sorted = Object.fromEntries(
      Object.entries(this.data.toolchains).sort(([a], [b]) => (a < b ? -1 : 1)),
    );
    await writeFileAtomic(this.file, `${JSON.stringify({ version: 1, toolchains: sorted }, null, 2)}\n`);
    this.changed = false;
  }
}
