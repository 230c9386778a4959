#!/bin/bash
# Build vmctl's test guest: the Debian cloud kernel (bzImage) and a busybox-static initramfs
# with the virtio modules of the same kernel, this folder's /init and the static test programs
# in programs/*.c (each becomes /bin/<name>). Rebuilt only when an input changes.
#   usage: firmware/guest/build.sh [OUTDIR]     (default: <repo>/build/guest)
#   output: OUTDIR/bzImage OUTDIR/initramfs.cpio.gz
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:-$ROOT/build/guest}
MODULES="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk
	failover net_failover virtio_net virtio_balloon virtio-rng button"

KROOT=$("$ROOT/scripts/fetch-kernel.sh")
kv=$(ls "$KROOT/lib/modules" | head -1)
BB=/bin/busybox		# busybox-static's binary (the dynamic busybox package would not run here)
[ -x "$BB" ] && dpkg-query -W busybox-static >/dev/null 2>&1 ||
	{ echo "guest: busybox-static not installed (scripts/install-deps.sh)" >&2; exit 1; }

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9

# Input fingerprint: this script, /init, programs, module list, kernel package, busybox.
stamp=$( { cat "$HERE/build.sh" "$HERE/init" "$ROOT/scripts/modclosure.sh";
	cat "$HERE"/programs/*.c "$HERE"/programs/*.h 2>/dev/null || true;
	echo "$MODULES $kv"; cat "$KROOT/../.unpacked"; ls -l --time-style=+%s "$BB"; } | sha256sum | cut -c1-16)
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ] &&
   [ -f "$OUT/bzImage" ] && [ -f "$OUT/initramfs.cpio.gz" ]; then
	exit 0
fi

work=$(mktemp -d /tmp/guest-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
r=$work/root
mkdir -p "$r"/{bin,sbin,proc,sys,dev,tmp,run,etc,lib/modules}
cp "$BB" "$r/bin/busybox"
for app in $("$BB" --list); do
	[ -e "$r/bin/$app" ] || ln -s busybox "$r/bin/$app"
done
install -m 0755 "$HERE/init" "$r/init"

# Modules: flat in /lib/modules, decompressed (busybox insmod takes plain .ko only).
: >"$r/lib/modules/load.order"
for rel in $("$ROOT/scripts/modclosure.sh" "$KROOT" $MODULES); do
	src="$KROOT/lib/modules/$kv/$rel"
	base=$(basename "$rel"); base=${base%.xz}; base=${base%.zst}; base=${base%.gz}
	case "$rel" in
	*.xz) xz -dc "$src" >"$r/lib/modules/$base" ;;
	*.zst) zstd -qdc "$src" >"$r/lib/modules/$base" ;;
	*.gz) gzip -dc "$src" >"$r/lib/modules/$base" ;;
	*) cp "$src" "$r/lib/modules/$base" ;;
	esac
	echo "$base" >>"$r/lib/modules/load.order"
done

# Guest test programs: static, so they need nothing from the initramfs.
for c in "$HERE"/programs/*.c; do
	[ -e "$c" ] || continue
	n=$(basename "$c" .c)
	gcc -std=gnu11 -O2 -Wall -Wextra -Werror -static -o "$r/bin/$n" "$c"
done

(cd "$r" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -6 >"$work/initramfs.cpio.gz"
cp "$KROOT/boot/vmlinuz-$kv" "$work/bzImage"
mv -f "$work/initramfs.cpio.gz" "$OUT/initramfs.cpio.gz"
mv -f "$work/bzImage" "$OUT/bzImage"
echo "$stamp" >"$OUT/.stamp"
echo "guest: built $OUT (kernel $kv, $(du -k "$OUT/initramfs.cpio.gz" | cut -f1) KiB initramfs)"
