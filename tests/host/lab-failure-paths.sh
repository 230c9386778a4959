#!/bin/bash
# tests/lab/run failure paths: a hanging command is stopped at the timeout (124, message,
# nothing left running); an L1 kernel crash, and an L1 whose user space stops without a message
# (no heartbeat), are reported as TEST HOST CRASHED (125) and counted; QEMU missing gives one
# clear line (127).
. "$(dirname "$0")/../lib/harness.sh"
need_root
name=t-fail-$$
t0=$SECONDS
"$ROOT/tests/lab/run" --name "$name" --out "$T_TMP/out" --timeout 15 -- sleep 600 2>"$T_TMP/err"
st=$?; took=$((SECONDS - t0))
log "hang: exit $st after ${took}s: $(cat "$T_TMP/err")"
[ $st = 124 ] || fail "hang: want 124, got $st"
grep -q 'TIMEOUT' "$T_TMP/err" || fail "hang: no TIMEOUT message"
[ $took -lt 60 ] || fail "hang: took ${took}s for a 15 s timeout"
sleep 1
pgrep -f "lab-$name" >/dev/null && fail "hang: QEMU or virtiofsd left running"

"$ROOT/tests/lab/run" --name "$name" --out "$T_TMP/out" --timeout 300 -- \
	sh -c 'echo 1 >/proc/sys/kernel/sysrq; echo c >/proc/sysrq-trigger; sleep 30' 2>"$T_TMP/err"
st=$?
log "crash: exit $st: $(head -c 300 "$T_TMP/err")"
[ $st = 125 ] || fail "crash: want 125, got $st"
grep -q 'TEST HOST CRASHED' "$T_TMP/err" || fail "crash: not reported as a test host crash"
[ "$(wc -l <"$T_TMP/out/crashes.log")" = 1 ] || fail "crash: not counted in crashes.log"

# A test host whose user space stops without a word (faked: its heartbeat loop is stopped)
t0=$SECONDS
LAB_HANG_SECS=12 "$ROOT/tests/lab/run" --name "$name" --out "$T_TMP/out" --timeout 300 -- \
	sh -c 'kill -STOP "$(cat /run/lab-heartbeat.pid)"; sleep 600' 2>"$T_TMP/err"
st=$?; took=$((SECONDS - t0))
log "hang without a message: exit $st after ${took}s: $(head -c 300 "$T_TMP/err")"
[ $st = 125 ] || fail "silent hang: want 125, got $st"
grep -q 'TEST HOST CRASHED.*hung: no heartbeat' "$T_TMP/err" || fail "silent hang: not reported as a hung test host"
[ $took -lt 200 ] || fail "silent hang: noticed after ${took}s, the timeout was 300 s"
[ "$(wc -l <"$T_TMP/out/crashes.log")" = 2 ] || fail "silent hang: not counted in crashes.log"
sleep 1
pgrep -f "lab-$name" >/dev/null && fail "silent hang: QEMU or virtiofsd left running"

LAB_QEMU=/nonexistent/qemu-system-x86_64 "$ROOT/tests/lab/run" -- true 2>"$T_TMP/err"
st=$?
log "no QEMU: exit $st: $(cat "$T_TMP/err")"
[ $st = 127 ] || fail "no QEMU: want 127, got $st"
[ "$(wc -l <"$T_TMP/err")" = 1 ] && grep -q 'QEMU not found' "$T_TMP/err" || fail "no QEMU: not one clear line"
pgrep -f "lab-$name" >/dev/null && fail "QEMU or virtiofsd left running"
pass
