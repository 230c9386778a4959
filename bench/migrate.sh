#!/bin/bash
# Live-migration benchmark vs QEMU (bench/migrate-inner.sh) where /dev/kvm is hardware, else
# inside one test-host boot. Results: build/bench/migrate.txt. Compare only within one run
# (docs/testing.md): ratios ours/QEMU.
#   usage: bench/migrate.sh [RUNS] [CASES]
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mkdir -p build/bench
if "${VMCTL_BUILD:-build}/bin/kvmcheck" --no-calibrate >/dev/null 2>&1; then
	bench/migrate-inner.sh "$@"
else
	tests/lab/run --timeout 5400 --name bench -- bench/migrate-inner.sh "$@"
fi | tee build/bench/migrate.txt
