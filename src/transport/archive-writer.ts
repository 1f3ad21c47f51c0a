import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { finished } from 'node:stream/promises';
import { ioError } from '../errors.js';
import { END_OF_ARCHIVE, encodeHeader, padding } from '../layer/tar-header.js';

/**
 * Appends members to a tar file written under a temp name; `finish` renames it into place and
 * `discard` deletes it, so the target is either the whole archive or untouched.
 */
export class ArchiveWriter {
  private readonly out: WriteStream;
  private readonly tmp: string;
  private readonly dirs = new Set<string>();
  private failed: Error | undefined;

  constructor(readonly file: string) {
    this.tmp = path.join(
      path.dirname(file),
      `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`,
    );
    this.out = createWriteStream(this.tmp, { flags: 'wx' });
    this.out.on('error', (err) => {
      this.failed = err;
    });
  }

  private async write(chunk: Uint8Array): Promise<void> {
    if (this.failed) throw ioError(this.failed, this.file);
    if (!this.out.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        // Each wait removes its listeners, so a long archive does not pile them up.
        const onDrain = () => {
          this.out.off('error', onError);
          resolve();
        };
        const onError = (err: Error) => {
          this.out.off('drain', onDrain);
          reject(err);
        };
        this.out.once('drain', onDrain);
        this.out.once('error', onError);
      }).catch((err) => {
        throw ioError(err, this.file);
      });
    }
  }

  private async ensureDirs(member: string): Promise<void> {
    const parts = member.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (this.dirs.has(dir)) continue;
      this.dirs.add(dir);
      await this.write(
        encodeHeader({ path: dir, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 }),
      );
    }
  }

  async addBytes(member: string, data: Uint8Array): Promise<void> {
    await this.addStream(member, data.byteLength, [data]);
  }

  /** Streams a member of known size; the caller's iterable may verify and throw, which leaves the archive to be discarded. */
  async addStream(
    member: string,
    size: number,
    content: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<void> {
    await this.ensureDirs(member);
    await this.write(
      encodeHeader({ path: member, type: 'file', mode: 0o644, uid: 0, gid: 0, size, mtime: 0 }),
    );
    let written = 0;
    for await (const chunk of content) {
      written += chunk.byteLength;
      if (written > size) throw new Error(`archive member ${member} is longer than ${size} bytes`);
      await this.write(chunk);
    }
    if (written !== size) throw new Error(`archive member ${member} is ${written} bytes, expected ${size}`);
    const pad = padding(size);
    if (pad) await this.write(Buffer.alloc(pad));
  }

  async finish(): Promise<void> {
    await this.write(END_OF_ARCHIVE);
    this.out.end();
    try {
      await finished(this.out);
      await fs.rename(this.tmp, this.file);
    } catch (err) {
      await this.discard();
      throw ioError(err, this.file);
    }
  }

  async discard(): Promise<void> {
    this.out.destroy();
    await fs.rm(this.tmp, { force: true });
  }
}
