# Run inside each of the two test hosts by tests/migrate/two-hosts.sh (not a test itself):
# host A ($LAB_NAME labA) boots the Debian test guest with memverify on our vmm and
# live-migrates it to host B over the test hosts' virtual network; host B runs
# vmm --incoming on its own address and checks the guest continues there, verified.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${VMCTL_BUILD:-$ROOT/build-asan}/bin
G=${VMCTL_GUEST:-$ROOT/build/guest}
T=$(mktemp -d /tmp/two-hosts.XXXXXX)
APPEND="console=ttyS0 loglevel=5 panic=-1 vmctl.action=run vmctl.run=/bin/memverify"
VM=(--kernel "$G/bzImage" --initrd "$G/initramfs.cpio.gz" --append "$APPEND" --memory 384M --cpus 2)
json_field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1" | tr -d '"'; }
lastp() { grep -ao 'MV pass=[0-9]*' "$1" 2>/dev/null | tail -1 | cut -d= -f2; }
"$BIN/kvmcheck" --no-calibrate >/dev/null 2>&1 || { echo "ROLE-SKIP no hardware KVM"; exit 77; }

if [ "$LAB_NAME" = labB ]; then
	"$BIN/vmm" "${VM[@]}" --console "file:$T/con" --incoming "$LAB_IP:7070" >"$T/out" 2>"$T/err" </dev/null &
	pid=$!
	# the guest arrives and keeps verifying here (bounded: boot + migration in TCG)
	for _ in $(seq 1800); do
		grep -aq MV-BAD "$T/con" 2>/dev/null && { echo "B: $(grep -a MV-BAD "$T/con")"; kill -9 $pid; exit 1; }
		kill -0 $pid 2>/dev/null || { echo "B: vmm exited: $(tail -3 "$T/err")"; exit 1; }
		n=$(lastp "$T/con")
		[ -n "$n" ] && [ "$(grep -ac 'MV pass=' "$T/con")" -ge 3 ] && break
		sleep 0.5
	done
	first=$(grep -ao 'MV pass=[0-9]*' "$T/con" | head -1 | cut -d= -f2)
	echo "B: guest running here, passes $first..$(lastp "$T/con") verified; $(grep -a 'received' "$T/err")"
	kill $pid; wait $pid
	[ -n "$first" ] && echo "B-OK first=$first" || exit 1
	exit 0
fi

"$BIN/vmm" "${VM[@]}" --console "file:$T/con" --control "$T/sock" >"$T/out" 2>"$T/err" </dev/null &
pid=$!
for _ in $(seq 1200); do [ "$(grep -ac 'MV pass=' "$T/con")" -ge 2 ] && break; sleep 0.5; done
[ "$(grep -ac 'MV pass=' "$T/con")" -ge 2 ] || { echo "A: memverify did not run"; kill -9 $pid; exit 1; }
for _ in $(seq 60); do	# B may still be booting: retry while the connection is refused
	r=$("$BIN/vmm-ctl" -t 900 "$T/sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"$LAB_PEER_IP:7070\",\"stall_timeout_s\":30,\"wait\":true}}")
	[ "$(json_field "$r" phase)" = completed ] && break
	grep -q "connecting" <<<"$r" || break
	sleep 1
done
echo "A: $r"
echo "A: last pass here $(lastp "$T/con")"
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
wait $pid
st=$?
[ "$(json_field "$r" phase)" = completed ] && [ $st = 0 ] && echo "A-OK last=$(lastp "$T/con") total_ms=$(json_field "$r" total_ms) downtime_ms=$(json_field "$r" downtime_ms) bytes=$(json_field "$r" bytes_sent)" || exit 1
