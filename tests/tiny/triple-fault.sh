#!/bin/bash
# Tiny guest: a triple fault is reported with the vCPU's registers and exit status 4.
. "$(dirname "$0")/common.bash"
run_tiny triple
grep -q TRIPLE-NOW "$T_TMP/out" || fail "guest did not run"
[ $st = 4 ] || { cat "$T_TMP/err"; fail "exit $st, want 4"; }
grep -q 'triple fault' "$T_TMP/err" || fail "no triple-fault message"
grep -q 'r15 000000005a5a5a5a' "$T_TMP/err" || { cat "$T_TMP/err"; fail "registers not dumped"; }
grep -q 'rip 0000000000100' "$T_TMP/err" || fail "no rip in the dump"
pass
