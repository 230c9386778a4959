#!/bin/bash
# The main job at this stage: show what this machine's /dev/kvm is, start the test host, show
# that it has a real (SVM) KVM, and boot vmctl's test guest (Debian cloud kernel + busybox
# initramfs) under QEMU+KVM there, to its readiness line and power-off.
# (Once vmctl's own monitor boots, the demo switches to build/bin/vmm.)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${VMCTL_BUILD:-$ROOT/build}/bin
echo "== this machine's /dev/kvm"
"$BIN/kvmcheck"
case $? in
0) echo "== hardware KVM here: booting the guest directly"; inside=() ;;
*) echo "== starting the test host (QEMU TCG + emulated AMD-V, Debian cloud kernel + kvm-amd)"
   inside=(tests/lab/run --timeout 300 --) ;;
esac
"${inside[@]}" bash -c '
	echo "== inside: $(uname -r), $(nproc) vCPUs, $(awk "/MemTotal/{print int(\$2/1024)}" /proc/meminfo) MiB"
	'"$BIN"'/kvmcheck || exit 1
	echo "== booting the test guest under QEMU+KVM (2 vCPUs, 1 GiB)"
	cmd=$(printf "echo hello from the guest: \$(uname -sr), \$(nproc) CPUs" | base64 -w0)
	t0=$(date +%s%N)
	timeout 120 qemu-system-x86_64 -enable-kvm -cpu host -M q35 -smp 2 -m 1024 -nodefaults \
		-display none -no-reboot -serial stdio \
		-kernel build/guest/bzImage -initrd build/guest/initramfs.cpio.gz \
		-append "console=ttyS0 quiet panic=-1 vmctl.action=run vmctl.run=b64:$cmd" </dev/null |
	while IFS= read -r l; do
		l=${l%$'"'"'\r'"'"'}
		case "$l" in GUEST-*|hello*|*"Power down"*) printf "  [%5d ms] %s\n" $((($(date +%s%N) - t0) / 1000000)) "$l" ;; esac
	done
	st=${PIPESTATUS[0]}
	echo "== QEMU exited with status $st after $((($(date +%s%N) - t0) / 1000000)) ms"
	exit $st'
st=$?
[ $st = 0 ] && echo "demo: OK" || echo "demo: FAILED (status $st)"
exit $st
