#!/bin/bash
# Fetch Debian's cloud kernel package (the one linux-image-cloud-amd64 depends on) and unpack it
# under build/kernel/ — never installed into the host's /boot. Idempotent: does nothing if the
# unpacked tree is already there. Prints the unpacked directory on stdout.
#   usage: scripts/fetch-kernel.sh [OUTDIR]      (default: <repo>/build/kernel)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/build/kernel}
mkdir -p "$OUT"
# several builds may ask at once: one fetches, the others wait for it
exec 9>"$OUT/.lock"
flock 9

# Already unpacked? (a marker written last, so a half-done unpack is redone)
if [ -f "$OUT/.unpacked" ] && [ -d "$OUT/root/lib/modules" ]; then
	echo "$OUT/root"
	exit 0
fi

resolve() { apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
pkg=$(resolve)
if [ -z "$pkg" ]; then
	# apt lists may not be there yet on a fresh machine
	apt-get update -qq >&2
	pkg=$(resolve)
fi
[ -n "$pkg" ] || { echo "fetch-kernel: cannot resolve linux-image-cloud-amd64's kernel package" >&2; exit 1; }

deb=$(ls "$OUT"/"$pkg"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
	# apt-get download writes to the cwd; _apt needs to be able to write there
	tmp=$(mktemp -d /tmp/fetch-kernel.XXXXXX)
	chmod 777 "$tmp"
	(cd "$tmp" && apt-get download "$pkg" >&2) || { rm -rf "$tmp"; echo "fetch-kernel: apt-get download $pkg failed" >&2; exit 1; }
	mv "$tmp"/*.deb "$OUT"/
	rm -rf "$tmp"
	deb=$(ls "$OUT"/"$pkg"_*.deb | head -1)
fi
rm -rf "$OUT/root"
dpkg -x "$deb" "$OUT/root"
[ -d "$OUT/root/lib/modules" ] || { echo "fetch-kernel: $deb has no lib/modules" >&2; exit 1; }
# The package ships no modules.dep (dpkg's postinst runs depmod); make ours in the unpacked tree
kv=$(ls "$OUT/root/lib/modules" | head -1)
depmod -b "$OUT/root" "$kv"
echo "$pkg" > "$OUT/.unpacked"
echo "$OUT/root"
