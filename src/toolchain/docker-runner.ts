/**
 * The docker/podman runner: the build runs in a throw-away container of the toolchain image on a
 * Docker Engine API (Docker itself, or Podman's compatible service), with no network, no
 * capabilities, no new privileges, a read-only root and a private /tmp.
 *
 * The image goes from kiln's store into the engine with /images/load, never by a pull: the engine
 * may have no credentials for the registry, and --offline must hold. It is looked up by its ID (the
 * config digest), so a second build finds it and loads nothing.
 *
 * Source and output travel one of two ways:
 * - mount (local engines, unix sockets): srcDir is bind-mounted read-only at /src, outDir writable
 *   at /out.
 * - copy (remote engines, tcp:// and ssh://, whose host cannot see kiln's files): the source is
 *   streamed into the container as a tar before it starts, /out is read back as a tar after it ends.
 *   /src is then read-only by ownership and mode rather than by a mount (see uploadSource).
 *
 * The engine is reached through src/engine (endpoints from DOCKER_HOST / CONTAINER_HOST; engine
 * failures are E_ENGINE). The container is removed on every path: success, failure, errors, and
 * job.signal (which the CLI aborts on SIGINT/SIGTERM, then waits for this cleanup before it exits).
 * The tar code loads lazily: `kiln --help` must not pay for it.
 */
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Header, Pack } from 'tar-stream';
import { Interrupted } from '../context.js';
import { type ContainerSpec, EngineClient, message } from '../engine/client.js';
import type { EngineName } from '../engine/endpoint.js';
import { KilnError } from '../errors.js';
import type { FlatEntry, FlatItem } from '../image/flatten.js';
import { hostTree } from '../layer/host-tree.js';
import { packEntry } from '../layer/tar-pack.js';
import { parseDigest } from '../oci/digest.js';
import { parseManifest } from '../oci/validate.js';
import {
  type BuildJob,
  containerEnv,
  OUT_DIR,
  type Runner,
  type RunResult,
  SRC_DIR,
  type ToolchainImage,
} from './runner.js';

export type { EngineName };
export type Transfer = 'auto' | 'mount' | 'copy';

export interface DockerRunnerOptions {
  engine?: EngineName;
  /** How /src and /out reach the container; `auto`: mount for a unix socket, else copy. */
  transfer?: Transfer;
}

/** After the container exits, how long its output may take to drain. */
const OUTPUT_DRAIN_MS = 5_000;
/** Owner of the copied source when the build runs as root: not root, so root without CAP_FOWNER cannot chmod it. */
const NOBODY = 65534;

export class DockerRunner implements Runner {
  readonly name: EngineName;
  private readonly transfer: Transfer;

  constructor(options: DockerRunnerOptions = {}) {
    this.name = options.engine ?? 'docker';
    this.transfer = options.transfer ?? 'auto';
  }

  async unavailable(): Promise<string | undefined> {
    let engine: EngineClient;
    try {
      engine = EngineClient.fromEnv(this.name);
    } catch (err) {
      return message(err);
    }
    return engine.unavailable();
  }

  async run(job: BuildJob): Promise<RunResult> {
    const image = job.image;
    if (!image) throw new KilnError('E_RUNNER', `the ${this.name} runner needs a toolchain image`);
    if (job.signal?.aborted) throw stoppedError(job.signal);
    const engine = EngineClient.fromEnv(this.name);
    const transfer = this.transfer === 'auto' ? (engine.endpoint.remote ? 'copy' : 'mount') : this.transfer;
    const output = job.output ?? process.stderr;
    const fail = (doing: string, hint?: string) => (err: unknown) => {
      throw engine.error(err, doing, hint);
    };

    // The caller's signal (a SIGINT/SIGTERM to the CLI aborts it) stops the build; the container
    // goes in `finally` before run() settles, which is what the CLI waits for before it exits.
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    job.signal?.addEventListener('abort', onAbort, { once: true });

    // The attach stream's own stop: it goes with the build, and in `finally` whatever happened.
    const detach = new AbortController();
    const onStop = () => detach.abort();
    stop.signal.addEventListener('abort', onStop, { once: true });

    let creating: Promise<string> | undefined;
    try {
      const [toolchain, user] = await Promise.all([
        toolchainIds(image),
        abortable(this.containerUser(engine, stop.signal), stop.signal),
      ]);
      const spec = (imageId: string) => this.containerSpec(job, image, imageId, user, transfer);
      // Created by the config digest straight away (the engine's image ID, unless it keeps images in
      // containerd): a second build then makes no lookup first. No such image: found or loaded, then created.
      creating = engine
        .createContainer(spec(toolchain.ids[0]!))
        .catch(async (err: unknown) => {
          if ((err as { statusCode?: number }).statusCode !== 404) throw err;
          return engine.createContainer(spec(await this.ensureImage(engine, image, toolchain, stop.signal)));
        })
        .catch(fail('create the build container'));
      const id = await abortable(creating, stop.signal);

      if (transfer === 'copy')
        await abortable(
          uploadSource(engine, id, this.name, job.srcDir, user, stop.signal).catch(
            fail('copy the source into the container'),
          ),
          stop.signal,
        );

      // Attached before the start, so not a byte of output is lost.
      const { ended } = await engine
        .attach(id, output, output, detach.signal)
        .catch(fail('attach to the build'));
      await engine
        .startContainer(id, stop.signal)
        .catch(fail('start the build', `the toolchain image ${image.name} must have /bin/sh`));
      const exitCode = await engine.waitContainer(id, stop.signal).catch(fail('wait for the build'));
      await abortable(Promise.race([ended, delay(OUTPUT_DRAIN_MS)]), stop.signal);

      // Copied back even after a failure: what the build left is as useful as with a mount.
      if (transfer === 'copy') await downloadOut(engine, id, job.outDir, output, stop.signal, fail);
      return { runner: this.name, exitCode };
    } catch (err) {
      if (stop.signal.aborted) throw stoppedError(job.signal);
      throw err;
    } finally {
      detach.abort();
      stop.signal.removeEventListener('abort', onStop);
      // A create still in flight is waited for: its container must go too.
      const id = await creating?.catch(() => undefined);
      if (id !== undefined) await engine.removeContainer(id).catch(() => {});
      job.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * The engine's ID for the toolchain image: looked up by its config digest (Docker's and Podman's
   * image ID) or by kiln's tag (an engine with the containerd store names images by manifest digest),
   * loaded from kiln's store when neither is there.
   */
  private async ensureImage(
    engine: EngineClient,
    image: ToolchainImage,
    { ids, tag }: ToolchainIds,
    signal: AbortSignal,
  ): Promise<string> {
    const found = await abortable(this.findImage(engine, ids, tag, signal), signal);
    if (found) return found;

    await this.loadImage(engine, image, tag, signal);
    const loaded = await abortable(this.findImage(engine, ids, tag, signal), signal);
    if (loaded) return loaded;
    throw new KilnError(
      'E_ENGINE',
      `the ${engine.label} engine loaded ${tag} but has no image ${ids[0]} (toolchain ${image.name})`,
      { hint: `\`${this.name} image inspect ${tag}\` shows what it made of it` },
    );
  }

  private async findImage(
    engine: EngineClient,
    ids: string[],
    tag: string,
    signal: AbortSignal,
  ): Promise<string | undefined> {
    const wanted = new Set(ids.map(bareId));
    for (const name of [ids[0]!, tag]) {
      const id = await engine.imageId(name, signal);
      if (id !== undefined && wanted.has(bareId(id))) return id;
    }
    return undefined;
  }

  /** kiln's docker-archive writer into a temp file, then /images/load: what `kiln copy ... docker-daemon:` does. */
  private async loadImage(engine: EngineClient, image: ToolchainImage, tag: string, signal: AbortSignal) {
    const [{ copyImage }, { OciDirSource }, { DockerDaemonDestination }, { parseReference }] =
      await Promise.all([
        import('../transport/copy.js'),
        import('../transport/oci-dir.js'),
        import('../transport/docker-daemon.js'),
        import('../oci/reference.js'),
      ]);
    const destination = new DockerDaemonDestination(tag, parseReference(tag), { engine, signal });
    await copyImage(OciDirSource.forDescriptor(image.store, image.descriptor), destination, { signal });
  }

  /**
   * Who the build runs as: kiln's own uid:gid, so /out's files belong to the user. Root stays root, and
   * so does everyone on a rootless engine, where the container's root is the user who runs the engine.
   */
  private async containerUser(engine: EngineClient, signal: AbortSignal): Promise<ContainerUser> {
    const uid = process.getuid?.();
    const gid = process.getgid?.();
    if (uid === undefined || gid === undefined || uid === 0) return { uid: 0, gid: 0 };
    if ((await engine.info(signal)).rootless) return { uid: 0, gid: 0 };
    return { user: `${uid}:${gid}`, uid, gid };
  }

  private containerSpec(
    job: BuildJob,
    image: ToolchainImage,
    imageId: string,
    user: ContainerUser,
    transfer: 'mount' | 'copy',
  ): ContainerSpec {
    const mounts: NonNullable<ContainerSpec['HostConfig']>['Mounts'] =
      transfer === 'mount'
        ? [
            // Mounts rather than Binds: a missing directory is an error (Binds would create it as
            // root), and a ':' in a path cannot be misread as options.
            { Type: 'bind', Source: path.resolve(job.srcDir), Target: SRC_DIR, ReadOnly: true },
            { Type: 'bind', Source: path.resolve(job.outDir), Target: OUT_DIR, ReadOnly: false },
          ]
        : [];
    return {
      Image: imageId,
      // The shell as entrypoint rather than an empty one: engines disagree on what `[]` means.
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: [job.command],
      WorkingDir: SRC_DIR,
      Env: containerEnv(image, job.env),
      ...(user.user ? { User: user.user } : {}),
      Labels: { 'dev.kiln.toolchain': image.name },
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      OpenStdin: false,
      HostConfig: {
        ...(job.network ? {} : { NetworkMode: 'none' }),
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        Tmpfs: { '/tmp': 'rw,exec,mode=1777' },
        Mounts: mounts,
        // Docker refuses putArchive into a read-only root, so a copy needs a writable one.
        ReadonlyRootfs: transfer === 'mount',
      },
    };
  }
}

interface ToolchainIds {
  /** The config digest (the engine's image ID), then the manifest digest (its ID with the containerd store). */
  ids: string[];
  /** The tag kiln loads it under. */
  tag: string;
}

/** The IDs an engine may know the toolchain image by, from its manifest in kiln's store. */
async function toolchainIds(image: ToolchainImage): Promise<ToolchainIds> {
  const manifest = parseManifest(
    await image.store.readBlob(image.descriptor.digest),
    `toolchain ${image.name}`,
    image.descriptor.mediaType,
  );
  if (manifest.kind !== 'manifest')
    throw new KilnError('E_BAD_MANIFEST', `toolchain ${image.name}: ${image.descriptor.digest} is an index`);
  return {
    ids: [manifest.manifest.config.digest, image.descriptor.digest],
    tag: `kiln-toolchain/${parseDigest(image.descriptor.digest).hex.slice(0, 12)}:latest`,
  };
}

interface ContainerUser {
  /** `uid:gid` for the container's User; unset: the image's (root). */
  user?: string;
  uid: number;
  gid: number;
}

/**
 * Streams srcDir into the container as /src, file by file, plus an empty /out (mode 0777).
 *
 * /src cannot be a read-only mount here (putArchive cannot write one), so it is made read-only by
 * ownership: every file and directory belongs to root, or to nobody when the build runs as root. With
 * every capability dropped (no CAP_DAC_OVERRIDE, no CAP_FOWNER) and no-new-privileges, the build can
 * then neither write the files, nor create or remove entries, nor chmod anything back. Modes stay the
 * host's, so a `cp` from /src makes the same file as with a mount, except that group and other lose
 * write, and everyone gets read (and search on directories), which the build needs as a non-owner.
 *
 * Podman's putArchive gives everything to the container's user whatever the tar says: there the write
 * bits go too, so writes still fail, but a build could chmod its own copy back (the host's source is
 * never at stake: it is a copy). Symlinks come as symlinks; sockets, fifos and devices are left out.
 */
async function uploadSource(
  client: EngineClient,
  id: string,
  engine: EngineName,
  srcDir: string,
  user: ContainerUser,
  signal: AbortSignal,
): Promise<void> {
  const tar = await import('tar-stream');
  const pack = tar.pack();
  const keep = engine === 'podman' ? 0o555 : 0o755;
  const owner: SourceOwner = {
    ...(user.uid === 0 ? { uid: NOBODY, gid: NOBODY } : { uid: 0, gid: 0 }),
    fileMode: (mode) => (mode & keep) | 0o444,
    dirMode: (mode) => (mode & keep) | 0o555,
  };
  const upload = client.putArchive(id, '/', pack as unknown as Readable, signal);
  // The engine may refuse before the tar ends, and an abort must not wait for it to end.
  const onAbort = () => pack.destroy(new Error('aborted'));
  signal.addEventListener('abort', onAbort, { once: true });
  const feed = (async () => {
    const mtime = new Date();
    await packEntry(pack, {
      name: 'out/',
      type: 'directory',
      mode: 0o777,
      uid: user.uid,
      gid: user.gid,
      mtime,
    });
    const root = await fs.stat(srcDir).catch((err) => {
      throw sourceError(err, srcDir);
    });
    await packEntry(pack, {
      ...ids(owner),
      name: 'src/',
      type: 'directory',
      mode: owner.dirMode(root.mode),
      mtime,
    });
    await packTree(pack, path.resolve(srcDir), 'src/', owner);
    pack.finalize();
  })();
  // Whichever fails first is the cause (an unreadable file, the engine's refusal); the other side's
  // complaint about the broken stream is a consequence.
  let cause: unknown;
  const failed = (err: Error) => {
    cause ??= err;
    pack.destroy(err);
  };
  upload.catch(failed);
  feed.catch(failed);
  try {
    await Promise.allSettled([upload, feed]);
    if (cause !== undefined) throw cause;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

interface SourceOwner {
  uid: number;
  gid: number;
  fileMode: (hostMode: number) => number;
  dirMode: (hostMode: number) => number;
}

const ids = (owner: SourceOwner) => ({ uid: owner.uid, gid: owner.gid });

async function packTree(pack: Pack, dir: string, prefix: string, owner: SourceOwner) {
  for await (const { full, rel, stat: st } of hostTree(dir, sourceError)) {
    const member = `${prefix}${rel}`;
    const base = { ...ids(owner), mtime: st.mtime };
    if (st.isDirectory())
      await packEntry(pack, { ...base, name: `${member}/`, type: 'directory', mode: owner.dirMode(st.mode) });
    else if (st.isFile()) {
      const mode = owner.fileMode(st.mode);
      await packFileEntry(pack, { ...base, name: member, type: 'file', mode, size: st.size }, full);
    } else if (st.isSymbolicLink()) {
      const linkname = await fs.readlink(full).catch((err) => {
        throw sourceError(err, full);
      });
      await packEntry(pack, { ...base, name: member, type: 'symlink', mode: 0o777, linkname });
    }
  }
}

/** Adds one member; a file's content is streamed from `file` (its first `size` bytes). */
async function packFileEntry(
  pack: Pack,
  header: Partial<Header> & { name: string },
  file?: string,
): Promise<void> {
  const size = header.size ?? 0;
  const content = file !== undefined && size > 0 ? readPrefix(file, size) : undefined;
  // A file that shrank meanwhile ends short: tar-stream fails the entry (size mismatch).
  await packEntry(pack, header, content).catch((err: Error) => {
    throw file && /size mismatch/i.test(err.message)
      ? new KilnError('E_IO', `${file} changed while it was copied into the build container`)
      : err;
  });
}

async function* readPrefix(file: string, size: number): AsyncGenerator<Buffer> {
  try {
    yield* createReadStream(file, { start: 0, end: size - 1 });
  } catch (err) {
    throw sourceError(err, file);
  }
}

/**
 * Reads /out back from the stopped container into outDir with kiln's safe extractor (nothing is
 * written outside outDir, never through a symlink). Files, directories, hard links to entries before
 * them, and symlinks whose target stays inside /out come across; a path or link that leaves /out is
 * refused (E_UNSAFE_PATH), special files are left out with a note. Owners become kiln's user, modes
 * lose setuid/setgid.
 */
async function downloadOut(
  engine: EngineClient,
  id: string,
  outDir: string,
  output: NodeJS.WritableStream,
  signal: AbortSignal,
  fail: (doing: string) => (err: unknown) => never,
): Promise<void> {
  const archive = await engine.getArchive(id, OUT_DIR, signal).catch(fail('copy /out out of the container'));
  const onAbort = () => archive.destroy(new Error('aborted'));
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const [tar, { extractFlat }] = await Promise.all([import('tar-stream'), import('../image/unpack.js')]);
    const root = path.resolve(outDir);
    const symlinks: string[] = [];
    const result = await extractFlat(outItems(archive, tar, symlinks), root).catch((err: unknown) => {
      if (err instanceof KilnError) throw err;
      throw new KilnError('E_ENGINE', `cannot copy ${OUT_DIR} out of the container: ${message(err)}`, {
        cause: err,
      });
    });
    for (const issue of result.skipped)
      output.write(`kiln: ${OUT_DIR}/${issue.path} not copied: ${issue.reason}\n`);
    const refused = result.refused[0];
    const escaping = await escapingSymlinks(root, symlinks);
    if (refused || escaping[0] !== undefined)
      throw new KilnError(
        'E_UNSAFE_PATH',
        refused
          ? `the build's ${OUT_DIR}/${refused.path} leads outside ${OUT_DIR} (${refused.reason})`
          : `the build's ${OUT_DIR}/${escaping[0]} is a symlink that leads outside ${OUT_DIR}`,
        { hint: `artifacts must be files or directories, and links must stay inside ${OUT_DIR}` },
      );
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * The members of a /out tar (named `out/...`) as entries relative to outDir, unsafe ones as issues.
 * Symlinks that come across are listed in `symlinks`, for a check once all of them exist.
 */
async function* outItems(
  archive: Readable,
  tar: typeof import('tar-stream'),
  symlinks: string[],
): AsyncGenerator<FlatItem> {
  const { flatPath } = await import('../image/flatten.js');
  const extract = tar.extract();
  let failed: unknown;
  const piped = pipeline(archive, extract).catch((err: unknown) => {
    failed = err;
  });
  const inside = (name: string): string | undefined => {
    const p = flatPath(name);
    if (p === undefined || (p !== 'out' && !p.startsWith('out/'))) return undefined;
    return p.slice('out/'.length);
  };
  const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  for await (const member of extract) {
    const h = member.header;
    const rel = inside(h.name);
    const base = {
      path: rel ?? '',
      ...owner,
      size: 0,
      mtime: Math.floor(h.mtime.getTime() / 1000),
      layer: 0,
    };
    const issue = (reason: string, unsafe: boolean): FlatItem => {
      return { kind: 'issue', path: rel ?? h.name, reason, unsafe, layer: 0 };
    };
    if (rel === undefined) yield issue('the path leaves /out', true);
    else if (rel === '') {
      // /out itself: outDir keeps its own mode.
    } else if (h.type === 'file' || h.type === 'contiguous-file') {
      const entry: FlatEntry = { ...base, type: 'file', mode: h.mode & 0o777, size: h.size };
      yield { kind: 'entry', entry, content: member as unknown as AsyncIterable<Buffer> };
    } else if (h.type === 'directory') {
      // Owner access kept: kiln must be able to read what it copied.
      yield { kind: 'entry', entry: { ...base, type: 'dir', mode: (h.mode & 0o777) | 0o700 } };
    } else if (h.type === 'symlink') {
      const target = h.linkname;
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(rel), target));
      if (!target || target.startsWith('/') || resolved === '..' || resolved.startsWith('../'))
        yield issue(`symlink to ${target}`, true);
      else {
        symlinks.push(rel);
        yield { kind: 'entry', entry: { ...base, type: 'symlink', mode: 0o777, linkname: target } };
      }
    } else if (h.type === 'link') {
      const target = inside(h.linkname);
      if (!target) yield issue(`hard link to ${h.linkname}`, true);
      else yield { kind: 'entry', entry: { ...base, type: 'hardlink', mode: 0o644, linkname: target } };
    } else yield issue(`${h.type} entries are not artifacts`, false);
    member.resume();
  }
  await piped;
  if (failed) throw failed;
}

/**
 * Each target checked lexically can still leave through another symlink (`a -> b/..` with
 * `b -> .`): resolved for real now that all exist, and removed if they land outside outDir.
 */
async function escapingSymlinks(outDir: string, symlinks: string[]): Promise<string[]> {
  const root = await fs.realpath(outDir);
  const escaping: string[] = [];
  for (const rel of symlinks) {
    const link = path.join(outDir, rel);
    const real = await fs
      .realpath(link)
      .catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : ''));
    if (real === undefined || real === root || real.startsWith(`${root}${path.sep}`)) continue;
    escaping.push(rel);
    await fs.rm(link, { force: true });
  }
  return escaping;
}

/** Resolves like `p`, or rejects as soon as `signal` fires (p's own outcome is then ignored). */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('aborted'));
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** E_ABORTED for a stopped build, naming the signal when the process got one (see Interrupted). */
function stoppedError(signal: AbortSignal | undefined): KilnError {
  const reason: unknown = signal?.reason;
  return new KilnError(
    'E_ABORTED',
    reason instanceof Interrupted ? `the build was interrupted (${reason.signal})` : 'the build was stopped',
  );
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** `sha256:abc` and `abc` alike (Podman's compat API has answered both ways). */
function bareId(id: string): string {
  return id.startsWith('sha256:') ? id.slice('sha256:'.length) : id;
}

function sourceError(err: unknown, file: string): KilnError {
  if (err instanceof KilnError) return err;
  return new KilnError('E_IO', `cannot read ${file} for the build container: ${message(err)}`, {
    cause: err,
  });
}
