/**
 * The guest host: what runs inside the sandboxed child process (`sandbox.ts`) and gives a transpiled
 * component its WASI 0.2 imports (wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, wasi:random, and
 * wasi:sockets refused).
 *
 * Why kiln has its own and does not use @bytecodealliance/preview2-shim in the child: the shim does its
 * I/O in a worker thread (it creates one as it loads), and the sandbox gives the child no
 * `--allow-worker`; and Node's permission model follows symbolic links out of the directories it
 * allows, so paths must be resolved by the host anyway. Everything here is synchronous (the guest
 * blocks on each call), on plain file descriptors.
 *
 * Confinement, twice: every path a guest names is resolved here component by component inside its
 * preopen (absolute paths, `..` above the preopen and symbolic links that leave it or are absolute are
 * refused with `not-permitted`, the last component opened with O_NOFOLLOW), and the child runs under
 * Node's permission model, which allows reading only the transpiled code and the preopens and writing
 * only the writable preopens.
 *
 * `guestMain` is written to the cache entry as source text (`guestMain.toString()`), so it must use
 * nothing from outside its own body: its dependencies come in as arguments.
 */

/** What the parent sends the child on fd 3, as one JSON line. */
export interface GuestConfig {
  /** argv, argv[0] first. */
  args: string[];
  env: [string, string][];
  preopens: { guest: string; host: string; writable: boolean }[];
  /** A preview 1 module kiln made into a component: keep its exact proc_exit code (WASI 0.2 has only ok/err). */
  preview1: boolean;
}

/** What the child sends back on fd 3 before it exits, as one JSON line. */
export type GuestResult = { exit: number } | { trap: string } | { error: string };

export interface GuestDeps {
  fs: typeof import('node:fs');
  randomBytes: (n: number) => Buffer;
  instantiate: (
    getCoreModule: (name: string) => Promise<WebAssembly.Module>,
    imports: Record<string, Record<string, unknown>>,
    instantiateCore: (
      module: WebAssembly.Module,
      imports?: Record<string, Record<string, unknown>>,
    ) => Promise<WebAssembly.Instance>,
  ) => Promise<Record<string, unknown>>;
  /** The directory holding the transpiled component's core modules. */
  dir: string;
}

type Bytes = Uint8Array;
type FsError = string;
interface Datetime {
  seconds: bigint;
  nanoseconds: number;
}
type NewTimestamp = { tag: 'no-change' } | { tag: 'now' } | { tag: 'timestamp'; val: Datetime };
interface PathFlags {
  symlinkFollow?: boolean;
}
interface OpenFlags {
  create?: boolean;
  directory?: boolean;
  exclusive?: boolean;
  truncate?: boolean;
}
interface DescriptorFlags {
  read?: boolean;
  write?: boolean;
  fileIntegritySync?: boolean;
  dataIntegritySync?: boolean;
  requestedWriteSync?: boolean;
  mutateDirectory?: boolean;
}

export async function guestMain(deps: GuestDeps): Promise<void> {
  const { fs, randomBytes, instantiate, dir } = deps;
  const symbolDispose: symbol = (Symbol as { dispose?: symbol }).dispose ?? Symbol.for('dispose');
  const CONTROL = 3;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const sleep = (ms: number): void => {
    Atomics.wait(sleeper, 0, 0, Math.max(0, ms));
  };
  const errno = (e: unknown): string | undefined => (e as { code?: string } | null)?.code;

  /** Writes all of `data` to `fd`, waiting while a non-blocking pipe is full. */
  function writeAll(fd: number, data: Bytes, position: number | null = null): number {
    let done = 0;
    while (done < data.length) {
      try {
        const n = fs.writeSync(
          fd,
          data,
          done,
          data.length - done,
          position === null ? null : position + done,
        );
        done += n;
      } catch (e) {
        if (errno(e) === 'EAGAIN') {
          sleep(1);
          continue;
        }
        throw e;
      }
    }
    return done;
  }

  /** Reads at most `len` bytes, blocking (a non-blocking stdin is polled). 0 bytes: end of file. */
  function readSome(fd: number, len: number, position: bigint | null): Bytes {
    const buf = Buffer.alloc(Math.max(0, Math.min(len, 1 << 20)));
    if (buf.length === 0) return new Uint8Array(0);
    for (;;) {
      try {
        const n = fs.readSync(fd, buf, 0, buf.length, position);
        return new Uint8Array(buf.buffer, buf.byteOffset, n);
      } catch (e) {
        if (errno(e) === 'EAGAIN') {
          sleep(1);
          continue;
        }
        throw e;
      }
    }
  }

  function send(result: GuestResult): void {
    try {
      writeAll(CONTROL, Buffer.from(`${JSON.stringify(result)}\n`));
    } catch {
      // the parent is gone: nothing to tell
    }
  }

  function finish(code: number): never {
    send({ exit: code });
    process.exit(code);
  }

  // ---- the config, from the parent
  const chunks: Buffer[] = [];
  for (;;) {
    const chunk = Buffer.from(readSome(CONTROL, 65536, null));
    if (chunk.length === 0) break;
    chunks.push(chunk);
    if (chunk.includes(10)) break;
  }
  const config = JSON.parse(Buffer.concat(chunks).toString('utf8')) as GuestConfig;

  // ---- wasi:io
  class IoError {
    constructor(
      readonly message: string,
      readonly fsCode?: FsError,
    ) {}
    toDebugString(): string {
      return this.message;
    }
  }
  const streamError = (e: unknown) => {
    if (errno(e) === 'EPIPE') return { tag: 'closed' };
    return { tag: 'last-operation-failed', val: new IoError(String((e as Error)?.message ?? e), fsCode(e)) };
  };

  class Pollable {
    constructor(private readonly deadline?: bigint) {}
    ready(): boolean {
      return this.deadline === undefined || process.hrtime.bigint() >= this.deadline;
    }
    block(): void {
      while (!this.ready()) sleep(Number((this.deadline! - process.hrtime.bigint()) / 1_000_000n) + 1);
    }
    wait(): bigint | undefined {
      return this.deadline;
    }
  }
  function poll(list: Pollable[]): Uint32Array {
    if (list.length === 0) throw new Error('wasi:io/poll: poll of an empty list');
    for (;;) {
      const ready = list.flatMap((p, i) => (p.ready() ? [i] : []));
      if (ready.length) return new Uint32Array(ready);
      // None is ready, so each has a deadline (bigints: no Math.min)
      let next = list[0]!.wait()!;
      for (const p of list) if (p.wait()! < next) next = p.wait()!;
      sleep(Number((next - process.hrtime.bigint()) / 1_000_000n) + 1);
    }
  }

  class InputStream {
    private closed = false;
    constructor(
      private readonly fd: number,
      private position: bigint | null,
    ) {}
    read(len: bigint): Bytes {
      if (this.closed) throw { tag: 'closed' };
      if (len === 0n) return new Uint8Array(0);
      let data: Bytes;
      try {
        data = readSome(this.fd, Number(len > 1048576n ? 1048576n : len), this.position);
      } catch (e) {
        throw streamError(e);
      }
      if (data.length === 0) {
        this.closed = true;
        throw { tag: 'closed' };
      }
      if (this.position !== null) this.position += BigInt(data.length);
      return data;
    }
    blockingRead(len: bigint): Bytes {
      return this.read(len);
    }
    skip(len: bigint): bigint {
      return BigInt(this.read(len).length);
    }
    blockingSkip(len: bigint): bigint {
      return this.skip(len);
    }
    subscribe(): Pollable {
      return new Pollable();
    }
  }

  class OutputStream {
    constructor(
      private readonly fd: number,
      /** null: the fd's own position (stdio); 'append': the end of the file at each write. */
      private position: bigint | null | 'append',
    ) {}
    checkWrite(): bigint {
      return 1048576n;
    }
    write(data: Bytes): void {
      try {
        if (this.position === 'append') writeAll(this.fd, data, fs.fstatSync(this.fd).size);
        else if (this.position === null) writeAll(this.fd, data);
        else {
          writeAll(this.fd, data, Number(this.position));
          this.position += BigInt(data.length);
        }
      } catch (e) {
        throw streamError(e);
      }
    }
    blockingWriteAndFlush(data: Bytes): void {
      this.write(data);
    }
    flush(): void {}
    blockingFlush(): void {}
    subscribe(): Pollable {
      return new Pollable();
    }
    writeZeroes(len: bigint): void {
      this.write(new Uint8Array(Number(len)));
    }
    blockingWriteZeroesAndFlush(len: bigint): void {
      this.writeZeroes(len);
    }
    splice(src: InputStream, len: bigint): bigint {
      const data = src.read(len);
      this.write(data);
      return BigInt(data.length);
    }
    blockingSplice(src: InputStream, len: bigint): bigint {
      return this.splice(src, len);
    }
  }

  // ---- wasi:filesystem
  function fsCode(e: unknown): FsError {
    switch (errno(e)) {
      case 'ENOENT':
        return 'no-entry';
      case 'EACCES':
      case 'ERR_ACCESS_DENIED':
        return 'access';
      case 'EPERM':
        return 'not-permitted';
      case 'EEXIST':
        return 'exist';
      case 'ENOTDIR':
        return 'not-directory';
      case 'EISDIR':
        return 'is-directory';
      case 'ENOTEMPTY':
        return 'not-empty';
      case 'EINVAL':
        return 'invalid';
      case 'ELOOP':
        return 'loop';
      case 'ENAMETOOLONG':
        return 'name-too-long';
      case 'ENOSPC':
        return 'insufficient-space';
      case 'EDQUOT':
        return 'quota';
      case 'EBADF':
        return 'bad-descriptor';
      case 'EXDEV':
        return 'cross-device';
      case 'EROFS':
        return 'read-only';
      case 'EBUSY':
        return 'busy';
      case 'EFBIG':
        return 'file-too-large';
      case 'ESPIPE':
        return 'invalid-seek';
      case 'ETXTBSY':
        return 'text-file-busy';
      case 'EMLINK':
        return 'too-many-links';
      case 'EAGAIN':
        return 'would-block';
      case 'ENOTSUP':
      case 'EOPNOTSUPP':
        return 'unsupported';
      case 'EMFILE':
      case 'ENFILE':
        return 'insufficient-memory';
      default:
        return 'io';
    }
  }
  /** Runs a file system call, turning Node's errors into WASI error codes (thrown, as jco expects). */
  function sys<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (typeof e === 'string') throw e;
      if (errno(e) === undefined) throw e;
      throw fsCode(e);
    }
  }
  const typeOf = (st: import('node:fs').Stats | import('node:fs').BigIntStats | import('node:fs').Dirent) =>
    st.isFile()
      ? 'regular-file'
      : st.isDirectory()
        ? 'directory'
        : st.isSymbolicLink()
          ? 'symbolic-link'
          : st.isBlockDevice()
            ? 'block-device'
            : st.isCharacterDevice()
              ? 'character-device'
              : st.isFIFO()
                ? 'fifo'
                : st.isSocket()
                  ? 'socket'
                  : 'unknown';
  const datetime = (ns: bigint): Datetime => ({
    seconds: ns / 1_000_000_000n,
    nanoseconds: Number(ns % 1_000_000_000n),
  });
  const descriptorStat = (st: import('node:fs').BigIntStats) => ({
    type: typeOf(st),
    linkCount: st.nlink,
    size: st.size,
    dataAccessTimestamp: datetime(st.atimeNs),
    dataModificationTimestamp: datetime(st.mtimeNs),
    statusChangeTimestamp: datetime(st.ctimeNs),
  });
  const seconds = (t: NewTimestamp, current: bigint): number => {
    if (t.tag === 'now') return Date.now() / 1000;
    if (t.tag === 'timestamp') return Number(t.val.seconds) + t.val.nanoseconds / 1e9;
    return Number(current) / 1e9;
  };
  const split = (p: string) => p.split('/').filter((c) => c !== '' && c !== '.');

  interface Root {
    host: string;
    writable: boolean;
  }

  class Descriptor {
    constructor(
      private readonly root: Root,
      /** Path components below the root: real directories and, last, the entry itself. */
      private readonly rel: string[],
      private readonly kind: string,
      private readonly flags: DescriptorFlags,
      private fd?: number,
    ) {}

    private get host(): string {
      return [this.root.host, ...this.rel].join('/');
    }

    /**
     * Resolves `path` below this directory inside its preopen: `..` may not go above the preopen,
     * symbolic links are followed here (never by the OS) and must stay inside, relative. Returns the
     * host path; its last component is not a symbolic link when `follow` is set.
     */
    private resolve(path: string, follow: boolean): { host: string; rel: string[] } {
      if (this.kind !== 'directory') throw 'not-directory';
      if (path.includes('\0')) throw 'invalid';
      if (path.startsWith('/')) throw 'not-permitted';
      const stack = [...this.rel];
      const todo = split(path);
      const trailingSlash = path.endsWith('/');
      let links = 0;
      while (todo.length) {
        const c = todo.shift()!;
        if (c === '..') {
          if (stack.length === 0) throw 'not-permitted';
          stack.pop();
          continue;
        }
        stack.push(c);
        const last = todo.length === 0;
        if (last && !follow && !trailingSlash) break;
        let st: import('node:fs').Stats;
        try {
          st = fs.lstatSync([this.root.host, ...stack].join('/'));
        } catch (e) {
          if (last && errno(e) === 'ENOENT') break;
          throw fsCode(e);
        }
        if (st.isSymbolicLink()) {
          if (++links > 40) throw 'loop';
          const target = sys(() => fs.readlinkSync([this.root.host, ...stack].join('/')));
          if (target.startsWith('/')) throw 'not-permitted';
          stack.pop();
          todo.unshift(...split(target));
        } else if (!last && !st.isDirectory()) throw 'not-directory';
      }
      return { host: [this.root.host, ...stack].join('/'), rel: stack };
    }

    private mutate(): void {
      if (!this.root.writable) throw 'read-only';
    }

    private file(): number {
      if (this.fd === undefined) throw this.kind === 'directory' ? 'is-directory' : 'bad-descriptor';
      return this.fd;
    }

    readViaStream(offset: bigint): InputStream {
      if (!this.flags.read) throw 'bad-descriptor';
      return new InputStream(this.file(), offset);
    }
    writeViaStream(offset: bigint): OutputStream {
      if (!this.flags.write) throw 'bad-descriptor';
      return new OutputStream(this.file(), offset);
    }
    appendViaStream(): OutputStream {
      if (!this.flags.write) throw 'bad-descriptor';
      return new OutputStream(this.file(), 'append');
    }
    advise(): void {}
    syncData(): void {
      if (this.fd !== undefined) sys(() => fs.fdatasyncSync(this.fd!));
    }
    sync(): void {
      if (this.fd !== undefined) sys(() => fs.fsyncSync(this.fd!));
    }
    getFlags(): DescriptorFlags {
      return { ...this.flags };
    }
    getType(): string {
      return this.kind;
    }
    setSize(size: bigint): void {
      if (!this.flags.write) throw 'bad-descriptor';
      sys(() => fs.ftruncateSync(this.file(), Number(size)));
    }
    setTimes(atime: NewTimestamp, mtime: NewTimestamp): void {
      this.mutate();
      const st = this.statRaw();
      const a = seconds(atime, st.atimeNs);
      const m = seconds(mtime, st.mtimeNs);
      if (this.fd !== undefined) sys(() => fs.futimesSync(this.fd!, a, m));
      else sys(() => fs.utimesSync(this.host, a, m));
    }
    read(length: bigint, offset: bigint): [Bytes, boolean] {
      if (!this.flags.read) throw 'bad-descriptor';
      const fd = this.file();
      const data = sys(() => readSome(fd, Number(length), offset));
      return [data, data.length < Number(length)];
    }
    write(buffer: Bytes, offset: bigint): bigint {
      if (!this.flags.write) throw 'bad-descriptor';
      const fd = this.file();
      return BigInt(sys(() => writeAll(fd, buffer, Number(offset))));
    }
    readDirectory(): DirectoryEntryStream {
      if (this.kind !== 'directory') throw 'not-directory';
      const entries = sys(() => fs.readdirSync(this.host, { withFileTypes: true }));
      return new DirectoryEntryStream(entries.map((d) => ({ type: typeOf(d), name: d.name })));
    }
    private statRaw(): import('node:fs').BigIntStats {
      return this.fd !== undefined
        ? sys(() => fs.fstatSync(this.fd!, { bigint: true }))
        : sys(() => fs.statSync(this.host, { bigint: true }));
    }
    stat() {
      return descriptorStat(this.statRaw());
    }
    statAt(pathFlags: PathFlags, path: string) {
      const follow = !!pathFlags.symlinkFollow;
      const { host } = this.resolve(path, follow);
      return descriptorStat(
        sys(() => (follow ? fs.statSync(host, { bigint: true }) : fs.lstatSync(host, { bigint: true }))),
      );
    }
    setTimesAt(pathFlags: PathFlags, path: string, atime: NewTimestamp, mtime: NewTimestamp): void {
      this.mutate();
      const follow = !!pathFlags.symlinkFollow;
      const { host } = this.resolve(path, follow);
      const st = sys(() => fs.lstatSync(host, { bigint: true }));
      const a = seconds(atime, st.atimeNs);
      const m = seconds(mtime, st.mtimeNs);
      sys(() => (follow ? fs.utimesSync(host, a, m) : fs.lutimesSync(host, a, m)));
    }
    linkAt(oldFlags: PathFlags, oldPath: string, newDir: Descriptor, newPath: string): void {
      this.mutate();
      newDir.mutate();
      const from = this.resolve(oldPath, !!oldFlags.symlinkFollow).host;
      const to = newDir.resolve(newPath, false).host;
      sys(() => fs.linkSync(from, to));
    }
    createDirectoryAt(path: string): void {
      this.mutate();
      const { host } = this.resolve(path, false);
      sys(() => fs.mkdirSync(host));
    }
    openAt(pathFlags: PathFlags, path: string, open: OpenFlags, flags: DescriptorFlags): Descriptor {
      if ((open.create || open.truncate || flags.write) && !this.root.writable) throw 'read-only';
      if (flags.mutateDirectory && !this.flags.mutateDirectory) throw 'not-permitted';
      const { host, rel } = this.resolve(path, !!pathFlags.symlinkFollow);
      const c = fs.constants;
      let mode = flags.write ? (flags.read ? c.O_RDWR : c.O_WRONLY) : c.O_RDONLY;
      if (open.create) mode |= c.O_CREAT;
      if (open.exclusive) mode |= c.O_EXCL;
      if (open.truncate) mode |= c.O_TRUNC;
      if (open.directory) mode |= c.O_DIRECTORY;
      // Never let the OS follow a link: resolve() already did, inside the preopen.
      mode |= c.O_NOFOLLOW;
      const fd = sys(() => fs.openSync(host, mode, 0o644));
      let kind: string;
      try {
        kind = typeOf(sys(() => fs.fstatSync(fd)));
      } catch (e) {
        fs.closeSync(fd);
        throw e;
      }
      if (kind === 'directory') {
        fs.closeSync(fd);
        return new Descriptor(this.root, rel, kind, {
          ...flags,
          mutateDirectory: !!flags.mutateDirectory && this.root.writable,
        });
      }
      return new Descriptor(this.root, rel, kind, flags, fd);
    }
    readlinkAt(path: string): string {
      const { host } = this.resolve(path, false);
      return sys(() => fs.readlinkSync(host));
    }
    removeDirectoryAt(path: string): void {
      this.mutate();
      const { host } = this.resolve(path, false);
      sys(() => fs.rmdirSync(host));
    }
    renameAt(oldPath: string, newDir: Descriptor, newPath: string): void {
      this.mutate();
      newDir.mutate();
      const from = this.resolve(oldPath, false).host;
      const to = newDir.resolve(newPath, false).host;
      sys(() => fs.renameSync(from, to));
    }
    symlinkAt(target: string, path: string): void {
      this.mutate();
      if (target.startsWith('/')) throw 'not-permitted';
      const { host } = this.resolve(path, false);
      sys(() => fs.symlinkSync(target, host));
    }
    unlinkFileAt(path: string): void {
      this.mutate();
      const { host } = this.resolve(path, false);
      if (sys(() => fs.lstatSync(host)).isDirectory()) throw 'is-directory';
      sys(() => fs.unlinkSync(host));
    }
    isSameObject(other: Descriptor): boolean {
      const a = this.statRaw();
      const b = other.statRaw();
      return a.dev === b.dev && a.ino === b.ino;
    }
    metadataHash() {
      const st = this.statRaw();
      return { upper: st.dev, lower: st.ino };
    }
    metadataHashAt(pathFlags: PathFlags, path: string) {
      const follow = !!pathFlags.symlinkFollow;
      const { host } = this.resolve(path, follow);
      const st = sys(() =>
        follow ? fs.statSync(host, { bigint: true }) : fs.lstatSync(host, { bigint: true }),
      );
      return { upper: st.dev, lower: st.ino };
    }
    close(): void {
      if (this.fd !== undefined) {
        try {
          fs.closeSync(this.fd);
        } catch {}
        this.fd = undefined;
      }
    }
  }
  Object.defineProperty(Descriptor.prototype, symbolDispose, {
    value(this: Descriptor) {
      this.close();
    },
  });

  class DirectoryEntryStream {
    constructor(private readonly entries: { type: string; name: string }[]) {}
    readDirectoryEntry(): { type: string; name: string } | undefined {
      return this.entries.shift();
    }
  }

  // ---- wasi:sockets: no network in the sandbox
  class Network {}
  class TcpSocket {}
  class UdpSocket {}
  class IncomingDatagramStream {}
  class OutgoingDatagramStream {}
  class ResolveAddressStream {}
  const denied = (): never => {
    throw 'access-denied';
  };

  class TerminalInput {}
  class TerminalOutput {}

  const u64 = (b: Buffer) => b.readBigUInt64LE(0);
  let preview1Exit: number | undefined;
  const exitWith = (status: { tag: string }) => finish(preview1Exit ?? (status.tag === 'err' ? 1 : 0));
  const preopens = config.preopens.map(
    (p) =>
      [
        new Descriptor({ host: p.host, writable: p.writable }, [], 'directory', {
          read: true,
          write: p.writable,
          mutateDirectory: p.writable,
        }),
        p.guest,
      ] as const,
  );

  const imports: Record<string, Record<string, unknown>> = {
    'wasi:cli/environment': {
      getEnvironment: () => config.env,
      getArguments: () => config.args,
      initialCwd: () => undefined,
    },
    'wasi:cli/exit': { exit: exitWith, exitWithCode: (code: number) => finish(code) },
    'wasi:cli/stdin': { getStdin: () => new InputStream(0, null) },
    'wasi:cli/stdout': { getStdout: () => new OutputStream(1, null) },
    'wasi:cli/stderr': { getStderr: () => new OutputStream(2, null) },
    'wasi:cli/terminal-input': { TerminalInput },
    'wasi:cli/terminal-output': { TerminalOutput },
    'wasi:cli/terminal-stdin': { getTerminalStdin: () => undefined },
    'wasi:cli/terminal-stdout': { getTerminalStdout: () => undefined },
    'wasi:cli/terminal-stderr': { getTerminalStderr: () => undefined },
    'wasi:clocks/monotonic-clock': {
      now: () => process.hrtime.bigint(),
      resolution: () => 1n,
      subscribeInstant: (when: bigint) => new Pollable(when),
      subscribeDuration: (d: bigint) => new Pollable(process.hrtime.bigint() + d),
    },
    'wasi:clocks/wall-clock': {
      now: () => {
        const ms = Date.now();
        return { seconds: BigInt(Math.floor(ms / 1000)), nanoseconds: (ms % 1000) * 1_000_000 };
      },
      resolution: () => ({ seconds: 0n, nanoseconds: 1_000_000 }),
    },
    'wasi:filesystem/types': {
      Descriptor,
      DirectoryEntryStream,
      filesystemErrorCode: (e: IoError) => e.fsCode,
    },
    'wasi:filesystem/preopens': { getDirectories: () => preopens },
    'wasi:io/error': { Error: IoError },
    'wasi:io/poll': { Pollable, poll },
    'wasi:io/streams': { InputStream, OutputStream },
    'wasi:random/random': {
      getRandomBytes: (len: bigint) => new Uint8Array(randomBytes(Number(len))),
      getRandomU64: () => u64(randomBytes(8)),
    },
    'wasi:random/insecure': {
      getInsecureRandomBytes: (len: bigint) => new Uint8Array(randomBytes(Number(len))),
      getInsecureRandomU64: () => u64(randomBytes(8)),
    },
    'wasi:random/insecure-seed': { insecureSeed: () => [u64(randomBytes(8)), u64(randomBytes(8))] },
    'wasi:sockets/network': { Network },
    'wasi:sockets/instance-network': { instanceNetwork: () => new Network() },
    'wasi:sockets/tcp': { TcpSocket },
    'wasi:sockets/tcp-create-socket': { createTcpSocket: denied },
    'wasi:sockets/udp': { UdpSocket, IncomingDatagramStream, OutgoingDatagramStream },
    'wasi:sockets/udp-create-socket': { createUdpSocket: denied },
    'wasi:sockets/ip-name-lookup': { resolveAddresses: denied, ResolveAddressStream },
  };

  /** Keeps a preview 1 module's exit code, which the adapter narrows to ok/err. */
  const instantiateCore = (module: WebAssembly.Module, imp?: Record<string, Record<string, unknown>>) => {
    const p1 = imp?.['wasi_snapshot_preview1'];
    if (config.preview1 && p1 && typeof p1['proc_exit'] === 'function') {
      const procExit = p1['proc_exit'] as (code: number) => void;
      p1['proc_exit'] = (code: number) => {
        preview1Exit = code >>> 0;
        return procExit(code);
      };
    }
    return WebAssembly.instantiate(module, imp ?? {});
  };

  const isTrap = (e: unknown) =>
    e instanceof WebAssembly.RuntimeError ||
    (e instanceof RangeError && /call stack|memory/i.test(e.message));
  try {
    const exports = await instantiate(
      async (name) => WebAssembly.compile(fs.readFileSync(`${dir}/${name}`)),
      imports,
      instantiateCore,
    );
    const key = Object.keys(exports).find((k) => k === 'wasi:cli/run' || k.startsWith('wasi:cli/run@'));
    const run = key ? (exports[key] as { run?: () => void }).run : undefined;
    if (!run) {
      send({ error: 'the component exports no wasi:cli/run' });
      process.exit(1);
    }
    try {
      run();
    } catch (e) {
      if (e && Object.hasOwn(e, 'payload')) finish(preview1Exit ?? 1);
      throw e;
    }
    finish(preview1Exit ?? 0);
  } catch (e) {
    if (isTrap(e)) send({ trap: (e as Error).message });
    else send({ error: String((e as Error)?.stack ?? e) });
    process.exit(1);
  }
}
