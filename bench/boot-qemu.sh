#!/bin/bash
# Boot benchmark anchor: QEMU+KVM booting the project's Debian test guest (bench/boot-qemu-inner.sh),
# run where /dev/kvm is hardware — directly, or inside the test host — plus the test host's own
# start-up time (tests/lab/run -- true: wall time and the test host's uptime at readiness).
# Results: build/bench/boot-qemu.txt. Inside the test host, compare only side by side within one
# run, as ratios (docs/testing.md).
#   usage: bench/boot-qemu.sh [RUNS]     (default 5)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${1:-5}
mkdir -p build/bench
out=build/bench/boot-qemu.txt
median() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
{
echo "# bench/boot-qemu.sh $(date -u +%FT%TZ), host $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
if "${VMCTL_BUILD:-build}/bin/kvmcheck" >/dev/null 2>&1; then
	echo "# hardware KVM here: running directly"
	bench/boot-qemu-inner.sh "$RUNS"
else
	echo "## test host start-up (tests/lab/run -- true), $RUNS runs"
	: >/tmp/bench-lab.$$; : >/tmp/bench-labup.$$
	for i in $(seq "$RUNS"); do
		t0=$(date +%s%N)
		tests/lab/run --name bench -- true || echo "run $i failed"
		t=$((($(date +%s%N) - t0) / 1000000))
		up=$(cut -d' ' -f1 build/lab-out/last-timing-bench)
		echo "test host run $i: command done and test host gone after $t ms; ready at uptime $up s"
		echo "$t" >>/tmp/bench-lab.$$; echo "$up" >>/tmp/bench-labup.$$
	done
	echo "RESULT test host: median of $RUNS: 'tests/lab/run -- true' $(median </tmp/bench-lab.$$) ms wall; ready at $(median </tmp/bench-labup.$$) s of its uptime"
	rm -f /tmp/bench-lab.$$ /tmp/bench-labup.$$
	echo "## virtio-fs inside the test host: read 64 MiB through the read-only root, write 64 MiB to \$LAB_OUT"
	head -c 64M /dev/urandom >build/bench/fs-probe.bin
	tests/lab/run --name bench -- bash -c '
		r=$(dd if=build/bench/fs-probe.bin of=/dev/null bs=1M 2>&1 | tail -1)
		w=$(dd if=/dev/zero of="$LAB_OUT/fs-probe.out" bs=1M count=64 conv=fsync 2>&1 | tail -1)
		t0=$(date +%s%N); n=$(find /usr/lib -xdev | wc -l); t=$((($(date +%s%N) - t0) / 1000000))
		echo "RESULT virtio-fs: read: $r"; echo "RESULT virtio-fs: write: $w"
		echo "RESULT virtio-fs: find /usr/lib: $n entries in $t ms"'
	rm -f build/bench/fs-probe.bin build/lab-out/fs-probe.out
	echo "## QEMU+KVM inside one test host boot"
	tests/lab/run --name bench --timeout 1800 -- bench/boot-qemu-inner.sh "$RUNS"
fi
} 2>&1 | tee "$out"
echo "results in $out"
