#!/bin/bash
# Tiny guest: serial output (outb and rep outsb) reaches stdout or --console file:PATH, and the
# byte written to the debug-exit port becomes the vmm's exit status; 1 and 2 vCPUs.
. "$(dirname "$0")/common.bash"
for cpus in 1 2; do
	run_tiny hello --cpus $cpus
	[ $st = 42 ] || { cat "$T_TMP/err"; fail "$cpus vCPU: exit $st, want 42"; }
	[ "$(cat "$T_TMP/out")" = HELLO-OK ] || fail "$cpus vCPU: stdout '$(cat "$T_TMP/out")', want HELLO-OK"
done
run_tiny hello --console "file:$T_TMP/console.log"
[ $st = 42 ] || fail "--console file: exit $st"
[ ! -s "$T_TMP/out" ] || fail "--console file: output still on stdout"
[ "$(cat "$T_TMP/console.log")" = HELLO-OK ] || fail "console file has '$(cat "$T_TMP/console.log")'"
pass "HELLO-OK, exit 42, 1-2 vCPUs, console file"
