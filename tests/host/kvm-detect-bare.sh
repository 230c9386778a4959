#!/bin/bash
# On this machine's own /dev/kvm, kvmcheck must say what it is. Where the host module is PVM
# (kvm_pvm, as on the machines this project is developed on) the verdict must be
# emulation-only, exit 2, with advice; on a hardware host it must say hardware (exit 0).
. "$(dirname "$0")/../lib/harness.sh"
need_file "$BIN/kvmcheck"
[ -e /dev/kvm ] || skip "no /dev/kvm here"
out=$("$BIN/kvmcheck" -v); st=$?
log "$out (exit $st)"
if [ -d /sys/module/kvm_pvm ]; then
	[ $st = 2 ] || fail "kvm_pvm host: want exit 2 (emulated), got $st"
	grep -q '^kvm: emulation-only (kvm_pvm' <<<"$out" || fail "line does not say emulation-only"
	grep -q 'tests/lab/run' <<<"$out" || fail "line gives no advice"
	mips=$(sed -n 's/.*mips=\([0-9.]*\).*/\1/p' <<<"$out")
	awk -v m="$mips" 'BEGIN { exit !(m > 0 && m < 10) }' || fail "calibration $mips M/s is not emulation speed"
elif [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; then
	[ $st = 0 ] || fail "kvm_intel/kvm_amd host: want exit 0 (hardware), got $st"
else
	skip "unknown KVM module here"
fi
# the library never takes long, even without calibration
out=$("$BIN/kvmcheck" --no-calibrate); st2=$?
[ $st2 = $st ] || fail "--no-calibrate gives exit $st2, calibrated $st"
pass
