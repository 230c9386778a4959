#!/bin/bash
# Tiny guest: three LAPIC timer interrupts delivered through an IDT (in-kernel LAPIC), with
# the vCPU halted in between.
. "$(dirname "$0")/common.bash"
run_tiny timer
[ "$(cat "$T_TMP/out")" = TIMER-OK ] || { cat "$T_TMP/err"; fail "output '$(cat "$T_TMP/out")'"; }
[ $st = 32 ] || fail "exit $st, want 32"
pass
