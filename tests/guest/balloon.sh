#!/bin/bash
# virtio-balloon with the real Debian guest (virtio_balloon.ko, loaded by the guest's /init):
#  - the guest (384 MiB) fills and frees 192 MiB of a tmpfs, so most of its free memory is
#    backed on the host (first touches are slow in the nested test host: kept small);
#  - balloon-set to 128 MiB below RAM: the driver's `actual` reaches the target, the guest's
#    MemTotal drops by 128 MiB (deflate-on-oom=off: Linux then takes the pages out of
#    MemTotal), and the vmm's guest RAM really shrinks: the memfd's allocated blocks (read from
#    outside, /proc/PID/fd) and the vmm's RssShmem drop, and stay below RAM - 128 MiB;
#  - statistics arrive every second (total_memory matches the guest's MemTotal, last_update
#    moves);
#  - balloon-set back to all of RAM: actual returns to 0 and MemTotal to its first value.
# Needs the balloon wired into vmm (--balloon); skips when this vmm does not have it.
. "$(dirname "$0")/boot-common.bash"
CTL=$BIN/vmm-ctl
need_file "$CTL"
"$VMM" --help | grep -q -- '--balloon' || skip "this vmm has no --balloon (wiring not integrated)"

MEM=384
BALLOON=128
sock=$T_TMP/ctl.sock
# Guest: fill/free a tmpfs (host pages get backed), then print MemTotal/MemFree twice a second.
cmd=$(printf '%s\n' \
	'mkdir -p /fill && mount -t tmpfs -o size=256m none /fill' \
	'dd if=/dev/zero of=/fill/f bs=1M count=192 2>/dev/null; rm /fill/f; umount /fill' \
	'echo FILLED' \
	'i=0; while [ $i -lt 2400 ]; do i=$((i+1))' \
	'  echo "MEM $(awk '"'"'/^MemTotal:/{t=$2} /^MemFree:/{f=$2} END{print t, f}'"'"' /proc/meminfo)"' \
	'  sleep 0.5; done' | base64 -w0)
"$VMM" --kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" --memory ${MEM}M --cpus 2 \
	--append "console=ttyS0 loglevel=5 panic=-1 vmctl.action=run vmctl.run=b64:$cmd" \
	--balloon=stats=1,deflate-on-oom=off \
	--control "$sock" --console "file:$T_TMP/con" >"$T_TMP/out" 2>"$T_TMP/err" </dev/null &
pid=$!
on_exit "kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null"

ctl() { "$CTL" -t 10 "$sock" "$1"; }
# jnum KEY JSON: the first integer value of "KEY" in a one-line JSON reply
jnum() { grep -o "\"$1\": *-\?[0-9]*" <<<"$2" | head -1 | grep -o -- '-\?[0-9]*$'; }
info() { ctl '{"execute":"balloon-info"}'; }
# last_update seconds (the vmm's CLOCK_REALTIME at the last stats report)
jts() { grep -o '"last_update": *{ *"seconds": *[0-9]*' <<<"$1" | grep -o '[0-9]*$'; }
# The guest's last "MEM total free" line (KiB)
guest_mem() { grep -a '^MEM ' "$T_TMP/con" | tail -1 | tr -d '\r' | cut -d' ' -f2-3; }
# Host view of guest RAM, from outside the vmm: the memfd's allocated KiB, and RssShmem KiB
memfd_kib() {
	local fd
	for fd in /proc/$pid/fd/*; do
		case $(readlink "$fd") in
		/memfd:guest-ram*) echo $(($(stat -L -c %b "$fd") * $(stat -L -c %B "$fd") / 1024)); return ;;
		esac
	done
	echo -1
}
rss_shmem_kib() { awk '/^RssShmem:/{print $2}' /proc/$pid/status; }
# wait_info KEY VALUE SECONDS: until balloon-info has KEY == VALUE
wait_info() {
	local end=$((SECONDS + $3)) r
	while [ $SECONDS -lt $end ]; do
		kill -0 $pid 2>/dev/null || { cat "$T_TMP/err"; fail "vmm died"; }
		r=$(info) && [ "$(jnum "$1" "$r")" = "$2" ] && return 0
		sleep 0.5
	done
	echo "last balloon-info: $r"
	return 1
}

wait_for "$T_TMP/con" '^FILLED' "$BOOT_TIMEOUT" || { tail -20 "$T_TMP/con"; cat "$T_TMP/err"; fail "guest did not fill its memory"; }
wait_for "$T_TMP/con" '^MEM ' 30 || fail "no MEM line"
r=$(info) || fail "balloon-info: $r"
grep -q '"driver_ok": *true' <<<"$r" || fail "balloon driver not live: $r"
grep -q '"stats_vq": *true' <<<"$r" || fail "guest did not negotiate STATS_VQ: $r"
grep -q '"deflate_on_oom": *false' <<<"$r" || fail "deflate-on-oom=off not honoured: $r"
[ "$(jnum actual_pages "$r")" = 0 ] || fail "balloon not empty at start: $r"
read -r total0 free0 <<<"$(guest_mem)"
sleep 2		# let the first statistics (1 s period) arrive
r=$(info)
u0=$(jnum stats_updates "$r"); ts0=$(jts "$r")
[ "${u0:-0}" -ge 1 ] || fail "no statistics from the guest: $r"
st_total=$(jnum total_memory "$r")
[ "$st_total" = $((total0 * 1024)) ] || fail "stats total_memory $st_total != guest MemTotal $total0 KiB"
mfd0=$(memfd_kib); rss0=$(rss_shmem_kib); h0=$(jnum host_ram_bytes "$r")
[ "$mfd0" -gt $(((192 - 16) * 1024)) ] || fail "guest RAM not backed after the fill: memfd $mfd0 KiB"
log "start: MemTotal $total0 KiB MemFree $free0 KiB; host: memfd $mfd0 KiB RssShmem $rss0 KiB (vmm says $((h0 / 1024)) KiB); stats x$u0"

# ---- inflate by BALLOON MiB ----
target=$((MEM - BALLOON))
t0=$SECONDS
r=$(ctl "{\"execute\":\"balloon-set\",\"arguments\":{\"target_mib\":$target}}") || fail "balloon-set: $r"
[ "$(jnum num_pages "$r")" = $((BALLOON * 256)) ] || fail "balloon-set reply: $r"
wait_info actual_pages $((BALLOON * 256)) 240 || fail "guest did not inflate to $((BALLOON * 256)) pages"
t_inflate=$((SECONDS - t0))
sleep 2		# a MEM line and a stats report after the last inflation
r=$(info)
read -r total1 free1 <<<"$(guest_mem)"
mfd1=$(memfd_kib); rss1=$(rss_shmem_kib)
[ "$(jnum actual_bytes "$r")" = $((target << 20)) ] || fail "actual_bytes: $r"
[ $((total0 - total1)) = $((BALLOON * 1024)) ] || fail "guest MemTotal $total0 -> $total1 KiB, want -$((BALLOON * 1024))"
# Every ballooned page is a hole now: at most RAM - BALLOON can be backed.
[ "$mfd1" -le $(((MEM - BALLOON) * 1024)) ] || fail "memfd still holds $mfd1 KiB (> $(((MEM - BALLOON) * 1024)))"
[ $((mfd0 - mfd1)) -ge $((BALLOON * 1024 / 2)) ] || fail "memfd only dropped $mfd0 -> $mfd1 KiB"
[ $((rss0 - rss1)) -ge $((BALLOON * 1024 / 2)) ] || fail "RssShmem only dropped $rss0 -> $rss1 KiB"
st_total=$(jnum total_memory "$r")
[ "$st_total" = $((total1 * 1024)) ] || fail "stats total_memory $st_total != guest MemTotal $total1 KiB after inflating"
u1=$(jnum stats_updates "$r"); ts1=$(jts "$r")
[ "$u1" -gt "$u0" ] || fail "stats did not refresh ($u0 -> $u1)"
log "stats: $((u1 - u0)) reports in $((ts1 - ts0)) s of the vmm's clock (period 1 s), $((t_inflate + 2)) s of the test's"
log "inflated $BALLOON MiB in ${t_inflate}s: MemTotal $total1 KiB; host: memfd $mfd0 -> $mfd1 KiB, RssShmem $rss0 -> $rss1 KiB; released $(($(jnum released_bytes "$r") >> 20)) MiB; stats x$u1"

# ---- deflate back ----
t0=$SECONDS
r=$(ctl "{\"execute\":\"balloon-set\",\"arguments\":{\"target_mib\":$MEM}}") || fail "balloon-set: $r"
wait_info actual_pages 0 240 || fail "guest did not deflate"
t_deflate=$((SECONDS - t0))
sleep 2
read -r total2 free2 <<<"$(guest_mem)"
r=$(info)
mfd2=$(memfd_kib)
[ "$total2" = "$total0" ] || fail "MemTotal after deflating: $total2 KiB, want $total0"
[ "$(jnum deflated_pages "$r")" -ge $((BALLOON * 256)) ] || fail "deflated_pages: $r"
log "deflated in ${t_deflate}s: MemTotal $total2 KiB MemFree $free2 KiB; memfd $mfd2 KiB (deflated pages are backed again only when touched)"
check_log_clean

ctl kill >/dev/null
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "vmm still running 10 s after kill"
wait $pid
st=$?
[ $st = 7 ] || { cat "$T_TMP/err"; fail "exit after kill: $st, want 7"; }
! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP/err" || { cat "$T_TMP/err"; fail "sanitizer report"; }
pass "inflate $BALLOON MiB: MemTotal -$((BALLOON * 1024)) KiB, memfd $mfd0 -> $mfd1 KiB, RssShmem $rss0 -> $rss1 KiB (${t_inflate}s); deflate back (${t_deflate}s); stats x$u1"
