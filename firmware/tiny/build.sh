#!/bin/sh
# Build the tiny test guests: firmware/tiny/*.S -> OUTDIR/*.bin (flat images linked at
# 0x100000, where `vmm --firmware` loads and enters them in 64-bit mode). Needs binutils.
# Usage: firmware/tiny/build.sh OUTDIR
set -eu
out=${1:?usage: build.sh OUTDIR}
src=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
for s in "$src"/*.S; do
	n=$(basename "$s" .S)
	as --64 -I "$src" -o "$out/$n.o" "$s"
	ld -nostdlib -static -Ttext=0x100000 -e _start --oformat=binary -o "$out/$n.bin" "$out/$n.o"
	rm -f "$out/$n.o"
done
