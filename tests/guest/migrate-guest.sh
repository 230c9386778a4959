#!/bin/bash
# test-timeout: 1200
# Live migration of the real test guest (Debian kernel) while memverify writes and verifies
# most of its RAM: migrated back and forth (MIG_HOPS, default 2) between vmm processes over loopback.
# Every hop must complete (source exit 0), the destination's console must continue the
# "MV pass=" sequence (every page verified again after landing, each pass), no MV-BAD, and
# the guest kernel's log stays clean. Figures per hop from migrate-status.
# MIG_POLICY=post-copy (or suspend, minimal-downtime) picks the policy; MIG_PC_ROUNDS sets
# post-copy's postcopy_after_rounds (a post-copy hop must then really have switched over).
. "$(dirname "$0")/boot-common.bash"
_o=$("$VMM" --incoming 2>&1)
grep -q "needs an argument" <<<"$_o" || skip "this vmm has no --incoming (migration not wired into main.c)"
CTL=$BIN/vmm-ctl
need_file "$CTL"
MEM=${MIG_GUEST_MEM:-384}
# 2 hops by default: each costs 35-110 s in the test host (the guest dirties ~220 MiB without
# pause, ~1 GB crosses per hop), and the >= 5 hops back and forth are live-tiny's (6 hops);
# MIG_HOPS=5 for the long form.
HOPS=${MIG_HOPS:-2}
MIG_ARGS=${MIG_POLICY:+,\"policy\":\"$MIG_POLICY\"}${MIG_PC_ROUNDS:+,\"postcopy_after_rounds\":$MIG_PC_ROUNDS}
APPEND="console=ttyS0 loglevel=5 panic=-1 vmctl.action=run vmctl.run=/bin/memverify"

start() {
	local n=$1
	shift
	"$VMM" --kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" --append "$APPEND" \
		--memory "${MEM}M" --cpus 2 --console "file:$T_TMP/$n.con" --control "$T_TMP/$n.sock" \
		"$@" >"$T_TMP/$n.out" 2>"$T_TMP/$n.err" </dev/null &
	pid=$!
	eval "${n}_pid=$pid"
	on_exit "kill -9 $pid 2>/dev/null"
}
last_pass() { grep -ao 'MV pass=[0-9]*' "$T_TMP/$1.con" 2>/dev/null | tail -1 | cut -d= -f2; }
first_pass() { grep -ao 'MV pass=[0-9]*' "$T_TMP/$1.con" 2>/dev/null | head -1 | cut -d= -f2; }
wait_pass() {	# NAME N SECS
	local end=$((SECONDS + $3))
	while [ $SECONDS -lt $end ]; do
		[ "$(last_pass "$1")" ] && [ "$(last_pass "$1")" -ge "$2" ] && return 0
		grep -aq MV-BAD "$T_TMP/$1.con" && fail "$1: $(grep -a MV-BAD "$T_TMP/$1.con")"
		sleep 0.5
	done
	return 1
}

start h0
wait_pass h0 2 "$BOOT_TIMEOUT" || { tail -20 "$T_TMP/h0.con"; fail "memverify did not run"; }
log "$(grep -a MV-START "$T_TMP/h0.con" | tr -d '\r'); $(grep -a 'MV pass=2 ' "$T_TMP/h0.con" | tr -d '\r')"
prev=h0
for i in $(seq "$HOPS"); do
	port=$(free_port)
	start "h$i" --incoming "127.0.0.1:$port"
	wait_for "$T_TMP/h$i.err" "waiting for a migration" 60 || fail "h$i: not listening: $(cat "$T_TMP/h$i.err")"
	r=$(live_migrate "$CTL" "$T_TMP/$prev.sock" "127.0.0.1:$port" 600 "$MIG_ARGS") ||
		fail "hop $i: migrate: $r; source: $(tail -3 "$T_TMP/$prev.err" | tr '\n' ' ')"
	eval "source_exit \$${prev}_pid"
	[ "$st" = 0 ] || fail "hop $i: source exit $st: $(tail -3 "$T_TMP/$prev.err")"
	last=$(last_pass $prev)
	wait_pass "h$i" $((last + 2)) 300 || { tail -5 "$T_TMP/h$i.con"; fail "hop $i: guest does not continue on the destination: $(tail -3 "$T_TMP/h$i.err")"; }
	first=$(first_pass "h$i")
	[ "$first" -ge "$last" ] && [ "$first" -le $((last + 1)) ] || fail "hop $i: source ended at pass $last, destination printed $first first"
	! grep -aq MV-BAD "$T_TMP/$prev.con" "$T_TMP/h$i.con" || fail "hop $i: MV-BAD"
	cp "$T_TMP/h$i.con" "$T_TMP/con"
	check_log_clean
	log "hop $i: total $(json_field "$r" total_ms) ms, downtime $(json_field "$r" downtime_ms) ms, setup $(json_field "$r" setup_ms) ms, rounds $(( $(json_field "$r" round) + 1 )), $(json_field "$r" bytes_sent) bytes, throttle $(json_field "$r" throttle_pct)%; passes $last -> $first"
	log "hop $i: $(grep -a 'stop-and-copy:' "$T_TMP/$prev.err" | sed 's/.*stop-and-copy: //')"
	if [ "${MIG_POLICY:-}" = post-copy ]; then
		[ -z "${MIG_PC_ROUNDS:-}" ] || [ -n "$(json_field "$r" postcopy_ms)" ] ||
			fail "hop $i: no post-copy phase: $r"
		log "hop $i: post-copy $(json_field "$r" postcopy_ms) ms, pending $(json_field "$r" postcopy_pages_pending)," \
			"on demand $(json_field "$r" postcopy_pages_on_demand), streamed $(json_field "$r" postcopy_pages_streamed)," \
			"fault latency median $(json_field "$r" fault_latency_median_ms) max $(json_field "$r" fault_latency_max_ms) ms"
		log "hop $i: $(grep -a 'post-copy: all pages in' "$T_TMP/h$i.err" | sed 's/.*post-copy: //')"
	fi
	prev=h$i
done
! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP"/*.err || { cat "$T_TMP"/*.err; fail "sanitizer report"; }
pass "$HOPS hops of a ${MEM} MiB Debian guest with memverify: every pass verified, sequence continuous"
