/**
 * Toolchain images for runner tests, made from Debian packages (no Docker Hub here) and written
 * into a kiln store (an OCI layout, `KILN_HOME`) the way `kiln toolchain pull` leaves them.
 *
 * - busybox: the host's static busybox with every applet linked in /bin. Small (~1 MB), so runner
 *   tests (mounts, network, exit codes, clean-up) run in a second.
 * - Debian toolchains (c, rust, native: see DEBIAN_TOOLCHAINS) from debootstrap, and a
 *   linux/amd64 + linux/arm64 busybox base index for native images (busyboxBaseIndex).
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
import { artifactMismatch, describeHeader, resolveTarget } from '../../src/build/artifact-check.js';
import { appendLayers } from '../../src/image/append.js';
import { createIndex } from '../../src/image/index-create.js';
import { hostPlatform } from '../../src/oci/platform.js';
import type { Descriptor, ImageConfig } from '../../src/oci/types.js';
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
 * The images are made as README.md's "Make a toolchain image" says: `kiln append scratch --layer
 * ROOTFS`, debootstrap's /dev nodes included.
 */
export const DEBIAN_TOOLCHAINS = {
  c: ['clang-14', 'lld-14', 'wasi-libc', 'libclang-rt-14-dev-wasm32'],
  rust: ['rustc', 'cargo', 'libstd-rust-dev-wasm32', 'libc6-dev', 'lld-14'],
  // c's packages plus the arm64 cross sysroot (glibc and libgcc, static archives included): one
  // clang builds wasm32-wasi, x86_64-linux-gnu (host libc) and aarch64-linux-gnu (ld.lld links it).
  native: [
    'clang-14',
    'lld-14',
    'wasi-libc',
    'libclang-rt-14-dev-wasm32',
    'libc6-dev',
    'libc6-dev-arm64-cross',
    'libgcc-12-dev-arm64-cross',
  ],
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

/**
 * Puts a `debootstrap` into `binDir` (to go first on PATH) for tests that run a README's commands as
 * written: the real debootstrap, run once per machine for the same options, suite and mirror into
 * $KILN_TEST_CACHE, then copied (`cp -a`) to the target asked for. KILN_TEST_DEBIAN_MIRROR is used
 * when the command names no mirror. Returns `binDir`.
 */
export function cachingDebootstrap(binDir: string): string {
  const real = requireTool('debootstrap');
  if (real === undefined) throw new Error('debootstrap not found');
  const cache = process.env.KILN_TEST_CACHE ?? '/var/tmp/kiln-test-cache';
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  mkdirSync(binDir, { recursive: true });
  const script = `#!/bin/sh
# debootstrap, cached by its arguments (the target aside): see test/support/toolchain-images.ts
set -eu
n=0 target=
for a in "$@"; do case $a in -*) ;; *) n=$((n + 1)); [ $n -ne 2 ] || target=$a ;; esac; done
[ -n "$target" ] || exec ${q(real)} "$@"
mirror=\${KILN_TEST_DEBIAN_MIRROR:-}
[ $n -eq 2 ] && [ -n "$mirror" ] || mirror=
key=$(for a in "$@"; do [ "$a" = "$target" ] || printf '%s\n' "$a"; done | sha256sum | cut -c1-12)
cache=${q(cache)}/readme-debootstrap-$key
if [ ! -e "$cache.complete" ]; then
  mkdir -p ${q(cache)}
  tmp=$(mktemp -d "$cache.building-XXXXXX")
  for a in "$@"; do shift; if [ "$a" = "$target" ]; then set -- "$@" "$tmp"; else set -- "$@" "$a"; fi; done
  ${q(real)} "$@" \${mirror:+"$mirror"} || { rm -rf "$tmp"; exit 1; }
  rm -rf "$cache" && mv "$tmp" "$cache" && touch "$cache.complete"
fi
mkdir -p "$target"
exec cp -a "$cache/." "$target/"
`;
  writeFileSync(join(binDir, 'debootstrap'), script, { mode: 0o755 });
  return binDir;
}

/** The rootfs of a Debian toolchain, built once per machine and package list. */
export async function debianToolchainRootfs(kind: DebianToolchain): Promise<string> {
  const packages = DEBIAN_TOOLCHAINS[kind];
  const key = createHash('sha256')
    .update(JSON.stringify([SUITE, packages, SLIMMED, 'with /dev']))
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
    // /dev keeps debootstrap's device nodes: kiln append writes them as tar does (README's recipe).
    writeFileSync(join(tmp, '.complete'), `${packages.join(' ')}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
    return dir;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Writes the Debian toolchain `kind` as a linux image for this machine to `to` (a registry
 * reference or `oci:DIR:TAG`), one layer made by kiln's own append, as compile.test.ts pushes the c
 * and rust ones with the CLI. `storeDir` is the kiln store the layer is written through. The layer
 * is deterministic, so a registry that already has it is not sent it again.
 */
export async function pushDebianToolchain(
  kind: DebianToolchain,
  to: string,
  storeDir: string,
): Promise<string> {
  const rootfs = await debianToolchainRootfs(kind);
  const store = await OciLayout.open(storeDir, { create: true });
  await appendLayers({ base: 'scratch', layers: [{ source: rootfs }], to, platform: hostPlatform(), store });
  return to;
}

/**
 * busybox-static for arm64, from the Debian mirror (no foreign dpkg architecture needed): the .deb
 * of the host's busybox-static version, its `_amd64` swapped for `_arm64` (a binNMU suffix `+bN`
 * may be the amd64 build's alone: then without it), unpacked with dpkg-deb and kept under
 * $KILN_TEST_CACHE. The mirror is plain HTTP like debootstrap's; the binary is checked to be a
 * static AArch64 ELF. KILN_TEST_BUSYBOX_ARM64_DEB names a local .deb instead (offline machines).
 */
export async function arm64Busybox(): Promise<string> {
  const cache = process.env.KILN_TEST_CACHE ?? '/var/tmp/kiln-test-cache';
  const show = await runOk(requireTool('apt-cache')!, ['show', 'busybox-static']);
  const filename = /^Filename: (\S+)$/m.exec(show.stdout)?.[1];
  if (!filename) throw new Error('apt-cache show busybox-static names no Filename');
  const version = /^Version: (\S+)$/m.exec(show.stdout)![1]!.replace(/[^A-Za-z0-9.+~-]/g, '_');
  const dir = join(cache, `busybox-static-arm64-${version}`);
  const binary = join(dir, 'bin', 'busybox');
  if (existsSync(join(dir, '.complete'))) return binary;
  mkdirSync(cache, { recursive: true });
  const tmp = mkdtempSync(join(cache, '.building-busybox-arm64-'));
  try {
    let deb = process.env.KILN_TEST_BUSYBOX_ARM64_DEB;
    if (!deb) {
      const arm64 = filename.replace(/_[a-z0-9]+\.deb$/, '_arm64.deb');
      const tried: string[] = [];
      for (const candidate of new Set([arm64, arm64.replace(/\+b\d+_arm64\.deb$/, '_arm64.deb')])) {
        const url = `${MIRROR}/${candidate}`;
        tried.push(url);
        const res = await fetch(url, { signal: AbortSignal.timeout(120_000) });
        if (!res.ok) continue;
        deb = join(tmp, 'busybox-static.deb');
        writeFileSync(deb, Buffer.from(await res.arrayBuffer()));
        break;
      }
      if (!deb) throw new Error(`no arm64 busybox-static on the mirror; tried ${tried.join(', ')}`);
    }
    const root = join(tmp, 'root');
    await runOk(requireTool('dpkg-deb')!, ['-x', deb, root]);
    const head = readFileSync(join(root, 'bin', 'busybox')).subarray(0, 64);
    if (artifactMismatch(head, resolveTarget({ os: 'linux', architecture: 'arm64' })) !== undefined)
      throw new Error(`${deb}: bin/busybox is ${describeHeader(head)}, not an AArch64 ELF`);
    if (!isStaticElf(join(root, 'bin', 'busybox'))) throw new Error(`${deb}: bin/busybox is not static`);
    writeFileSync(join(root, '.complete'), `${filename}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(root, dir);
    return binary;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

export interface BusyboxBase {
  /** `oci:DIR:TAG`, the index. */
  ref: string;
  descriptor: Descriptor;
  /** The index's entries: linux/amd64 and linux/arm64. */
  manifests: Descriptor[];
}

/**
 * A multi-platform base image in the OCI layout `dir` (created if needed), tagged `tag`: an index of
 * linux/amd64 and linux/arm64, each one layer of static busybox (/bin/busybox, a symlink per applet,
 * /tmp). amd64 is the host's busybox-static; arm64 comes from {@link arm64Busybox}, with the host's
 * applet list (the same Debian version and configuration). The per-platform images are also tagged
 * `<tag>-linux-amd64` and `<tag>-linux-arm64`. Deterministic: the same digests on every run.
 */
export async function busyboxBaseIndex(dir: string, tag = 'busybox'): Promise<BusyboxBase> {
  const store = await OciLayout.open(dir, { create: true });
  const amd64 = await busyboxRootfs(mkdtempSync(join(tmpdir(), 'kiln-busybox-base-')));
  const arm64 = await busyboxRootfs(mkdtempSync(join(tmpdir(), 'kiln-busybox-base-')));
  try {
    copyFileSync(await arm64Busybox(), join(arm64, 'bin', 'busybox'));
    const sources: string[] = [];
    for (const [rootfs, architecture] of [
      [amd64, 'amd64'],
      [arm64, 'arm64'],
    ] as const) {
      const ref = `oci:${dir}:${tag}-linux-${architecture}`;
      await appendLayers({
        base: 'scratch',
        layers: [{ source: rootfs }],
        to: ref,
        platform: { os: 'linux', architecture },
        created: '1970-01-01T00:00:00Z',
        store,
      });
      sources.push(ref);
    }
    const ref = `oci:${dir}:${tag}`;
    const index = await createIndex({ sources, to: ref, store });
    return { ref, descriptor: await store.resolve(tag), manifests: index.manifests };
  } finally {
    rmSync(amd64, { recursive: true, force: true });
    rmSync(arm64, { recursive: true, force: true });
  }
}
