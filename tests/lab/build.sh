#!/bin/bash
# Build the test host's boot files: the Debian cloud kernel and a tiny busybox initramfs whose
# only job is to mount the host's / (virtio-fs, read-only) under a tmpfs overlay and hand over
# to tests/lab/stage2.sh, which runs from the shared tree. Rebuilt only when an input changes.
#   usage: tests/lab/build.sh [OUTDIR]      (default: <repo>/build/lab)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:-$ROOT/build/lab}
# Only what is needed before the shared root is mounted; everything else is modprobe'd by
# stage2 from the package's module tree, which it bind-mounts at /lib/modules/<kver>.
MODULES="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci fuse virtiofs overlay"

KROOT=$("$ROOT/scripts/fetch-kernel.sh")
kv=$(ls "$KROOT/lib/modules" | head -1)
BB=/bin/busybox
[ -x "$BB" ] || { echo "lab: busybox-static not installed (scripts/install-deps.sh)" >&2; exit 1; }

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9
stamp=$( { cat "$HERE/build.sh" "$HERE/init" "$ROOT/scripts/modclosure.sh"; echo "$MODULES $kv";
	cat "$KROOT/../.unpacked"; ls -l --time-style=+%s "$BB"; } | sha256sum | cut -c1-16)
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ] &&
   [ -f "$OUT/bzImage" ] && [ -f "$OUT/initramfs.cpio.gz" ]; then
	exit 0
fi
work=$(mktemp -d /tmp/lab-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
r=$work/root
mkdir -p "$r"/{bin,proc,sys,dev,newroot,mnt/lower,mnt/rw,lib/modules}
cp "$BB" "$r/bin/busybox"
for app in sh mount umount mkdir insmod switch_root cat echo sleep poweroff grep; do
	ln -s busybox "$r/bin/$app"
done
install -m 0755 "$HERE/init" "$r/init"
: >"$r/lib/modules/load.order"
for rel in $("$ROOT/scripts/modclosure.sh" "$KROOT" $MODULES); do
	base=$(basename "$rel")
	case "$rel" in
	*.xz) base=${base%.xz}; xz -dc "$KROOT/lib/modules/$kv/$rel" >"$r/lib/modules/$base" ;;
	*.zst) base=${base%.zst}; zstd -qdc "$KROOT/lib/modules/$kv/$rel" >"$r/lib/modules/$base" ;;
	*) cp "$KROOT/lib/modules/$kv/$rel" "$r/lib/modules/$base" ;;
	esac
	echo "$base" >>"$r/lib/modules/load.order"
done
(cd "$r" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -1 >"$work/initramfs.cpio.gz"
cp "$KROOT/boot/vmlinuz-$kv" "$work/bzImage"
mv -f "$work/initramfs.cpio.gz" "$OUT/initramfs.cpio.gz"
mv -f "$work/bzImage" "$OUT/bzImage"
echo "$stamp" >"$OUT/.stamp"
echo "lab: built $OUT (kernel $kv)"
