/**
 * The six language presets: toolchain image, build command and what marks a project as theirs.
 * Images and commands follow ../shared/wasm-oci.md. Every command writes the artifact to
 * "$KILN_OUT/app.wasm" and never into the source, which the container runners mount read-only:
 * tools that must write next to the sources (cargo without a Cargo.lock, npm, dotnet) build from a
 * copy under /tmp. Tags here are pinned to digests in kiln.lock on first use.
 */
import type { Preset } from './index.js';

/** A copy of the source to build in, for tools that write into the project directory. */
const COPY_TO_TMP = 'rm -rf /tmp/kiln-src && cp -a . /tmp/kiln-src && cd /tmp/kiln-src';

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
};

export const tinygo: Preset = {
  lang: 'tinygo',
  image: 'docker.io/tinygo/tinygo:0.34.0',
  // go.mod is Go's marker too: TinyGo is chosen only by --lang, kiln.yaml, or a tinygo.json hint.
  markers: ['tinygo.json'],
  command: 'tinygo build -target=wasip1 -o "$KILN_OUT/app.wasm" .',
  env: { GOCACHE: '/tmp/kiln-gocache', GOFLAGS: '-buildvcs=false', XDG_CACHE_HOME: '/tmp' },
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
};

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
