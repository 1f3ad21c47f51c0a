/**
 * The six language presets: toolchain image, build command and what marks a project as theirs.
 * docs/formats.md lists the images. Every command writes the artifact to
 * "$KILN_OUT/app.wasm" and never into the source, which the container runners mount read-only:
 * tools that must write next to the sources (cargo without a Cargo.lock, npm, dotnet) build from a
 * copy under /tmp. Tags here are pinned to digests in kiln.lock on first use.
 * Native (linux) builds cross-compile in the same image and write "$KILN_OUT/app"; dotnet and
 * assemblyscript have none.
 */
import type { NativeTarget, Preset } from './types.js';

/** A copy of the source to build in, for tools that write into the project directory. */
const COPY_TO_TMP = 'rm -rf /tmp/kiln-src && cp -a . /tmp/kiln-src && cd /tmp/kiln-src';

/**
 * Go's cross-compilation settings from $KILN_TARGET_*: cgo off, so no C cross compiler is needed
 * and the binary is static. GOARM from arm's variant (v7 → 7), GOAMD64 from amd64's (v3).
 */
const GO_TARGET_ENV = [
  'export CGO_ENABLED=0 GOOS="$KILN_TARGET_OS" GOARCH="$KILN_TARGET_ARCH"',
  'case "$KILN_TARGET_ARCH/$KILN_TARGET_VARIANT" in',
  '  arm/v*) export GOARM="$(echo "$KILN_TARGET_VARIANT" | tr -d v)" ;;',
  '  amd64/v*) export GOAMD64="$KILN_TARGET_VARIANT" ;;',
  'esac',
].join('\n');

/**
 * Rust's names for the linux targets. The gnu (glibc) ones, not musl: Debian's rustc 1.63 ships
 * no musl standard library, and rustup images have the gnu std for the host already.
 */
function rustTriple(t: NativeTarget): string {
  switch (t.arch) {
    case 'amd64':
      return 'x86_64-unknown-linux-gnu';
    case 'arm64':
      return 'aarch64-unknown-linux-gnu';
    case 'arm':
      return t.variant === 'v7' ? 'armv7-unknown-linux-gnueabihf' : 'arm-unknown-linux-gnueabi';
    case '386':
      return 'i686-unknown-linux-gnu';
    case 'ppc64le':
      return 'powerpc64le-unknown-linux-gnu';
    case 'riscv64':
      return 'riscv64gc-unknown-linux-gnu';
    default:
      return `${t.arch}-unknown-linux-gnu`; // s390x
  }
}

export const rust: Preset = {
  lang: 'rust',
  image: 'docker.io/library/rust:1.83-slim',
  markers: ['Cargo.toml'],
  // wasm32-wasip1 since Rust 1.78; older toolchains (Debian's 1.63) call it wasm32-wasi.
  // rustup is only asked for the target when the image lacks it (that needs --network).
  command: [
    'set -e',
    'T=wasm32-wasip1',
    'rustc --print target-list | grep -qx "$T" || T=wasm32-wasi',
    '[ -d "$(rustc --print sysroot)/lib/rustlib/$T" ] || rustup target add "$T"',
    `[ -f Cargo.lock ] || { ${COPY_TO_TMP}; }`,
    'cargo build --release --target "$T" --target-dir /tmp/kiln-target',
    'set -- /tmp/kiln-target/"$T"/release/*.wasm',
    '[ $# -eq 1 ] || { echo "kiln: expected one .wasm in target/$T/release, found: $*" >&2; exit 1; }',
    'cp "$1" "$KILN_OUT/app.wasm"',
  ].join('\n'),
  env: { CARGO_HOME: '/tmp/kiln-cargo', CARGO_TERM_COLOR: 'never' },
  // The one executable of target/<triple>/release. Cargo links with `cc`, which cannot link for
  // another architecture: the target's gcc links instead when the image has one.
  native: (t) => ({
    command: [
      'set -e',
      `T=${rustTriple(t)}`,
      'if [ ! -d "$(rustc --print sysroot)/lib/rustlib/$T" ]; then',
      '  command -v rustup >/dev/null || { echo "kiln: this rustc has no $T standard library, and no rustup to add it" >&2; exit 1; }',
      '  rustup target add "$T"',
      'fi',
      `[ -f Cargo.lock ] || { ${COPY_TO_TMP}; }`,
      'if command -v "$KILN_TARGET_TRIPLE-gcc" >/dev/null; then',
      '  export "CARGO_TARGET_$(echo "$T" | tr a-z.- A-Z__)_LINKER=$KILN_TARGET_TRIPLE-gcc"',
      'fi',
      'cargo build --release --target "$T" --target-dir /tmp/kiln-target',
      'set -- $(find /tmp/kiln-target/"$T"/release -maxdepth 1 -type f -perm -u+x ! -name "*.so")',
      '[ $# -eq 1 ] || { echo "kiln: expected one executable in target/$T/release, found: $*" >&2; exit 1; }',
      'cp "$1" "$KILN_OUT/app"',
    ].join('\n'),
    env: { CARGO_HOME: '/tmp/kiln-cargo', CARGO_TERM_COLOR: 'never' },
  }),
};

export const tinygo: Preset = {
  lang: 'tinygo',
  image: 'docker.io/tinygo/tinygo:0.34.0',
  // go.mod is Go's marker too: TinyGo is chosen only by --lang, kiln.yaml, or a tinygo.json hint.
  markers: ['tinygo.json'],
  command: 'tinygo build -target=wasip1 -o "$KILN_OUT/app.wasm" .',
  env: { GOCACHE: '/tmp/kiln-gocache', GOFLAGS: '-buildvcs=false', XDG_CACHE_HOME: '/tmp' },
  // Without -target TinyGo builds for GOOS/GOARCH, as go does.
  native: () => ({
    command: `${GO_TARGET_ENV}\ntinygo build -o "$KILN_OUT/app" .`,
    env: { GOCACHE: '/tmp/kiln-gocache', GOFLAGS: '-buildvcs=false', XDG_CACHE_HOME: '/tmp' },
  }),
};

export const go: Preset = {
  lang: 'go',
  image: 'docker.io/library/golang:1.23',
  markers: ['go.mod'],
  command: 'go build -trimpath -o "$KILN_OUT/app.wasm" .',
  env: {
    GOOS: 'wasip1',
    GOARCH: 'wasm',
    GOCACHE: '/tmp/kiln-gocache',
    GOPATH: '/tmp/kiln-gopath',
    GOFLAGS: '-buildvcs=false',
  },
  native: () => ({
    command: `${GO_TARGET_ENV}\ngo build -trimpath -o "$KILN_OUT/app" .`,
    env: { GOCACHE: '/tmp/kiln-gocache', GOPATH: '/tmp/kiln-gopath', GOFLAGS: '-buildvcs=false' },
  }),
};

export const c: Preset = {
  lang: 'c',
  image: 'ghcr.io/webassembly/wasi-sdk:wasi-sdk-25',
  markers: ['CMakeLists.txt', '*.c', '*.cc', '*.cpp'],
  // wasi-sdk's clang when the image has it, else a distribution clang with wasi-libc (Debian's
  // sysroot is /usr). CMake projects build with wasi-sdk's toolchain file.
  command: [
    'set -e',
    'if [ -x /opt/wasi-sdk/bin/clang ]; then CC=/opt/wasi-sdk/bin/clang; SYS=',
    'else',
    // Distributions install clang-NN and only sometimes a plain `clang`: take the newest.
    '  CC=$(command -v clang || ls /usr/bin/clang-[0-9]* 2>/dev/null | sort -V | tail -n 1)',
    '  SYS="--target=wasm32-wasi --sysroot=/usr"',
    'fi',
    '[ -n "$CC" ] || { echo "kiln: no clang in the toolchain image" >&2; exit 127; }',
    'CXX=$(echo "$CC" | sed "s/clang/clang++/")',
    'if [ -f CMakeLists.txt ]; then',
    '  cmake -S . -B /tmp/kiln-build -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=/opt/wasi-sdk/share/cmake/wasi-sdk.cmake',
    '  cmake --build /tmp/kiln-build',
    '  set -- $(find /tmp/kiln-build -maxdepth 2 -name "*.wasm")',
    '  [ $# -eq 1 ] || { echo "kiln: expected one .wasm from cmake, found: $*" >&2; exit 1; }',
    '  cp "$1" "$KILN_OUT/app.wasm"',
    'elif ls *.cc *.cpp >/dev/null 2>&1; then',
    '  $CXX $SYS $CFLAGS -O2 -fno-exceptions -o "$KILN_OUT/app.wasm" *.c* ',
    'else',
    '  $CC $SYS $CFLAGS -O2 -o "$KILN_OUT/app.wasm" *.c',
    'fi',
  ].join('\n'),
  env: {},
  native: () => ({ command: C_NATIVE, env: {} }),
};

/**
 * C for a linux target, the compiler chosen in this order: clang --target=$KILN_TARGET_TRIPLE when
 * the image has that triple's libc (Debian: /usr/<triple>/lib from the -cross packages, or
 * /usr/lib/<triple> for the build's own), linking with lld when there are no <triple> binutils;
 * else <triple>-gcc; else cc when it targets the triple itself. Static (-static) when the target's
 * libc.a is there, else dynamically linked: such a binary needs a base image with that libc.
 */
const C_NATIVE = [
  'set -e',
  'T="$KILN_TARGET_TRIPLE"',
  'M="$T"; [ "$T" = i686-linux-gnu ] && M=i386-linux-gnu # Debian\'s multiarch name',
  'CLANG=$(command -v clang || ls /usr/bin/clang-[0-9]* 2>/dev/null | sort -V | tail -n 1)',
  'LIBC=',
  'for d in "/usr/$T/lib" "/usr/lib/$M"; do',
  '  if [ -e "$d/libc.so" ] || [ -e "$d/libc.a" ]; then LIBC=$d; break; fi',
  'done',
  'if [ -n "$CLANG" ] && [ -n "$LIBC" ]; then',
  '  CC="$CLANG --target=$T"; CXX="$(echo "$CLANG" | sed "s/clang/clang++/") --target=$T"',
  '  if ! command -v "$T-ld" >/dev/null; then CC="$CC -fuse-ld=lld"; CXX="$CXX -fuse-ld=lld"; fi',
  'elif command -v "$T-gcc" >/dev/null; then',
  '  CC="$T-gcc"; CXX="$T-g++"',
  'elif command -v cc >/dev/null && [ "$(cc -dumpmachine)" = "$T" ]; then',
  '  CC=cc; CXX=c++',
  'else',
  '  echo "kiln: no C compiler for $T in the toolchain image (clang and the $T libc, $T-gcc, or cc on a $T machine)" >&2',
  '  exit 127',
  'fi',
  'A=$($CC -print-file-name=libc.a)',
  'STATIC=; if [ "$A" != libc.a ] && [ -e "$A" ]; then STATIC=-static; fi',
  'if [ -f CMakeLists.txt ]; then',
  '  CC="$CC" CXX="$CXX" LDFLAGS="$STATIC $LDFLAGS" cmake -S . -B /tmp/kiln-build -DCMAKE_BUILD_TYPE=Release',
  '  cmake --build /tmp/kiln-build',
  '  set -- $(find /tmp/kiln-build -maxdepth 2 -type f -perm -u+x ! -name "*.so*")',
  '  [ $# -eq 1 ] || { echo "kiln: expected one executable from cmake, found: $*" >&2; exit 1; }',
  '  cp "$1" "$KILN_OUT/app"',
  'elif ls *.cc *.cpp >/dev/null 2>&1; then',
  '  $CXX $CFLAGS -O2 $STATIC -o "$KILN_OUT/app" *.c*',
  'else',
  '  $CC $CFLAGS -O2 $STATIC -o "$KILN_OUT/app" *.c',
  'fi',
].join('\n');

export const dotnet: Preset = {
  lang: 'dotnet',
  image: 'mcr.microsoft.com/dotnet/sdk:8.0',
  markers: ['*.csproj'],
  // The wasi-experimental workload is not in the SDK image: installing it needs the network.
  needsNetwork: true,
  command: [
    'set -e',
    COPY_TO_TMP,
    'dotnet workload install wasi-experimental',
    'dotnet build -c Release -p:RuntimeIdentifier=wasi-wasm -p:WasmSingleFileBundle=true',
    'set -- bin/Release/net8.0/wasi-wasm/AppBundle/*.wasm',
    '[ $# -eq 1 ] || { echo "kiln: expected one .wasm in AppBundle, found: $*" >&2; exit 1; }',
    'cp "$1" "$KILN_OUT/app.wasm"',
  ].join('\n'),
  env: { DOTNET_CLI_TELEMETRY_OPTOUT: '1', DOTNET_NOLOGO: '1', NUGET_PACKAGES: '/tmp/kiln-nuget' },
};

export const assemblyscript: Preset = {
  lang: 'assemblyscript',
  image: 'docker.io/library/node:22',
  markers: [], // package.json naming assemblyscript: see detect()
  // npm ci fetches the compiler and the WASI shim: that needs the network.
  needsNetwork: true,
  command: [
    'set -e',
    COPY_TO_TMP,
    '[ -d node_modules ] || npm ci --no-audit --no-fund',
    'ENTRY=assembly/index.ts; [ -f "$ENTRY" ] || ENTRY=index.ts',
    'npx asc "$ENTRY" -o "$KILN_OUT/app.wasm" --optimize --config node_modules/@assemblyscript/wasi-shim/asconfig.json',
  ].join('\n'),
  env: { npm_config_cache: '/tmp/kiln-npm', npm_config_update_notifier: 'false' },
};
