import { readlinkSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { hostname } from 'node:os';
import { KilnError } from '../errors.js';

const STALE_MS = 30_000;
const WAIT_MS = 60_000;

/**
 * Who holds a lock: the pid, and where that pid means something (host name and pid namespace), so a
 * lock taken in another container or on another host sharing the directory is never judged by a
 * local pid that happens to be free.
 */
const here = (() => {
  let ns = '';
  try {
    ns = readlinkSync('/proc/self/ns/pid');
  } catch {}
  return `${hostname()} ${ns}`;
})();

function ownerId(pid: number): string {
  return `${pid} ${here}`;
}

const self = ownerId(process.pid);

/** True when the lock's content names a process of this host and pid namespace that is gone. */
function ownerIsDead(content: string): boolean {
  const pid = Number.parseInt(content, 10);
  if (!Number.isSafeInteger(pid) || pid <= 0 || content !== ownerId(pid)) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

interface Seen {
  ino: number;
  birthtimeMs: number;
  content: string;
}

function same(a: Seen, b: Seen): boolean {
  return a.ino === b.ino && a.birthtimeMs === b.birthtimeMs && a.content === b.content;
}

async function look(file: string): Promise<(Seen & { mtimeMs: number }) | undefined> {
  const st = await fs.stat(file).catch(() => undefined);
  if (!st) return undefined;
  const content = await fs.readFile(file, 'utf8').catch(() => '');
  return { ino: st.ino, birthtimeMs: st.birthtimeMs, mtimeMs: st.mtimeMs, content };
}

/**
 * Breaks the stale lock `lock`, as it was `seen`: renamed aside first, and put back if it turns out
 * to be another one (a waiter broke the stale lock and took the lock in the meantime).
 */
async function breakLock(lock: string, seen: Seen): Promise<boolean> {
  const aside = `${lock}.stale-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await fs.rename(lock, aside);
  } catch (err) {
    // Gone already (someone else broke or released it): try again. Else (EACCES) wait it out.
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
  const now = await look(aside);
  if (now && !same(now, seen)) await fs.link(aside, lock).catch(() => {}); // a live lock: put it back
  await fs.rm(aside, { force: true });
  return true;
}

/**
 * Runs `fn` holding `<file>.lock`, an O_EXCL lock file that works across processes. The lock holds
 * its owner's pid, host and pid namespace: a lock whose owner is known to be dead (kill -9) is broken
 * at once, any other one once it is older than 30 s.
 */
export async function withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`;
  const deadline = Date.now() + WAIT_MS;
  let delay = 2;
  for (;;) {
    try {
      const handle = await fs.open(lock, 'wx');
      try {
        await handle.writeFile(self);
        await handle.close();
      } catch (err) {
        await handle.close().catch(() => {});
        await fs.rm(lock, { force: true });
        throw err;
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const seen = await look(lock);
      const stale = seen && (ownerIsDead(seen.content) || Date.now() - seen.mtimeMs > STALE_MS);
      if (stale && (await breakLock(lock, seen))) continue;
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
