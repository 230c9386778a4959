#!/bin/bash
# `make test`: everything, in tiers, ending with one summary line `N passed, N failed, N skipped`.
#  1. dependencies (scripts/install-deps.sh: installs what is missing when root)
#  2. build: release (build/) and ASan/UBSan (build-asan/), the test guest and the test host
#  3. unit tests (cmocka, ASan build)            — bare machine
#  4. tests/tiny/*.sh, tests/migrate/*.sh and tests/host/*.sh — bare machine (tiny guests on
#     any KVM, the kvm detection and probe on this /dev/kvm, the test host's own tests); with
#     no /dev/kvm at all, tiny and migrate run in the test host instead, a boot per test
#  5. tests/guest/*.sh, real guests             — directly where /dev/kvm is hardware, else each
#     inside its own test host boot (tests/lab/run), the same scripts either way
# Environment: TEST_ONLY="host guest" to pick tiers among unit host guest; JOBS (make -j).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
JOBS=${JOBS:-2}
tiers=${TEST_ONLY:-unit host guest}
P=0 F=0 S=0
add() { P=$((P + $1)); F=$((F + $2)); S=$((S + $3)); }
step() { echo; echo "=== $*"; }
t_start=$SECONDS

# lab_each COUNTS TEST...: every test in its own test host boot (tests/lab/run). A test host
# that crashes or hangs (nested KVM on TCG; see docs/testing.md) costs that test only, and is
# named as the infrastructure failure it is; the boot costs ~7 s. Such a test is run once more,
# saying so — a test failing inside a healthy test host is never retried. Writes
# "passed failed skipped" to COUNTS.
lab_each() {
	local counts=$1 t n limit try st a b c lp=0 lf=0 ls=0
	shift
	for t in "$@"; do
		[ -x "$t" ] || continue
		n=$(basename "$(dirname "$t")")/$(basename "$t" .sh)
		limit=$(sed -n '1,20s/^# test-timeout: *\([0-9][0-9]*\).*/\1/p' "$t" | head -1)
		limit=${TEST_TIMEOUT:-${limit:-600}}
		for try in 1 2; do
			rm -f build/lab-out/one.counts
			tests/lab/run --timeout $((limit + 120)) -- tests/run-tests.sh --counts build/lab-out/one.counts "$t"
			st=$?
			[ $st = 125 ] && [ $try = 1 ] && { echo "run-all: TEST HOST CRASHED during $n (infrastructure, not a test result): running $n once more"; continue; }
			break
		done
		if [ -f build/lab-out/one.counts ]; then
			read -r a b c <build/lab-out/one.counts
			lp=$((lp + a)) lf=$((lf + b)) ls=$((ls + c))
		else
			lf=$((lf + 1))
			case $st in
			124) echo "FAIL $n: the test host did not finish within $((limit + 120)) s" ;;
			125) echo "FAIL $n: TEST HOST CRASHED twice (build/lab-out/crashes.log) — infrastructure failure" ;;
			*) echo "FAIL $n: the test host ended without a result (exit $st)" ;;
			esac
		fi
	done
	echo "$lp $lf $ls" >"$counts"
}

step "dependencies"
if ! scripts/install-deps.sh; then
	echo "run-all: dependencies missing"; echo "0 passed, 1 failed, 0 skipped"; exit 1
fi

step "build (release, ASan, test guest, test host)"
if ! { make -j"$JOBS" all && make -j"$JOBS" asan && make guest lab; }; then
	echo "run-all: build failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1
fi

if [[ " $tiers " == *" unit "* ]]; then
	step "unit tests (cmocka, ASan)"
	make check-unit 2>&1 | tee build/unit.log
	ust=${PIPESTATUS[0]}
	up=$(grep -a -oE '\[  PASSED  \] [0-9]+' build/unit.log | awk '{s += $NF} END {print s + 0}')
	uf=$(grep -a -oE '\[  FAILED  \] [0-9]+' build/unit.log | awk '{s += $NF} END {print s + 0}')
	[ "$ust" != 0 ] && [ "$uf" = 0 ] && uf=1	# a unit binary that crashed before reporting
	echo "unit: $up passed, $uf failed"
	add "$up" "$uf" 0
fi

if [[ " $tiers " == *" host "* ]]; then
	dirs=()
	if [ -c /dev/kvm ]; then
		step "bare machine: tiny guests and host tests"
		dirs=(tests/tiny tests/migrate)
	fi
	dirs+=(tests/host)
	[ ${#dirs[@]} = 1 ] && step "bare machine: host tests"
	tests/run-tests.sh --counts build/host.counts "${dirs[@]}"
	read -r a b c <build/host.counts
	add "$a" "$b" "$c"
	if [ ! -c /dev/kvm ]; then
		# No KVM at all on this machine (not even an emulation-only one): the tiny guests and
		# the tiny-guest migration tests (failure injection, stream corruption, snapshots,
		# netns) run on the test host's KVM instead, each in its own boot like the real-guest
		# tier, rather than not at all.
		step "tiny guests and tiny-guest migration tests, each in a test host boot (no /dev/kvm here)"
		mkdir -p build/lab-out
		lab_each build/lab-out/tiny.counts tests/tiny/*.sh tests/migrate/*.sh
		read -r a b c <build/lab-out/tiny.counts
		echo "tiny tiers: $a passed, $b failed, $c skipped"
		add "$a" "$b" "$c"
	fi
fi

if [[ " $tiers " == *" guest "* ]]; then
	verdict=$(build-asan/bin/kvmcheck); vst=$?
	echo "$verdict"
	mkdir -p build/lab-out
	rm -f build/lab-out/guest.counts
	if [ $vst = 0 ]; then
		step "real guests, directly on this hardware KVM"
		tests/run-tests.sh --counts build/lab-out/guest.counts tests/guest
	else
		step "real guests, each test in its own test host boot (tests/lab/run)"
		lab_each build/lab-out/guest.counts tests/guest/*.sh
		read -r gp gf gs <build/lab-out/guest.counts
		echo "real guests: $gp passed, $gf failed, $gs skipped"
	fi
	if [ -f build/lab-out/guest.counts ]; then
		read -r a b c <build/lab-out/guest.counts
		add "$a" "$b" "$c"
	else
		add 0 1 0
	fi
fi

echo
echo "=== all tiers done in $((SECONDS - t_start)) s"
echo "$P passed, $F failed, $S skipped"
[ $F = 0 ]
