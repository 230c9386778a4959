#!/bin/bash
# Network benchmark (not a test): TCP throughput guest->host and host->guest through a tap,
# our vmm's virtio-net against QEMU's user-space virtio-net (-netdev tap,vhost=off), same
# guest (build/guest), vCPUs, RAM and tap, in the SAME test-host run, alternating boots.
#
# Tool: busybox nc (no iperf3 in the guest). In each boot the guest runs, once per direction,
#   g2h: dd if=/dev/zero bs=64k count=N | nc HOST 9001   -> host: cat >/dev/null until EOF
#   h2g: nc HOST 9002 | wc -c                             <- host: head -c SIZE /dev/zero
# timed in the guest from /proc/uptime (10 ms ticks) from connect to the peer's close, so the
# time covers every byte delivered. MB/s = 10^6 bytes per second. Medians of RUNS boots per VMM
# and the ratio vmm/QEMU (> 1: we are faster).
#
# usage: bench/net.sh [RUNS] [MIB]     (default 3 boots each, 64 MiB per direction)
#   NET_VARIANTS="NAME:OPTS ..."  several vmm variants side by side, each with ",OPTS" added to
#   its --net (e.g. "hold0:tx-hold-us=0 vmm:"); default "vmm:" (the vmm's defaults). Each is
#   compared with QEMU; all run in every round, in turn.
# Where /dev/kvm is not hardware-accelerated it runs itself inside the test host (tests/lab/run),
# one test-host boot per round; medians over all rounds go to build/bench/net-bench.txt.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-3}
MIB=${2:-64}
VARIANTS=${NET_VARIANTS:-vmm:}
median() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
# report BOOTS OUTFILE: BOOTS has "NAME G2H H2G" per successful boot; medians and ratios to QEMU
report() {
	local v name g h n nq qg qh res
	nq=$(awk '$1 == "qemu"' "$1" | wc -l)
	[ "$nq" -gt 0 ] || { echo "bench: qemu: no successful run" >&2; return 1; }
	qg=$(awk '$1 == "qemu" {print $2}' "$1" | median)
	qh=$(awk '$1 == "qemu" {print $3}' "$1" | median)
	for v in $VARIANTS; do
		name=${v%%:*}
		n=$(awk -v n="$name" '$1 == n' "$1" | wc -l)
		[ "$n" -gt 0 ] || { echo "bench: $name: no successful run" >&2; return 1; }
		g=$(awk -v n="$name" '$1 == n {print $2}' "$1" | median)
		h=$(awk -v n="$name" '$1 == n {print $3}' "$1" | median)
		res="RESULT median of $n/$nq runs: guest->host $name $g MB/s, QEMU $qg MB/s (ratio $(ratio "$g" "$qg")); host->guest $name $h MB/s, QEMU $qh MB/s (ratio $(ratio "$h" "$qh"))"
		[ -n "${v#*:}" ] && res="$res; $name: --net ...,${v#*:}"
		echo "$res"
		echo "$res" >>"$2"
	done
}
# Not hardware KVM: one test-host boot per round, so a test-host crash (docs/testing.md "Known
# issues") costs one round, which is said and run once more in a new boot.
if [ -z "${BENCH_IN_LAB:-}" ]; then
	verdict=0
	"${VMCTL_BUILD:-$ROOT/build}/bin/kvmcheck" --no-calibrate >/dev/null 2>&1 || verdict=$?
	if [ $verdict != 0 ]; then
		mkdir -p "$ROOT/build/bench"
		boots=$ROOT/build/bench/net-boots.txt
		: >"$boots"
		for r in $(seq "$RUNS"); do
			for attempt in 1 2; do
				"$ROOT/tests/lab/run" --mem 4G --timeout 1200 --out "$ROOT/build/bench" \
					--env BENCH_IN_LAB=1 --env "BENCH_ROUND=$r" --env "NET_VARIANTS=$VARIANTS" \
					--env "VMCTL_BUILD=${VMCTL_BUILD:-$ROOT/build}" -- "$0" 1 "$MIB" |
					grep -v '^RESULT' | tee "$boots.round"
				st=${PIPESTATUS[0]}
				sed -n 's/^\([A-Za-z0-9_-]*\): guest->host \([0-9.]*\) MB\/s, host->guest \([0-9.]*\) MB\/s.*/\1 \2 \3/p' \
					"$boots.round" >>"$boots"
				[ "$st" = 125 ] || break
				echo "# TEST HOST CRASHED (infrastructure, exit 125) in round $r, attempt $attempt;" \
					"$([ "$attempt" = 1 ] && echo "running the round again in a new boot" || echo "not again")"
			done
		done
		rm -f "$boots.round"
		report "$boots" "$ROOT/build/bench/net-bench.txt"
		exit
	fi
fi
export VMCTL_BUILD=${VMCTL_BUILD:-$ROOT/build}
. "$ROOT/tests/lib/harness.sh"
. "$ROOT/tests/guest/net-common.bash"
VMM=$BIN/vmm
K=$GUEST/bzImage
I=$GUEST/initramfs.cpio.gz
for f in "$VMM" "$K" "$I"; do need_file "$f"; done
command -v qemu-system-x86_64 >/dev/null || skip "needs qemu-system-x86_64"
"$VMM" --help 2>&1 | grep -q -- '--net' || skip "this vmm has no --net option"
need_root
OUT=${LAB_OUT:-$ROOT/build/bench}
mkdir -p "$OUT"
net_setup
MAC=52:54:00:12:34:56
SIZE=$((MIB << 20))
printf '#!/bin/sh\nexec cat >/dev/null\n' >"$T_TMP/sink.sh"
printf '#!/bin/sh\nexec head -c %s /dev/zero\n' "$SIZE" >"$T_TMP/source.sh"
chmod +x "$T_TMP/sink.sh" "$T_TMP/source.sh"
in_ns timeout 2000 busybox nc -ll -p 9001 -e "$T_TMP/sink.sh" </dev/null &
on_exit "kill $! 2>/dev/null"
in_ns timeout 2000 busybox nc -ll -p 9002 -e "$T_TMP/source.sh" </dev/null &
on_exit "kill $! 2>/dev/null"

# Besides the time, each line has the packets the guest's eth0 sent and received during the
# transfer (GSO packets count once: bytes per packet tell how well the guest batched) and the
# guest's rx and tx queue interrupts (/proc/interrupts) meanwhile.
script="$GUEST_NET_UP
echo \"FEAT \$(cat /sys/class/net/eth0/device/features)\"
up() { cut -d' ' -f1 /proc/uptime; }
st=/sys/class/net/eth0/statistics
irqs() { awk -v q=\$1 '\$NF ~ q { for (i = 2; i <= NF && \$i ~ /^[0-9]+\$/; i++) n += \$i } END { print n + 0 }' /proc/interrupts; }
pk() { echo \$(cat \$st/tx_packets) \$(cat \$st/rx_packets) \$(irqs input.0) \$(irqs output.0); }
d() { echo \$1 \$2 | { read -r t0 r0 i0 o0 t1 r1 i1 o1; echo txp=\$((t1 - t0)) rxp=\$((r1 - r0)) rxirq=\$((i1 - i0)) txirq=\$((o1 - o0)); }; }
p0=\$(pk); s=\$(up); dd if=/dev/zero bs=64k count=$((SIZE / 65536)) 2>/dev/null | nc $NET_HOST_IP 9001 || exit 12; e=\$(up); p1=\$(pk)
echo \"BENCH g2h bytes=$SIZE secs=\$(echo \$s \$e | awk '{print \$2 - \$1}') \$(d \"\$p0\" \"\$p1\")\"
p0=\$(pk); s=\$(up); b=\$(nc $NET_HOST_IP 9002 </dev/null | wc -c); e=\$(up); p1=\$(pk)
echo \"BENCH h2g bytes=\$b secs=\$(echo \$s \$e | awk '{print \$2 - \$1}') \$(d \"\$p0\" \"\$p1\")\""
APPEND="console=ttyS0 quiet panic=-1 $(guest_b64 "$script")"

# one NAME CMD...: boot, run the script, append "NAME g2h_MBps h2g_MBps" to $T_TMP/boots
one() {
	local name=$1 con=$T_TMP/con.$1 g h
	shift
	timeout 600 ip netns exec "$NS" "$@" >"$con" 2>"$T_TMP/err.$name" </dev/null
	cp "$con" "$OUT/net-bench-$name.log" 2>/dev/null
	g=$(tr -d '\r' <"$con" | awk '/^BENCH g2h/ {split($3, b, "="); split($4, s, "="); if (s[2] > 0) printf "%.1f", b[2] / s[2] / 1e6}')
	h=$(tr -d '\r' <"$con" | awk -v want="$SIZE" '/^BENCH h2g/ {split($3, b, "="); split($4, s, "="); if (s[2] > 0 && b[2] == want) printf "%.1f", b[2] / s[2] / 1e6}')
	if [ -z "$g" ] || [ -z "$h" ]; then
		echo "$name: no result"; tail -5 "$con"; tail -3 "$T_TMP/err.$name"; return
	fi
	echo "$name $g $h" >>"$T_TMP/boots"
	echo "$name: guest->host $g MB/s, host->guest $h MB/s; guest packets sent/received and rx/tx interrupts: $(tr -d '\r' <"$con" | awk '/^BENCH / {printf "%s%s %s/%s irqs %s/%s", sep, $2, substr($5, 5), substr($6, 5), substr($7, 7), substr($8, 7); sep = ", "}')"
}
echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg); QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}'); guest 2 vCPUs, 512 MiB; $MIB MiB per direction; $([ -n "${BENCH_ROUND:-}" ] && echo "round $BENCH_ROUND" || echo "$RUNS boots each")"
run_vmm() {	# NAME OPTS
	one "$1" "$VMM" --kernel "$K" --initrd "$I" --append "$APPEND" --memory 512M --cpus 2 \
		--console "file:/dev/stdout" --net "tap=$TAP,mac=$MAC${2:+,$2}"
}
run_vmms() {
	local v
	for v in $VARIANTS; do run_vmm "${v%%:*}" "${v#*:}"; done
}
run_qemu() {
	one qemu qemu-system-x86_64 -enable-kvm -cpu host -M q35 -smp 2 -m 512 -nodefaults \
		-display none -no-reboot -serial stdio -kernel "$K" -initrd "$I" -append "$APPEND" \
		-netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=off" \
		-device "virtio-net-pci,netdev=n0,mac=$MAC,disable-legacy=on"
}
# Odd rounds ours first, even rounds QEMU first (the first boot of a run is the slowest).
# BENCH_ROUND: the number of this run's first round (the outer loop runs one round per boot).
: >"$T_TMP/boots"
for r in $(seq "${BENCH_ROUND:-1}" $((${BENCH_ROUND:-1} + RUNS - 1))); do
	if [ $((r % 2)) = 1 ]; then run_vmms; run_qemu; else run_qemu; run_vmms; fi
done
# (one round of the outer loop: the outer loop reports, over all rounds)
report "$T_TMP/boots" "$([ -n "${BENCH_ROUND:-}" ] && echo /dev/null || echo "$OUT/net-bench.txt")" ||
	fail "no result to report"
