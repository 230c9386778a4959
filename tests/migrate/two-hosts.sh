#!/bin/bash
# Live migration between the two test hosts over their virtual network (tests/lab/run2):
# host A migrates the Debian test guest running memverify to host B; B's console continues
# the pass sequence with every page verified. Runs the role script in both hosts.
. "$(dirname "$0")/../lib/harness.sh"
need_root
# Opt-in while it is known to fail: the first run (2026-11-22, machine load 13-20) moved
# 26 MB, then the test hosts' virtual link stalled for > 10 s and the source's no-progress
# timeout (then fixed at 10 s, also TCP_USER_TIMEOUT) ended the migration (the source kept
# running). The limit is now the migrate argument stall_timeout_s; the role script asks for
# 30 s (the destination's own limit). Re-run with it (11:04 UTC, load ~6): PASS in 348 s —
# 29 rounds, 1.8 GB over a ~10 MB/s link, auto-converge at 95 %, downtime 450 ms. Still
# opt-in: one run, over the 4 min budget; make it the default once it passes reliably
# in < 4 min on a quiet machine. See docs/migration-protocol.md.
[ "${VMCTL_TWO_HOSTS:-0}" = 1 ] || skip "opt-in (VMCTL_TWO_HOSTS=1): two nested test hosts, 348 s at load 6: over the make-test budget"
[ -x "$ROOT/tests/lab/run2" ] && [ -e "$ROOT/build/lab/bzImage" ] || skip "test host not built (make lab)"
_o=$("$BIN/vmm" --incoming 2>&1)
grep -q "needs an argument" <<<"$_o" || skip "this vmm has no --incoming (migration not wired into main.c)"
role="bash $ROOT/tests/migrate/two-hosts-role.bash"
out=$("$ROOT/tests/lab/run2" --timeout 1500 --out "$T_TMP/out" -- $role -- $role 2>&1)
st=$?
echo "$out" | grep -E '^\[[AB]\] (A|B|ROLE)' | cut -c1-400
grep -q 'ROLE-SKIP' <<<"$out" && skip "no hardware KVM in the test hosts"
[ $st = 0 ] || fail "run2 exit $st"
last=$(sed -n 's/^\[A\] A-OK last=\([0-9]*\).*/\1/p' <<<"$out")
first=$(sed -n 's/^\[B\] B-OK first=\([0-9]*\).*/\1/p' <<<"$out")
[ -n "$last" ] && [ -n "$first" ] || fail "no result lines"
[ "$first" -ge "$last" ] && [ "$first" -le $((last + 1)) ] || fail "A ended at pass $last, B began at $first"
pass "A -> B over the test hosts' network, passes $last -> $first"
