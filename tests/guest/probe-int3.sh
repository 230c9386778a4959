#!/bin/bash
# The long-mode int3 probe completes on a real KVM: 100000 int3 through the IDT.
. "$(dirname "$0")/../lib/harness.sh"
P=$ROOT/build/lab/probe-int3
need_file "$P"
out=$(timeout 30 "$P" 100000); st=$?
log "$out (exit $st)"
[ $st = 0 ] || fail "probe failed (exit $st)"
pass
