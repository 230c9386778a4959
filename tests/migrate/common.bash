# Sourced by tests/migrate/*.sh: tiny guests (firmware/tiny, dirty.bin = the dirtier/verifier)
# on this machine's /dev/kvm, migrated between vmm processes over loopback.
. "$(dirname "$0")/../tiny/common.bash"
CTL=$BIN/vmm-ctl
need_file "$CTL"
MEM=32M
# The migration options come with the wiring in vmm/main.c (migrate/migration.h).
_o=$("$VMM" --incoming 2>&1)
grep -q "needs an argument" <<<"$_o" || skip "this vmm has no --incoming (migration not wired into main.c)"

# every vmm's stderr in this test, checked for sanitizer reports
no_sanitizer_reports() {
	! grep -lE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP"/*.err 2>/dev/null ||
		{ cat "$T_TMP"/*.err; fail "sanitizer report"; }
}

# start_vmm NAME [vmm args...]: the dirtier with console $T_TMP/NAME.con, stderr NAME.err,
# control socket NAME.sock; pid in $pid (and NAME_pid)
start_vmm() {
	local n=$1
	shift
	"$VMM" --firmware "$FW/dirty.bin" --memory "$MEM" --console "file:$T_TMP/$n.con" \
		--control "$T_TMP/$n.sock" "$@" >"$T_TMP/$n.out" 2>"$T_TMP/$n.err" </dev/null &
	pid=$!
	eval "${n}_pid=$pid"
	on_exit "kill -9 $pid 2>/dev/null"
}

# last_pass NAME: the last PASS number on NAME's console (decimal), 0 if none. Only whole
# lines count, ended by their newline: on a fast KVM the guest is always mid-line, and a
# half-written "PASS 0000002" read as pass 2 once failed snapshot-tiny.
last_pass() {
	local f=$T_TMP/$1.con h
	h=$({ if [ -n "$(tail -c1 "$f" 2>/dev/null)" ]; then head -n -1 "$f"; else cat "$f"; fi; } 2>/dev/null |
		grep -a -E '^PASS [0-9a-f]{8}$' | tail -1 | cut -d' ' -f2)
	echo $((16#${h:-0}))
}

# first_pass NAME
first_pass() {
	local h
	h=$(grep -a -E '^PASS [0-9a-f]{8}' "$T_TMP/$1.con" 2>/dev/null | head -1 | cut -d' ' -f2)
	echo $((16#${h:-0}))
}

# first_pass_after SRC DST: the first pass DST printed after the guest moved from SRC. The
# move can fall inside the printing of a line ("PASS 0000" on SRC, "46b2" on DST): that split
# line, joined again, is the first pass; otherwise DST's first whole line is (a split line
# left out made hop 6 of live-tiny read 18105 -> 18107 once).
first_pass_after() {
	local src=$T_TMP/$1.con tail="" joined
	[ -s "$src" ] && [ -n "$(tail -c1 "$src")" ] && tail=$(tail -n1 "$src" | tr -d '\r')
	if [ -n "$tail" ]; then
		joined=$tail$(head -n1 "$T_TMP/$2.con" | tr -d '\r')
		if [[ $joined =~ ^PASS\ ([0-9a-f]{8})$ ]]; then
			echo $((16#${BASH_REMATCH[1]}))
			return
		fi
	fi
	first_pass "$2"
}

no_bad() { ! grep -aq BAD "$T_TMP/$1.con" || fail "$1: the verifier found a bad page: $(grep -a BAD "$T_TMP/$1.con")"; }

# dest NAME [vmm args]: a destination listening on a fresh port ($port; pid in $dpid)
dest() {
	local n=$1
	shift
	port=$(free_port)
	start_vmm "$n" --incoming "127.0.0.1:$port" "$@"
	dpid=$pid
	wait_for "$T_TMP/$n.err" "waiting for a migration|error" 20 || fail "$n: not listening: $(cat "$T_TMP/$n.err")"
}

# hop_continues WHAT SRC DST: no bad page on either side and DST's first pass is SRC's last + 1
# ($first, $last set for the caller's log line)
hop_continues() {
	no_bad "$3"
	no_bad "$2"
	first=$(first_pass_after "$2" "$3")
	last=$(last_pass "$2")
	[ "$first" -eq $((last + 1)) ] || fail "$1: source ended at pass $last, destination began at $first"
}

# wait_passes NAME N SECS: until NAME's console shows pass N
wait_passes() {
	local end=$((SECONDS + $3))
	while [ $SECONDS -lt $end ]; do
		[ "$(last_pass "$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# wait_exit PID SECS: the exit status in $st, fail on timeout
wait_exit() {
	local end=$((SECONDS + $2))
	while kill -0 "$1" 2>/dev/null; do
		[ $SECONDS -ge "$end" ] && fail "pid $1 still running after $2 s"
		sleep 0.1
	done
	wait "$1"
	st=$?
}

ctl() { "$CTL" -t "${CTL_T:-30}" "$@"; }

# json_field JSON KEY: a scalar member (crude, enough for our own replies)
json_field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1" | tr -d '"'; }

# wait_phase SOCK PHASE SECS: until migrate-status says PHASE
wait_phase() {
	local end=$((SECONDS + $3)) r
	while [ $SECONDS -lt $end ]; do
		r=$(ctl "$1" migrate-status 2>/dev/null)
		[ "$(json_field "$r" phase)" = "$2" ] && return 0
		sleep 0.1
	done
	echo "$r"
	return 1
}
