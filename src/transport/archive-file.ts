import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ioError, KilnError } from '../errors.js';
import { type IndexedEntry, indexTarFile } from '../layer/tar-index.js';
import { isGzip } from '../layer/tar-reader.js';

/** An uncompressed tar file whose members are read by offset, through a header-only index. */
export class ArchiveFile {
  private constructor(
    readonly file: string,
    private readonly entries: Map<string, IndexedEntry>,
  ) {}

  static async open(file: string): Promise<ArchiveFile> {
    const st = await fs.stat(file).catch((err) => {
      throw ioError(err, file);
    });
    if (!st.isFile()) throw new KilnError('E_BAD_ARCHIVE', `${file} is not a file`);
    const archive = new ArchiveFile(file, new Map());
    const head = await archive.readAt(0, Math.min(2, st.size));
    if (isGzip(head))
      throw new KilnError('E_BAD_ARCHIVE', `${file} is gzip-compressed; image archives are plain tar`, {
        hint: `decompress it first: gunzip -k ${path.basename(file)}`,
      });
    return new ArchiveFile(file, await indexTarFile(file));
  }

  has(member: string): boolean {
    return this.entries.has(member);
  }

  member(member: string): IndexedEntry {
    const e = this.entries.get(member.replace(/^\.\//, ''));
    if (!e) throw new KilnError('E_BAD_ARCHIVE', `${this.file} is missing ${member}`);
    return e;
  }

  /** A member's first `length` bytes, or all of it within `limit`. */
  async read(e: IndexedEntry, options: { limit?: number; length?: number }): Promise<Buffer> {
    if (options.limit !== undefined && e.size > options.limit)
      throw new KilnError(
        'E_TOO_LARGE',
        `${e.path} in ${this.file} is ${e.size} bytes, over the ${options.limit} byte limit`,
      );
    return this.readAt(e.offset, Math.min(e.size, options.length ?? e.size));
  }

  stream(e: IndexedEntry): AsyncIterable<Uint8Array> {
    if (e.size === 0) return (async function* () {})();
    return createReadStream(this.file, { start: e.offset, end: e.offset + e.size - 1 });
  }

  private async readAt(offset: number, length: number): Promise<Buffer> {
    const h = await fs.open(this.file, 'r').catch((err) => {
      throw ioError(err, this.file);
    });
    try {
      const b = Buffer.alloc(length);
      await h.read(b, 0, length, offset);
      return b;
    } finally {
      await h.close();
    }
  }
}
