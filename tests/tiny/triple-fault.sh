#!/bin/bash
# Tiny guest: a triple fault is reported with the vCPU's registers and exit status 4.
. "$(dirname "$0")/common.bash"
run_tiny triple
grep -q TRIPLE-NOW "$T_TMP/out" || fail "guest did not run"
[ $st = 4 ] || { cat "$T_TMP/err"; fail "exit $st, want 4"; }
grep -q 'triple fault' "$T_TMP/err" || fail "no triple-fault message"
if [ -d /sys/module/kvm_amd ] && grep -q "reset values: KVM on AMD SVM" "$T_TMP/err"; then
	# SVM: KVM reinitialises a vCPU after a shutdown intercept; the dump must still be there
	# and say that it shows the reset state (vmm/vcpu.c)
	grep -q 'vcpu0: rip 000000000000fff0' "$T_TMP/err" || { cat "$T_TMP/err"; fail "registers not dumped"; }
	pass "kvm_amd: registers dumped, marked as the reset state"
fi
grep -q 'r15 000000005a5a5a5a' "$T_TMP/err" || { cat "$T_TMP/err"; fail "registers not dumped"; }
grep -q 'rip 0000000000100' "$T_TMP/err" || fail "no rip in the dump"
pass
