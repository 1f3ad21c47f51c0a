import * as fs from 'node:fs/promises';
import { ioError, KilnError } from '../errors.js';
import { cleanTarPath } from './tar-reader.js';

export interface IndexedEntry {
  path: string;
  type: string; // raw typeflag
  offset: number; // of the content
  size: number;
  linkname?: string;
}

const MAX_META = 1 << 20; // PAX and GNU long-name records larger than this are hostile

/**
 * Indexes an uncompressed tar file by reading headers only and seeking past content, so an
 * archive of any size can serve its members by offset without being unpacked.
 */
export async function indexTarFile(file: string): Promise<Map<string, IndexedEntry>> {
  const handle = await fs.open(file, 'r').catch((err) => {
    throw ioError(err, file);
  });
  const bad = (why: string) => new KilnError('E_BAD_ARCHIVE', `${file} is not a valid tar archive: ${why}`);
  try {
    const { size: total } = await handle.stat();
    const entries = new Map<string, IndexedEntry>();
    const header = Buffer.alloc(512);
    let offset = 0;
    let pax: Record<string, string> = {};
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      if (offset + 512 > total) {
        if (offset === total && entries.size > 0) break; // no end-of-archive blocks: tolerated
        throw bad('it ends in the middle of a header');
      }
      await handle.read(header, 0, 512, offset);
      if (header.every((b) => b === 0)) break;
      if (!checksumOk(header)) throw bad(`bad header checksum at offset ${offset}`);
      const typeflag = String.fromCharCode(header[156]!) || '0';
      const size = pax.size !== undefined ? Number(pax.size) : parseNumber(header.subarray(124, 136));
      if (!Number.isSafeInteger(size) || size < 0) throw bad(`bad size at offset ${offset}`);
      const contentOffset = offset + 512;
      if (contentOffset + size > total)
        throw bad(`entry at offset ${offset} runs past the end of the file (truncated?)`);
      const next = contentOffset + size + ((512 - (size % 512)) % 512);
      if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
        if (size > MAX_META) throw bad(`a ${size}-byte extended header at offset ${offset}`);
        const body = Buffer.alloc(size);
        await handle.read(body, 0, size, contentOffset);
        if (typeflag === 'x') pax = parsePax(body);
        else if (typeflag === 'L') longName = cString(body);
        else if (typeflag === 'K') longLink = cString(body);
        offset = next;
        continue;
      }
      const name = pax.path ?? longName ?? ustarName(header);
      const linkname = pax.linkpath ?? longLink ?? cString(header.subarray(157, 257));
      const path = cleanTarPath(name);
      const entry: IndexedEntry = { path, type: typeflag, offset: contentOffset, size };
      if (linkname) entry.linkname = linkname;
      entries.set(path, entry);
      pax = {};
      longName = undefined;
      longLink = undefined;
      offset = next;
    }
    return entries;
  } finally {
    await handle.close();
  }
}

function ustarName(h: Buffer): string {
  const name = cString(h.subarray(0, 100));
  const magic = h.subarray(257, 262).toString('latin1');
  const prefix = magic === 'ustar' ? cString(h.subarray(345, 500)) : '';
  return prefix ? `${prefix}/${name}` : name;
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end === -1 ? b.length : end).toString('utf8');
}

function parseNumber(field: Buffer): number {
  if (field[0]! & 0x80) {
    // GNU base-256 for values that do not fit octal
    let v = 0;
    for (let i = 1; i < field.length; i++) v = v * 256 + field[i]!;
    return v;
  }
  const s = cString(field).trim();
  return s === '' ? 0 : Number.parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum === parseNumber(h.subarray(148, 156));
}

function parsePax(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length) {
    const space = body.indexOf(0x20, i);
    if (space === -1) break;
    const len = Number.parseInt(body.subarray(i, space).toString('ascii'), 10);
    if (!Number.isSafeInteger(len) || len <= 0 || i + len > body.length) break;
    const record = body.subarray(space + 1, i + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    i += len;
  }
  return out;
}
