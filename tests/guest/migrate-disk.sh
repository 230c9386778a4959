#!/bin/bash
# test-timeout: 600
# A guest writing to its virtio disk while it is live-migrated A -> B -> C between vmm
# processes sharing the same image file (issue 5: "in-flight block requests are drained
# before the final stop"). The guest runs diskverify (firmware/guest/programs): generations
# of sequence-numbered, checksummed 4 KiB blocks written with O_DIRECT + fsync, every block
# read back and checked before the next generation — a write acknowledged but lost, or
# replayed stale on the destination, is a DV-BAD. After the hops the test writes DV-STOP into
# a second (stop) disk; the guest finishes its generation, verifies every block on C's
# console and powers off; then the image file on the host must hold what the guest verified.
. "$(dirname "$0")/boot-common.bash"
_o=$("$VMM" --incoming 2>&1)
grep -q "needs an argument" <<<"$_o" || skip "this vmm has no --incoming (migration not wired into main.c)"
"$VMM" --help 2>&1 | grep -q -- '--disk' || skip "this vmm has no --disk option"
CTL=$BIN/vmm-ctl
need_file "$CTL"
MEM=${MIG_DISK_MEM:-192}
BLOCKS=2048	# 8 MiB written per generation
IMG=$T_TMP/disk.img
STOP=$T_TMP/stop.img
truncate -s 16M "$IMG"
truncate -s 1M "$STOP"
# the guest's disk contents after the run are checked against this sum, printed by the guest
SCRIPT="/bin/diskverify /dev/vda $BLOCKS 240 /dev/vdb || exit 1
echo \"DV-SUM \$(dd if=/dev/vda iflag=direct bs=4096 count=$BLOCKS 2>/dev/null | sha256sum | cut -d' ' -f1)\""
APPEND="console=ttyS0 loglevel=5 panic=-1 vmctl.action=run vmctl.run=b64:$(printf '%s' "$SCRIPT" | base64 -w0)"

VM=(--kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" --append "$APPEND" --memory "${MEM}M"
	--cpus 2 --disk "$IMG" --disk "$STOP,ro")
# vm NAME [vmm args...]: console NAME.con, control socket NAME.sock, stderr NAME.err; pid NAME_pid
vm() {
	"$VMM" "${VM[@]}" --console "file:$T_TMP/$1.con" --control "$T_TMP/$1.sock" "${@:2}" \
		>"$T_TMP/$1.out" 2>"$T_TMP/$1.err" </dev/null &
	eval "$1_pid=$!"
	on_exit "kill -9 $! 2>/dev/null"
}
last_gen() { grep -ao 'DV gen=[0-9]*' "$T_TMP/$1.con" 2>/dev/null | tail -1 | cut -d= -f2; }
wait_gen() {	# NAME N SECS
	local end=$((SECONDS + $3)) g
	while [ $SECONDS -lt $end ]; do
		g=$(last_gen "$1")
		[ -n "$g" ] && [ "$g" -ge "$2" ] && return 0
		grep -aq DV-BAD "$T_TMP/$1.con" && fail "$1: $(grep -a DV-BAD "$T_TMP/$1.con" | tr -d '\r')"
		sleep 0.3
	done
	return 1
}

t0=$SECONDS
vm h0
wait_gen h0 2 "$BOOT_TIMEOUT" || { tail -20 "$T_TMP/h0.con"; fail "diskverify did not run"; }
log "booted, generation 2 verified after $((SECONDS - t0)) s: $(grep -a 'DV gen=2 ' "$T_TMP/h0.con" | tr -d '\r')"
prev=h0
for i in 1 2; do
	port=$(free_port)
	vm "h$i" --incoming "127.0.0.1:$port"
	wait_for "$T_TMP/h$i.err" "waiting for a migration" 60 || fail "h$i: not listening: $(cat "$T_TMP/h$i.err")"
	g0=$(last_gen $prev)
	r=$(live_migrate "$CTL" "$T_TMP/$prev.sock" "127.0.0.1:$port" 300) ||
		fail "hop $i: migrate: $r; source: $(tail -3 "$T_TMP/$prev.err" | tr '\n' ' ')"
	eval "source_exit \$${prev}_pid"
	[ "$st" = 0 ] || fail "hop $i: source exit $st: $(tail -3 "$T_TMP/$prev.err")"
	last=$(last_gen $prev)
	[ "$last" -gt "$g0" ] 2>/dev/null || log "hop $i: no generation completed on the source during the migration"
	# two more full generations on the destination: every block re-read and verified there
	wait_gen "h$i" $((last + 2)) 120 ||
		{ tail -5 "$T_TMP/h$i.con"; fail "hop $i: the guest's disk writes do not continue on the destination: $(tail -3 "$T_TMP/h$i.err")"; }
	! grep -aq DV-BAD "$T_TMP/$prev.con" "$T_TMP/h$i.con" || fail "hop $i: DV-BAD"
	log "hop $i: total $(json_field "$r" total_ms) ms, downtime $(json_field "$r" downtime_ms) ms; generations $g0..$last on the source, $(last_gen "h$i") on the destination"
	prev=h$i
done

# tell the guest to stop: it completes its generation, verifies every block, powers off
printf 'DV-STOP' | dd of="$STOP" conv=notrunc status=none
wait_for "$T_TMP/h2.con" 'GUEST-RUN-EXIT' 120 || { tail -10 "$T_TMP/h2.con"; fail "the guest did not finish within 120 s of DV-STOP"; }
end=$((SECONDS + 60))
while kill -0 "$h2_pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.3; done
if kill -0 "$h2_pid" 2>/dev/null; then
	# Seen in session 2 (1 in 3 runs) before vcpu_state.c re-wrote the TSC deadline after
	# KVM_SET_LAPIC: both vCPUs halted forever in the guest's `poweroff -f`. The state of the
	# vmm is logged for the next look.
	log "the migrated guest did not power off within 60 s of its program's exit"
	log "  its status: $("$BIN/vmm-ctl" -t 5 "$T_TMP/h2.sock" '{"execute":"status"}' 2>&1)"
	log "  its threads (name state wchan): $(for t in /proc/"$h2_pid"/task/*; do echo "$(cat "$t/comm") $(awk '{print $3}' "$t/stat") $(cat "$t/wchan" 2>/dev/null);"; done | tr '\n' ' ')"
	tail -5 "$T_TMP/h2.con"
	fail "the migrated guest did not power off"
else
	wait "$h2_pid"
	st=$?
fi
cp "$T_TMP/h2.con" "$T_TMP/con"
done_line=$(grep -a 'DV-DONE' "$T_TMP/h2.con" | tr -d '\r')
[[ $done_line == *stop=told* ]] || { tail -10 "$T_TMP/h2.con"; fail "no DV-DONE after DV-STOP on the destination"; }
grep -qa 'GUEST-RUN-EXIT status=0' "$T_TMP/h2.con" || { tail -10 "$T_TMP/h2.con"; fail "guest script failed"; }
[ "$st" = 0 ] || fail "last destination: vmm exit $st: $(tail -3 "$T_TMP/h2.err")"
gsum=$(sed -n 's/.*DV-SUM \([0-9a-f]\{64\}\).*/\1/p' "$T_TMP/h2.con" | head -1)
hsum=$(head -c $((BLOCKS * 4096)) "$IMG" | sha256sum | cut -d' ' -f1)
[ -n "$gsum" ] && [ "$gsum" = "$hsum" ] || fail "image file on the host ($hsum) differs from what the guest verified (${gsum:-none})"
check_log_clean
! grep -aE 'I/O error|blk_update_request|Buffer I/O' "$T_TMP"/h*.con || fail "I/O errors in the guest's log"
! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP"/*.err || { cat "$T_TMP"/*.err; fail "sanitizer report"; }
pass "disk writes across 2 hops (${MEM} MiB guest): $done_line, every block verified in the guest and the image on the host"
