/**
 * Hostile and malformed input, built deterministically at test time (the corpus that
 * test/fixtures/hostile/README.md lists): tars written exactly as specified (names not cleaned, so
 * they can escape; links, device nodes, setuid bits, PAX headers), truncated streams and gzip bombs;
 * OCI layouts whose index.json, manifests and configs lie; and a loopback HTTP server to play a
 * broken or hostile registry.
 *
 * Same inputs, same bytes: mtimes are fixed, gzip runs at a fixed level, nothing is random.
 */
import * as fs from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { createGzip, gzipSync, constants as zlibConstants } from 'node:zlib';
import * as tar from 'tar-stream';
import { writeJsonBlob, writeManifest } from '../../src/image/write.js';
import { MediaType } from '../../src/oci/media-types.js';
import type { Descriptor } from '../../src/oci/types.js';
import { OciLayout } from '../../src/store/layout.js';
import { sha256 } from './images.js';
import { stopper } from './net.js';

// ---------------------------------------------------------------------------------------------------
// Tars

export interface Spec {
  /** Written as is: `../x`, `/abs`, `a/../../b` all stay what they are. */
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
  /** Seconds; default 1 600 000 000. */
  mtime?: number;
  uid?: number;
  /** Default: the uid. */
  gid?: number;
  devmajor?: number;
  devminor?: number;
  /** Extra PAX records (path, linkpath, anything). */
  pax?: Record<string, string>;
}

export const dir = (name: string, mode = 0o755): Spec => ({ name, type: 'directory', mode });
export const file = (name: string, content: string | Buffer, mode = 0o644): Spec => ({
  name,
  content,
  mode,
});
export const link = (name: string, linkname: string): Spec => ({ name, type: 'link', linkname });
export const symlink = (name: string, linkname: string): Spec => ({ name, type: 'symlink', linkname });
export const device = (
  name: string,
  type: 'character-device' | 'block-device',
  major = 1,
  minor = 3,
): Spec => ({
  name,
  type,
  mode: 0o666,
  devmajor: major,
  devminor: minor,
});
export const fifo = (name: string): Spec => ({ name, type: 'fifo', mode: 0o644 });

/** A tar exactly as specified (by tar-stream, which does not clean names). */
export async function tarOf(specs: Spec[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const s of specs) {
    const type = s.type ?? 'file';
    const header: Partial<tar.Header> & { name: string } = {
      name: s.name,
      type,
      mode: s.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: s.uid ?? 0,
      gid: s.gid ?? s.uid ?? 0,
      mtime: new Date((s.mtime ?? 1_600_000_000) * 1000),
      ...(s.linkname !== undefined ? { linkname: s.linkname } : {}),
      ...(s.devmajor !== undefined ? { devmajor: s.devmajor, devminor: s.devminor ?? 0 } : {}),
      ...(s.pax !== undefined ? { pax: s.pax } : {}),
    };
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === 'file') pack.entry(header, s.content ?? '', cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Every entry of a tar in order: its header as tar-stream reads it (names as they are) and its bytes. */
export async function readTar(bytes: Buffer): Promise<{ header: tar.Header; data: Buffer }[]> {
  const entries: { header: tar.Header; data: Buffer }[] = [];
  const extract = tar.extract();
  const reading = (async () => {
    for await (const entry of extract) {
      const parts: Buffer[] = [];
      for await (const c of entry) parts.push(c as Buffer);
      entries.push({ header: entry.header, data: Buffer.concat(parts) });
    }
  })();
  extract.end(bytes);
  await reading;
  return entries;
}

/** The first `keep` bytes of a tar holding one file of `size` bytes: cut off in the middle of it. */
export async function truncatedTar(size = 10_000, keep = 3_000): Promise<Buffer> {
  const whole = await tarOf([file('before', 'complete'), file('cut', Buffer.alloc(size, 0x61))]);
  return whole.subarray(0, keep);
}

/**
 * A gzip bomb: a gzipped tar of one file of `size` zero bytes (about 1000:1). Streamed, so a large
 * one costs no more memory than its compressed size.
 */
export async function gzipBomb(size: number, name = 'zeros'): Promise<Buffer> {
  const header = await tarOf([{ name, content: '' }]); // header block + two end blocks
  const block = Buffer.from(header.subarray(0, 512));
  // Patch the size field (octal, 11 digits + NUL) and recompute the checksum.
  block.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 12, 'ascii');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  const gzip = createGzip({ level: 9, strategy: zlibConstants.Z_DEFAULT_STRATEGY });
  const out: Buffer[] = [];
  gzip.on('data', (c: Buffer) => out.push(c));
  const ended = new Promise<void>((resolve, reject) => {
    gzip.on('end', resolve);
    gzip.on('error', reject);
  });
  const write = (b: Buffer) =>
    gzip.write(b) ? Promise.resolve() : new Promise<void>((r) => gzip.once('drain', () => r()));
  await write(block);
  const zeros = Buffer.alloc(1 << 20);
  const padded = Math.ceil(size / 512) * 512 + 1024; // content, padding, end-of-archive blocks
  for (let left = padded; left > 0; left -= zeros.length)
    await write(left >= zeros.length ? zeros : zeros.subarray(0, left));
  gzip.end();
  await ended;
  return Buffer.concat(out);
}

// ---------------------------------------------------------------------------------------------------
// Images in OCI layouts

export interface LayerSpec {
  entries?: Spec[];
  /** Gzip the tar (default: plain). */
  gzip?: boolean;
  /** The layer's bytes exactly (a truncated tar, a bomb); `entries` and `gzip` are then ignored. */
  raw?: Buffer;
  mediaType?: string;
}

export interface BuiltImage {
  layout: string;
  /** `oci:LAYOUT:TAG` */
  ref: string;
  layers: Descriptor[];
  manifest: Descriptor;
  config: Descriptor;
}

export interface ImageOptions {
  tag?: string;
  os?: string;
  arch?: string;
  /** The config's `config` (Entrypoint, Cmd...); default `{ Cmd: ['/bin/sh'] }`. */
  config?: Record<string, unknown>;
}

/** An image of `layers` in the OCI layout `layoutDir` (created if need be), tagged. */
export async function writeImage(
  layoutDir: string,
  layers: LayerSpec[],
  options: ImageOptions = {},
): Promise<BuiltImage> {
  const store = await OciLayout.open(layoutDir, { create: true });
  const descs: Descriptor[] = [];
  const diffIds: string[] = [];
  for (const l of layers) {
    const plain = l.raw ?? (await tarOf(l.entries ?? []));
    const bytes = l.raw ?? (l.gzip ? gzipSync(plain, { level: 6 }) : plain);
    const mediaType = l.mediaType ?? (l.gzip ? MediaType.OciLayerGzip : MediaType.OciLayer);
    descs.push({ mediaType, ...(await store.putBytes(bytes)) });
    diffIds.push(sha256(plain));
  }
  const config = await writeJsonBlob(store, MediaType.OciConfig, {
    architecture: options.arch ?? 'amd64',
    os: options.os ?? 'linux',
    config: options.config ?? { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
  });
  const { descriptor } = await writeManifest(store, { config, layers: descs });
  const tag = options.tag ?? 'test';
  await store.tag(descriptor, tag);
  return { layout: layoutDir, ref: `oci:${layoutDir}:${tag}`, layers: descs, manifest: descriptor, config };
}

export function descriptorOf(mediaType: string, bytes: Uint8Array | string): Descriptor {
  return {
    mediaType,
    digest: sha256(bytes),
    size: typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.byteLength,
  };
}

/**
 * An OCI layout written file by file, with nothing checked: `blobs` are stored under the name given
 * (their true digest unless `name` says otherwise), `index` is written as index.json as is.
 */
export async function writeRawLayout(
  layoutDir: string,
  blobs: { bytes: Buffer | string; name?: string }[],
  index: unknown,
): Promise<string> {
  await fs.mkdir(path.join(layoutDir, 'blobs', 'sha256'), { recursive: true });
  await fs.writeFile(path.join(layoutDir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  for (const b of blobs) {
    const name = b.name ?? sha256(b.bytes);
    const [alg, hex] = name.split(':') as [string, string];
    await fs.mkdir(path.join(layoutDir, 'blobs', alg), { recursive: true });
    await fs.writeFile(path.join(layoutDir, 'blobs', alg, hex), b.bytes);
  }
  await fs.writeFile(
    path.join(layoutDir, 'index.json'),
    typeof index === 'string' ? index : JSON.stringify(index),
  );
  return layoutDir;
}

/** index.json naming one descriptor under `tag`. */
export function indexOf(desc: Descriptor, tag = 'test'): unknown {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [{ ...desc, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  };
}

/** A small valid image in memory (config, one gzip layer, manifest), to serve or to corrupt. */
export interface MemoryImage {
  config: Buffer;
  layer: Buffer;
  manifest: Buffer;
  configDesc: Descriptor;
  layerDesc: Descriptor;
  manifestDesc: Descriptor;
  /** Blobs by digest. */
  blobs: Map<string, Buffer>;
}

export async function memoryImage(entries: Spec[] = [file('hello.txt', 'hello\n')]): Promise<MemoryImage> {
  const plain = await tarOf(entries);
  const layer = gzipSync(plain, { level: 6 });
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: [sha256(plain)] },
    }),
  );
  const configDesc = descriptorOf(MediaType.OciConfig, config);
  const layerDesc = descriptorOf(MediaType.OciLayerGzip, layer);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: configDesc,
      layers: [layerDesc],
    }),
  );
  const manifestDesc = descriptorOf(MediaType.OciManifest, manifest);
  return {
    config,
    layer,
    manifest,
    configDesc,
    layerDesc,
    manifestDesc,
    blobs: new Map([
      [configDesc.digest, config],
      [layerDesc.digest, layer],
    ]),
  };
}

// ---------------------------------------------------------------------------------------------------
// A loopback HTTP server that plays a registry (or its storage back end)

export interface SeenRequest {
  method: string;
  url: string;
  authorization: string | undefined;
}

export interface TestServer {
  /** `127.0.0.1:PORT` */
  readonly host: string;
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** Every request, in arrival order. */
  readonly requests: SeenRequest[];
  stop(): Promise<void>;
}

/** Starts `handle` on a free loopback port; every request is recorded first. */
export async function startServer(
  handle: (req: IncomingMessage, res: ServerResponse, self: TestServer) => void | Promise<void>,
): Promise<TestServer> {
  const requests: SeenRequest[] = [];
  let self!: TestServer;
  const server: Server = createServer((req, res) => {
    requests.push({
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      authorization: req.headers.authorization,
    });
    req.resume();
    res.on('error', () => {}); // a client that hangs up mid-answer is what some tests do
    Promise.resolve(handle(req, res, self)).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(599, { 'content-type': 'text/plain' });
      res.end(`test server: ${err.message}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  self = { host: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}`, requests, stop: stopper(server) };
  return self;
}

/** The HTML a misconfigured proxy or load balancer sends instead of a registry's JSON. */
export const HTML_ERROR_PAGE =
  '<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n' +
  '<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n';

/** Answers GET /v2/ as an open registry does (or with a Basic challenge when `basic` is set). */
export function answerPing(req: IncomingMessage, res: ServerResponse, basic?: string): boolean {
  if (req.url !== '/v2/' && req.url !== '/v2') return false;
  if (basic !== undefined && req.headers.authorization !== basic) {
    res.writeHead(401, { 'www-authenticate': 'Basic realm="hostile"', 'content-type': 'application/json' });
    res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
    return true;
  }
  res.writeHead(200, {
    'content-type': 'application/json',
    'docker-distribution-api-version': 'registry/2.0',
  });
  res.end('{}');
  return true;
}
