/**
 * Toolchain images for runner tests, made from Debian packages (no Docker Hub here) and written
 * into a kiln store (an OCI layout, `KILN_HOME`) the way `kiln toolchain pull` leaves them.
 *
 * - busybox: the host's static busybox with every applet linked in /bin. Small (~1 MB), so runner
 *   tests (mounts, network, exit codes, clean-up) run in a second.
 */
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendLayers } from '../../src/image/append.js';
import type { ImageConfig } from '../../src/oci/types.js';
import { parseManifest } from '../../src/oci/validate.js';
import { OciLayout } from '../../src/store/layout.js';
import type { ToolchainImage } from '../../src/toolchain/runner.js';
import { requireTool, runOk, skipOrFail, toolSkipReason } from './tools.js';

/** True if the ELF file has no PT_INTERP program header, i.e. needs no dynamic loader. */
export function isStaticElf(path: string): boolean {
  const b = readFileSync(path);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46) return false;
  const is64 = b[4] === 2;
  const le = b[5] === 1;
  const u16 = (o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const phoff = is64 ? Number(le ? b.readBigUInt64LE(0x20) : b.readBigUInt64BE(0x20)) : u32(0x1c);
  const phentsize = u16(is64 ? 0x36 : 0x2a);
  const phnum = u16(is64 ? 0x38 : 0x2c);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > b.length) return false;
    if (u32(at) === 3) return false; // PT_INTERP
  }
  return true;
}

/** Why a busybox image cannot be built here (no busybox, or a dynamically linked one). */
export function busyboxSkipReason(): string | undefined {
  const reason = toolSkipReason('busybox');
  if (reason !== undefined) return reason;
  const busybox = requireTool('busybox')!;
  if (!isStaticElf(busybox))
    return skipOrFail(`${busybox} is not statically linked (apt-get install busybox-static)`);
  return undefined;
}

/** A rootfs of the host's static busybox: /bin/busybox and one symlink per applet, plus /tmp. */
export async function busyboxRootfs(dir: string): Promise<string> {
  const busybox = requireTool('busybox')!;
  mkdirSync(join(dir, 'bin'), { recursive: true });
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  copyFileSync(busybox, join(dir, 'bin', 'busybox'));
  const list = await runOk(busybox, ['--list']);
  for (const applet of list.stdout.split('\n').map((s) => s.trim())) {
    if (applet && applet !== 'busybox') symlinkSync('busybox', join(dir, 'bin', applet));
  }
  return dir;
}

/** Reads back an image in a store as a runner gets it. */
export async function toolchainInStore(store: OciLayout, name: string, tag: string): Promise<ToolchainImage> {
  const descriptor = await store.resolve(tag);
  const parsed = parseManifest(await store.readBlob(descriptor.digest), tag, descriptor.mediaType);
  if (parsed.kind !== 'manifest') throw new Error(`${tag} is not an image manifest`);
  const config = JSON.parse((await store.readBlob(parsed.manifest.config.digest)).toString()) as ImageConfig;
  return { name, descriptor, config, store };
}

/** The busybox toolchain image in the store at `home` (created if needed), tagged `busybox-toolchain`. */
export async function busyboxToolchain(home: string): Promise<ToolchainImage> {
  const rootfs = await busyboxRootfs(mkdtempSync(join(tmpdir(), 'kiln-busybox-rootfs-')));
  try {
    const store = await OciLayout.open(home, { create: true });
    await appendLayers({
      base: 'scratch',
      layers: [{ source: rootfs }],
      to: `oci:${home}:busybox-toolchain`,
      platform: { os: 'linux', architecture: 'amd64' },
      store,
    });
    return await toolchainInStore(store, 'test/busybox-toolchain', 'busybox-toolchain');
  } finally {
    rmSync(rootfs, { recursive: true, force: true });
  }
}

/**
 * Debian toolchain images, as the compile tests use them (no Docker Hub here):
 * - c: clang 14 + lld + wasi-libc + compiler-rt for wasm32 (a wasi-sdk stand-in: plain clang with
 *   --target=wasm32-wasi --sysroot=/usr, which the C preset falls back to);
 * - rust: rustc/cargo 1.63 + the wasm32-wasi standard library.
 * The rootfs comes from `debootstrap --variant=minbase`, about a minute each, and is kept under
 * $KILN_TEST_CACHE (default /var/tmp/kiln-test-cache) keyed by the package list, so later runs on
 * the same machine reuse it; caches, docs and unused targets are removed to keep the image small.
 */
export const DEBIAN_TOOLCHAINS = {
  c: ['clang-14', 'lld-14', 'wasi-libc', 'libclang-rt-14-dev-wasm32'],
  rust: ['rustc', 'cargo', 'libstd-rust-dev-wasm32', 'libc6-dev', 'lld-14'],
} as const;
export type DebianToolchain = keyof typeof DEBIAN_TOOLCHAINS;

const SUITE = 'bookworm';
const MIRROR = process.env.KILN_TEST_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const SLIMMED = [
  'var/cache/apt',
  'var/lib/apt/lists',
  'usr/share/doc',
  'usr/share/man',
  'usr/share/locale',
  'usr/lib/rustlib/wasm32-unknown-unknown',
];

export function debootstrapSkipReason(): string | undefined {
  return toolSkipReason('debootstrap');
}

/** The rootfs of a Debian toolchain, built once per machine and package list. */
export async function debianToolchainRootfs(kind: DebianToolchain): Promise<string> {
  const packages = DEBIAN_TOOLCHAINS[kind];
  const key = createHash('sha256')
    .update(JSON.stringify([SUITE, packages, SLIMMED]))
    .digest('hex')
    .slice(0, 12);
  const cache = process.env.KILN_TEST_CACHE ?? '/var/tmp/kiln-test-cache';
  const dir = join(cache, `debootstrap-${kind}-${key}`);
  if (existsSync(join(dir, '.complete'))) return dir;
  mkdirSync(cache, { recursive: true });
  const tmp = mkdtempSync(join(cache, `.building-${kind}-`));
  try {
    await runOk(
      requireTool('debootstrap')!,
      ['--variant=minbase', `--include=${packages.join(',')}`, SUITE, tmp, MIRROR],
      { timeoutMs: 900_000 },
    );
    for (const p of SLIMMED) rmSync(join(tmp, p), { recursive: true, force: true });
    // Device nodes cannot go into a layer; runners mount their own /dev.
    rmSync(join(tmp, 'dev'), { recursive: true, force: true });
    mkdirSync(join(tmp, 'dev'));
    writeFileSync(join(tmp, '.complete'), `${packages.join(' ')}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
    return dir;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
