#!/bin/bash
# Live-migration benchmark, run where /dev/kvm is hardware (directly, or inside the test host
# through bench/migrate.sh): our vmm vs QEMU, same guest (firmware/guest: Debian kernel +
# busybox), same 1 GiB / 2 vCPUs, loopback TCP, alternating, RUNS runs each.
#   cases: idle guest; memverify dirtying 256 MiB at ~10 %, 50 %, 150 % of the migration
#          bandwidth measured here by one calibration migration of ours (memverify at
#          1 MiB/s: its data-page bandwidth; the MiB/s are printed)
#   ours:  compression off (zstd level 0) and on (level 1), default 50 ms budget, policy
#          minimal-downtime; QEMU: its defaults, and its best (bandwidth raised, multifd+zstd)
# Output: one "RESULT" line per migration, then medians per case and variant.
#   usage: bench/migrate-inner.sh [RUNS] [CASES]   (default 3, "idle d10 d50 d150")
#   MIG_BW_MIBS: use this link rate instead of calibrating (bench/migrate.sh calibrates once
#   and passes it to every test-host boot, so the cases share one rate)
#   MIG_CAL_RUNS (default 1): calibration migrations, their median is the rate
#   RUNS 0 with CASES "d" only calibrates (prints the "# migration bandwidth" line)
#   MIG_QEMU_TIMEOUT (s, default 120): a QEMU migration still running then is cancelled and
#   counted as not converged (its defaults never finish at 150 %).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${1:-3}
CASES=${2:-idle d10 d50 d150}
BIN=${VMCTL_BUILD:-$ROOT/build}/bin
G=${VMCTL_GUEST:-$ROOT/build/guest}
T=$(mktemp -d /tmp/bench-mig.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
median() { sort -n | awk '{a[NR] = $1} END {if (!NR) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
b64() { printf %s "$1" | base64 -w0; }
free_port() { local p; for _ in $(seq 50); do p=$((20000 + RANDOM % 30000)); ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && { echo $p; return; }; done; }
wait_for() { local end=$((SECONDS + $3)); while [ $SECONDS -lt $end ]; do grep -aqE "$2" "$1" 2>/dev/null && return 0; sleep 0.2; done; return 1; }
json_field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1" | tr -d '"'; }

BW_MIBS=0
workload() {	# case -> guest command line
	case $1 in
	idle) echo "echo BENCH-READY; sleep 100000" ;;
	cal) echo "echo BENCH-READY; /bin/memverify 256 1" ;;
	d*) local pct=${1#d} rate=$((BW_MIBS * ${1#d} / 100)); [ $rate -lt 1 ] && rate=1
	    echo "echo BENCH-READY; /bin/memverify 256 $rate" ;;
	esac
}

run_ours() {	# case level
	local port con=$T/o.con
	local app="console=ttyS0 loglevel=5 panic=-1 vmctl.action=run vmctl.run=b64:$(b64 "$(workload "$1")")"
	rm -f "$T"/o*.con
	"$BIN/vmm" --kernel "$G/bzImage" --initrd "$G/initramfs.cpio.gz" --append "$app" --memory 1G --cpus 2 \
		--console "file:$con" --control "$T/o.sock" >/dev/null 2>"$T/o.err" </dev/null &
	local sp=$!; pids+=($sp)
	port=$(free_port)
	"$BIN/vmm" --kernel "$G/bzImage" --initrd "$G/initramfs.cpio.gz" --append "$app" --memory 1G --cpus 2 \
		--console "file:$T/od.con" --incoming "127.0.0.1:$port" >/dev/null 2>"$T/od.err" </dev/null &
	local dp=$!; pids+=($dp)
	wait_for "$con" "BENCH-READY" 300 || { echo "ours $1: guest not ready"; return; }
	[ "$1" != idle ] && { wait_for "$con" "MV-START" 300 || { echo "ours $1: memverify not running"; return; }; }
	sleep 2
	local r
	r=$("$BIN/vmm-ctl" -t 900 "$T/o.sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"127.0.0.1:$port\",\"compress_level\":$2,\"wait\":true}}")
	echo "RESULT case=$1 variant=ours-z$2 status=$(json_field "$r" phase) total_ms=$(json_field "$r" total_ms) downtime_ms=$(json_field "$r" downtime_ms) setup_ms=$(json_field "$r" setup_ms) bytes=$(json_field "$r" bytes_sent) rounds=$(( $(json_field "$r" round) + 1 )) bw_bps=$(json_field "$r" bandwidth_bps) throttle=$(json_field "$r" throttle_pct)"
	if [ "$1" = cal ]; then
		local bw; bw=$(json_field "$r" bandwidth_bps); bw=${bw%.*}
		[ -n "$bw" ] && [ "$bw" -gt 0 ] && echo "$((bw >> 20))" >>"$T/bw"
	fi
	grep -a 'stop-and-copy:' "$T/o.err" | sed "s/.*stop-and-copy: /#   $1 ours-z$2 stop-and-copy: /"
	grep -aE 'COMPLETE: .* loaded|migration complete: running' "$T/od.err" | sed "s/^[a-z]*: info: /#   $1 ours-z$2 destination: /"
	grep -aq MV-BAD "$T/od.con" && echo "ours $1: MV-BAD on the destination!"
	kill -9 $sp $dp 2>/dev/null; wait $sp $dp 2>/dev/null
}

run_qemu() {	# case mode
	local port app="console=ttyS0 loglevel=5 panic=-1 vmctl.action=run vmctl.run=b64:$(b64 "$(workload "$1")")"
	local q=(qemu-system-x86_64 -enable-kvm -cpu host -M q35 -smp 2 -m 1024 -nodefaults -nographic
		 -kernel "$G/bzImage" -initrd "$G/initramfs.cpio.gz" -append "$app")
	rm -f "$T"/q*.con
	"${q[@]}" -serial "file:$T/q.con" -qmp "unix:$T/qs.sock,server=on,wait=off" >/dev/null 2>&1 </dev/null &
	local sp=$!; pids+=($sp)
	port=$(free_port)
	"${q[@]}" -serial "file:$T/qd.con" -qmp "unix:$T/qd.sock,server=on,wait=off" -incoming defer >/dev/null 2>&1 </dev/null &
	local dp=$!; pids+=($dp)
	wait_for "$T/q.con" "BENCH-READY" 300 || { echo "qemu $1: guest not ready"; return; }
	[ "${1:0:1}" = d ] && { wait_for "$T/q.con" "MV-START" 300 || { echo "qemu $1: memverify not running"; return; }; }
	sleep 2
	echo "RESULT case=$1 variant=qemu-$2 $(QMP_MIGRATE_TIMEOUT=${MIG_QEMU_TIMEOUT:-120} timeout 900 python3 bench/qmp_migrate.py "$T/qs.sock" "$T/qd.sock" "tcp:127.0.0.1:$port" "$2")"
	grep -aq MV-BAD "$T/qd.con" && echo "qemu $1: MV-BAD on the destination!"
	kill -9 $sp $dp 2>/dev/null; wait $sp $dp 2>/dev/null
}

echo "# bench/migrate-inner.sh $(date -u +%FT%TZ) kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}')"
: >"$T/res"
for c in $CASES; do
	if [ "${c:0:1}" = d ] && [ "$BW_MIBS" = 0 ]; then
		if [ "${MIG_BW_MIBS:-0}" != 0 ]; then
			BW_MIBS=$MIG_BW_MIBS how="given by MIG_BW_MIBS, measured by an earlier calibration"
		else
			# The link rate is what our migration measures while sending data pages (an
			# idle round is mostly free zero/hole pages and says nothing about the link).
			for _ in $(seq "${MIG_CAL_RUNS:-1}"); do run_ours cal 0 >/dev/null; done
			BW_MIBS=$( [ -s "$T/bw" ] && median <"$T/bw" || echo 40)
			BW_MIBS=${BW_MIBS%.*}
			how="data pages, median of ${MIG_CAL_RUNS:-1} calibration migration(s) of ours: $(tr '\n' ' ' <"$T/bw" 2>/dev/null)MiB/s"
		fi
		echo "# migration bandwidth ($how): $BW_MIBS MiB/s; dirtying rates: 10/50/150 % = $((BW_MIBS / 10)) / $((BW_MIBS / 2)) / $((BW_MIBS * 3 / 2)) MiB/s"
	fi
	for i in $(seq "$RUNS"); do
		for v in ours-0 qemu-default ours-1 qemu-best; do
			case $v in
			ours-*) run_ours "$c" "${v#ours-}" ;;
			qemu-*) run_qemu "$c" "${v#qemu-}" ;;
			esac
		done
	done | tee -a "$T/res"
done
"$ROOT/bench/migrate-medians.sh" "$T/res" "$CASES"
