#!/bin/bash
# test-timeout: 600
# Announce after migration (issue 6 item 4), end to end. Namespaces made and removed here:
#   lan     bridge "brlan": the shared LAN segment (a switch)
#   hostA   bridged vmctl network "lan" (bridge vb-lan, host port: a veth to the LAN) and
#           the VM's tap, made by the vmm itself (--net network=lan); interconnect mA 10.99.0.1
#   hostB   the same network defined and started on B; interconnect mB 10.99.0.2
# Each host has its own vmctl state and run directories, as two machines would.
#   client  10.88.0.100 on the LAN, pings the VM (10.88.0.10) every 1 ms (busybox ping)
# The test guest boots on hostA, then migrates live A -> B with --no-announce on the
# destination, and B -> A with announce on (RARP x5 from the vmm + the guest's own GARP/NA on
# VIRTIO_NET_S_ANNOUNCE). Before each migration every bridge has learned the VM's MAC behind the
# source side (the fdbs are flushed and re-learned between the two), so the two are comparable.
# Lost replies = transmitted - received of a ping that runs from 2 s before the migrate call
# until NM_POST seconds after it returned. Without announce the LAN keeps sending to the old
# port until the client's ARP gives up and broadcasts (~30 s+): "lost until the window ended".
# Asserted: with announce, the loss stays within (downtime + NM_SLACK_MS) worth of pings, plus
# what the baseline window (no migration) loses at the same rate.
. "$(dirname "$0")/boot-common.bash"
need_root
"$VMM" --help 2>&1 | grep -q -- '--no-announce' || skip "this vmm has no --no-announce"
command -v ip >/dev/null || skip "needs iproute2"
CTL=$BIN/vmm-ctl
need_file "$CTL"
VMCTL=$BIN/vmctl
need_file "$VMCTL"
[ -c /dev/net/tun ] || modprobe tun 2>/dev/null || true
[ -c /dev/net/tun ] || skip "needs /dev/net/tun"
MEM=${NM_MEM:-256}
NM_POST=${NM_POST:-8}		# seconds of pinging after the migrate call returned
# First RARP round + scheduling in the nested test host. 500 ms was too tight: with the vmm's
# own taps (vmctl networks) runs lost 0.8 s (quiet machine, bound met by 81 pings) and, with a
# second test host loading the machine, 3.9 s at 166 pings/s — 7 over a 500 ms bound, most of
# it the loaded guest's own drops that a 4 s baseline under-sampled. Without announce a silent
# guest on a real LAN is unreachable for up to the fdb ageing time (300 s). 1000 ms was too
# tight once more (2026-12-02, the rerun after a test-host hang, quiet machine): 858 lost at
# 469 pings/s with 211 ms downtime, bound 695 — 1.6 s of replies lost beyond the downtime,
# while announce off lost 2136 (window ended). 2000 ms keeps the two cases apart by ~1000.
NM_SLACK_MS=${NM_SLACK_MS:-2000}
NM_BASE_S=${NM_BASE_S:-8}		# baseline window: long enough to sample the guest's own drops
MAC=52:54:00:6e:6d:01
VM_IP=10.88.0.10
CL_IP=10.88.0.100
sfx=$$
NS_LAN=lan-$sfx NS_A=hostA-$sfx NS_B=hostB-$sfx NS_C=client-$sfx
# Namespace names carry the pid so parallel runs never collide; the roles are as above.

mk_ns() { ip netns add "$1" || fail "ip netns add $1"; on_exit "ip netns del $1 2>/dev/null"; ip -n "$1" link set lo up; }
for n in $NS_LAN $NS_A $NS_B $NS_C; do mk_ns "$n"; done
ip -n "$NS_LAN" link add brlan type bridge || fail "bridge in lan"
ip -n "$NS_LAN" link set brlan up
# veth pairs: one end in the lan namespace on brlan, the other in a host/client namespace
lan_port() {	# NS IFNAME-IN-NS LAN-PORT-NAME
	ip link add "$3-$sfx" type veth peer name "$2-$sfx" || fail "veth $3"
	ip link set "$3-$sfx" netns "$NS_LAN" name "$3"
	ip link set "$2-$sfx" netns "$1" name "$2"
	ip -n "$NS_LAN" link set "$3" master brlan up
	ip -n "$1" link set "$2" up
}
lan_port "$NS_A" lan la
lan_port "$NS_B" lan lb
lan_port "$NS_C" eth0 lc
ip -n "$NS_C" addr add "$CL_IP/24" dev eth0
# host_env H: the environment of host H's vmctl and vmm (its own state and run directories)
host_env() { echo "VMCTL_STATE_DIR=$T_TMP/state$1 VMCTL_RUN_DIR=$T_TMP/run$1"; }
for h in A B; do
	eval ns=\$NS_$h
	# shellcheck disable=SC2046
	ip netns exec "$ns" env $(host_env $h) "$VMCTL" net define \
		'{"name":"lan","type":"bridged","host_port":"lan"}' || fail "define lan on host$h"
	ip netns exec "$ns" env $(host_env $h) "$VMCTL" net start lan || fail "start lan on host$h"
	on_exit "ip netns exec $ns env $(host_env $h) $VMCTL net stop --force lan 2>/dev/null"
done
ip link add "mA-$sfx" type veth peer name "mB-$sfx" || fail "interconnect veth"
ip link set "mA-$sfx" netns "$NS_A" name mA
ip link set "mB-$sfx" netns "$NS_B" name mB
ip -n "$NS_A" addr add 10.99.0.1/24 dev mA && ip -n "$NS_A" link set mA up
ip -n "$NS_B" addr add 10.99.0.2/24 dev mB && ip -n "$NS_B" link set mB up

script="ip link set lo up; ip link set eth0 up && ip addr add $VM_IP/24 dev eth0 || exit 10
echo NM-UP
while :; do sleep 10; done"
APPEND="console=ttyS0 loglevel=4 panic=-1 vmctl.action=run vmctl.run=b64:$(printf '%s' "$script" | base64 -w0)"

start() {	# NAME NS HOST [extra vmm args]
	local n=$1 ns=$2 h=$3
	shift 3
	# shellcheck disable=SC2046
	ip netns exec "$ns" env $(host_env "$h") "$VMM" --kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" \
		--append "$APPEND" --memory "${MEM}M" --cpus 1 --console "file:$T_TMP/$n.con" \
		--control "$T_TMP/$n.sock" --net "network=lan,mac=$MAC" "$@" \
		>"$T_TMP/$n.out" 2>"$T_TMP/$n.err" </dev/null &
	eval "${n}_pid=$!"
	on_exit "kill -9 $! 2>/dev/null"
}
in_c() { ip netns exec "$NS_C" "$@"; }
reach() {	# wait until the client gets a reply (bounded)
	local end=$((SECONDS + $1))
	while [ $SECONDS -lt $end ]; do
		in_c busybox ping -c 1 -W 1 "$VM_IP" >/dev/null 2>&1 && return 0
	done
	return 1
}
# a 1 ms ping from the client, in the background; ping_stop -> "transmitted received"
ping_start() {
	ping_t0=$(date +%s%3N)
	# not through in_c: $! must be ping itself (ip netns exec execs it), not a subshell
	ip netns exec "$NS_C" busybox ping -q -i 0.001 "$VM_IP" >"$T_TMP/ping.out" 2>&1 &
	ping_pid=$!
	on_exit "kill $ping_pid 2>/dev/null"
}
ping_stop() {
	kill -INT "$ping_pid"
	for _ in $(seq 50); do kill -0 "$ping_pid" 2>/dev/null || break; sleep 0.1; done
	wait "$ping_pid" 2>/dev/null
	sed -n 's/^\([0-9]*\) packets transmitted, \([0-9]*\) packets received.*/\1 \2/p' "$T_TMP/ping.out"
}
flush_fdbs() {	# forget every learned MAC: the next frames re-teach all bridges
	ip -n "$NS_LAN" link set brlan type bridge fdb_flush
	ip -n "$NS_A" link set vb-lan type bridge fdb_flush
	ip -n "$NS_B" link set vb-lan type bridge fdb_flush
}
# migrate SRC DST DST_NS DST_HOST DST_IP [dst args]: sets lost, sent, down
migrate() {
	local src=$1 dst=$2 dns=$3 dh=$4 dip=$5 port=$((20000 + RANDOM % 20000)) r t0 spid st
	shift 5
	start "$dst" "$dns" "$dh" --incoming "$dip:$port" "$@"
	wait_for "$T_TMP/$dst.err" "waiting for a migration" 60 || fail "$dst not listening: $(cat "$T_TMP/$dst.err")"
	ping_start
	sleep 2
	r=$(live_migrate "$CTL" "$T_TMP/$src.sock" "$dip:$port" 300) ||
		fail "migrate $src -> $dst: $r; source: $(tail -3 "$T_TMP/$src.err" | tr '\n' ' ')"
	sleep "$NM_POST"
	read -r sent recv <<<"$(ping_stop)"
	win_ms=$(( $(date +%s%3N) - ping_t0 ))
	[ -n "$recv" ] || fail "no ping summary: $(cat "$T_TMP/ping.out")"
	lost=$((sent - recv))
	down=$(json_field "$r" downtime_ms)
	total=$(json_field "$r" total_ms)
	eval "source_exit \$${src}_pid"
	[ "$st" = 0 ] || fail "$src exit $st after migrating: $(tail -3 "$T_TMP/$src.err")"
}

t0=$SECONDS
start vA "$NS_A" A
wait_for "$T_TMP/vA.con" NM-UP "$BOOT_TIMEOUT" || { tail -20 "$T_TMP/vA.con"; fail "guest did not come up"; }
reach 60 || fail "client cannot reach the VM on hostA"
log "guest up on hostA after $((SECONDS - t0)) s"

# Baseline: what 1 ms pings lose with no migration (a slow nested guest drops some).
ping_start
sleep "$NM_BASE_S"
read -r bsent brecv <<<"$(ping_stop)"
[ -n "$brecv" ] && [ "$bsent" -gt 0 ] || fail "baseline ping: $(cat "$T_TMP/ping.out")"
log "baseline: $bsent sent, $((bsent - brecv)) lost in $NM_BASE_S s"

# 1) A -> B, announce off on the destination
migrate vA vB "$NS_B" B 10.99.0.2 --no-announce
off_lost=$lost off_sent=$sent off_down=$down
! grep -q "^announce:" "$T_TMP/vB.err" || fail "--no-announce destination announced: $(grep announce: "$T_TMP/vB.err")"
log "announce off (A->B): $off_lost of $off_sent replies lost in $win_ms ms; downtime $off_down ms, total $total ms"
# Make the state comparable: everything learns the VM behind hostB now.
flush_fdbs
reach 30 || fail "client cannot reach the VM on hostB after the fdb flush"
in_c busybox ping -q -c 20 -i 0.05 "$VM_IP" >/dev/null 2>&1

# 2) B -> A, announce on
migrate vB vA2 "$NS_A" A 10.99.0.1
on_lost=$lost on_sent=$sent on_down=$down
grep -qE "^announce: info: 52:54:00:6e:6d:01 x5" "$T_TMP/vA2.err" || fail "no announce line: $(tail -5 "$T_TMP/vA2.err")"
log "announce on (B->A): $on_lost of $on_sent replies lost in $win_ms ms; downtime $on_down ms, total $total ms"
log "$(grep -a '^announce:' "$T_TMP/vA2.err" | tail -1)"

kill "$vA2_pid" 2>/dev/null
for _ in $(seq 50); do kill -0 "$vA2_pid" 2>/dev/null || break; sleep 0.2; done
# Every vmm is gone (the sources exited after handing over, the last one was killed): the taps
# they made went with them, so each host's bridge holds only its host port, and the networks
# stop without --force and leave nothing.
for h in A B; do
	eval ns=\$NS_$h
	ports=$(ip -n "$ns" -o link show master vb-lan | awk -F': ' '{print $2}' | cut -d@ -f1 | tr '\n' ' ')
	[ "$ports" = "lan " ] || fail "host$h: vb-lan ports after the VMs ended: '$ports' (want only lan)"
	# shellcheck disable=SC2046
	ip netns exec "$ns" env $(host_env $h) "$VMCTL" net stop lan || fail "stop lan on host$h"
	ip -n "$ns" link show vb-lan >/dev/null 2>&1 && fail "host$h: vb-lan left after stop"
done
! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP"/*.err || { cat "$T_TMP"/*.err; fail "sanitizer report"; }

# The bound: pings in flight during the downtime plus NM_SLACK_MS, at the rate the window ran
# at (the test host may not send 1000/s), plus the baseline loss scaled to the window.
rate_x1000=$(( on_sent * 1000 / win_ms ))		# pings per second over the "on" window
base=$(( (bsent - brecv) * on_sent / bsent ))
down_int=${on_down%.*}
bound=$(( (down_int + NM_SLACK_MS) * rate_x1000 / 1000 + base ))
log "RESULT lost replies: announce off $off_lost (window ended), announce on $on_lost (bound $bound; downtime $on_down ms, $rate_x1000 pings/s)"
[ "$on_lost" -le "$bound" ] || fail "announce on lost $on_lost replies > bound $bound"
# The slack no longer separates the cases by itself (announce off lost 981 on a quiet run):
# announcing must lose fewer than not announcing (measured: 229/981, 858/2136, 473/1147).
[ "$on_lost" -lt "$off_lost" ] || fail "announce on lost $on_lost replies, not fewer than announce off ($off_lost)"
pass "announce on: $on_lost lost, off: $off_lost lost ($((SECONDS - t0)) s)"
