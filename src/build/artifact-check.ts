/**
 * What a target platform means for the artifact a build writes, and the check that the artifact is
 * really for it: an ELF whose machine, class and byte order fit a native target, or the `\0asm`
 * magic for a wasm one. A compiler that ignored the target would otherwise hand back a binary for
 * the build machine, labelled as another architecture, that fails only where it is deployed.
 */
import { open } from 'node:fs/promises';
import { KilnError } from '../errors.js';
import { formatPlatform, isWasmPlatform, normalizePlatform, type Platform } from '../oci/platform.js';

/** The default target: a WASI preview 1 module, as kiln compiled before it knew other targets. */
export const WASM_TARGET: Readonly<Platform> = { os: 'wasip1', architecture: 'wasm' };

interface ElfTarget {
  /** GNU triple, as Debian names its cross compilers (`aarch64-linux-gnu-gcc`). */
  triple: string;
  /** e_machine */
  machine: number;
  bits: 32 | 64;
  littleEndian: boolean;
}

/** e_machine values (elf.h) of the architectures kiln builds for, and what to call them. */
const EM_NAMES: Readonly<Record<number, string>> = {
  3: 'x86 (EM_386)',
  8: 'MIPS (EM_MIPS)',
  20: 'PowerPC (EM_PPC)',
  21: 'PowerPC64 (EM_PPC64)',
  22: 's390 (EM_S390)',
  40: 'ARM (EM_ARM)',
  62: 'x86-64 (EM_X86_64)',
  183: 'AArch64 (EM_AARCH64)',
  243: 'RISC-V (EM_RISCV)',
  258: 'LoongArch (EM_LOONGARCH)',
};

/** Linux architectures (Go's names; arm by variant) kiln can build for. */
const LINUX: Readonly<Record<string, ElfTarget>> = {
  amd64: { triple: 'x86_64-linux-gnu', machine: 62, bits: 64, littleEndian: true },
  arm64: { triple: 'aarch64-linux-gnu', machine: 183, bits: 64, littleEndian: true },
  'arm/v7': { triple: 'arm-linux-gnueabihf', machine: 40, bits: 32, littleEndian: true },
  'arm/v6': { triple: 'arm-linux-gnueabi', machine: 40, bits: 32, littleEndian: true },
  'arm/v5': { triple: 'arm-linux-gnueabi', machine: 40, bits: 32, littleEndian: true },
  '386': { triple: 'i686-linux-gnu', machine: 3, bits: 32, littleEndian: true },
  ppc64le: { triple: 'powerpc64le-linux-gnu', machine: 21, bits: 64, littleEndian: true },
  s390x: { triple: 's390x-linux-gnu', machine: 22, bits: 64, littleEndian: false },
  riscv64: { triple: 'riscv64-linux-gnu', machine: 243, bits: 64, littleEndian: true },
};

const WASM_TRIPLES: Readonly<Record<string, string>> = {
  wasip1: 'wasm32-wasip1',
  wasip2: 'wasm32-wasip2',
  wasi: 'wasm32-wasi',
};

/** The platforms `--platform` accepts for a compile, for messages. */
export const SUPPORTED_TARGETS = [
  ...Object.keys(WASM_TRIPLES).map((os) => `${os}/wasm`),
  ...Object.keys(LINUX).map((a) => `linux/${a}`),
];

export interface Target {
  /** Normalised (`linux/aarch64` → linux/arm64, `linux/arm` → linux/arm/v7). */
  platform: Platform;
  wasm: boolean;
  /** GNU triple for native targets (`aarch64-linux-gnu`), `wasm32-wasip1` and the like for wasm. */
  triple: string;
}

function elfTarget(p: Platform): ElfTarget | undefined {
  if (p.os !== 'linux') return undefined;
  const key = p.architecture === 'arm' ? `arm/${p.variant}` : p.architecture;
  // amd64 v2/v3/v4 are the same machine with newer instructions.
  if (p.variant !== undefined && p.architecture !== 'arm' && p.architecture !== 'amd64') return undefined;
  return LINUX[key];
}

/** The target a compile builds for; E_UNSUPPORTED for platforms kiln cannot build. */
export function resolveTarget(platform: Platform = WASM_TARGET): Target {
  const p = normalizePlatform(platform);
  if (isWasmPlatform(p)) {
    const triple = WASM_TRIPLES[p.os];
    if (triple) return { platform: p, wasm: true, triple };
  } else {
    const elf = elfTarget(p);
    if (elf) return { platform: p, wasm: false, triple: elf.triple };
  }
  throw new KilnError(
    'E_UNSUPPORTED',
    `cannot compile for ${formatPlatform(p)}: not a wasm or linux target kiln knows`,
    {
      hint: `targets: ${SUPPORTED_TARGETS.join(', ')}`,
    },
  );
}

/** What the first bytes of a file say it is, in words (for messages). */
export function describeHeader(head: Uint8Array): string {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length >= 8 && b.readUInt32BE(0) === 0x0061736d) {
    return b.readUInt32LE(4) === 1 ? 'a WebAssembly module' : 'a WebAssembly component';
  }
  if (b.length >= 20 && b.readUInt32BE(0) === 0x7f454c46) {
    const bits = b[4] === 1 ? 32 : b[4] === 2 ? 64 : undefined;
    const le = b[5] === 1;
    const machine = le ? b.readUInt16LE(18) : b.readUInt16BE(18);
    const name = EM_NAMES[machine] ?? `machine ${machine}`;
    return `a ${bits ?? '?'}-bit ${le ? 'little' : 'big'}-endian ELF for ${name}`;
  }
  if (b.length >= 2 && b[0] === 0x23 && b[1] === 0x21) return 'a script (#!)';
  if (b.length >= 4 && [0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe].includes(b.readUInt32BE(0)))
    return 'a Mach-O binary';
  if (b.length >= 2 && b[0] === 0x4d && b[1] === 0x5a) return 'a PE (Windows) binary';
  return b.length === 0 ? 'an empty file' : 'neither an ELF binary nor WebAssembly';
}

/** Undefined when `head` (the file's first 20 bytes or more) is an artifact for `target`, else why not. */
export function artifactMismatch(head: Uint8Array, target: Target): string | undefined {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  let fits: boolean;
  if (target.wasm) {
    fits = b.length >= 8 && b.readUInt32BE(0) === 0x0061736d;
  } else {
    const want = elfTarget(target.platform)!;
    fits =
      b.length >= 20 &&
      b.readUInt32BE(0) === 0x7f454c46 &&
      b[4] === (want.bits === 64 ? 2 : 1) &&
      b[5] === (want.littleEndian ? 1 : 2) &&
      (want.littleEndian ? b.readUInt16LE(18) : b.readUInt16BE(18)) === want.machine;
  }
  return fits ? undefined : describeHeader(b);
}

/**
 * Throws E_WRONG_PLATFORM unless `file` is an artifact for `target`. Reads only the header.
 * `what` names the artifact in the message (its path in the build).
 */
export async function checkArtifact(file: string, target: Target, what = file): Promise<void> {
  const handle = await open(file, 'r');
  const head = Buffer.alloc(64);
  let n: number;
  try {
    ({ bytesRead: n } = await handle.read(head, 0, head.length, 0));
  } finally {
    await handle.close();
  }
  const built = artifactMismatch(head.subarray(0, n), target);
  if (built === undefined) return;
  const platform = formatPlatform(target.platform);
  throw new KilnError('E_WRONG_PLATFORM', `the build for ${platform} wrote ${built}: ${what}`, {
    hint: target.wasm
      ? 'the build command must compile to WebAssembly'
      : `the build command must cross-compile for ${platform} ($KILN_TARGET_TRIPLE=${target.triple}, $KILN_TARGET_ARCH=${target.platform.architecture})`,
  });
}
