/**
 * Compiling small C programs to WASI (wasm32-wasi, preview 1) modules for tests, with Debian's
 * toolchain: clang + lld (wasm-ld) + wasi-libc (sysroot /usr: headers in /usr/include/wasm32-wasi,
 * libc in /usr/lib/wasm32-wasi) + libclang-rt-14-dev-wasm32 (compiler-rt builtins, found by clang in
 * its resource dir). The command is:
 *
 *   clang --target=wasm32-wasi --sysroot=/usr -Oz -Wall -Wextra -Wl,--strip-all -o out.wasm in.c
 *
 * Output is deterministic (same source and toolchain give the same bytes), and cached by content hash
 * under $TMPDIR/kiln-wasi-cache.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTool, inCI, run, skipOrFail } from './tools.js';

/** Flags after `--target`/`--sysroot`: small, stripped output (the examples use the same). */
export const WASI_CFLAGS: readonly string[] = ['-Oz', '-Wall', '-Wextra', '-Wl,--strip-all'];

export interface WasiToolchain {
  clang: string;
  sysroot: string;
  /** `clang --version`, first line: part of the cache key. */
  version: string;
  /** Full argument list before `-o out.wasm in.c`. */
  args: string[];
}

/** Sysroot holding lib/wasm32-wasi/libc.a: $WASI_SYSROOT, else from `dpkg -L wasi-libc`, else known dirs. */
function findSysroot(): string | undefined {
  const hasLibc = (root: string) => existsSync(join(root, 'lib', 'wasm32-wasi', 'libc.a'));
  const env = process.env['WASI_SYSROOT'];
  if (env) return hasLibc(env) ? env : undefined;
  try {
    const files = execFileSync('dpkg', ['-L', 'wasi-libc'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const suffix = '/lib/wasm32-wasi/libc.a';
    const libc = files.split('\n').find((f) => f.endsWith(suffix));
    if (libc !== undefined) {
      const root = libc.slice(0, -suffix.length);
      if (hasLibc(root)) return root;
    }
  } catch {
    // no dpkg, or wasi-libc not installed: try the usual places
  }
  return ['/usr', '/usr/share/wasi-sysroot', '/opt/wasi-sdk/share/wasi-sysroot'].find(hasLibc);
}

let cached: WasiToolchain | string | undefined;

/** The toolchain, or a string saying what is missing (never throws). */
function detect(): WasiToolchain | string {
  if (cached !== undefined) return cached;
  const clang = findTool('clang');
  const sysroot = findSysroot();
  const missing: string[] = [];
  if (clang === undefined) missing.push("'clang' (apt-get install clang)");
  if (findTool('wasm-ld') === undefined && findTool('wasm-ld-14') === undefined) {
    missing.push("'wasm-ld' (apt-get install lld)");
  }
  if (sysroot === undefined) missing.push('the wasi-libc sysroot (apt-get install wasi-libc)');
  if (clang !== undefined) {
    let builtins = '';
    try {
      builtins = execFileSync(clang, ['--target=wasm32-wasi', '-print-libgcc-file-name'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    } catch {
      // reported below
    }
    if (builtins === '' || !existsSync(builtins)) {
      missing.push(`compiler-rt builtins for wasm32 ${builtins} (apt-get install libclang-rt-14-dev-wasm32)`);
    }
  }
  if (clang === undefined || sysroot === undefined || missing.length > 0) {
    cached = `WASI C toolchain incomplete, missing: ${missing.join(', ')}`;
    return cached;
  }
  const version = execFileSync(clang, ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
  cached = {
    clang,
    sysroot,
    version,
    args: ['--target=wasm32-wasi', `--sysroot=${sysroot}`, ...WASI_CFLAGS],
  };
  return cached;
}

/** Skip reason if the WASI toolchain is incomplete (outside CI); undefined if usable; throws in CI. */
export function wasiSkipReason(): string | undefined {
  const t = detect();
  return typeof t === 'string' ? skipOrFail(t) : undefined;
}

/** The detected toolchain; throws (with the apt packages to install) if incomplete. */
export function wasiToolchain(): WasiToolchain {
  const t = detect();
  if (typeof t === 'string') throw new Error(inCI() ? `${t} [CI=true]` : t);
  return t;
}

/**
 * Compiles `cSource` to a WASI command module and returns the path of the .wasm file. Results are cached
 * by a hash of toolchain, flags and source, so repeated calls (and test runs) are cheap. `name` only
 * names the file (and appears in compiler messages).
 */
export async function buildWasiProgram(name: string, cSource: string): Promise<string> {
  const tc = wasiToolchain();
  const safe = name.replace(/[^A-Za-z0-9._-]/g, '_') || 'program';
  const hash = createHash('sha256')
    .update(JSON.stringify({ version: tc.version, args: tc.args, name: safe, cSource }))
    .digest('hex')
    .slice(0, 24);
  const dir = join(tmpdir(), 'kiln-wasi-cache', `${safe}-${hash}`);
  const out = join(dir, `${safe}.wasm`);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  const src = join(dir, `${safe}.c`);
  writeFileSync(src, cSource);
  // Compile to a unique temp name, then rename: concurrent builders never see a partial file.
  const tmp = join(dir, `.${safe}.${process.pid}.${Date.now()}.tmp.wasm`);
  const r = await run(tc.clang, [...tc.args, '-o', tmp, src], { timeoutMs: 120_000 });
  if (r.code !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(
      `clang failed for ${name} (exit ${r.code}): ${tc.clang} ${tc.args.join(' ')} -o ${tmp} ${src}\n${r.stderr}`,
    );
  }
  renameSync(tmp, out);
  return out;
}

/**
 * A WASI test program. Behaviour, in this order:
 *  - stdout `hello` followed by ` <arg>` for each argument (argv[1..]), then a newline:
 *    no args gives `hello`, args `a b` give `hello a b`;
 *  - if env GREETING is set: stdout `GREETING=<value>`;
 *  - if env ERR_MSG is set: stderr `<value>`;
 *  - if env LIST_DIR is set: stdout `entry: <name>` for each entry of that directory except `.` and `..`,
 *    sorted by name (the directory must be reachable through a WASI preopen);
 *  - if env WRITE_FILE is set: writes env WRITE_CONTENT (default `hello from wasm\n`) to that path,
 *    then stdout `wrote <path>`;
 *  - exits with env EXIT_CODE (default 0). Any failure above prints to stderr and exits 1.
 */
export const HELLO_C = String.raw`#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_dir(const char *path) {
  DIR *d = opendir(path);
  if (!d) {
    fprintf(stderr, "cannot open LIST_DIR %s: %s\n", path, strerror(errno));
    return 1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      names = realloc(names, cap * sizeof *names);
      if (!names) return 1;
    }
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof *names, by_name);
  for (size_t i = 0; i < n; i++) {
    printf("entry: %s\n", names[i]);
    free(names[i]);
  }
  free(names);
  return 0;
}

static int write_file(const char *path, const char *content) {
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "cannot open WRITE_FILE %s: %s\n", path, strerror(errno));
    return 1;
  }
  if (fputs(content, f) == EOF || fclose(f) != 0) {
    fprintf(stderr, "cannot write WRITE_FILE %s: %s\n", path, strerror(errno));
    return 1;
  }
  printf("wrote %s\n", path);
  return 0;
}

int main(int argc, char **argv) {
  fputs("hello", stdout);
  for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
  putchar('\n');

  const char *greeting = getenv("GREETING");
  if (greeting) printf("GREETING=%s\n", greeting);

  const char *err = getenv("ERR_MSG");
  if (err) fprintf(stderr, "%s\n", err);

  const char *dir = getenv("LIST_DIR");
  if (dir && list_dir(dir) != 0) return 1;

  const char *file = getenv("WRITE_FILE");
  if (file) {
    const char *content = getenv("WRITE_CONTENT");
    if (write_file(file, content ? content : "hello from wasm\n") != 0) return 1;
  }

  const char *code = getenv("EXIT_CODE");
  fflush(stdout);
  return code ? atoi(code) : 0;
}
`;
