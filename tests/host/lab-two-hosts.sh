#!/bin/bash
# Two test hosts on one virtual network (tests/lab/run2): B pings A, then sends 8 MiB over TCP;
# A checks the bytes arrived intact (sha256 computed on both sides) and tells B, which waits for
# that before its test host powers off.
. "$(dirname "$0")/../lib/harness.sh"
need_root
out=$("$ROOT/tests/lab/run2" --timeout 400 --out "$T_TMP/out" -- \
	bash -c 'exec 3< <(exec sleep 360); hold=$!	# an open stdin: busybox nc quits at stdin EOF
		busybox nc -l -p 5001 <&3 >/tmp/rx & nc=$!
		for i in $(seq 1500); do [ "$(stat -c %s /tmp/rx)" -ge 8388608 ] && break; sleep 0.2; done
		kill $nc $hold
		sha=$(sha256sum </tmp/rx | cut -c1-32)
		echo "A: received $(stat -c %s /tmp/rx) bytes sha=$sha"
		for i in $(seq 20); do echo "$sha" 2>/dev/null >/dev/tcp/$LAB_PEER_IP/5002 && break; sleep 0.5; done' -- \
	bash -c 'busybox ping -c 3 -W 5 "$LAB_PEER_IP" || exit 2
		head -c 8388608 /dev/urandom >/tmp/tx
		echo "B: sending $(stat -c %s /tmp/tx) bytes sha=$(sha256sum </tmp/tx | cut -c1-32)"
		# B stays up until A says what it received: cat returns once the bytes are in the
		# socket buffer, and a test host that powered off then would never send them
		exec 3< <(exec sleep 330); hold=$!
		busybox nc -l -p 5002 <&3 >/tmp/ack & ack=$!
		for i in $(seq 40); do
			timeout 60 bash -c "cat /tmp/tx >/dev/tcp/$LAB_PEER_IP/5001" 2>/dev/null && break
			sleep 0.5
		done
		for i in $(seq 1500); do [ -s /tmp/ack ] && break; sleep 0.2; done
		kill $ack $hold
		echo "B: A acknowledged sha=$(cat /tmp/ack)"
		[ -s /tmp/ack ] || exit 3' 2>&1)
st=$?
echo "$out" | grep -E '^\[[AB]\] (A:|B:|[0-9]+ packets)|run2'
[ $st = 0 ] || fail "run2 exit $st"
grep -q '^\[B\] 3 packets transmitted, 3 packets received' <<<"$out" || fail "ping B -> A failed"
sa=$(sed -n 's/^\[A\] A: received 8388608 bytes sha=\(.*\)$/\1/p' <<<"$out")
sb=$(sed -n 's/^\[B\] B: sending 8388608 bytes sha=\(.*\)$/\1/p' <<<"$out")
[ -n "$sa" ] && [ "$sa" = "$sb" ] || fail "TCP transfer: sent '$sb', received '$sa'"
grep -q "^\[B\] B: A acknowledged sha=$sa" <<<"$out" || fail "B did not get A's acknowledgement"
pass
