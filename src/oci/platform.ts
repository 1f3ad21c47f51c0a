/**
 * OCI platforms (`os/arch[/variant]`) with Go's names, as in image indexes and `--platform`.
 * Normalisation follows containerd so `linux/aarch64` and `linux/arm64/v8` pick the same image.
 */
import { KilnError } from '../errors.js';

/** An OCI platform: os, architecture, variant, os.version, os.features. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

const PART_RE = /^[a-z0-9_.-]+$/;
// WebAssembly System Interface targets; `js/wasm` (Go's browser target) is a wasm platform too.
const WASI_OS = new Set(['wasi', 'wasip1', 'wasip2']);
const EXAMPLES = 'e.g. linux/amd64, linux/arm64/v8 or wasip1/wasm';

function fail(input: string, why: string, hint?: string): never {
  throw new KilnError(
    'E_BAD_PLATFORM',
    `invalid platform ${JSON.stringify(input)}: ${why}`,
    hint === undefined ? {} : { hint },
  );
}

/** Parses `os/arch[/variant]`. Case is folded (as containerd does); names are not normalised. */
export function parsePlatform(s: string): Platform {
  if (s.trim() === '') fail(s, `the platform is empty; expected os/arch[/variant], ${EXAMPLES}`);
  const parts = s.toLowerCase().split('/');
  if (parts.length < 2 || parts.length > 3) fail(s, `expected os/arch[/variant], ${EXAMPLES}`);
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  const names = ['operating system', 'architecture', 'variant'];
  parts.forEach((part, i) => {
    if (part === '') fail(s, `the ${names[i]} is empty; expected os/arch[/variant], ${EXAMPLES}`);
    if (!PART_RE.test(part)) {
      fail(s, `the ${names[i]} ${JSON.stringify(part)} may only contain letters, digits, '_', '.' and '-'`);
    }
  });
  // Catch the easy mistakes with wasm early: a wasi OS has no native architecture.
  if (os === 'wasm' && WASI_OS.has(architecture)) {
    fail(s, 'the operating system comes first', `try "${architecture}/wasm"`);
  }
  if (WASI_OS.has(os) && architecture !== 'wasm') {
    fail(s, `${os} runs only on the wasm architecture`, `try "${os}/wasm"`);
  }
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

/** A platform as `os/arch[/variant]`. */
export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** Maps aliases onto Go's names and fills in or drops default variants (containerd's rules). */
export function normalizePlatform(p: Platform): Platform {
  let os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  if (os === 'macos') os = 'darwin';
  switch (architecture) {
    case 'i386':
      architecture = '386';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      architecture = 'amd64';
      if (variant === 'v1') variant = undefined; // v1 is the baseline every amd64 CPU has
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      if (variant === '8' || variant === 'v8' || variant === 'v8.0') variant = undefined; // the only arm64 most images name
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      // Images built for bare `arm` are v7 in practice; digits alone get docker's `v` prefix.
      variant = variant === undefined ? 'v7' : /^[5-8]$/.test(variant) ? `v${variant}` : variant;
      break;
  }
  const out: Platform = { os, architecture };
  if (variant !== undefined) out.variant = variant;
  if (p['os.version'] !== undefined) out['os.version'] = p['os.version'];
  if (p['os.features'] !== undefined) out['os.features'] = [...p['os.features']];
  return out;
}

/**
 * True when an image for `have` serves a request for `want`. Both are normalised first, so a
 * bare `linux/arm` asks for v7 (containerd does the same); a `want` without variant takes any.
 */
export function platformMatches(want: Platform, have: Platform): boolean {
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  return (
    w.os === h.os && w.architecture === h.architecture && (w.variant === undefined || w.variant === h.variant)
  );
}

const GO_OS: Record<string, string> = { win32: 'windows', sunos: 'solaris' };
const GO_ARCH: Record<string, string> = { x64: 'amd64', ia32: '386', mipsel: 'mipsle' };

/** The platform this process runs on, in Go's names (Node says `win32`/`x64`, OCI says `windows`/`amd64`). */
export function hostPlatform(): Platform {
  const os = GO_OS[process.platform] ?? process.platform;
  let architecture = GO_ARCH[process.arch] ?? process.arch;
  // Node reports `ppc64` for Linux's little-endian port; only AIX runs it big-endian.
  if (architecture === 'ppc64' && os === 'linux') architecture = 'ppc64le';
  const p: Platform = { os, architecture };
  if (architecture === 'arm') {
    const version = (process.config.variables as { arm_version?: string | number }).arm_version;
    if (version !== undefined) p.variant = `v${version}`;
  }
  return normalizePlatform(p);
}

/** Whether a platform is WebAssembly (architecture `wasm`). */
export function isWasmPlatform(p: Platform): boolean {
  return p.architecture === 'wasm';
}
