#!/bin/bash
# Run the fuzz targets for a bounded time each, starting from the committed corpus. New
# inputs go to a temporary directory (the committed corpus is never rewritten); a crash
# leaves its reproducer in $FUZZ_ARTIFACTS (default build/fuzz/artifacts) and fails.
#   usage: tests/fuzz/run.sh [SECONDS_PER_TARGET]      (default 30; FUZZ_SECONDS also works)
# Environment: FUZZ_OUT (targets' directory), FUZZ_NO_BUILD=1 (already built there).
# Exit: 0 nothing found, 1 a crash/leak/timeout, 77 clang/libFuzzer not installed.
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-${FUZZ_SECONDS:-30}}
out=${FUZZ_OUT:-build/fuzz}
arts=${FUZZ_ARTIFACTS:-$out/artifacts}
if ! command -v clang >/dev/null; then
	echo "SKIP: clang not installed (apt-get install clang libclang-rt-14-dev)"
	exit 77
fi
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
	tests/fuzz/build.sh "$out" >/dev/null || { echo "SKIP: cannot build with libFuzzer"; exit 77; }
fi
mkdir -p "$arts"
work=$(mktemp -d /tmp/fuzz-corpus.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
# Every target with a corpus directory tests/fuzz/corpus/<name> (fuzz_<name> from build.sh).
# libFuzzer exits non-zero (77 by default: -error_exitcode) on a crash, leak, UBSan report or
# timeout; any of them fails the run.
for dir in tests/fuzz/corpus/*/; do
	target=$(basename "$dir")
	if [ ! -x "$out/fuzz_$target" ]; then
		echo "fuzz: $out/fuzz_$target not built (tests/fuzz/build.sh)"; fail=1; continue
	fi
	mkdir -p "$work/$target"
	echo "== fuzz_$target for ${secs}s"
	"$out/fuzz_$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
		-artifact_prefix="$arts/${target}-" -print_final_stats=1 \
		"$work/$target" "$dir" 2>&1 | tail -n 25 || { echo "fuzz: fuzz_$target FOUND SOMETHING"; fail=1; }
done
# Stream parsers: seeds in tests/fuzz/corpus_stream; -close_fd_mask=2 hides the target's
# error log lines (every rejected input logs one), not libFuzzer's or ASan's reports.
mkdir -p "$work/stream"
echo "== fuzz_stream for ${secs}s"
"$out/fuzz_stream" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -max_len=16384 \
	-close_fd_mask=2 -artifact_prefix="$arts/stream-" -print_final_stats=1 \
	"$work/stream" tests/fuzz/corpus_stream 2>&1 | tail -n 25 || { echo "fuzz: fuzz_stream FOUND SOMETHING"; fail=1; }
exit $fail
