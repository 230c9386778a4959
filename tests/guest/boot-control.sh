#!/bin/bash
# The control socket with the real guest: pause stops the console (and every vCPU), resume
# continues it, kill makes the vmm exit 7.
. "$(dirname "$0")/boot-common.bash"
log "pause/resume/kill"
CTL=$BIN/vmm-ctl
need_file "$CTL"
cmd=$(printf 'i=0; while :; do i=$((i+1)); echo TICK $i; sleep 0.2; done' | base64 -w0)
sock=$T_TMP/ctl.sock
"$VMM" --kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" --memory 256M --cpus 2 \
	--append "console=ttyS0 quiet panic=-1 vmctl.action=run vmctl.run=b64:$cmd" \
	--control "$sock" --console "file:$T_TMP/con" >"$T_TMP/out" 2>"$T_TMP/err" </dev/null &
pid=$!
on_exit "kill -9 $pid 2>/dev/null"
wait_for "$T_TMP/con" '^TICK 5' "$BOOT_TIMEOUT" || { tail "$T_TMP/con"; fail "guest did not start ticking"; }
timeout -k 5 30 "$CTL" -t 10 "$sock" pause >"$T_TMP/r" || fail "pause: $(cat "$T_TMP/r")"
n1=$(grep -ac '^TICK' "$T_TMP/con")
sleep 2
n2=$(grep -ac '^TICK' "$T_TMP/con")
[ "$n1" = "$n2" ] || fail "console moved while paused ($n1 -> $n2)"
timeout -k 5 30 "$CTL" -t 10 "$sock" status | grep -q '"paused"' || fail "status does not say paused"
timeout -k 5 30 "$CTL" -t 10 "$sock" resume >"$T_TMP/r" || fail "resume: $(cat "$T_TMP/r")"
wait_for "$T_TMP/con" "^TICK $((n2 + 3))\b" 20 || fail "console did not continue after resume"
timeout -k 5 30 "$CTL" -t 10 "$sock" kill >/dev/null
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "vmm still running 10 s after kill"
wait $pid
st=$?
[ $st = 7 ] || fail "exit after kill: $st, want 7"
pass "pause froze the console at $n1 lines, resume, kill 7"
