/** `kiln componentize IN -o OUT` and `kiln package --component`: componentize with files. */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ioError } from '../errors.js';
import { componentize } from './componentize.js';

/** The component `componentizeFile` wrote: where, its digest and size, and how it was made. */
export interface ComponentizedFile {
  output: string;
  /** sha256 of the component's bytes, as written. */
  digest: string;
  size: number;
  /** What the module was: a command (`_start`) or a reactor (`_initialize`); each has its adapter. */
  role: 'command' | 'reactor';
  /** The preview 1 adapter used: jco's version and the adapter's kind. */
  adapter: string;
}

/** Reads a preview 1 module, writes the component (atomically: a temp file renamed into place). */
export async function componentizeFile(input: string, output: string): Promise<ComponentizedFile> {
  const bytes = await fs.readFile(input).catch((err) => {
    throw ioError(err, input);
  });
  const made = await componentize(bytes, path.basename(input));
  const tmp = `${output}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await fs.writeFile(tmp, made.bytes);
    await fs.rename(tmp, output);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw ioError(err, output);
  }
  return {
    output,
    digest: `sha256:${createHash('sha256').update(made.bytes).digest('hex')}`,
    size: made.bytes.length,
    role: made.role,
    adapter: made.adapter,
  };
}

/**
 * For `kiln package --component`: the component written to a temp dir under the module's own file
 * name (so the image's /<name>.wasm is the same), and a function to remove it.
 */
export async function componentizeToTemp(
  input: string,
): Promise<{ file: string; cleanup: () => Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-component-'));
  const file = path.join(dir, path.basename(input));
  try {
    await componentizeFile(input, file);
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
  return { file, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
}
