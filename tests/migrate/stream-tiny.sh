#!/bin/bash
# Hostile streams at the destination. A real migration of the tiny guest is recorded (a relay
# between source and destination copies the source's bytes to a file); then fresh
# destinations get that recording replayed, once intact (the control: the guest runs there)
# and once per corruption: truncated at several points (mid-RAM, inside STATE, before
# COMPLETE), a flipped magic, an oversize length, a page outside guest RAM, a zero run past
# the end of RAM, a flipped bit in the STATE stream, an unknown command, a second STATE.
# Each must make the destination exit non-zero with a one-line reason, never running the
# guest (no PASS line on its console).
. "$(dirname "$0")/common.bash"
command -v python3 >/dev/null || skip "python3 missing"

cat >"$T_TMP/tool.py" <<'PY'
import socket, struct, sys, threading

def relay(lport, dport, rec):
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", lport)); ls.listen(1)
    print("ready", flush=True)
    a, _ = ls.accept()
    b = socket.create_connection(("127.0.0.1", dport))
    out = open(rec, "wb")
    def back():
        while True:
            d = b.recv(65536)
            if not d: break
            a.sendall(d)
        a.close()
    threading.Thread(target=back, daemon=True).start()
    while True:
        d = a.recv(65536)
        if not d: break
        out.write(d); out.flush()
        b.sendall(d)
    b.shutdown(socket.SHUT_WR)

def msgs(data):
    off = 0
    while off + 16 <= len(data):
        magic, cmd, flags, ln = struct.unpack_from("<IHHQ", data, off)
        yield off, cmd, ln
        off += 16 + ln

def mutate(data, how):
    m = list(msgs(data))
    first = lambda c: next(x for x in m if x[1] == c)
    b = bytearray(data)
    if how == "intact": return bytes(b)
    if how.startswith("cut0"):
        f = float(how[3:]); return bytes(b[:int(len(b) * f)])
    if how == "cut-state":
        o, c, l = first(6); return bytes(b[:o + 16 + l // 2])
    if how == "cut-before-complete":
        o, c, l = first(7); return bytes(b[:o])
    if how == "magic":
        o, c, l = first(3); b[o] ^= 0x01; return bytes(b)
    if how == "oversize":
        o, c, l = first(3); struct.pack_into("<Q", b, o + 8, 1 << 40); return bytes(b)
    if how == "page-outside-ram":
        o, c, l = first(3); struct.pack_into("<Q", b, o + 16 + 8, 0x7f00000000); return bytes(b)
    if how == "zero-run-past-end":
        o, c, l = first(4)
        n = struct.unpack_from("<I", b, o + 16)[0]
        struct.pack_into("<Q", b, o + 16 + 8 + 8 * (n - 1), (32 << 20) - 4096 | 7); return bytes(b)
    if how == "state-bitflip":
        o, c, l = first(6); b[o + 16 + l // 2] ^= 0x10; return bytes(b)
    if how == "unknown-cmd":
        o, c, l = first(5); struct.pack_into("<H", b, o + 4, 12); return bytes(b)
    if how == "second-state":
        o, c, l = first(6); return bytes(b[:o + 16 + l]) + bytes(b[o:o + 16 + l]) + bytes(b[o + 16 + l:])
    raise SystemExit("unknown mutation " + how)

def replay(port, rec, how):
    data = mutate(open(rec, "rb").read(), how)
    s = socket.create_connection(("127.0.0.1", port))
    def drain():
        try:
            while s.recv(65536): pass
        except OSError: pass
    t = threading.Thread(target=drain, daemon=True); t.start()
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    t.join(20)

if sys.argv[1] == "relay": relay(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
else: replay(int(sys.argv[2]), sys.argv[3], sys.argv[4])
PY

# record a real migration
start_vmm src
wait_passes src 3 30 || fail "dirtier did not start"
dest rec
rport=$(free_port)
python3 "$T_TMP/tool.py" relay "$rport" "$port" "$T_TMP/stream.bin" >"$T_TMP/relay.log" 2>&1 &
on_exit "kill -9 $! 2>/dev/null"
wait_for "$T_TMP/relay.log" ready 10 || fail "relay did not start"
r=$(ctl "$T_TMP/src.sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"127.0.0.1:$rport\",\"wait\":true}}")
[ "$(json_field "$r" phase)" = completed ] || fail "recording migration: $r"
wait_passes rec 2 30 || fail "recorded destination does not run"
kill -9 "$dpid"
log "recorded $(stat -c %s "$T_TMP/stream.bin") bytes"

i=0
for how in intact cut0.3 cut0.7 cut-state cut-before-complete magic oversize page-outside-ram \
	   zero-run-past-end state-bitflip unknown-cmd second-state; do
	i=$((i + 1))
	dest "r$i"
	python3 "$T_TMP/tool.py" replay "$port" "$T_TMP/stream.bin" "$how" || fail "$how: replay failed"
	if [ $how = intact ]; then
		wait_passes "r$i" 2 30 || fail "intact replay: guest does not run: $(cat "$T_TMP/r$i.err")"
		no_bad "r$i"
		kill -9 "$dpid"
		log "intact: the guest runs on the destination"
		continue
	fi
	wait_exit "$dpid" 40
	[ "$st" != 0 ] || fail "$how: destination exit 0"
	! grep -aq PASS "$T_TMP/r$i.con" 2>/dev/null || fail "$how: the half-loaded guest ran"
	grep -q "error" "$T_TMP/r$i.err" || fail "$how: no error line"
	log "$how: exit $st: $(grep -a 'error' "$T_TMP/r$i.err" | tail -1 | cut -c1-150)"
done
no_sanitizer_reports
pass "intact replay runs; 11 corrupted streams rejected without running the guest"
