#!/bin/sh
# The MetaCall "compact image" recipe with kiln, no Docker daemon needed:
#   dev     = Debian toolchain base + build tools layer + the built library/program
#   runtime = slim base + diff(dev-without-lib, dev-with-lib)
# Writes the images into the OCI layout $OUT (tags toolchain, dev-without-lib, dev-with-lib,
# lib-diff, slim, runtime) and prints the sizes of dev-with-lib and runtime.
#
# Environment:
#   DEV_ROOTFS   a Debian rootfs with clang-14, binutils and libc6-dev (required), e.g.
#                debootstrap --variant=minbase --include=clang-14,lld-14,binutils,libc6-dev bookworm ./dev-rootfs
#   SLIM_ROOTFS  the slim base's rootfs, e.g. a static busybox with its applets in /bin (required)
#   OUT          the OCI layout to write (default ./out)
#   KILN         how to run kiln (default: kiln)
#   RUNNER       where the build runs: sandbox (bubblewrap), docker, auto (default: sandbox)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${DEV_ROOTFS:?set DEV_ROOTFS to a Debian rootfs with clang-14 and libc6-dev}"
: "${SLIM_ROOTFS:?set SLIM_ROOTFS to the slim base rootfs (static busybox)}"
OUT=${OUT:-./out}
KILN=${KILN:-kiln}
RUNNER=${RUNNER:-sandbox}
PLATFORM=linux/amd64
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# `command`: with KILN=kiln, the kiln on PATH rather than this function again
kiln() { command $KILN "$@"; }

echo "== dev image: toolchain base, then the build tools layer" >&2
kiln append scratch --platform "$PLATFORM" --layer "$DEV_ROOTFS" --to "oci:$OUT:toolchain"
mkdir -p "$work/tools"
cp "$here/src/build.sh" "$work/tools/build-greet"
chmod 755 "$work/tools/build-greet"
kiln append "oci:$OUT:toolchain" --layer "$work/tools:/usr/local/bin" --to "oci:$OUT:dev-without-lib"

echo "== the library and its CLI, built inside dev-without-lib" >&2
# A copy of the sources: kiln compile pins the toolchain in SRC/kiln.lock.
cp -r "$here/src" "$work/src"
mkdir -p "$work/install/usr/local/bin"
kiln compile "$work/src" --platform "$PLATFORM" --runner "$RUNNER" --toolchain "oci:$OUT:dev-without-lib" \
  --command build-greet --artifact greet -o "$work/install/usr/local/bin/greet"
kiln append "oci:$OUT:dev-without-lib" --layer "$work/install" --to "oci:$OUT:dev-with-lib-0"
kiln mutate "oci:$OUT:dev-with-lib-0" --entrypoint /usr/local/bin/greet --to "oci:$OUT:dev-with-lib"

echo "== runtime image: slim base + what the library added to the dev image" >&2
kiln diff "oci:$OUT:dev-without-lib" "oci:$OUT:dev-with-lib" --to "oci:$OUT:lib-diff"
kiln append scratch --platform "$PLATFORM" --layer "$SLIM_ROOTFS" --to "oci:$OUT:slim"
kiln merge "oci:$OUT:slim" "oci:$OUT:lib-diff" --to "oci:$OUT:runtime"

# Sizes as a registry serves them: manifest + config + compressed layers.
size() { kiln inspect "oci:$OUT:$1" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).image.totalSize))'; }
dev=$(size dev-with-lib)
runtime=$(size runtime)
echo "dev-with-lib $dev bytes"
echo "runtime $runtime bytes"
