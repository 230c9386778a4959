#!/bin/bash
# Live-migration benchmark vs QEMU (bench/migrate-inner.sh) where /dev/kvm is hardware, else
# in the test host: one boot to calibrate the link rate (3 migrations, median), then one boot
# per case, all with that rate (MIG_BW_MIBS), so the cases of one run share it and a test-host
# crash (docs/testing.md "Known issues") costs one case, not the rest of the run. A case whose
# boot crashed (exit 125) is said so and run once more in a new boot; the completed runs of
# both boots are pooled. Results: build/bench/migrate.txt. Compare only within one run:
# ratios ours/QEMU.
#   usage: bench/migrate.sh [RUNS] [CASES]
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${1:-3}
CASES=${2:-idle d10 d50 d150}
mkdir -p build/bench
out=build/bench/migrate.txt
if "${VMCTL_BUILD:-build}/bin/kvmcheck" --no-calibrate >/dev/null 2>&1; then
	bench/migrate-inner.sh "$RUNS" "$CASES" | tee "$out"
	exit "${PIPESTATUS[0]}"
fi
lab() { tests/lab/run --timeout "$1" --name bench "${@:2}"; }
: >"$out"
say() { echo "$*" | tee -a "$out"; }
bw=
if [[ " $CASES " == *" d"* ]]; then
	cal=$(lab 1800 --env MIG_CAL_RUNS=3 -- bench/migrate-inner.sh 0 d)
	bw=$(sed -n 's/^# migration bandwidth.*: \([0-9]*\) MiB\/s; dirtying.*/\1/p' <<<"$cal")
	[ -n "$bw" ] || { say "bench: calibration failed (exit status above); output: $cal"; exit 1; }
	say "$(grep '^# migration bandwidth' <<<"$cal")"
fi
for c in $CASES; do
	for attempt in 1 2; do
		lab 3600 --env "MIG_BW_MIBS=${bw:-0}" -- bench/migrate-inner.sh "$RUNS" "$c" |
			grep -v '^## medians\|^MEDIAN' | tee -a "$out"
		st=${PIPESTATUS[0]}
		[ "$st" = 125 ] || break
		say "# TEST HOST CRASHED (infrastructure, exit 125) during case $c, attempt $attempt;" \
			"$([ $attempt = 1 ] && echo "running the case again in a new boot" || echo "not again")"
	done
done
bench/migrate-medians.sh "$out" "$CASES" | tee -a "$out"
