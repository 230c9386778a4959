#!/bin/bash
# Two test hosts on one virtual network (tests/lab/run2): B pings A, then sends 8 MiB over TCP;
# A checks the bytes arrived intact (sha256 computed on both sides).
. "$(dirname "$0")/../lib/harness.sh"
need_root
out=$("$ROOT/tests/lab/run2" --timeout 400 --out "$T_TMP/out" -- \
	bash -c 'exec 3< <(exec sleep 360); hold=$!	# an open stdin: busybox nc quits at stdin EOF
		busybox nc -l -p 5001 <&3 >/tmp/rx & nc=$!
		for i in $(seq 1500); do [ "$(stat -c %s /tmp/rx)" -ge 8388608 ] && break; sleep 0.2; done
		kill $nc $hold
		echo "A: received $(stat -c %s /tmp/rx) bytes sha=$(sha256sum </tmp/rx | cut -c1-32)"' -- \
	bash -c 'busybox ping -c 3 -W 5 "$LAB_PEER_IP" || exit 2
		head -c 8388608 /dev/urandom >/tmp/tx
		echo "B: sending $(stat -c %s /tmp/tx) bytes sha=$(sha256sum </tmp/tx | cut -c1-32)"
		for i in $(seq 40); do
			timeout 60 bash -c "cat /tmp/tx >/dev/tcp/$LAB_PEER_IP/5001" 2>/dev/null && exit 0
			sleep 0.5
		done
		exit 3' 2>&1)
st=$?
echo "$out" | grep -E '^\[[AB]\] (A:|B:|[0-9]+ packets)|run2'
[ $st = 0 ] || fail "run2 exit $st"
grep -q '^\[B\] 3 packets transmitted, 3 packets received' <<<"$out" || fail "ping B -> A failed"
sa=$(sed -n 's/^\[A\] A: received 8388608 bytes sha=\(.*\)$/\1/p' <<<"$out")
sb=$(sed -n 's/^\[B\] B: sending 8388608 bytes sha=\(.*\)$/\1/p' <<<"$out")
[ -n "$sa" ] && [ "$sa" = "$sb" ] || fail "TCP transfer: sent '$sb', received '$sa'"
pass
