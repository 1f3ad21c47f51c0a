import * as fs from 'node:fs/promises';
import { KilnError } from '../errors.js';

const STALE_MS = 30_000;
const WAIT_MS = 60_000;

/**
 * Runs `fn` holding `<file>.lock`, an O_EXCL lock file that works across processes.
 * A lock older than 30 s is taken to be left by a killed process and broken.
 */
export async function withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`;
  const deadline = Date.now() + WAIT_MS;
  let delay = 2;
  for (;;) {
    try {
      const handle = await fs.open(lock, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await fs.stat(lock).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > STALE_MS) {
        await fs.rm(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new KilnError('E_LOCKED', `${file} is locked by another kiln process (${lock})`);
      await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
      delay = Math.min(delay * 2, 100);
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lock, { force: true });
  }
}
