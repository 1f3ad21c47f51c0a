/**
 * The system's apt sources, read for one thing: the mirror a suite comes from by default. Both forms
 * are read: one-line `deb URI SUITE COMPONENT...` in sources.list(.d/*.list) and deb822 stanzas in
 * sources.list.d/*.sources; the first `deb` entry for the suite with the component wins.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { field, parseStanzas } from './control.js';

/** Debian's redirector: the mirror when the system's sources name none for the suite. */
export const DEFAULT_MIRROR = 'http://deb.debian.org/debian';

/** The first mirror the apt sources under `root` (default `/etc/apt`) list for `suite` and `component`. */
export async function systemMirror(
  suite: string,
  component: string,
  root = '/etc/apt',
): Promise<string | undefined> {
  const files = ['sources.list'];
  const names = await fs.readdir(path.join(root, 'sources.list.d')).catch(() => [] as string[]);
  for (const n of names.sort())
    if (n.endsWith('.list') || n.endsWith('.sources')) files.push(`sources.list.d/${n}`);
  for (const rel of files) {
    const text = await fs.readFile(path.join(root, rel), 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    const found = rel.endsWith('.sources')
      ? await fromDeb822(text, rel, suite, component)
      : fromOneLine(text, suite, component);
    if (found) return found;
  }
  return undefined;
}

function fromOneLine(text: string, suite: string, component: string): string | undefined {
  for (const raw of text.split('\n')) {
    const line = raw
      .replace(/#.*$/, '')
      .replace(/\[[^\]]*\]/, ' ')
      .trim()
      .split(/\s+/);
    if (line[0] !== 'deb' || line.length < 4) continue;
    const [, uri, s, ...components] = line;
    if (s === suite && components.includes(component) && /^(https?|file):/.test(uri!))
      return uri!.replace(/\/$/, '');
  }
  return undefined;
}

async function fromDeb822(
  text: string,
  what: string,
  suite: string,
  component: string,
): Promise<string | undefined> {
  let stanzas: Awaited<ReturnType<typeof parseStanzas>>;
  try {
    stanzas = await parseStanzas(text, what);
  } catch {
    return undefined; // not ours to judge: apt reports its own files
  }
  for (const s of stanzas) {
    const words = (name: string) => (field(s, name) ?? '').split(/\s+/).filter((w) => w !== '');
    if ((field(s, 'Enabled') ?? 'yes').toLowerCase() === 'no') continue;
    if (
      !words('Types').includes('deb') ||
      !words('Suites').includes(suite) ||
      !words('Components').includes(component)
    )
      continue;
    const uri = words('URIs').find((u) => /^(https?|file):/.test(u));
    if (uri) return uri.replace(/\/$/, '');
  }
  return undefined;
}
