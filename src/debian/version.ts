/**
 * Debian version numbers (Debian policy §5.6.12): `[epoch:]upstream_version[-debian_revision]`,
 * compared as dpkg compares them: the epoch as a number, then upstream and revision each by
 * `verrevcmp`: runs of non-digits compared character by character with `~` sorting before
 * everything (even the end of the string) and letters before other characters, then runs of digits
 * compared as numbers. Pure, no state.
 */
import { KilnError } from '../errors.js';

/** A version split into its parts; `revision` is '' when the version has none. */
export interface DebianVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

/** A version relation of a dependency: `<<`, `<=`, `=`, `>=`, `>>` (`<` and `>` are read as `<=`, `>=`, as dpkg does). */
export type VersionOperator = '<<' | '<=' | '=' | '>=' | '>>';

/** Splits a version into epoch, upstream version and revision; E_USAGE names a malformed one. */
export function parseVersion(text: string): DebianVersion {
  const v = text.trim();
  const colon = v.indexOf(':');
  let epoch = 0;
  let rest = v;
  if (colon >= 0) {
    const e = v.slice(0, colon);
    if (!/^\d+$/.test(e)) throw badVersion(text, 'the epoch is not a number');
    epoch = Number(e);
    rest = v.slice(colon + 1);
  }
  const dash = rest.lastIndexOf('-');
  const upstream = dash >= 0 ? rest.slice(0, dash) : rest;
  const revision = dash >= 0 ? rest.slice(dash + 1) : '';
  if (upstream === '') throw badVersion(text, 'it has no upstream version');
  if (!/^[A-Za-z0-9.+~:-]+$/.test(upstream))
    throw badVersion(text, 'the upstream version has characters policy does not allow');
  if (dash >= 0 && !/^[A-Za-z0-9.+~]+$/.test(revision))
    throw badVersion(text, 'the revision has characters policy does not allow');
  return { epoch, upstream, revision };
}

function badVersion(text: string, why: string): KilnError {
  return new KilnError('E_USAGE', `'${text}' is not a Debian version: ${why}`, {
    hint: 'a Debian version is [epoch:]upstream[-revision], e.g. 1:2.36-9+deb12u4',
  });
}

/** Compares two version strings as dpkg does: negative, 0 or positive. */
export function compareVersions(a: string, b: string): number {
  const va = parseVersion(a);
  const vb = parseVersion(b);
  if (va.epoch !== vb.epoch) return va.epoch < vb.epoch ? -1 : 1;
  return sign(verrevcmp(va.upstream, vb.upstream)) || sign(verrevcmp(va.revision, vb.revision));
}

function sign(n: number): number {
  return n < 0 ? -1 : n > 0 ? 1 : 0;
}

/** dpkg's order of a character in the non-digit runs: `~` first, then the end, then letters, then the rest. */
function order(s: string, i: number): number {
  if (i >= s.length) return 0;
  const c = s.charCodeAt(i);
  if (c >= 48 && c <= 57) return 0; // a digit ends the run
  if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) return c;
  if (c === 126) return -1; // ~
  return c + 256;
}

function isDigit(s: string, i: number): boolean {
  if (i >= s.length) return false;
  const c = s.charCodeAt(i);
  return c >= 48 && c <= 57;
}

/** dpkg's verrevcmp (lib/dpkg/version.c), on strings. */
function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(a, i)) || (j < b.length && !isDigit(b, j))) {
      const ac = order(a, i);
      const bc = order(b, j);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a[i] === '0') i++;
    while (b[j] === '0') j++;
    while (isDigit(a, i) && isDigit(b, j)) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a, i)) return 1;
    if (isDigit(b, j)) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

/** Whether `version` satisfies `op wanted` (e.g. `2.36-9` satisfies `>= 2.34`). */
export function satisfiesVersion(version: string, op: VersionOperator, wanted: string): boolean {
  const c = compareVersions(version, wanted);
  switch (op) {
    case '<<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '=':
      return c === 0;
    case '>=':
      return c >= 0;
    case '>>':
      return c > 0;
  }
}
