#!/bin/bash
# NAT networks' host side on this machine's kernel, in throwaway network namespaces: the
# masquerading nftables table (net/nat.c) and the network's dnsmasq (net/dnsmasq.c), through a
# small driver (tests/host/nat_drv.c) built here against libvmm.a.
#   router: bridge vb-nt 10.77.0.1/24 (the NAT network), uplink 192.0.2.1/24 to "outside"
#   client: a veth port of the bridge that takes a DHCP lease (when busybox udhcpc is here)
#   outside: 192.0.2.2/24 with no route back to 10.77.0.0/24, so only masqueraded pings return
# Checks: apply twice leaves one masquerade rule; a too-long bridge name is one error line;
# dnsmasq runs in the namespace, listens on UDP 67 and 53, a second start keeps the one
# process; stop and remove leave no table and no dnsmasq.
. "$(dirname "$0")/../lib/harness.sh"
need_root
need_file "$BUILD/libvmm.a"
for c in ip nft ss cc; do command -v $c >/dev/null || skip "no $c here"; done
[ -x "${VMCTL_DNSMASQ:-/usr/sbin/dnsmasq}" ] || skip "no dnsmasq (scripts/install-deps.sh installs dnsmasq-base)"

NET=nt SUB=10.77.0.0/24 GW=10.77.0.1 BR=vb-nt
R=vmctl-nat-r$$ C=vmctl-nat-c$$ O=vmctl-nat-o$$
RUN=$T_TMP/run/net/$NET
IN_R="ip netns exec $R"

# Whatever happens: no dnsmasq of ours left (it daemonizes out of this test's session), no
# namespaces. By pid, and only processes carrying this test's own configuration path.
on_exit "for p in \$(pgrep -f -- '--conf-file=$RUN/dnsmasq.conf'); do kill -9 \$p; done"
for ns in $R $C $O; do
	ip netns add $ns || skip "cannot create network namespaces"
	on_exit "ip netns del $ns 2>/dev/null"
	ip -n $ns link set lo up
done
$IN_R nft list ruleset >/dev/null 2>&1 || skip "no nftables in a network namespace here"

DRV=$T_TMP/nat_drv
san=	# an ASan/UBSan libvmm.a needs the sanitizers at link time too (no grep -q: pipefail)
nm "$BUILD/libvmm.a" 2>/dev/null | grep __asan_init >/dev/null && san=-fsanitize=address,undefined
cc -std=gnu11 -D_GNU_SOURCE -g -Wall -Wextra -Werror $san -I"$ROOT" "$ROOT/tests/host/nat_drv.c" \
	-o "$DRV" "$BUILD/libvmm.a" -lnftnl -lmnl -ljson-c -luring -lzstd -lnl-route-3 -lnl-3 \
	-lpthread >"$T_TMP/cc.log" 2>&1 || fail "building the driver: $(tail -5 "$T_TMP/cc.log")"
# drv ARGS...: run the driver in the router namespace; its stdout (the result) in $out,
# its stderr in $err, exit status returned
drv() {
	local st
	out=$(VMCTL_RUN_DIR=$T_TMP/run $IN_R "$DRV" "$@" 2>"$T_TMP/drv.err"); st=$?
	err=$(cat "$T_TMP/drv.err")
	[ -n "$err" ] && echo "$err" >>"$T_TMP/drv-stderr.log"
	return $st
}

ip -n $R link add $BR type bridge || fail "creating the bridge"
ip -n $R addr add $GW/24 dev $BR
ip -n $R link set $BR up
ip link add vu$$ netns $R type veth peer name vo$$ netns $O || fail "creating the uplink veth"
ip -n $R addr add 192.0.2.1/24 dev vu$$ && ip -n $R link set vu$$ up
ip -n $O addr add 192.0.2.2/24 dev vo$$ && ip -n $O link set vo$$ up

# --- NAT: apply twice, one set of rules
drv apply $NET $SUB $BR || fail "nat_apply: $out $err"
drv apply $NET $SUB $BR || fail "second nat_apply: $out $err"
table=$($IN_R nft list table ip vmctl-$NET) || fail "no table ip vmctl-$NET after nat_apply"
echo "$table" >"$T_TMP/table.txt"
log "nft list table ip vmctl-$NET:"
echo "$table"
n=$(grep -c "ip saddr $SUB ip daddr != $SUB masquerade" <<<"$table")
[ "$n" = 1 ] || fail "want the masquerade rule once, found it $n times"
grep -q 'type nat hook postrouting priority srcnat; policy accept;' <<<"$table" || fail "postrouting chain"
grep -q 'type filter hook forward priority filter; policy accept;' <<<"$table" || fail "forward chain"
[ "$(grep -c "iifname \"$BR\" accept" <<<"$table")" = 1 ] || fail "forward rule from the bridge"
[ "$(grep -c "oifname \"$BR\" ct state established,related accept" <<<"$table")" = 1 ] ||
	fail "forward rule for replies"
drv exists $NET && [ "$out" = 1 ] || fail "nat_exists says '$out' for an applied table"
drv forward || fail "ipv4_forwarding_enable: $err"
[ "$($IN_R cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || fail "ip_forward is not 1"

# a bad bridge name: -EINVAL and exactly one line saying so, nothing changed
drv apply $NET $SUB vb-0123456789abcdef && fail "a 19-character bridge name was accepted"
[ "$out" = -22 ] || fail "too-long bridge name: want -22 (EINVAL), got '$out'"
[ "$(wc -l <<<"$err")" = 1 ] && grep -q '^nat: error: .*bridge name' <<<"$err" ||
	fail "want one 'nat: error:' line about the bridge name, got: $err"
[ "$($IN_R nft list table ip vmctl-$NET)" = "$table" ] || fail "a refused apply changed the table"

# --- dnsmasq: start, in the namespace, listening; start again is the same process
drv dns-start $NET $BR $GW/24 10.77.0.2 10.77.0.254 "$RUN" || fail "dnsmasq_start: $out $err"
pid=$(cat "$RUN/dnsmasq.pid" 2>/dev/null)
[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || fail "no live dnsmasq behind $RUN/dnsmasq.pid"
drv dns-running "$RUN" && [ "$out" = 1 ] || fail "dnsmasq_running says '$out'"
[ "$(ip netns identify "$pid")" = $R ] || fail "dnsmasq $pid is not in namespace $R"
ok=
for _ in $(seq 25); do	# it binds as soon as it runs; a moment's grace, bounded
	$IN_R ss -lunp >"$T_TMP/ss.txt"
	grep -E ":67 .*pid=$pid," "$T_TMP/ss.txt" >/dev/null && grep -E "$GW:53 .*pid=$pid," "$T_TMP/ss.txt" >/dev/null &&
		{ ok=1; break; }
	sleep 0.2
done
[ -n "$ok" ] || { cat "$T_TMP/ss.txt"; fail "dnsmasq $pid does not listen on UDP 67 and $GW:53"; }
drv dns-start $NET $BR $GW/24 10.77.0.2 10.77.0.254 "$RUN" || fail "second dnsmasq_start: $err"
[ "$(cat "$RUN/dnsmasq.pid")" = "$pid" ] || fail "second start changed the pid file"
n=$(pgrep -c -f -- "--conf-file=$RUN/dnsmasq.conf")
[ "$n" = 1 ] || fail "want one dnsmasq for $RUN after two starts, found $n"

# --- a client on the bridge: DHCP lease, then ping outside through the masquerade
if busybox udhcpc --help >/dev/null 2>&1; then
	ip link add vc$$ netns $C type veth peer name vp$$ netns $R || fail "client veth"
	ip -n $R link set vp$$ master $BR up
	ip -n $C link set vc$$ up
	cat >"$T_TMP/udhcpc.sh" <<-'EOF'
		#!/bin/sh
		[ "$1" = bound ] || exit 0
		ip addr add "$ip/$subnet" dev "$interface" && ip route add default via "$router"
	EOF
	chmod +x "$T_TMP/udhcpc.sh"
	timeout 20 ip netns exec $C busybox udhcpc -i vc$$ -n -q -t 5 -T 2 -s "$T_TMP/udhcpc.sh" \
		>"$T_TMP/udhcpc.log" 2>&1 || fail "no DHCP lease from dnsmasq: $(tail -3 "$T_TMP/udhcpc.log")"
	addr=$(ip -n $C -4 -o addr show dev vc$$ | sed -n 's/.* inet \([0-9.]*\)\/24 .*/\1/p')
	case $addr in 10.77.0.*) ;; *) fail "client address '$addr' is not in $SUB" ;; esac
	grep -q " $addr " "$RUN/dnsmasq.leases" || fail "lease for $addr not in dnsmasq.leases"
	log "client leased $addr"
	timeout 10 ip netns exec $C busybox ping -c 1 -W 3 192.0.2.2 >"$T_TMP/ping.log" 2>&1 ||
		fail "no reply from outside through the NAT: $(cat "$T_TMP/ping.log")"
	log "ping from $addr to 192.0.2.2 (no route back but the masquerade) answered"
else
	log "no busybox udhcpc: DHCP lease and masqueraded ping not checked"
fi

# --- stop and remove: nothing left
drv dns-stop "$RUN" || fail "dnsmasq_stop: $err"
kill -0 "$pid" 2>/dev/null && [ -n "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" ] &&
	fail "dnsmasq $pid still runs after dnsmasq_stop"
n=$(pgrep -c -f -- "--conf-file=$RUN/dnsmasq.conf")
[ "$n" = 0 ] || fail "$n dnsmasq for $RUN left after stop"
[ ! -e "$RUN/dnsmasq.pid" ] && [ ! -e "$RUN/dnsmasq.conf" ] || fail "pid or conf file left after stop"
drv dns-running "$RUN" && [ "$out" = 0 ] || fail "dnsmasq_running says '$out' after stop"
drv dns-stop "$RUN" || fail "second dnsmasq_stop: $err"
drv remove $NET || fail "nat_remove: $err"
$IN_R nft list table ip vmctl-$NET >/dev/null 2>&1 && fail "table still there after nat_remove"
drv exists $NET && [ "$out" = 0 ] || fail "nat_exists says '$out' after nat_remove"
drv remove $NET || fail "nat_remove of an absent table: $out $err"
[ -z "$($IN_R nft list ruleset)" ] || fail "ruleset not empty at the end"
pass
