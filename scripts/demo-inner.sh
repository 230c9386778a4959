#!/bin/bash
# The main job, on a machine with a hardware-accelerated /dev/kvm (directly, or inside the test
# host — scripts/demo.sh decides): boot the Debian test guest on vmctl's own monitor with a
# workload that writes and verifies most of its RAM (memverify), migrate it live to a second
# vmm over TCP while it works, check it continues on the destination with every page intact,
# and print the migration figures.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${VMCTL_BUILD:-$ROOT/build}/bin
GUEST=$ROOT/build/guest
MEM=${DEMO_MEM:-512}
T=$(mktemp -d /tmp/vmctl-demo.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
die() { echo "demo: $*" >&2; for f in "$T"/*.err; do echo "--- $f"; tail -5 "$f"; done >&2; exit 1; }
ms() { echo $((($(date +%s%N) - t0) / 1000000)); }
wait_for() {	# FILE REGEX SECONDS
	local end=$((SECONDS + $3))
	until grep -aqE "$2" "$1" 2>/dev/null; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
}
start_vmm() {	# NAME ARGS...
	local n=$1; shift
	"$BIN/vmm" --kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" \
		--append "console=ttyS0 quiet panic=-1 vmctl.action=run vmctl.run=/bin/memverify" \
		--memory "${MEM}M" --cpus 2 --rng --console "file:$T/$n.con" --control "$T/$n.sock" \
		"$@" >"$T/$n.out" 2>"$T/$n.err" </dev/null &
	pids+=($!)
	eval "${n}_pid=$!"
}
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" <<<"$2" | tr -d '"'; }
pass_of() { grep -ao 'MV pass=[0-9]*' "$T/$1.con" | tail -1 | cut -d= -f2; }

"$BIN/kvmcheck" --no-calibrate || die "this /dev/kvm cannot run the Debian guest"
t0=$(date +%s%N)
echo "== booting the Debian guest on vmctl's vmm (2 vCPUs, $MEM MiB, memverify writing RAM)"
start_vmm src
wait_for "$T/src.con" GUEST-READY 120 || die "guest did not boot"
echo "  [$(ms) ms] $(grep -a GUEST-READY "$T/src.con" | tr -d '\r')"
wait_for "$T/src.con" 'MV pass=2 ' 300 || die "memverify did not start"
echo "  [$(ms) ms] guest working: $(grep -a 'MV pass=2 ' "$T/src.con" | tr -d '\r')"

port=$((20000 + RANDOM % 30000))
echo "== destination vmm listening on 127.0.0.1:$port"
start_vmm dst --incoming "127.0.0.1:$port"
wait_for "$T/dst.err" "waiting for a migration" 60 || die "destination not listening"
echo "== live migration (pre-copy, compression off by default, 50 ms downtime budget) while the guest writes"
r=$("$BIN/vmm-ctl" -t 600 "$T/src.sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"127.0.0.1:$port\",\"wait\":true}}") ||
	die "migrate failed: $r"
[ "$(field phase "$r")" = completed ] || die "migration did not complete: $r"
wait "$src_pid"; st=$?
[ "$st" = 0 ] || die "source exited with $st"
last=$(pass_of src)
end=$((SECONDS + 300))
until [ "$(pass_of dst)" ] && [ "$(pass_of dst)" -ge $((last + 2)) ]; do
	[ $SECONDS -lt $end ] || die "guest does not continue on the destination (source ended at pass $last)"
	sleep 0.5
done
! grep -aq MV-BAD "$T/src.con" "$T/dst.con" || die "memverify found a bad page"
echo "  guest continued on the destination: pass $last on the source, then $(pass_of dst) and counting; every page verified after landing"
echo "== figures"
num() { LC_ALL=C awk "BEGIN { printf \"$1\", $2 }"; }	# format, value or arithmetic
bytes=$(field bytes_sent "$r")
printf '  %-22s %s\n' "total time" "$(num %.1f "$(field total_ms "$r")") ms" \
	"downtime" "$(num %.1f "$(field downtime_ms "$r")") ms (vCPUs paused on the source -> running on the destination)" \
	"setup" "$(num %.1f "$(field setup_ms "$r")") ms" "rounds" "$(( $(field round "$r") + 1 ))" \
	"bytes on the wire" "$bytes ($(num %.1f "$bytes / 1048576") MiB)" \
	"compression ratio" "$(num %.3f "$(field compression_ratio "$r")") (wire / raw; 1 = sent uncompressed)" \
	"vCPU throttle" "$(field throttle_pct "$r") % (auto-converge)"
echo "== powering the guest off through the control socket (ACPI power button)"
"$BIN/vmm-ctl" "$T/dst.sock" powerdown >/dev/null
for _ in $(seq 300); do kill -0 "$dst_pid" 2>/dev/null || break; sleep 0.1; done
wait "$dst_pid"; st=$?
[ "$st" = 0 ] || die "destination exited with $st"
echo "  destination vmm exited 0 after the guest powered off"
