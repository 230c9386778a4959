#!/bin/bash
# vmctl net on the bare machine (issue 6 items 1, 2, 3, 5), inside a network namespace made and
# removed here: bridged networks (untagged, VLAN + jumbo MTU) and a NAT network are defined,
# started (twice: idempotent), checked in the kernel (bridge, ports, MTU, VLAN id, gateway
# address, nftables masquerade table, dnsmasq serving DHCP on the bridge), refused while a VM
# tap is attached, stopped, and checked gone. Then every bad input: a name that exists, an
# overlapping subnet, a missing host port, a host port in someone else's bridge, a subnet the
# host already uses, no CAP_NET_ADMIN, no dnsmasq — each a one-line error, non-zero exit and
# nothing left behind (no link, table or dnsmasq).
. "$(dirname "$0")/../lib/harness.sh"
need_root
VMCTL=$BIN/vmctl
need_file "$VMCTL"
command -v ip >/dev/null || skip "needs iproute2"
command -v nft >/dev/null || skip "needs nft (nftables) to inspect the rules"
[ -x /usr/sbin/dnsmasq ] || skip "needs dnsmasq (dnsmasq-base)"

NS=vmctl-nett-$$
ip netns add "$NS" || fail "ip netns add"
on_exit "ip netns pids $NS 2>/dev/null | xargs -r kill -9; ip netns del $NS 2>/dev/null"
export VMCTL_STATE_DIR=$T_TMP/state VMCTL_RUN_DIR=$T_TMP/run
in_ns() { ip netns exec "$NS" "$@"; }
vm() { in_ns "$VMCTL" "$@"; }
ip -n "$NS" link set lo up
# two "host ports": veth pairs whose other ends stay in the namespace too
ip -n "$NS" link add up0 type veth peer name up0p || fail "veth"
ip -n "$NS" link add up1 type veth peer name up1p || fail "veth"
ip -n "$NS" link set up0p up && ip -n "$NS" link set up1p up

# expect_fail WHAT REGEX CMD...: CMD exits 1 with exactly one stderr line matching REGEX
expect_fail() {
	local what=$1 re=$2 st
	shift 2
	"$@" >"$T_TMP/o" 2>"$T_TMP/e"
	st=$?
	[ $st = 1 ] || fail "$what: want exit 1, got $st: $(cat "$T_TMP/e")"
	[ "$(wc -l <"$T_TMP/e")" = 1 ] || fail "$what: want one error line, got: $(cat "$T_TMP/e")"
	grep -qE "$re" "$T_TMP/e" || fail "$what: '$(cat "$T_TMP/e")' does not match /$re/"
	log "$what: $(cat "$T_TMP/e")"
}
# nothing of network NAME is in the kernel or running
assert_gone() {
	local n=$1
	in_ns ip link show "vb-$n" >/dev/null 2>&1 && fail "$n: bridge vb-$n left behind"
	in_ns ip link show "vv-$n" >/dev/null 2>&1 && fail "$n: VLAN link vv-$n left behind"
	in_ns nft list table ip "vmctl-$n" >/dev/null 2>&1 && fail "$n: nft table left behind"
	pgrep -f "dnsmasq --conf-file=$VMCTL_RUN_DIR/net/$n/" >/dev/null && fail "$n: dnsmasq left running"
	return 0
}
master_of() { in_ns ip -o link show "$1" | sed -n 's/.* master \([^ ]*\) .*/\1/p'; }

# ---- bridged, untagged ----
vm net define '{"name":"lan","type":"bridged","host_port":"up0"}' || fail "define lan"
vm net start lan || fail "start lan"
vm net start lan || fail "second start of lan (idempotent)"
[ "$(master_of up0)" = vb-lan ] || fail "up0 is not a port of vb-lan: $(in_ns ip -o link show up0)"
in_ns ip -o link show vb-lan | grep -q 'state UP\|,UP' || fail "vb-lan not up"
vm net list | grep -qE '^lan +bridged +active +up0' || fail "list: $(vm net list)"
# a VM's tap on the bridge (as the vmm makes it): stop refuses, names it, changes nothing
in_ns ip tuntap add dev vmt90 mode tap vnet_hdr && in_ns ip link set vmt90 master vb-lan || fail "tap"
vm net show lan | grep -q '"ports":\[[^]]*"vmt90"' || fail "show: $(vm net show lan)"
expect_fail "stop while a VM is attached" 'in use by 1 VM NIC.*vmt90' vm net stop lan
[ "$(master_of vmt90)" = vb-lan ] || fail "a refused stop changed the bridge"
expect_fail "undefine a started network" 'is started' vm net undefine lan
vm net stop --force lan || fail "stop --force"
in_ns ip tuntap del dev vmt90 mode tap
assert_gone lan
[ -z "$(master_of up0)" ] || fail "up0 still enslaved after stop"

# ---- bridged, VLAN 42, jumbo frames ----
vm net define '{"name":"mig","type":"bridged","host_port":"up1","vlan":42,"mtu":9000}' || fail "define mig"
vm net start lan || fail "restart lan"
if in_ns ip link add link up1 name probe.42 type vlan id 42 2>/dev/null; then
	in_ns ip link del probe.42
	vm net start mig || fail "start mig"
	in_ns ip -d link show vv-mig | grep -q 'vlan protocol 802.1Q id 42' || fail "vv-mig: $(in_ns ip -d link show vv-mig)"
	[ "$(master_of vv-mig)" = vb-mig ] || fail "vv-mig not in vb-mig"
	in_ns ip -o link show vb-mig | grep -q 'mtu 9000' || fail "vb-mig mtu: $(in_ns ip -o link show vb-mig)"
	in_ns ip -o link show up1 | grep -q 'mtu 9000' || fail "up1 mtu not raised for the tagged frames"
else
	# This kernel has no 802.1Q (the bare machine here): the error must say so and leave
	# nothing; tests/guest/net-nat.sh runs a tagged network in the test host's kernel.
	expect_fail "VLAN without 8021q" "no 802.1Q VLAN support" vm net start mig
	assert_gone mig
fi

# ---- NAT ----
vm net define '{"name":"nat0","type":"nat","subnet":"10.123.0.0/24"}' || fail "define nat0"
vm net start nat0 || fail "start nat0"
vm net start nat0 || fail "second start of nat0 (idempotent)"
in_ns ip -o -4 addr show vb-nat0 | grep -q 'inet 10.123.0.1/24' || fail "gateway: $(in_ns ip -o addr show vb-nat0)"
rules=$(in_ns nft list table ip vmctl-nat0) || fail "no nft table"
[ "$(grep -c masquerade <<<"$rules")" = 1 ] || fail "want one masquerade rule: $rules"
grep -q 'ip saddr 10.123.0.0/24 ip daddr != 10.123.0.0/24 masquerade' <<<"$rules" || fail "rule: $rules"
[ "$(in_ns cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || fail "forwarding off"
[ "$(pgrep -cf "dnsmasq --conf-file=$VMCTL_RUN_DIR/net/nat0/")" = 1 ] || fail "want one dnsmasq for nat0"
in_ns ss -lun | grep -q ':67 ' || fail "dnsmasq not listening for DHCP: $(in_ns ss -lun)"
vm net list --json | grep -q '"name":"nat0"[^}]*"active":true' || fail "list --json: $(vm net list --json)"

# ---- bad input: one line, exit 1, nothing half-made ----
expect_fail "define an existing name" "exists" vm net define '{"name":"nat0","type":"nat","subnet":"10.124.0.0/24"}'
expect_fail "define an overlapping subnet" "overlap" vm net define '{"name":"nat1","type":"nat","subnet":"10.123.0.0/16"}'
expect_fail "define a bad subnet" "subnet" vm net define '{"name":"bad","type":"nat","subnet":"10.1.2.3/24"}'
expect_fail "unknown network" "no network named" vm net start nope
vm net define '{"name":"ghost","type":"bridged","host_port":"nosuch0"}' || fail "define ghost"
expect_fail "missing host port" "host port nosuch0 does not exist" vm net start ghost
assert_gone ghost
in_ns ip link add brx type bridge && in_ns ip link set up1p master brx || fail "brx"
vm net define '{"name":"taken","type":"bridged","host_port":"up1p"}' || fail "define taken"
expect_fail "host port in another bridge" "already a port of bridge brx" vm net start taken
assert_gone taken
in_ns ip addr add 10.200.5.7/16 dev up0p
vm net define '{"name":"clash","type":"nat","subnet":"10.200.9.0/24"}' || fail "define clash"
expect_fail "subnet used on this host" "overlaps an address on up0p" vm net start clash
assert_gone clash
vm net define '{"name":"nocap","type":"bridged","host_port":"up0p"}' || fail "define nocap"
expect_fail "no CAP_NET_ADMIN" "CAP_NET_ADMIN" in_ns setpriv --bounding-set=-net_admin "$VMCTL" net start nocap
assert_gone nocap
vm net define '{"name":"nodns","type":"nat","subnet":"10.125.0.0/24"}' || fail "define nodns"
VMCTL_DNSMASQ=/nonexistent/dnsmasq expect_fail "dnsmasq missing" "dnsmasq" vm net start nodns
assert_gone nodns

# ---- stop everything: nothing left ----
for n in nat0 mig lan; do vm net stop "$n" || fail "stop $n"; vm net stop "$n" || fail "second stop of $n"; assert_gone "$n"; done
in_ns ip -o link show up1 >/dev/null || fail "the host port up1 itself must stay"
for n in nat0 mig lan ghost taken clash nocap nodns; do vm net undefine "$n" || fail "undefine $n"; done
[ -z "$(ls "$VMCTL_STATE_DIR/networks")" ] || fail "definitions left: $(ls "$VMCTL_STATE_DIR/networks")"
! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP/e" || fail "sanitizer report"
pass
