#!/bin/bash
# test-timeout: 600
# Post-copy migration (policy "post-copy", opt-in) of the tiny dirtier/verifier over loopback:
#  1. refused when the destination does not offer post-copy (VMM_MIG_FAULT=no-postcopy: as a
#     host without userfaultfd): the call fails with the reason, the guest keeps running on
#     the source, the destination exits without running it;
#  2. the default (2 pre-copy rounds, or fewer), 3. after 1 round, 4. after 0 rounds (every
#     page comes after the switch-over, on demand or streamed): each completes, the source
#     exits 0, the verifier (every page of its 16 MiB region re-checked every pass) finds no
#     bad page and the pass sequence continues on the destination;
#  5. the source is killed (-9) right after the switch-over of a bandwidth-limited post-copy:
#     the destination logs the VM as lost with the pages it misses and exits 8, not running;
#  6. the destination is killed right after the switch-over: the source reports the VM lost,
#     never resumes its vCPUs (no pass after the pause) and exits 8.
. "$(dirname "$0")/common.bash"

# pc_migrate SRC PORT [extra json members]: post-copy migration, final status in $r
pc_migrate() {
	# (a loaded test host needs more than ctl's 30 s for a waited hop)
	r=$(CTL_T=180 ctl "$T_TMP/$1.sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"127.0.0.1:$2\",\"policy\":\"post-copy\"${3:-}}}") ||
		fail "migrate $1: $r"
}

start_vmm h0
wait_passes h0 3 30 || fail "dirtier did not start: $(cat "$T_TMP/h0.err")"

# 1. refused: the destination does not offer post-copy
export VMM_MIG_FAULT=no-postcopy
dest d0
unset VMM_MIG_FAULT
pc_migrate h0 "$port" ',"wait":true'
[ "$(json_field "$r" phase)" = failed ] || fail "refusal: $r"
grep -q "does not offer post-copy" <<<"$r" || fail "refusal does not say why: $r"
n=$(last_pass h0)
wait_passes h0 $((n + 3)) 30 || fail "refusal: the source guest stopped running"
no_bad h0
wait_exit "$dpid" 20
[ "$st" != 0 ] || fail "refusal: destination exit 0"
! grep -aq PASS "$T_TMP/d0.con" 2>/dev/null || fail "refusal: the guest ran on the destination"
log "refused: $(json_field "$r" error); destination exit $st"

# 2.-4. hops
prev=h0
i=0
for extra in "" ',"postcopy_after_rounds":1' ',"postcopy_after_rounds":0'; do
	i=$((i + 1))
	dest "h$i"
	pc_migrate $prev "$port" ",\"wait\":true$extra"
	[ "$(json_field "$r" phase)" = completed ] || fail "hop $i: $r; source: $(tail -3 "$T_TMP/$prev.err")"
	eval "spid=\$${prev}_pid"
	wait_exit "$spid" 20
	[ "$st" = 0 ] || fail "hop $i: source exit $st: $(tail -3 "$T_TMP/$prev.err")"
	before=$(last_pass $prev)
	wait_passes "h$i" $((before + 3)) 30 || fail "hop $i: destination does not run: $(tail -3 "$T_TMP/h$i.err")"
	hop_continues "hop $i" "$prev" "h$i"
	if [ -n "$extra" ]; then
		# forced: the switch-over must have happened, and every page arrived
		[ -n "$(json_field "$r" postcopy_ms)" ] || fail "hop $i: no post-copy phase: $r"
		grep -q "post-copy: all pages in" "$T_TMP/h$i.err" || fail "hop $i: destination: $(tail -3 "$T_TMP/h$i.err")"
	fi
	log "hop $i (${extra:-default}): total $(json_field "$r" total_ms) ms, downtime $(json_field "$r" downtime_ms) ms," \
		"rounds $(( $(json_field "$r" round) + 1 )), post-copy $(json_field "$r" postcopy_ms) ms," \
		"pending $(json_field "$r" postcopy_pages_pending), on demand $(json_field "$r" postcopy_pages_on_demand)," \
		"streamed $(json_field "$r" postcopy_pages_streamed), fault latency median $(json_field "$r" fault_latency_median_ms)" \
		"max $(json_field "$r" fault_latency_max_ms) ms; passes $last -> $first"
	prev=h$i
done

# 5. the source dies right after the switch-over: the destination must not run with holes
dest lost
pc_migrate $prev "$port" ',"postcopy_after_rounds":0,"bandwidth_mbps":1'
wait_for "$T_TMP/lost.err" "post-copy: vCPUs running" 30 || fail "lost: no switch-over: $(tail -3 "$T_TMP/lost.err")"
eval "spid=\$${prev}_pid"
kill -9 "$spid"
log "lost: source killed after the switch-over; waiting for the destination to exit"
wait_exit "$dpid" 40
[ "$st" = 8 ] || fail "lost: destination exit $st (want 8): $(tail -3 "$T_TMP/lost.err")"
grep -aqE "post-copy: source lost after switch-over with [1-9][0-9]* pages missing: VM lost" "$T_TMP/lost.err" ||
	fail "lost: no VM-lost line: $(tail -3 "$T_TMP/lost.err")"
log "source killed after switch-over: destination exit $st: $(grep -a 'VM lost' "$T_TMP/lost.err" | sed 's/.*post-copy: //')"

# 6. the destination dies right after the switch-over: the source must not resume
start_vmm s6
wait_passes s6 3 30 || fail "s6: dirtier did not start: $(cat "$T_TMP/s6.err")"
dest d6
pc_migrate s6 "$port" ',"postcopy_after_rounds":0,"bandwidth_mbps":1'
wait_for "$T_TMP/d6.err" "post-copy: vCPUs running" 30 || fail "d6: no switch-over: $(tail -3 "$T_TMP/d6.err")"
# the source has the ACK (downtime_ms appears with it): the VM is the destination's now
end=$((SECONDS + 20))
until [ -n "$(json_field "$(ctl "$T_TMP/s6.sock" migrate-status 2>/dev/null)" downtime_ms)" ]; do
	[ $SECONDS -lt $end ] || fail "d6: the source never got ACK(POSTCOPY_START): $(tail -3 "$T_TMP/s6.err")"
	sleep 0.1
done
n6=$(last_pass s6)
kill -9 "$dpid"
log "destination killed after the switch-over; waiting for the source to exit"
wait_exit "$s6_pid" 40
[ "$st" = 8 ] || fail "destination lost: source exit $st (want 8): $(tail -3 "$T_TMP/s6.err")"
grep -aq "the VM is lost (not resumed here)" "$T_TMP/s6.err" || fail "destination lost: source log: $(tail -3 "$T_TMP/s6.err")"
# paused since the switch-over and never resumed: not a single pass more
[ "$(last_pass s6)" = "$n6" ] || fail "destination lost: the source ran on (pass $n6 -> $(last_pass s6))"
! grep -aq "keeps running here" "$T_TMP/s6.err" || fail "destination lost: the source resumed"
log "destination killed after switch-over: source exit $st: $(grep -a 'VM is lost' "$T_TMP/s6.err" | sed 's/.*: post-copy failed/post-copy failed/')"
no_sanitizer_reports
pass "post-copy refused without support, 3 hops verified, source or destination lost after switch-over -> exit 8"
