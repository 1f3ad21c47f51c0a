/**
 * Deterministic tar headers: POSIX ustar, with a PAX extended header only when a value does not
 * fit ustar (long paths or link targets, sizes over 8 GiB, ids over 2^21). No user/group names,
 * no atime/ctime, so the bytes depend on the entry alone.
 */
import { KilnError } from '../errors.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarHeader {
  path: string; // relative, posix, no leading slash; directories without trailing slash
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number; // content bytes (0 for anything but files)
  mtime: number; // seconds
  linkname?: string;
  /** Device numbers of a char or block device (written as GNU tar does; 0 for anything else). */
  devmajor?: number;
  devminor?: number;
}

export const BLOCK = 512;
const TYPEFLAG: Record<EntryType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};
const MAX_OCTAL_11 = 0o77777777777; // 8 GiB - 1
const MAX_OCTAL_7 = 0o7777777;

/** The header block(s) for one entry: a PAX header first when needed, then the ustar header. */
export function encodeHeader(h: TarHeader): Buffer {
  const name = h.type === 'dir' ? `${h.path}/` : h.path;
  const pax: [string, string][] = [];
  const split = splitUstarName(name);
  if (!split) pax.push(['path', name]);
  if (h.linkname !== undefined && Buffer.byteLength(h.linkname) > 100) pax.push(['linkpath', h.linkname]);
  if (h.size > MAX_OCTAL_11) pax.push(['size', String(h.size)]);
  if (h.uid > MAX_OCTAL_7) pax.push(['uid', String(h.uid)]);
  if (h.gid > MAX_OCTAL_7) pax.push(['gid', String(h.gid)]);
  const device = h.type === 'char' || h.type === 'block';
  // Linux device numbers (12-bit major, 20-bit minor) fit the 7 octal digits; anything larger is no Linux device.
  for (const [field, n] of [
    ['major', h.devmajor],
    ['minor', h.devminor],
  ] as const)
    if (device && n !== undefined && (!Number.isInteger(n) || n < 0 || n > MAX_OCTAL_7))
      throw new KilnError(
        'E_UNSUPPORTED',
        `${h.path}: device ${field} number ${n} does not fit a tar header`,
        {
          hint: 'a tar header holds device numbers up to 2097151; leave the device out (kiln append --devices skip)',
        },
      );

  const ustar = ustarBlock({
    name: split ? split.name : truncateUtf8(name, 100),
    prefix: split ? split.prefix : '',
    mode: h.mode,
    uid: h.uid > MAX_OCTAL_7 ? 0 : h.uid,
    gid: h.gid > MAX_OCTAL_7 ? 0 : h.gid,
    size: h.type === 'file' && h.size <= MAX_OCTAL_11 ? h.size : 0,
    mtime: h.mtime,
    typeflag: TYPEFLAG[h.type],
    linkname: h.linkname === undefined ? '' : truncateUtf8(h.linkname, 100),
    devmajor: device ? (h.devmajor ?? 0) : 0,
    devminor: device ? (h.devminor ?? 0) : 0,
  });
  if (pax.length === 0) return ustar;

  const body = Buffer.from(pax.map(([k, v]) => paxRecord(k, v)).join(''), 'utf8');
  const paxName = truncateUtf8(`PaxHeaders/${baseName(name)}`, 100);
  const paxHeader = ustarBlock({
    name: paxName,
    prefix: '',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime: h.mtime,
    typeflag: 'x',
    linkname: '',
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([paxHeader, body, Buffer.alloc(padding(body.length)), ustar]);
}

export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(BLOCK * 2);

interface UstarFields {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  devmajor: number;
  devminor: number;
}

function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(f.name, 0, 100, 'utf8');
  octal(b, 100, 8, f.mode & 0o7777);
  octal(b, 108, 8, f.uid);
  octal(b, 116, 8, f.gid);
  octal(b, 124, 12, f.size);
  octal(b, 136, 12, Math.max(0, Math.min(f.mtime, MAX_OCTAL_11)));
  b.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  b.write(f.typeflag, 156, 1, 'ascii');
  b.write(f.linkname, 157, 100, 'utf8');
  b.write('ustar\u000000', 257, 8, 'ascii');
  octal(b, 329, 8, f.devmajor);
  octal(b, 337, 8, f.devminor);
  b.write(f.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i]!;
  b.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii');
  return b;
}

function octal(b: Buffer, offset: number, width: number, value: number): void {
  b.write(`${value.toString(8).padStart(width - 1, '0')}\u0000`, offset, width, 'ascii');
}

/** ustar stores up to 255 bytes of path as prefix (155) + '/' + name (100), split at a slash. */
function splitUstarName(name: string): { prefix: string; name: string } | undefined {
  const len = Buffer.byteLength(name);
  if (len <= 100) return { prefix: '', name };
  if (len > 256) return undefined;
  // directories end in '/', which must stay in the name part
  const searchEnd = name.endsWith('/') ? name.length - 1 : name.length;
  for (let i = name.lastIndexOf('/', searchEnd - 1); i > 0; i = name.lastIndexOf('/', i - 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest.length > 0) {
      return { prefix, name: rest };
    }
    if (Buffer.byteLength(prefix) <= 155) break; // moving left only grows the name part
  }
  return undefined;
}

/** A PAX record "LEN key=value\n", where LEN counts its own digits. */
function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  const restLen = Buffer.byteLength(rest);
  let len = restLen + String(restLen).length;
  if (String(len).length !== String(len - restLen).length) len = restLen + String(len).length;
  return `${len}${rest}`;
}

function truncateUtf8(s: string, max: number): string {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= max) return s;
  let end = max;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--; // do not cut a multi-byte character
  return b.subarray(0, end).toString('utf8');
}

function baseName(p: string): string {
  const trimmed = p.endsWith('/') ? p.slice(0, -1) : p;
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}
