# Sourced by tests/guest/net*.sh and bench/net*.sh: a network namespace with a tap for one
# guest, made here and always removed (on_exit), plus the guest-side script pieces.
#   net_setup          -> $NS (namespace), $TAP (tap in it), host 10.77.0.1/24, guest .2
#   in_ns CMD...       run CMD in the namespace
#   guest_b64 'SCRIPT' -> the vmctl.run=b64:... kernel parameter for SCRIPT (runs in the guest)
NET_HOST_IP=10.77.0.1
NET_GUEST_IP=10.77.0.2

net_setup() {
	command -v ip >/dev/null || skip "needs iproute2"
	[ -c /dev/net/tun ] || modprobe tun 2>/dev/null || true
	[ -c /dev/net/tun ] || skip "needs /dev/net/tun"
	NS=vmctl-net-$$-$RANDOM
	TAP=vnt0
	ip netns add "$NS" || fail "ip netns add $NS"
	on_exit "ip netns del $NS 2>/dev/null"
	ip -n "$NS" link set lo up
	# The tap is made in the namespace (persistent, so it exists before the VMM opens it);
	# it goes away with the namespace.
	ip -n "$NS" tuntap add dev "$TAP" mode tap vnet_hdr || fail "ip tuntap add"
	ip -n "$NS" addr add "$NET_HOST_IP/24" dev "$TAP"
	ip -n "$NS" link set "$TAP" up
}

in_ns() { ip netns exec "$NS" "$@"; }

guest_b64() { printf 'vmctl.action=run vmctl.run=b64:%s' "$(printf '%s' "$1" | base64 -w0)"; }

# Brings the guest's NIC up (first virtio-net NIC: eth0) with the guest address.
GUEST_NET_UP="ip link set lo up; ip link set eth0 up && ip addr add $NET_GUEST_IP/24 dev eth0 || exit 10
echo \"NET-MAC \$(cat /sys/class/net/eth0/address) mtu \$(cat /sys/class/net/eth0/mtu)\"
i=0; until ping -c 1 -W 2 $NET_HOST_IP >/dev/null 2>&1; do i=\$((i+1)); [ \$i -lt 15 ] || exit 11; done
"
