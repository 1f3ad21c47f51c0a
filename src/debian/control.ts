/**
 * Debian control data (deb822, Debian policy ch. 5): stanzas of `Field: value` lines, continuation
 * lines starting with a space or tab, stanzas separated by blank lines; and the relationship fields
 * (Depends, Pre-Depends, Provides: policy §7.1) parsed into groups of alternatives. Pure, no state.
 */
import { KilnError } from '../errors.js';
import type { VersionOperator } from './version.js';

const DEB822_HINT =
  "deb822 is 'Field: value' lines, continuation lines starting with a space, stanzas split by blank lines";

/** One stanza: its fields in the order they appear, names as written (lookups ignore case). */
export type Stanza = [name: string, value: string][];

/** The value of `name` in `stanza` (case-insensitive), or undefined. */
export function field(stanza: Stanza, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [k, v] of stanza) if (k.toLowerCase() === lower) return v;
  return undefined;
}

/**
 * Reads the stanzas of a deb822 text arriving in chunks (a Packages index of 50 MB streams through
 * here); with `keep`, only those fields (lowercase names) are held. Comment lines (`#`) are skipped,
 * as in control files; a PGP armour is not expected (verify and strip it first).
 */
export async function* readStanzas(
  chunks: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>,
  what: string,
  keep?: ReadonlySet<string>,
): AsyncGenerator<Stanza> {
  const decoder = new TextDecoder('utf-8');
  let carry = '';
  let stanza: Stanza = [];
  let lineNo = 0;
  let last: [string, string] | undefined; // the field continuation lines extend, when it is kept
  let inField = false;
  const line = (text: string): Stanza | undefined => {
    lineNo++;
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (text.trim() === '') {
      last = undefined;
      inField = false;
      if (stanza.length === 0) return undefined;
      const done = stanza;
      stanza = [];
      return done;
    }
    const c = text.charCodeAt(0);
    if (c === 32 || c === 9) {
      if (!inField)
        throw new KilnError(
          'E_BAD_ARCHIVE',
          `${what}:${lineNo}: a continuation line with no field before it`,
          { hint: DEB822_HINT },
        );
      if (last) last[1] += `\n${text.slice(1)}`;
      return undefined;
    }
    if (c === 35) return undefined; // #
    const colon = text.indexOf(':');
    if (colon <= 0)
      throw new KilnError(
        'E_BAD_ARCHIVE',
        `${what}:${lineNo}: '${text.slice(0, 60)}' is not a 'Field: value' line`,
        { hint: DEB822_HINT },
      );
    inField = true;
    const name = text.slice(0, colon);
    if (keep && !keep.has(name.toLowerCase())) {
      last = undefined;
      return undefined;
    }
    last = [name, text.slice(colon + 1).trim()];
    stanza.push(last);
    return undefined;
  };
  for await (const chunk of chunks) {
    const text = carry + (typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }));
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      const done = line(text.slice(start, nl));
      start = nl + 1;
      if (done) yield done;
    }
    carry = text.slice(start);
  }
  carry += decoder.decode();
  if (carry !== '') {
    const done = line(carry);
    if (done) yield done;
  }
  const done = line('');
  if (done) yield done;
}

/** The stanzas of a deb822 text held in memory (a control file, a Release file). */
export async function parseStanzas(text: string, what: string): Promise<Stanza[]> {
  const out: Stanza[] = [];
  for await (const s of readStanzas([text], what)) out.push(s);
  return out;
}

/** The text of a stanza as a control file holds it (multi-line values indented by one space). */
export function formatStanza(stanza: Stanza): string {
  return stanza
    .map(([k, v]) => {
      const [first, ...rest] = v.split('\n');
      const head = first === '' ? `${k}:` : `${k}: ${first}`;
      return [head, ...rest.map((l) => ` ${l}`)].join('\n');
    })
    .join('\n')
    .concat('\n');
}

/** One package named in a relationship field: `name[:arch] [(op version)]`. */
export interface Relation {
  name: string;
  /** `any`, `native` or an architecture, as written after a colon. */
  archQualifier?: string;
  op?: VersionOperator;
  version?: string;
}

/** Alternatives (`a | b`): any one satisfies the group. */
export type RelationGroup = Relation[];

const OPERATORS: Record<string, VersionOperator> = {
  '<<': '<<',
  '<=': '<=',
  '=': '=',
  '>=': '>=',
  '>>': '>>',
  '<': '<=', // obsolete forms, read as dpkg reads them
  '>': '>=',
};

/**
 * A relationship field (Depends, Pre-Depends, Provides, ...) as groups of alternatives. Architecture
 * restrictions (`[amd64]`) and build profiles (`<!nocheck>`), which only source packages use, are
 * dropped. E_BAD_ARCHIVE names a malformed entry and `what` it came from.
 */
export function parseRelations(text: string | undefined, what: string): RelationGroup[] {
  if (text === undefined || text.trim() === '') return [];
  return text
    .split(',')
    .map((g) => g.trim())
    .filter((g) => g !== '')
    .map((group) => group.split('|').map((alt) => parseRelation(alt, what)));
}

const RELATION =
  /^([a-z0-9][a-z0-9+.-]*)(?::([a-z0-9-]+))?\s*(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([0-9][^)\s]*)\s*\))?\s*(?:\[[^\]]*\]\s*)?(?:<[^>]*>\s*)*$/i;

function parseRelation(text: string, what: string): Relation {
  const t = text.replace(/\s+/g, ' ').trim();
  const m = RELATION.exec(t);
  if (!m)
    throw new KilnError('E_BAD_ARCHIVE', `${what}: '${t.slice(0, 80)}' is not a package relation`, {
      hint: 'a relation is name[:arch] [(op version)], e.g. libc6 (>= 2.34)',
    });
  const r: Relation = { name: m[1]!.toLowerCase() };
  if (m[2]) r.archQualifier = m[2].toLowerCase();
  if (m[3]) {
    r.op = OPERATORS[m[3]]!;
    r.version = m[4]!;
  }
  return r;
}

/** A relation as Debian writes it: `libc6 (>= 2.34)`. */
export function formatRelation(r: Relation): string {
  const name = r.archQualifier ? `${r.name}:${r.archQualifier}` : r.name;
  return r.op ? `${name} (${r.op} ${r.version})` : name;
}
