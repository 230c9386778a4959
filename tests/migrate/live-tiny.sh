#!/bin/bash
# Live migration of the tiny dirtier/verifier over loopback, hopping 6 times between fresh
# vmm processes (back and forth): every hop completes, the source exits 0, the destination's
# console continues the pass sequence, and the verifier (which checks every page of its
# 16 MiB region on every pass) never finds a lost or stale page. Figures from migrate-status.
. "$(dirname "$0")/common.bash"

start_vmm h0
wait_passes h0 3 30 || fail "dirtier did not start: $(cat "$T_TMP/h0.err")"
prev=h0
for i in 1 2 3 4 5 6; do
	port=$(free_port)
	start_vmm "h$i" --incoming "127.0.0.1:$port"
	dpid=$pid
	wait_for "$T_TMP/h$i.err" "waiting for a migration" 20 || fail "h$i: not listening: $(cat "$T_TMP/h$i.err")"
	before=$(last_pass $prev)
	r=$(ctl "$T_TMP/$prev.sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"127.0.0.1:$port\",\"wait\":true}}") ||
		fail "hop $i: migrate: $r"
	[ "$(json_field "$r" phase)" = completed ] || fail "hop $i: $r"
	eval "spid=\$${prev}_pid"
	wait_exit "$spid" 20
	[ "$st" = 0 ] || fail "hop $i: source exit $st: $(tail -3 "$T_TMP/$prev.err")"
	wait_passes "h$i" $((before + 3)) 30 || fail "hop $i: destination does not run: $(tail -3 "$T_TMP/h$i.err")"
	# the destination continues the sequence: its first pass follows the source's last
	hop_continues "hop $i" "$prev" "h$i"
	log "hop $i: total $(json_field "$r" total_ms) ms, downtime $(json_field "$r" downtime_ms) ms," \
		"setup $(json_field "$r" setup_ms) ms, rounds $(( $(json_field "$r" round) + 1 ))," \
		"$(json_field "$r" bytes_sent) bytes; passes $last -> $first"
	prev=h$i
done
no_sanitizer_reports
pass "6 hops, every page verified on every pass, sequence continuous"
