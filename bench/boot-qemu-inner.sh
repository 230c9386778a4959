#!/bin/bash
# Runs where /dev/kvm is hardware-accelerated (directly, or inside the test host): boots the
# project's test guest under QEMU+KVM (-cpu host, direct kernel boot) RUNS times per machine
# configuration and prints, per configuration, the median time from QEMU's process start to the
# guest's GUEST-READY line and to QEMU's exit after the guest powers off.
#   usage: bench/boot-qemu-inner.sh [RUNS] [CONFIG...]   configs: q35 q35-qboot microvm
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
G=${VMCTL_GUEST:-$ROOT/build/guest}
RUNS=${1:-5}; shift || true
configs=("${@:-q35 q35-qboot microvm}")
[ $# -gt 0 ] || configs=(q35 q35-qboot microvm)
APPEND="console=ttyS0 quiet panic=-1 vmctl.action=poweroff"

machine_args() {
	case "$1" in
	q35) echo "-M q35" ;;
	q35-qboot) echo "-M q35 -bios /usr/share/qemu/qboot.rom" ;;
	microvm) echo "-M microvm,pcie=on,rtc=on" ;;
	esac
}
median() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "# QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'), kernel $(uname -r), $(nproc) CPUs; guest: 2 vCPUs, 1 GiB, $G"
for c in "${configs[@]}"; do
	: >/tmp/bench-ready.$$; : >/tmp/bench-exit.$$
	for i in $(seq "$RUNS"); do
		t0=$(date +%s%N)
		ready=
		# shellcheck disable=SC2046
		while IFS= read -r l; do
			case "$l" in GUEST-READY*) ready=$((($(date +%s%N) - t0) / 1000000)) ;; esac
		done < <(timeout 120 qemu-system-x86_64 -enable-kvm -cpu host $(machine_args "$c") -smp 2 -m 1024 \
			-nodefaults -display none -no-reboot -serial stdio \
			-kernel "$G/bzImage" -initrd "$G/initramfs.cpio.gz" -append "$APPEND" </dev/null 2>/dev/null)
		wait $! 2>/dev/null
		t_exit=$((($(date +%s%N) - t0) / 1000000))
		[ -n "$ready" ] || { echo "$c run $i: no GUEST-READY"; continue; }
		echo "$ready" >>/tmp/bench-ready.$$; echo "$t_exit" >>/tmp/bench-exit.$$
		echo "$c run $i: ready ${ready} ms, exit ${t_exit} ms"
	done
	n=$(wc -l </tmp/bench-ready.$$)
	[ "$n" -gt 0 ] && echo "RESULT $c: median of $n: process start -> GUEST-READY $(median </tmp/bench-ready.$$) ms, -> exit after poweroff $(median </tmp/bench-exit.$$) ms (ready min $(sort -n /tmp/bench-ready.$$ | head -1), max $(sort -n /tmp/bench-ready.$$ | tail -1))"
	rm -f /tmp/bench-ready.$$ /tmp/bench-exit.$$
done
