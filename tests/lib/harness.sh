# Shared helpers for vmctl's shell tests (source it: . "$(dirname "$0")/../lib/harness.sh").
# A test script is one executable file: exit 0 pass, 77 skip (say why on stdout), anything
# else fail. Every wait is bounded; every process and file a test makes is cleaned up by it.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The build the tests use: ASan/UBSan by default (what `make asan` makes), or VMCTL_BUILD=build
BUILD=${VMCTL_BUILD:-$ROOT/build-asan}
BIN=$BUILD/bin
GUEST=${VMCTL_GUEST:-$ROOT/build/guest}
T_NAME=$(basename "$0" .sh)
T_TMP=$(mktemp -d "/tmp/vmctl-test.$T_NAME.XXXXXX")
_t_cleanups=()
_t_failed=
t_cleanup() {
	local i keep
	for ((i = ${#_t_cleanups[@]} - 1; i >= 0; i--)); do eval "${_t_cleanups[i]}" || true; done
	# A failed test keeps its small files (logs, consoles, stderr of every process it ran) for a
	# look: under the test host's shared output dir when inside one, else build/failed/.
	if [ -n "$_t_failed" ] && [ -d "$T_TMP" ]; then
		keep=${LAB_OUT:-$ROOT/build}/failed/$T_NAME.$(date +%H%M%S).$$
		mkdir -p "$keep" 2>/dev/null &&
			find "$T_TMP" -maxdepth 2 -type f -size -4M -exec cp -t "$keep" {} + 2>/dev/null &&
			echo "[$T_NAME] its files are kept in $keep"
	fi
	rm -rf "$T_TMP"
}
trap t_cleanup EXIT
# on_exit 'command': run at exit, last registered first
on_exit() { _t_cleanups+=("$1"); }

log() { echo "[$T_NAME] $*"; }
fail() { echo "[$T_NAME] FAIL: $*"; _t_failed=1; exit 1; }
skip() { echo "[$T_NAME] SKIP: $*"; exit 77; }
pass() { echo "[$T_NAME] PASS${1:+: $*}"; exit 0; }
need_root() { [ "$(id -u)" -eq 0 ] || skip "needs root"; }
need_file() { [ -e "$1" ] || fail "missing $1 (run make / make guest / make lab first)"; }

# kvm_verdict: hardware | emulated | none (through build/bin/kvmcheck's exit status)
kvm_verdict() {
	local st
	"$BIN/kvmcheck" >/dev/null 2>&1
	st=$?
	case $st in 0) echo hardware ;; 2) echo emulated ;; *) echo none ;; esac
}

# free_port: a loopback TCP port nobody listens on (bounded search from a random start)
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 30000))
		! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && { echo $p; return; }
	done
	fail "no free port"
}

# json_field JSON NAME: a scalar field of a one-line JSON reply (what vmm-ctl prints)
json_field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1" | tr -d '"'; }

# live_migrate CTL SOCK URI SECONDS [JSON_ARGS]: ask the vmm behind SOCK to migrate to URI
# and wait for the end (bounded by SECONDS); the reply on stdout; status 0 only if completed.
# JSON_ARGS: more arguments, e.g. ',"compress_level":1'
live_migrate() {
	local r
	r=$("$1" -t "$4" "$2" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"$3\",\"wait\":true${5:-}}}") ||
		{ echo "$r"; return 1; }
	echo "$r"
	[ "$(json_field "$r" phase)" = completed ]
}

# source_exit PID: a migration source ends by itself once the destination took the VM; wait
# up to 20 s, then for good; its exit status in $st
source_exit() {
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
	wait "$1"
	st=$?
}

# wait_for FILE REGEX SECONDS: wait until a line of FILE matches, return 1 on timeout
wait_for() {
	local f=$1 re=$2 t=$3 end=$((SECONDS + $3))
	while [ $SECONDS -lt $end ]; do
		grep -qaE "$re" "$f" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}
