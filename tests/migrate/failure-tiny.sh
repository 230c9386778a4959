#!/bin/bash
# Failure injection: during setup (refusal), during the iterative phase (bandwidth-limited so round 0 lasts seconds)
# the destination is killed, the connection is cut (a relay in between is killed), the
# migration is cancelled, the overall timeout expires, and a destination refuses the VM
# (different memory size); in stop-and-copy (the destination dies when STATE arrives) and
# after the destination loaded and started but never acknowledged (VMM_MIG_FAULT). Each time the source reports the failure in migrate-status and
# keeps running with intact memory (the verifier continues, no bad page), and a destination
# that did not complete exits non-zero without ever running the guest. At the end the same
# source migrates successfully and the guest continues, verified, on the destination.
. "$(dirname "$0")/common.bash"
command -v python3 >/dev/null || skip "python3 missing (the relay)"

start_vmm src
wait_passes src 3 30 || fail "dirtier did not start: $(cat "$T_TMP/src.err")"
S=$T_TMP/src.sock

# migrate_slow PORT [extra json]: start a 2 MiB/s migration (round 0 of 16 MiB ≈ 8 s)
migrate_slow() {
	r=$(ctl "$S" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"127.0.0.1:$1\",\"bandwidth_mbps\":2${2:-}}}") ||
		fail "migrate: $r"
}

# survived WHAT PHASE: the source reports PHASE and its guest keeps passing verification
survived() {
	wait_phase "$S" "$2" 30 || fail "$1: source status is not $2"
	r=$(ctl "$S" migrate-status)
	kill -0 "$src_pid" || fail "$1: the source died"
	local n
	n=$(last_pass src)
	wait_passes src $((n + 3)) 30 || fail "$1: the source guest stopped running after the failure"
	no_bad src
	ctl "$S" status | grep -q '"running"' || fail "$1: source not running: $(ctl "$S" status)"
	log "$1: source $2 ($(json_field "$r" error)), guest continued past pass $n"
}

# dest_never_ran NAME: exited non-zero, console without a single pass
dest_never_ran() {
	wait_exit "$dpid" 40
	[ "$st" != 0 ] || fail "$1: destination exit 0 after a failed migration"
	! grep -aq PASS "$T_TMP/$1.con" 2>/dev/null || fail "$1: the half-loaded guest ran on the destination"
	log "$1: destination exit $st: $(grep -a 'error' "$T_TMP/$1.err" | tail -1)"
}

# 1. destination killed mid-stream
dest d1
migrate_slow "$port"
wait_phase "$S" precopy 20 || fail "kill: no precopy phase"
sleep 1
kill -9 "$dpid"
survived "destination killed" failed

# 2. connection cut: a relay between the two is killed
dest d2
rport=$(free_port)
python3 - "$rport" "$port" >"$T_TMP/relay.log" 2>&1 <<'PY' &
import socket, sys, threading
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(1)
print("ready", flush=True)
a, _ = ls.accept()
b = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
def pipe(x, y):
    while True:
        d = x.recv(65536)
        if not d: break
        y.sendall(d)
threading.Thread(target=pipe, args=(b, a), daemon=True).start()
pipe(a, b)
PY
relay=$!
on_exit "kill -9 $relay 2>/dev/null"
wait_for "$T_TMP/relay.log" ready 10 || fail "relay did not start"
migrate_slow "$rport"
wait_phase "$S" precopy 20 || fail "cut: no precopy phase"
sleep 1
kill -9 $relay
survived "connection cut" failed
dest_never_ran d2

# 3. cancel
dest d3
migrate_slow "$port"
wait_phase "$S" precopy 20 || fail "cancel: no precopy phase"
sleep 1
ctl "$S" migrate-cancel >/dev/null || fail "migrate-cancel refused"
survived "cancel" cancelled
dest_never_ran d3

# 4. overall timeout
dest d4
migrate_slow "$port" ',"timeout_s":2'
survived "timeout" failed
dest_never_ran d4

# 5. refused at CONFIG: the destination has another memory size
MEM=64M dest d5
MEM=32M
r=$(ctl "$S" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"127.0.0.1:$port\",\"wait\":true}}")
[ "$(json_field "$r" phase)" = failed ] || fail "refused: $r"
grep -q "memory size differs" <<<"$r" || fail "refusal does not say why: $r"
survived "refused (memory size)" failed
dest_never_ran d5

# 6. stop-and-copy: the destination dies when STATE arrives (source vCPUs are paused then)
export VMM_MIG_FAULT=at-state
dest d6a
unset VMM_MIG_FAULT
r=$(ctl "$S" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"127.0.0.1:$port\",\"wait\":true}}")
[ "$(json_field "$r" phase)" = failed ] || fail "at-state: $r"
survived "destination lost in stop-and-copy" failed
dest_never_ran d6a

# 7. completing: the destination loaded and started, but never acknowledged (it stops its
#    copy): the source, still owning the VM, resumes
export VMM_MIG_FAULT=no-ack
dest d6b
unset VMM_MIG_FAULT
r=$(ctl "$S" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"127.0.0.1:$port\",\"wait\":true}}")
[ "$(json_field "$r" phase)" = failed ] || fail "no-ack: $r"
survived "no ACK(COMPLETE)" failed
wait_exit "$dpid" 40
[ "$st" != 0 ] || fail "no-ack: destination exit 0"
log "d6b: destination stopped its copy, exit $st"

# 8. and then it works, memory intact
dest d6
before=$(last_pass src)
r=$(ctl "$S" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"127.0.0.1:$port\",\"wait\":true}}")
[ "$(json_field "$r" phase)" = completed ] || fail "final migration: $r"
wait_exit "$src_pid" 20
[ "$st" = 0 ] || fail "source exit $st after completing"
wait_passes d6 $((before + 3)) 30 || fail "destination does not run"
no_bad d6
[ "$(first_pass_after src d6)" -eq $(( $(last_pass src) + 1 )) ] || fail "sequence broken: $(last_pass src) -> $(first_pass_after src d6)"
no_sanitizer_reports
pass "killed destination, cut connection, cancel, timeout, refusal, lost in stop-and-copy, no ACK: source kept running verified; then migrated"
