#!/bin/bash
# Migration between two network namespaces joined by a veth pair (10.213.x.1 -> .2): a live
# migration of the tiny dirtier/verifier completes across them; then a second migration
# back is started slowly (bandwidth-limited) and the link is cut (veth down: no RST, packets
# just vanish) — the source must notice within its no-progress limit (stall_timeout_s 3), report the
# failure, and keep running with intact memory; the destination exits non-zero, never ran.
. "$(dirname "$0")/common.bash"
need_root
command -v ip >/dev/null || skip "iproute2 missing"
n=$$
A=vmig-a-$n B=vmig-b-$n VA=vma$n VB=vmb$n
net=10.$((200 + n % 50)).$((n % 250)).
ip netns add "$A" || skip "cannot create network namespaces"
on_exit "ip netns del $A 2>/dev/null"
ip netns add "$B"
on_exit "ip netns del $B 2>/dev/null"
ip link add "$VA" type veth peer name "$VB" || skip "no veth"
ip link set "$VA" netns "$A"
ip link set "$VB" netns "$B"
ip -n "$A" addr add "${net}1/24" dev "$VA"
ip -n "$B" addr add "${net}2/24" dev "$VB"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set "$VA" up
ip -n "$B" link set "$VB" up

# nstart NAME NS [args]: the dirtier inside namespace NS
nstart() {
	local nm=$1 ns=$2
	shift 2
	ip netns exec "$ns" "$VMM" --firmware "$FW/dirty.bin" --memory "$MEM" --console "file:$T_TMP/$nm.con" \
		--control "$T_TMP/$nm.sock" "$@" >"$T_TMP/$nm.out" 2>"$T_TMP/$nm.err" </dev/null &
	pid=$!
	eval "${nm}_pid=$pid"
	on_exit "kill -9 $pid 2>/dev/null"
}

nstart src "$A"
wait_passes src 3 30 || fail "dirtier did not start: $(cat "$T_TMP/src.err")"
nstart dst "$B" --incoming "${net}2:7070"
wait_for "$T_TMP/dst.err" "waiting for a migration" 20 || fail "destination not listening: $(cat "$T_TMP/dst.err")"
r=$(ctl "$T_TMP/src.sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"${net}2:7070\",\"wait\":true}}")
[ "$(json_field "$r" phase)" = completed ] || fail "across namespaces: $r"
wait_exit "$src_pid" 20
[ "$st" = 0 ] || fail "source exit $st"
last=$(last_pass src)
wait_passes dst $((last + 3)) 30 || fail "guest does not continue in the other namespace"
no_bad dst
[ "$(first_pass_after src dst)" -eq $((last + 1)) ] || fail "sequence: $last -> $(first_pass_after src dst)"
log "A -> B: total $(json_field "$r" total_ms) ms, downtime $(json_field "$r" downtime_ms) ms"

# the no-progress limit is a migrate argument (stall_timeout_s): out of range is refused
r=$(ctl "$T_TMP/dst.sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"${net}1:7071\",\"stall_timeout_s\":0}}")
grep -q "stall_timeout_s" <<<"$r" || fail "stall_timeout_s 0 accepted: $r"
# back towards A, slowly, and cut the link while round 0 runs: with a 3 s stall limit
nstart back "$A" --incoming "${net}1:7071"
wait_for "$T_TMP/back.err" "waiting for a migration" 20 || fail "A not listening"
r=$(ctl "$T_TMP/dst.sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"${net}1:7071\",\"bandwidth_mbps\":2,\"stall_timeout_s\":3}}")
wait_phase "$T_TMP/dst.sock" precopy 20 || fail "no precopy phase"
sleep 1
ip -n "$B" link set "$VB" down
t0=$SECONDS
wait_phase "$T_TMP/dst.sock" failed 40 || fail "source did not notice the cut link"
tcut=$((SECONDS - t0))
[ "$tcut" -le 8 ] || fail "stall_timeout_s 3: the source noticed the cut only after $tcut s"
log "link cut: source failed after $tcut s: $(json_field "$(ctl "$T_TMP/dst.sock" migrate-status)" error)"
n0=$(last_pass dst)
wait_passes dst $((n0 + 3)) 30 || fail "source guest stopped after the cut"
no_bad dst
kill -0 "$dst_pid" || fail "source died"
wait_exit "$back_pid" 60
[ "$st" != 0 ] || fail "cut-off destination exit 0"
! grep -aq PASS "$T_TMP/back.con" 2>/dev/null || fail "cut-off destination ran the guest"
no_sanitizer_reports
pass "migrated across namespaces; a cut link (no RST) failed the next migration after $tcut s, source intact"
