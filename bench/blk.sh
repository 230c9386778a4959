#!/bin/bash
# Block benchmark (not a test): our virtio-blk against QEMU's, side by side in the SAME test-host
# run, same guest kernel/initramfs, same image, 2 vCPUs / 512 MiB, alternating vmm and QEMU
# RUNS times per configuration (odd rounds ours first, even rounds QEMU first). Inside the
# guest: firmware/guest/programs/blkbench.c (a static fio stand-in: O_DIRECT pread/pwrite) —
# sequential 1 MiB write/read (1 thread) and 4 KiB random write/read (4 threads = 4 requests
# in flight), 5 s each, wrapping over the 128 MiB region.
# Configurations (the same backing for both monitors):
#   ramdisk-direct  a brd ramdisk /dev/ram0: ours --disk /dev/ram0,direct;
#                   QEMU -drive cache=none,aio=io_uring (its fastest user-space path)
#   tmpfs-buffered  a file on the test host's tmpfs: ours --disk FILE (page cache);
#                   QEMU -drive cache=writeback,aio=io_uring
# QEMU's virtio-blk-pci keeps its defaults (num-queues = vCPUs, seg-max-adjust).
# Medians, and ratios ours/QEMU (> 1: ours better), in build/bench/blk.txt.
#   usage: bench/blk.sh [RUNS]      (default 3)
# Where /dev/kvm is not hardware-accelerated it runs itself inside the test host (tests/lab/run).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-3}
if [ -z "${BENCH_IN_LAB:-}" ]; then
	verdict=0
	"${VMCTL_BUILD:-$ROOT/build}/bin/kvmcheck" >/dev/null 2>&1 || verdict=$?
	if [ $verdict != 0 ]; then
		mkdir -p "$ROOT/build/bench"
		"$ROOT/tests/lab/run" --mem 6G --timeout 3000 --out "$ROOT/build/bench" --env BENCH_IN_LAB=1 \
			${VMM:+--env "VMM=$VMM"} -- "$0" "$RUNS" 2>&1 | tee "$ROOT/build/bench/blk.txt"
		exit "${PIPESTATUS[0]}"
	fi
fi
VMM=${VMM:-${VMCTL_BUILD:-$ROOT/build}/bin/vmm}
G=${VMCTL_GUEST:-$ROOT/build/guest}
for f in "$VMM" "$G/bzImage" "$G/initramfs.cpio.gz"; do [ -e "$f" ] || { echo "missing $f (make all guest)"; exit 1; }; done
zcat "$G/initramfs.cpio.gz" | cpio -t --quiet 2>/dev/null | grep -qx 'bin/blkbench' ||
	{ echo "the test guest has no /bin/blkbench (make guest)"; exit 1; }
"$VMM" --help 2>&1 | grep -q -- --disk || { echo "$VMM has no --disk option"; exit 1; }
T=$(mktemp -d /tmp/bench-blk.XXXXXX)
cleanup() { rmmod brd 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
median() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

BENCH_CMD="blkbench -s 128 -t 5 /dev/vda"
APPEND="console=ttyS0 quiet panic=-1 vmctl.action=run vmctl.run=b64:$(printf '%s' "$BENCH_CMD" | base64 -w0)"

# one NAME CONFIG CMD...: boot, collect "BENCH ..." lines into $T/NAME.CONFIG
one() {
	local name=$1 cfg=$2
	shift 2
	timeout 600 "$@" </dev/null 2>"$T/err" | tr -d '\r' | grep -a '^BENCH' >>"$T/$name.$cfg.lines"
	grep -aE 'error|Sanitizer' "$T/err" | head -3
}

run_vmm() {	# CONFIG DISK-SPEC
	one vmm "$1" "$VMM" --kernel "$G/bzImage" --initrd "$G/initramfs.cpio.gz" --append "$APPEND" \
		--memory 512M --cpus 2 --disk "$2"
}
run_qemu() {	# CONFIG DRIVE-SPEC
	one qemu "$1" qemu-system-x86_64 -enable-kvm -cpu host -M q35 -smp 2 -m 512 -nodefaults \
		-display none -no-reboot -serial stdio -kernel "$G/bzImage" -initrd "$G/initramfs.cpio.gz" \
		-append "$APPEND" -drive "$2,if=none,id=d0,format=raw" -device virtio-blk-pci,drive=d0
}

echo "# bench/blk.sh $(date -u +%FT%TZ), kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'); vmm $VMM; guest: 2 vCPUs, 512 MiB; in the guest: $BENCH_CMD"
modprobe brd rd_nr=1 rd_size=$((256 * 1024)) max_part=0 || { echo "no brd module"; exit 1; }
dd if=/dev/zero of=/dev/ram0 bs=1M count=256 status=none	# allocate the ramdisk's pages
IMG=$T/disk.img
dd if=/dev/zero of="$IMG" bs=1M count=256 status=none

# Odd rounds boot ours first, even rounds QEMU first: the first boot of a test-host run is
# the slowest (cold caches in the test host), and a fixed order gave that cost to one side.
for i in $(seq "$RUNS"); do
	order="vmm qemu"
	[ $((i % 2)) = 0 ] && order="qemu vmm"
	echo "round $i: ramdisk-direct ($order)"
	for m in $order; do
		if [ $m = vmm ]; then run_vmm ramdisk-direct /dev/ram0,direct
		else run_qemu ramdisk-direct file=/dev/ram0,cache=none,aio=io_uring; fi
	done
	echo "round $i: tmpfs-buffered ($order)"
	for m in $order; do
		if [ $m = vmm ]; then run_vmm tmpfs-buffered "$IMG"
		else run_qemu tmpfs-buffered "file=$IMG,cache=writeback,aio=io_uring"; fi
	done
done

# field NAME.CONFIG TEST KEY -> the values, one per line
field() { grep -a " $2 " "$T/$1.lines" 2>/dev/null | sed -n "s/.* $3=\([0-9.]*\).*/\1/p"; }
for cfg in ramdisk-direct tmpfs-buffered; do
	for name in vmm qemu; do
		echo "## $name $cfg: all runs"
		sed 's/^/  /' "$T/$name.$cfg.lines" 2>/dev/null
	done
	printf "%-16s %-10s %12s %12s %8s  %s\n" "$cfg" test vmm qemu ratio "(n vmm/qemu)"
	for t in seqwrite:MBps seqread:MBps randwrite:iops randread:iops; do
		test=${t%%:*} key=${t##*:}
		a=$(field "vmm.$cfg" "$test" "$key" | median)
		b=$(field "qemu.$cfg" "$test" "$key" | median)
		na=$(field "vmm.$cfg" "$test" "$key" | wc -l)
		nb=$(field "qemu.$cfg" "$test" "$key" | wc -l)
		r=$(awk -v a="${a:-0}" -v b="${b:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
		printf "RESULT %-9s %-10s %12s %12s %8s  (%s/%s)\n" "$cfg" "$test $key" "${a:--}" "${b:--}" "$r" "$na" "$nb"
	done
done
