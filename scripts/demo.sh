#!/bin/bash
# The main job: show what this machine's /dev/kvm is; where it is hardware-accelerated run the
# demo directly, otherwise start the project's test host (QEMU TCG + emulated AMD-V, Debian
# cloud kernel + kvm-amd, a real SVM KVM inside) and run it there. The demo itself
# (scripts/demo-inner.sh): boot the Debian guest on vmctl's vmm, migrate it live to a second
# vmm while it writes and verifies its RAM, print the figures, power it off.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${VMCTL_BUILD:-$ROOT/build}/bin
echo "== this machine's /dev/kvm"
"$BIN/kvmcheck"
case $? in
0) echo "== hardware KVM here: running directly"; inside=() ;;
*) echo "== starting the test host (QEMU TCG + emulated AMD-V, Debian cloud kernel + kvm-amd)"
   inside=(tests/lab/run --timeout 1200 --mem 6G --) ;;
esac
"${inside[@]}" bash -c 'echo "== inside: $(uname -r), $(nproc) vCPUs"; exec scripts/demo-inner.sh'
st=$?
[ $st = 0 ] && echo "demo: OK" || echo "demo: FAILED (status $st)"
exit $st
