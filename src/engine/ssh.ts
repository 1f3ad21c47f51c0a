/**
 * A connection to an engine behind `ssh://`, made as the docker CLI makes it: `ssh [-l USER] [-p PORT]
 * -- HOST docker system dial-stdio`, the far side's docker CLI relaying its stdin and stdout to its
 * engine. The user's ssh (config, keys, agent, known hosts) does the rest. One ssh process per
 * connection; it ends with the connection.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { Duplex } from 'node:stream';
import { KilnError } from '../errors.js';

/** ssh's last words kept for the error when it fails. */
const STDERR_LIMIT = 4096;

export class DialStdio extends Duplex {
  private readonly child: ChildProcess;
  private stderr = '';
  private received = false;

  constructor(sshArgs: string[], display: string) {
    super();
    // -T: no terminal; ConnectTimeout as the docker CLI sets it.
    this.child = spawn(
      'ssh',
      ['-o', 'ConnectTimeout=30', '-T', ...sshArgs, 'docker', 'system', 'dial-stdio'],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    const { stdin, stdout, stderr } = this.child as ChildProcess & {
      stdin: NodeJS.WritableStream & { on: Duplex['on'] };
      stdout: Duplex;
      stderr: Duplex;
    };
    stdin.on('error', () => {}); // ssh gone: its exit says why
    stderr.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-STDERR_LIMIT);
    });
    stdout.on('data', (chunk: Buffer) => {
      this.received = true;
      if (!this.push(chunk)) stdout.pause();
    });
    this.child.on('error', (err: NodeJS.ErrnoException) => {
      this.destroy(
        err.code === 'ENOENT'
          ? new KilnError('E_ENGINE', `cannot reach the engine at ${display}: there is no ssh command`, {
              hint: 'install the OpenSSH client (ssh), as the docker CLI needs for ssh:// too',
            })
          : err,
      );
    });
    // 'close': exited and every pipe drained, so the exit status and ssh's message are both known.
    this.child.on('close', (code) => {
      if (code !== 0 && !this.received) {
        const why = this.stderr.trim().split('\n').pop()?.trim() || `ssh exited with status ${code}`;
        this.destroy(Object.assign(new Error(why), { code: 'ESSH' }));
      } else this.push(null);
    });
  }

  override _read(): void {
    this.child.stdout?.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.child.stdin?.write(chunk, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.child.stdin?.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill();
    callback(err);
  }

  // What node's http client may call on its socket.
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  setTimeout(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
}
