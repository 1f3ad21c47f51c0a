/**
 * update-alternatives without running it: the `update-alternatives --install LINK NAME PATH PRIORITY
 * [--slave LINK NAME PATH]...` calls of a postinst (as dh_installalternatives writes them: literal
 * paths), read, and their effect made as files: for each name the highest priority whose path the
 * image has (the first package on a tie, as update-alternatives keeps the current choice), the links
 * LINK → /etc/alternatives/NAME → PATH for the master and each slave whose path exists, and the
 * administrative file in /var/lib/dpkg/alternatives/ that update-alternatives would write (so it
 * manages them later). A call with shell variables or quoting is not guessed at.
 */

/** One `--slave LINK NAME PATH`. */
export interface AlternativeLink {
  link: string;
  name: string;
  path: string;
}

/** One `--install` call of a postinst. */
export interface Alternative extends AlternativeLink {
  priority: number;
  slaves: AlternativeLink[];
}

const ABSOLUTE = /^\/[^\s$`"'\\;|&<>()]*$/;
const NAME = /^[^\s/$`"'\\;|&<>()]+$/;

/** The literal `update-alternatives --install` calls of a maintainer script. */
export function parseAlternatives(script: string): Alternative[] {
  const out: Alternative[] = [];
  const joined = script.replace(/\\\r?\n/g, ' ');
  for (const line of joined.split('\n')) {
    const at = line.indexOf('update-alternatives --install ');
    if (at === -1) continue;
    const words = line
      .slice(at + 'update-alternatives --install '.length)
      .replace(/\s*(#.*)?$/, '')
      .split(/\s+/)
      .filter((w) => w !== '');
    const [link, name, path, priority, ...rest] = words;
    if (!link || !name || !path || !priority) continue;
    if (!ABSOLUTE.test(link) || !NAME.test(name) || !ABSOLUTE.test(path) || !/^-?\d+$/.test(priority))
      continue;
    const slaves: AlternativeLink[] = [];
    let literal = true;
    for (let i = 0; i < rest.length; ) {
      if (rest[i] === '--slave' && i + 3 < rest.length) {
        const [sl, sn, sp] = [rest[i + 1]!, rest[i + 2]!, rest[i + 3]!];
        if (!ABSOLUTE.test(sl) || !NAME.test(sn) || !ABSOLUTE.test(sp)) {
          literal = false;
          break;
        }
        slaves.push({ link: sl, name: sn, path: sp });
        i += 4;
      } else {
        literal = false; // something else on the line (another command, a variable): not guessed at
        break;
      }
    }
    if (literal) out.push({ link, name, path, priority: Number(priority), slaves });
  }
  return out;
}

/** What update-alternatives keeps for a group in /var/lib/dpkg/alternatives/NAME (auto mode). */
export function alternativesAdminFile(group: Alternative[]): string {
  const master = group[0]!;
  const slaveNames: AlternativeLink[] = [];
  for (const alt of group)
    for (const s of alt.slaves) if (!slaveNames.some((n) => n.name === s.name)) slaveNames.push(s);
  const lines = ['auto', master.link];
  for (const s of slaveNames) lines.push(s.name, s.link);
  lines.push('');
  for (const alt of group) {
    lines.push(alt.path, String(alt.priority));
    for (const s of slaveNames) lines.push(alt.slaves.find((x) => x.name === s.name)?.path ?? '');
  }
  lines.push('');
  return `${lines.join('\n')}\n`;
}
