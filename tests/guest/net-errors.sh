#!/bin/bash
# --net error paths on our vmm, in a network namespace made and removed by the test: bad
# --net arguments are usage errors (exit 2, one line naming --net); a tap that cannot be used
# (a tun-mode device of that name, or no CAP_NET_ADMIN to create one) is a start-up error
# (exit 1) with one line saying which tap and why; nothing is left behind.
. "$(dirname "$0")/boot-common.bash"
. "$(dirname "$0")/net-common.bash"
need_root
"$VMM" --help 2>&1 | grep -q -- '--net' || skip "this vmm has no --net option"
net_setup

# try EXPECTED_STATUS REGEX VMM_ARGS...: the vmm stops before the guest runs
try() {
	local want=$1 re=$2 st
	shift 2
	timeout 60 ip netns exec "$NS" "$@" </dev/null >"$T_TMP/out" 2>"$T_TMP/err"
	st=$?
	[ "$st" = "$want" ] || { cat "$T_TMP/err"; fail "$*: exit $st, want $want"; }
	grep -qE -e "$re" "$T_TMP/err" || { cat "$T_TMP/err"; fail "$*: no line matching '$re'"; }
	! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP/err" || { cat "$T_TMP/err"; fail "sanitizer report"; }
}
args=(--kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" --memory 256M --console "file:$T_TMP/con")

try 2 "--net 'tap=': expected" "$VMM" "${args[@]}" --net tap=
try 2 "--net .*expected" "$VMM" "${args[@]}" --net "tap=$TAP,mac=01:00:5e:00:00:01"
try 2 "--net .*expected" "$VMM" "${args[@]}" --net "tap=$TAP,speed=10"
try 2 "--net .*expected" "$VMM" "${args[@]}" --net tap=a-name-far-too-long
nine=(); for i in $(seq 9); do nine+=(--net "tap=t$i"); done
try 2 "at most 8 NICs" "$VMM" "${args[@]}" "${nine[@]}"

ip -n "$NS" tuntap add dev tun7 mode tun || fail "ip tuntap add tun7"
try 1 "tap tun7: .*Invalid argument" "$VMM" "${args[@]}" --net tap=tun7

# Without CAP_NET_ADMIN (dropped from the bounding set) a new tap cannot be created.
try 1 "tap vnt9: Operation not permitted \(needs CAP_NET_ADMIN" \
	setpriv --bounding-set -net_admin "$VMM" "${args[@]}" --net tap=vnt9
ip -n "$NS" link show vnt9 >/dev/null 2>&1 && fail "a half-created tap vnt9 was left behind"
[ "$(wc -l <"$T_TMP/err")" -le 3 ] || { cat "$T_TMP/err"; fail "more than a short error report"; }
log "bad --net arguments exit 2; unusable tap / no CAP_NET_ADMIN exit 1 with one line"
pass
