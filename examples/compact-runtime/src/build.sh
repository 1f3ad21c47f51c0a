#!/bin/sh
# Runs inside the dev image (kiln compile, in /src): builds libgreet.a and links the greet CLI
# statically against it and glibc, so the binary needs nothing from the image it runs in.
set -eu
cc=clang-14
build=$(mktemp -d)
$cc -O2 -Wall -Wextra -c greet.c -o "$build/greet.o"
ar rcs "$build/libgreet.a" "$build/greet.o"
$cc -O2 -Wall -Wextra -static -I. main.c -L"$build" -lgreet -o "${KILN_OUT:-/out}/greet"
strip "${KILN_OUT:-/out}/greet" 2>/dev/null || true
