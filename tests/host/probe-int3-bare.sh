#!/bin/bash
# The long-mode int3 probe on this machine's /dev/kvm: on PVM it must fail exactly as
# shared/kvm-here.md says, KVM_EXIT_INTERNAL_ERROR at the int3 (exit 3); on hardware it passes.
. "$(dirname "$0")/../lib/harness.sh"
P=$ROOT/build/lab/probe-int3
need_file "$P"
[ -e /dev/kvm ] || skip "no /dev/kvm here"
out=$(timeout 30 "$P" 1000); st=$?
log "$out (exit $st)"
if [ -d /sys/module/kvm_pvm ]; then
	[ $st = 3 ] || fail "want exit 3 (internal error) on PVM, got $st"
	grep -q 'KVM_EXIT_INTERNAL_ERROR.*(the int3) after 0 int3' <<<"$out" || fail "not stopped at the int3"
else
	[ $st = 0 ] || fail "hardware KVM: want the probe to pass, got $st"
fi
pass
