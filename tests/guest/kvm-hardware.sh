#!/bin/bash
# Where real-guest tests run (hardware KVM, or inside the test host), /dev/kvm must be
# hardware-accelerated: kvmcheck exits 0 and says so, with a calibration far above emulation.
. "$(dirname "$0")/../lib/harness.sh"
need_file "$BIN/kvmcheck"
out=$("$BIN/kvmcheck" -v); st=$?
log "$out (exit $st)"
[ $st = 0 ] || fail "want hardware (exit 0), got $st"
grep -qE '^kvm: hardware-accelerated \(kvm_(amd|intel)' <<<"$out" || fail "line does not say hardware"
pass
