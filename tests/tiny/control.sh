#!/bin/bash
# Tiny guest on the control socket: status, pause (the console stops: no vCPU runs), resume
# (it continues), kill (exit 7); a second vmm on the same socket path is refused.
. "$(dirname "$0")/common.bash"
CTL=$BIN/vmm-ctl
need_file "$CTL"
sock=$T_TMP/ctl.sock con=$T_TMP/con.log
"$VMM" --firmware "$FW/ticker.bin" --memory 16M --control "$sock" --console "file:$con" \
	>"$T_TMP/out" 2>"$T_TMP/err" </dev/null &
pid=$!
on_exit "kill -9 $pid 2>/dev/null"
wait_for "$con" '^TICK 00000003' 20 || fail "ticker did not start"
"$CTL" -t 5 "$sock" status >"$T_TMP/st" || fail "status failed: $(cat "$T_TMP/st")"
grep -q '"running"' "$T_TMP/st" || fail "status: $(cat "$T_TMP/st")"

"$CTL" -t 5 "$sock" pause >"$T_TMP/r" || fail "pause failed: $(cat "$T_TMP/r")"
n1=$(grep -c TICK "$con")
sleep 1
n2=$(grep -c TICK "$con")
[ "$n1" = "$n2" ] || fail "console moved while paused ($n1 -> $n2 lines)"
"$CTL" -t 5 "$sock" status >"$T_TMP/s1"
grep -q '"paused"' "$T_TMP/s1" || fail "status does not say paused"
sleep 0.5
"$CTL" -t 5 "$sock" status >"$T_TMP/s2"
e1=$(grep -o '"vcpu-exits":\[[0-9,]*\]' "$T_TMP/s1")
e2=$(grep -o '"vcpu-exits":\[[0-9,]*\]' "$T_TMP/s2")
[ -n "$e1" ] && [ "$e1" = "$e2" ] || fail "vCPUs ran while paused: $e1 -> $e2"
"$CTL" -t 5 "$sock" pause >"$T_TMP/r" && fail "second pause accepted: $(cat "$T_TMP/r")"
"$CTL" -t 5 "$sock" resume >"$T_TMP/r" || fail "resume failed: $(cat "$T_TMP/r")"
wait_for "$con" "^TICK $(printf %08x $((n2 + 3)))" 10 || fail "console did not continue after resume"

# the socket path is in use: a second vmm refuses at once with one line, exit 1
timeout 20 "$VMM" --firmware "$FW/hello.bin" --memory 16M --control "$sock" >"$T_TMP/out2" 2>"$T_TMP/err2" </dev/null
st2=$?
[ $st2 = 1 ] || fail "second vmm on the same socket: exit $st2, want 1"
[ "$(wc -l <"$T_TMP/err2")" = 1 ] || { cat "$T_TMP/err2"; fail "want one line on stderr"; }
grep -qi 'in use\|already' "$T_TMP/err2" || fail "message does not say in use: $(cat "$T_TMP/err2")"
[ ! -s "$T_TMP/out2" ] || fail "the refused guest ran"

"$CTL" -t 5 "$sock" kill >/dev/null
for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "vmm still running 5 s after kill"
wait $pid
st=$?
[ $st = 7 ] || fail "exit after kill: $st, want 7"
no_sanitizer_report

# SIGTERM stops the VM through the event loop's signalfd: exit 7 as well
"$VMM" --firmware "$FW/ticker.bin" --memory 16M --console "file:$T_TMP/con2" >"$T_TMP/out" 2>"$T_TMP/err" </dev/null &
pid=$!
on_exit "kill -9 $pid 2>/dev/null"
wait_for "$T_TMP/con2" '^TICK 00000002' 20 || fail "second ticker did not start"
kill -TERM $pid
wait $pid
st=$?
[ $st = 7 ] || fail "exit after SIGTERM: $st, want 7"
no_sanitizer_report
pass "pause froze the console at $n1 lines; resume, kill, socket-in-use all as documented"
