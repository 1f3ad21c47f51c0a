/**
 * Reading a .deb as a stream (deb(5)): an `ar` archive of `debian-binary` ("2.0"), `control.tar[.gz|.xz|.zst]`
 * (the control file, md5sums, conffiles, maintainer scripts) and `data.tar[.gz|.xz|.zst]` (the files).
 * Members are read in order as they arrive; nothing but the small control members is held in memory.
 */
import { KilnError } from '../errors.js';
import { cleanTarPath, type TarEntryInfo, tarEntries } from '../layer/tar-reader.js';
import { parseStanzas, type Stanza } from './control.js';
import { compressionOf, decompress } from './decompress.js';

const AR_MAGIC = '!<arch>\n';
const AR_HEADER = 60;
/** The control members are small (a libc's symbols file is ~100 KiB); more is not a real package. */
const MAX_CONTROL_MEMBER = 16 * 1024 * 1024;

/** The hint of a .deb kiln can't read: its bytes were checked against the signed index or the lock. */
export const DEB_HINT =
  "the file matches the SHA-256 the archive signed, so the package is one kiln can't read (deb(5) format 2.0: debian-binary, control.tar, data.tar), or kiln's copy broke since: try an empty KILN_HOME";

/** Pulls exact byte counts out of a stream of chunks. */
class ByteReader {
  private buffered: Uint8Array[] = [];
  private length = 0;
  private done = false;
  private readonly it: AsyncIterator<Uint8Array>;

  constructor(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.it = (async function* () {
      yield* source;
    })();
  }

  private async fill(n: number): Promise<boolean> {
    while (this.length < n && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else if (r.value.byteLength > 0) {
        this.buffered.push(r.value);
        this.length += r.value.byteLength;
      }
    }
    return this.length >= n;
  }

  /** Exactly `n` bytes; fewer only at the end of the stream. */
  async read(n: number): Promise<Buffer> {
    await this.fill(n);
    const all = Buffer.concat(this.buffered);
    const out = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(out.length);
    this.buffered = rest.length ? [rest] : [];
    this.length = rest.length;
    return out;
  }

  /** The next `n` bytes as chunks as they arrive; throws when the stream ends first. */
  async *take(n: number, what: string): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (this.length === 0 && !(await this.fill(1))) throw truncated(what);
      const head = this.buffered.shift()!;
      this.length -= head.byteLength;
      if (head.byteLength > left) {
        const rest = head.subarray(left);
        this.buffered.unshift(rest);
        this.length += rest.byteLength;
        yield head.subarray(0, left);
        left = 0;
      } else {
        left -= head.byteLength;
        yield head;
      }
    }
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

function truncated(what: string): KilnError {
  return new KilnError('E_BAD_ARCHIVE', `${what} ends in the middle of a member (truncated?)`, {
    hint: DEB_HINT,
  });
}

/** One member of an ar archive: its name and size, its bytes as they arrive. */
export interface ArMember {
  name: string;
  size: number;
  content: AsyncIterable<Uint8Array>;
}

/**
 * The members of an ar archive, in order. Each member's content must be read (or left) before the
 * next is asked for; what is left unread is skipped.
 */
export async function* arMembers(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  what: string,
): AsyncGenerator<ArMember> {
  const r = new ByteReader(source);
  try {
    const magic = await r.read(AR_MAGIC.length);
    if (magic.toString('latin1') !== AR_MAGIC)
      throw new KilnError('E_BAD_ARCHIVE', `${what} is not a Debian package (no ar header)`, {
        hint: DEB_HINT,
      });
    for (;;) {
      const header = await r.read(AR_HEADER);
      if (header.length === 0) return;
      if (header.length < AR_HEADER || header.subarray(58, 60).toString('latin1') !== '`\n')
        throw new KilnError('E_BAD_ARCHIVE', `${what} has a malformed ar member header`, { hint: DEB_HINT });
      const name = header.subarray(0, 16).toString('latin1').trim().replace(/\/$/, '');
      const sizeText = header.subarray(48, 58).toString('latin1').trim();
      if (!/^\d+$/.test(sizeText))
        throw new KilnError('E_BAD_ARCHIVE', `${what}: ar member ${name} has no size`, { hint: DEB_HINT });
      const size = Number(sizeText);
      let left = size;
      const content: AsyncIterable<Uint8Array> = {
        async *[Symbol.asyncIterator]() {
          for await (const chunk of r.take(left, what)) {
            left -= chunk.byteLength;
            yield chunk;
          }
        },
      };
      yield { name, size, content };
      for await (const chunk of r.take(left, what)) left -= chunk.byteLength; // what the caller left unread
      if (size % 2 === 1) await r.read(1); // members are padded to an even size
    }
  } finally {
    await r.close();
  }
}

/** One entry of a tar stream as the .deb's data.tar holds it. */
/** One entry of a .deb's data.tar (kiln's tar entry, as `layer/tar-reader.ts` lists it). */
export type DebEntry = TarEntryInfo;

/** `./usr/bin/` → `usr/bin`; `.` (the root) → ''. */
export function debPath(name: string): string {
  const p = cleanTarPath(name);
  return p === '.' ? '' : p;
}

/**
 * The entries of a .deb's tar member, pulled one at a time (see `tarEntries`): paths as `debPath`
 * gives them, hard links' targets too; a stream that is not tar is E_BAD_ARCHIVE with the .deb hint.
 */
export async function* debTarEntries(
  source: AsyncIterable<Uint8Array>,
  what: string,
): AsyncGenerator<{ entry: DebEntry; content: AsyncIterable<Buffer> }> {
  try {
    for await (const { entry, content } of tarEntries(source, what)) {
      entry.path = debPath(entry.path);
      if (entry.linkname && entry.type === 'hardlink') entry.linkname = debPath(entry.linkname);
      yield { entry, content };
    }
  } catch (err) {
    if (err instanceof KilnError && err.code === 'E_BAD_TAR')
      throw new KilnError('E_BAD_ARCHIVE', err.message, { cause: err.cause, hint: DEB_HINT });
    throw err;
  }
}

/** What a .deb's control.tar holds: the control stanza and the other members by name (md5sums, conffiles, postinst...). */
export interface DebControl {
  control: Stanza;
  /** Every member but `control`, by name. */
  files: Map<string, Buffer>;
}

/** Reads a control.tar member (compressed as its name says) whole: it is small. */
export async function readControl(member: ArMember, what: string): Promise<DebControl> {
  const compression = compressionOf(member.name);
  if (compression === undefined)
    throw new KilnError(
      'E_UNSUPPORTED',
      `${what}: ${member.name} is compressed in a way kiln does not read`,
      {
        hint: 'kiln reads control and data members that are plain, gzip, xz or zstd',
      },
    );
  const files = new Map<string, Buffer>();
  let control: Buffer | undefined;
  const where = `${what} ${member.name}`;
  for await (const { entry, content } of debTarEntries(
    decompress(member.content, compression, where),
    where,
  )) {
    if (entry.type !== 'file' || entry.path === '' || entry.path.includes('/')) continue;
    if (entry.size > MAX_CONTROL_MEMBER)
      throw new KilnError(
        'E_TOO_LARGE',
        `${where}: ${entry.path} is ${entry.size} bytes, not a control file`,
        { hint: DEB_HINT },
      );
    const parts: Buffer[] = [];
    for await (const c of content) parts.push(c);
    const bytes = Buffer.concat(parts);
    if (entry.path === 'control') control = bytes;
    else files.set(entry.path, bytes);
  }
  if (!control) throw new KilnError('E_BAD_ARCHIVE', `${where} has no control file`, { hint: DEB_HINT });
  const stanzas = await parseStanzas(control.toString('utf8'), `${where}/control`);
  if (stanzas.length !== 1)
    throw new KilnError('E_BAD_ARCHIVE', `${where}/control holds ${stanzas.length} stanzas, not one`, {
      hint: DEB_HINT,
    });
  return { control: stanzas[0]!, files };
}
