#!/bin/bash
# Boot benchmark (not a test): our vmm against QEMU (q35 and microvm), same kernel, initramfs,
# command line, vCPUs and RAM, in the SAME test-host run, one after the other, RUNS times each.
# Measured from process start (fork/exec in this script) to
#   ready: the guest's GUEST-READY line arriving on the console pipe,
#   exit:  the process exiting after the guest's immediate power-off (vmctl.action=poweroff);
# medians reported, plus peak RSS, and for vmm the peak RSS minus the guest RAM it touched
# (VMM_REPORT_RSS: guest RAM is the memfd, counted as shared memory).
#
# usage: bench/boot-vmm.sh [RUNS]      (default 5; results in build/bench/boot-vmm.txt)
# Where /dev/kvm is not hardware-accelerated it runs itself inside the test host (tests/lab/run).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-5}
CPUS=${BENCH_CPUS:-2}
MEM=${BENCH_MEM:-512}
if [ -z "${BENCH_IN_LAB:-}" ]; then
	verdict=0
	"$ROOT/build/bin/kvmcheck" >/dev/null 2>&1 || verdict=$?
	if [ $verdict != 0 ]; then
		mkdir -p "$ROOT/build/bench"
		exec "$ROOT/tests/lab/run" --mem 6G --timeout 1800 --out "$ROOT/build/bench" \
			--env BENCH_IN_LAB=1 --env "BENCH_CPUS=$CPUS" --env "BENCH_MEM=$MEM" -- "$0" "$RUNS"
	fi
fi
OUT=${LAB_OUT:-$ROOT/build/bench}
mkdir -p "$OUT"
VMM=${VMM:-$ROOT/build/bin/vmm}
K=$ROOT/build/guest/bzImage
I=$ROOT/build/guest/initramfs.cpio.gz
APPEND="console=ttyS0 quiet panic=-1 vmctl.action=poweroff"
for f in "$VMM" "$K" "$I"; do [ -e "$f" ] || { echo "missing $f (make all guest)"; exit 1; }; done
T=$(mktemp -d /tmp/bench-boot.XXXXXX)
trap 'rm -rf "$T"' EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# one NAME CMD...: appends "ready_ms exit_ms peak_kib overhead_kib" to $T/NAME
one() {
	local name=$1 t0 t1 st ready=-1 ov=-
	shift
	rm -f "$T/ready"
	t0=$(now_ms)
	VMM_REPORT_RSS=1 /usr/bin/time -f "%M" -o "$T/rss" timeout 120 "$@" 2>"$T/err" </dev/null |
		while IFS= read -r line; do
			case "$line" in *GUEST-READY*) now_ms >"$T/ready" ;; esac
		done
	st=${PIPESTATUS[0]}
	t1=$(now_ms)
	[ -f "$T/ready" ] && ready=$(($(cat "$T/ready") - t0))
	grep -q overhead_kib "$T/err" && ov=$(sed -n 's/.*overhead_kib=\([0-9]*\).*/\1/p' "$T/err")
	if [ "$st" != 0 ] || [ "$ready" -lt 0 ]; then
		echo "  $name: run failed (status $st, ready $ready)"; tail -3 "$T/err"
		return 1
	fi
	echo "$ready $((t1 - t0)) $(tail -1 "$T/rss") $ov" >>"$T/$name"
	echo "  $name: ready ${ready} ms, exit $((t1 - t0)) ms, peak RSS $(tail -1 "$T/rss") KiB, overhead ${ov} KiB"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

QEMU_COMMON=(-enable-kvm -cpu host -smp "$CPUS" -m "$MEM" -nodefaults -display none -no-reboot
	-serial stdio -kernel "$K" -initrd "$I" -append "$APPEND")
echo "boot benchmark: $RUNS runs each, $CPUS vCPUs, $MEM MiB, $(uname -r), $(date -u +%FT%TZ)"
for i in $(seq "$RUNS"); do
	echo "round $i"
	one vmm "$VMM" --kernel "$K" --initrd "$I" --append "$APPEND" --memory "${MEM}M" --cpus "$CPUS"
	one qemu-q35 qemu-system-x86_64 -M q35 "${QEMU_COMMON[@]}"
	one qemu-microvm qemu-system-x86_64 -M microvm "${QEMU_COMMON[@]}"
done

{
	echo "| monitor | runs ok | ready (median ms) | exit after power-off (median ms) | peak RSS (median KiB) | RSS minus guest RAM (median KiB) |"
	echo "| --- | --- | --- | --- | --- | --- |"
	for n in vmm qemu-q35 qemu-microvm; do
		f=$T/$n
		[ -f "$f" ] || { echo "| $n | 0 | - | - | - | - |"; continue; }
		echo "| $n | $(wc -l <"$f") | $(cut -d' ' -f1 "$f" | median) | $(cut -d' ' -f2 "$f" | median) |" \
			"$(cut -d' ' -f3 "$f" | median) | $(cut -d' ' -f4 "$f" | grep -v - | median) |"
	done
} | tee "$OUT/boot-vmm.txt"
