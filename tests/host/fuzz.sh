#!/bin/bash
# test-timeout: 420
# The libFuzzer targets (tests/fuzz: virtqueue walker, virtio-net request parsers, control
# socket requests, migration/snapshot streams, and any other target with a corpus under
# tests/fuzz/corpus/) built with ASan + UBSan and run from their committed corpora for
# FUZZ_SECONDS each (default 15: the whole tier stays within ~2 min). Any crash, leak,
# sanitizer report or slow input fails the test; the reproducer stays in $BUILD/fuzz/artifacts.
. "$(dirname "$0")/../lib/harness.sh"
command -v clang >/dev/null || skip "clang not installed (scripts/install-deps.sh installs it)"
out=$BUILD/fuzz
built=$("$ROOT/tests/fuzz/build.sh" "$out" 2>&1) || fail "fuzz targets do not build: $built"
log "built: $(echo $built | tr '\n' ' ')"
secs=${FUZZ_SECONDS:-15}
t0=$SECONDS
FUZZ_NO_BUILD=1 FUZZ_OUT=$out "$ROOT/tests/fuzz/run.sh" "$secs" >"$out/run.log" 2>&1
st=$?
grep -E '^== |^Done |average_exec_per_sec|FOUND|not built|ERROR|SUMMARY' "$out/run.log" | sed "s/^/[$T_NAME] /"
[ $st = 0 ] || fail "run.sh exit $st: a target found something or could not run (log: $out/run.log)"
n=$(grep -c '^Done ' "$out/run.log")
[ "$n" -ge 4 ] || fail "only $n fuzz targets ran to completion"
pass "$n targets, $((SECONDS - t0)) s"
