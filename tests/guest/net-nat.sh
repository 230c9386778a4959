#!/bin/bash
# test-timeout: 600
# vmctl networks with a real guest (issue 6): one VM, two NICs on two networks of one 'host'
# (a namespace made and removed here):
#   eth0 on NAT network "nat0" (10.131.0.0/24): the guest gets its address from our dnsmasq
#        with busybox udhcpc, and fetches a page from an 'outside' namespace (10.66.0.2) that
#        has no route back to 10.131.0.0/24 — only masquerading can carry the replies; the
#        outside's web server must log the host's address (10.66.0.1), not the VM's;
#   eth1 on bridged network "lan2", tagged VLAN 42 on its host port (a veth to a 'LAN'
#        namespace whose peer sits on VLAN 42 as 10.132.0.100): static 10.132.0.10/24, pings
#        the LAN peer — so the frames cross the host port 802.1Q-tagged.
# The vmm makes its own taps (--net network=NAME); after it powers off they must be gone
# without anyone deleting them, and after the networks stop no link, nft table, dnsmasq or
# namespace of this test is left.
. "$(dirname "$0")/boot-common.bash"
need_root
VMCTL=$BIN/vmctl
need_file "$VMCTL"
"$VMM" --help 2>&1 | grep -q -- 'network=NAME' || skip "this vmm has no --net network="
command -v ip >/dev/null || skip "needs iproute2"
command -v nft >/dev/null || skip "needs nftables"
[ -x /usr/sbin/dnsmasq ] || skip "needs dnsmasq (dnsmasq-base)"
[ -c /dev/net/tun ] || modprobe tun 2>/dev/null || true
[ -c /dev/net/tun ] || skip "needs /dev/net/tun"

sfx=$$
NS_H=nat-host-$sfx NS_O=nat-out-$sfx NS_L=nat-lan-$sfx
export VMCTL_STATE_DIR=$T_TMP/state VMCTL_RUN_DIR=$T_TMP/run
for n in $NS_H $NS_O $NS_L; do
	ip netns add "$n" || fail "ip netns add $n"
	on_exit "ip netns pids $n 2>/dev/null | xargs -r kill -9; ip netns del $n 2>/dev/null"
	ip -n "$n" link set lo up
done
in_h() { ip netns exec "$NS_H" "$@"; }
# host <-> outside: the host's uplink 10.66.0.1, the outside 10.66.0.2 (no route to the VMs)
ip link add "wan-$sfx" type veth peer name "out-$sfx" || fail "veth wan"
ip link set "wan-$sfx" netns "$NS_H" name wan && ip link set "out-$sfx" netns "$NS_O" name eth0
ip -n "$NS_H" addr add 10.66.0.1/24 dev wan && ip -n "$NS_H" link set wan up
ip -n "$NS_O" addr add 10.66.0.2/24 dev eth0 && ip -n "$NS_O" link set eth0 up
# host port of the bridged network <-> the LAN peer
ip link add "lan-$sfx" type veth peer name "peer-$sfx" || fail "veth lan"
ip link set "lan-$sfx" netns "$NS_H" name lan0 && ip link set "peer-$sfx" netns "$NS_L" name eth0
ip -n "$NS_L" link set eth0 up
ip -n "$NS_L" link add link eth0 name eth0.42 type vlan id 42 || skip "no 802.1Q VLAN support in this kernel"
ip -n "$NS_L" addr add 10.132.0.100/24 dev eth0.42 && ip -n "$NS_L" link set eth0.42 up

in_h "$VMCTL" net define '{"name":"nat0","type":"nat","subnet":"10.131.0.0/24"}' || fail "define nat0"
in_h "$VMCTL" net define '{"name":"lan2","type":"bridged","host_port":"lan0","vlan":42}' || fail "define lan2"
in_h "$VMCTL" net start nat0 || fail "start nat0"
on_exit "ip netns exec $NS_H $VMCTL net stop --force nat0 2>/dev/null"
in_h "$VMCTL" net start lan2 || fail "start lan2"
on_exit "ip netns exec $NS_H $VMCTL net stop --force lan2 2>/dev/null"

mkdir -p "$T_TMP/www" && echo "outside-page" >"$T_TMP/www/index.html"
ip netns exec "$NS_O" timeout 400 busybox httpd -f -vv -p 10.66.0.2:80 -h "$T_TMP/www" 2>"$T_TMP/httpd.log" &
on_exit "kill $! 2>/dev/null"

# udhcpc calls its script with the lease in the environment; busybox has no default script
script='ip link set lo up
cat >/tmp/dhcp.sh <<EOF
#!/bin/sh
[ "\$1" = bound ] || exit 0
ifconfig "\$interface" "\$ip" netmask "\$subnet" up
route add default gw "\$router" dev "\$interface"
echo "NAT-LEASE \$ip router \$router"
EOF
chmod +x /tmp/dhcp.sh
ip link set eth0 up
timeout 60 udhcpc -i eth0 -n -q -t 10 -T 2 -s /tmp/dhcp.sh || { echo NAT-NO-LEASE; exit 10; }
ping -c 3 -W 5 10.66.0.2 >/dev/null && echo NAT-PING-OK
# (no -T: busybox 1.35 wget segfaults with it)
echo "NAT-PAGE $(timeout 20 wget -q -O - http://10.66.0.2/index.html)"
ip link set eth1 up && ip addr add 10.132.0.10/24 dev eth1
i=0; until ping -c 1 -W 2 10.132.0.100 >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 15 ] || exit 11; done
echo LAN-PING-OK'
APPEND="vmctl.action=run vmctl.run=b64:$(printf '%s' "$script" | base64 -w0)"
t0=$SECONDS
VMM_WRAP=(ip netns exec "$NS_H")
vmm_boot 1 256 "$APPEND" --name natvm --net network=nat0 --net network=lan2 \
	--control "$T_TMP/vm.sock"
log "vmm exit $st after $secs s"
grep -a -E 'NAT-|LAN-|GUEST-RUN-EXIT' "$T_TMP/con" | tr -d '\r' | while read -r l; do log "guest: $l"; done
[ $st = 0 ] || { tail -20 "$T_TMP/con"; tail -5 "$T_TMP/err"; fail "vmm exit $st"; }
lease=$(grep -a -m1 'NAT-LEASE' "$T_TMP/con" | tr -d '\r')
[[ $lease =~ NAT-LEASE\ 10\.131\.0\.([0-9]+)\ router\ 10\.131\.0\.1 ]] || fail "no DHCP lease from nat0: $lease"
vm_ip=10.131.0.${BASH_REMATCH[1]}
grep -aq NAT-PING-OK "$T_TMP/con" || fail "the guest cannot ping the outside through NAT"
grep -aq 'NAT-PAGE outside-page' "$T_TMP/con" || fail "the guest did not fetch the outside page"
grep -q '^10\.66\.0\.1:' "$T_TMP/httpd.log" || fail "outside did not see the host's address: $(cat "$T_TMP/httpd.log")"
! grep -q "$vm_ip" "$T_TMP/httpd.log" || fail "outside saw the VM's own address $vm_ip"
grep -aq LAN-PING-OK "$T_TMP/con" || fail "the guest cannot reach the LAN peer on its second NIC"
mac0=$(grep -a -m1 -o 'net0: .*mac [0-9a-f:]*' "$T_TMP/err" | grep -o '[0-9a-f:]*$')
grep -q "$vm_ip" "$VMCTL_RUN_DIR/net/nat0/dnsmasq.leases" || fail "lease not in dnsmasq's file"
log "lease $vm_ip (MAC ${mac0:-?}); outside saw: $(head -1 "$T_TMP/httpd.log")"

# the vmm is gone: its taps are gone with it, without anyone deleting them
left=$(in_h ip -o link | grep -o 'vmt[0-9]*')
[ -z "$left" ] || fail "taps left after the vmm exited: $left"
in_h "$VMCTL" net stop nat0 || fail "stop nat0"
in_h "$VMCTL" net stop lan2 || fail "stop lan2"
in_h ip link show vb-nat0 >/dev/null 2>&1 && fail "vb-nat0 left"
in_h ip link show vb-lan2 >/dev/null 2>&1 && fail "vb-lan2 left"
in_h ip link show vv-lan2 >/dev/null 2>&1 && fail "VLAN link vv-lan2 left"
in_h nft list tables | grep -q vmctl && fail "nft table left: $(in_h nft list tables)"
pgrep -f "dnsmasq --conf-file=$VMCTL_RUN_DIR" >/dev/null && fail "dnsmasq left running"
pass "lease $vm_ip, NAT seen as 10.66.0.1 outside, LAN on eth1 ($((SECONDS - t0)) s)"
