#!/bin/bash
# Run test scripts and count: exit 0 pass, 77 skip, anything else fail. Each script gets a
# time limit (TEST_TIMEOUT, default 600 s, or the script's own "# test-timeout: N" line), after which it and all it started are killed.
# Prints one line per test and, last, the summary `N passed, N failed, N skipped`; exits
# non-zero if any test failed.
#   usage: tests/run-tests.sh [--counts FILE] [--log DIR] TEST_OR_DIR...
#   --counts FILE   also write "passed failed skipped" there (for a caller adding up tiers)
#   --log DIR       keep each test's output in DIR/<test>.log (default: a temp dir)
set -uo pipefail
counts= logdir=
while [ $# -gt 0 ]; do
	case "$1" in
	--counts) counts=$2; shift 2 ;;
	--log) logdir=$2; shift 2 ;;
	*) break ;;
	esac
done
tmplog=
# Inside the test host, keep the logs where the caller can read them (live) from outside.
if [ -z "$logdir" ] && [ -n "${LAB_OUT:-}" ] && [ -n "${LAB_INSIDE:-}" ]; then
	logdir=$LAB_OUT/test-logs/$(date +%Y%m%d-%H%M%S)-$$
	echo "(test logs: $logdir)"
fi
if [ -z "$logdir" ]; then
	logdir=$(mktemp -d /tmp/vmctl-tests.XXXXXX)
	tmplog=$logdir
fi
mkdir -p "$logdir"
tests=()
for a in "$@"; do
	if [ -d "$a" ]; then
		for t in "$a"/*.sh; do [ -x "$t" ] && tests+=("$t"); done
	else
		tests+=("$a")
	fi
done
# Run a test in its own session so that, at the time limit, everything it started goes too
# (a nested `timeout` puts its child in another process group, but not another session).
run_one() {
	local t=$1 lf=$2 limit=${TEST_TIMEOUT:-600} pid end st own
	# A test that needs longer says so in a header line "# test-timeout: SECONDS".
	own=$(sed -n '1,20s/^# test-timeout: *\([0-9][0-9]*\).*/\1/p' "$t" | head -1)
	[ -n "$own" ] && [ -z "${TEST_TIMEOUT:-}" ] && limit=$own
	setsid "$t" >"$lf" 2>&1 </dev/null &
	pid=$!
	end=$((SECONDS + limit))
	while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.5; done
	if kill -0 "$pid" 2>/dev/null; then
		echo "run-tests: $t still running after ${limit}s: stopping it and everything it started" >>"$lf"
		kill_session "$pid" TERM
		sleep 5
		kill_session "$pid" KILL
		wait "$pid" 2>/dev/null
		return 124
	fi
	wait "$pid"
	st=$?
	kill_session "$pid" KILL	# leftovers of a finished test
	return $st
}
kill_session() {	# kill_session SID SIGNAL: every process of that session, by pid
	local p
	for p in $(ps -e -o pid= -o sid= | awk -v s="$1" '$2 == s {print $1}'); do
		kill -"$2" "$p" 2>/dev/null
	done
}
p=0 f=0 s=0 failed=()
for t in "${tests[@]}"; do
	n=$(basename "$(dirname "$t")")/$(basename "$t" .sh)
	lf=$logdir/${n//\//_}.log
	t0=$SECONDS
	run_one "$t" "$lf"
	st=$?
	d=$((SECONDS - t0))
	case $st in
	0) p=$((p + 1)); echo "PASS $n (${d}s)" ;;
	77) s=$((s + 1)); echo "SKIP $n: $(grep -m1 'SKIP' "$lf" | sed 's/.*SKIP: //')" ;;
	*) f=$((f + 1)); failed+=("$n")
	   echo "FAIL $n (exit $st, ${d}s) — last lines:"
	   tail -n 15 "$lf" | sed 's/^/    /' ;;
	esac
done
[ -n "$counts" ] && echo "$p $f $s" >"$counts"
[ -n "$tmplog" ] && rm -rf "$tmplog"
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$p passed, $f failed, $s skipped"
[ $f = 0 ]
