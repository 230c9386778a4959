#!/bin/bash
# Tiny guest: PIO to a device (COM1) and to nothing, MMIO to nothing — unclaimed reads are
# all-ones in every width, writes are dropped, and the guest keeps running.
. "$(dirname "$0")/common.bash"
run_tiny pio_mmio
[ "$(cat "$T_TMP/out")" = PIO-MMIO-OK ] || { cat "$T_TMP/err"; fail "output '$(cat "$T_TMP/out")'"; }
[ $st = 16 ] || fail "exit $st, want 16"
pass
