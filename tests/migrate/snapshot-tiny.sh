#!/bin/bash
# Snapshot/restore round trip of the tiny dirtier/verifier through the control socket:
# pause, snapshot-save, resume; kill, vmm --restore in a new process:
# the guest continues the pass sequence from where the snapshot was taken with every page
# verified. The file is sparse (zero pages are holes). Refused, exit 1, guest never run:
# a different memory size, a different vCPU count, a truncated file, a corrupted header,
# a flipped bit in the state stream, a file that is not a snapshot.
. "$(dirname "$0")/common.bash"

start_vmm a
wait_passes a 3 30 || fail "dirtier did not start: $(cat "$T_TMP/a.err")"
snap=$T_TMP/vm.snap
# Paused first, so the pass the console shows is the one the snapshot holds (on a fast KVM
# the guest prints hundreds of passes between two commands); the save keeps the pause.
ctl "$T_TMP/a.sock" pause >/dev/null || fail "pause"
sleep 0.3	# the last console bytes written before the pause reach the file
at=$(last_pass a)
r=$(ctl "$T_TMP/a.sock" "{\"execute\":\"snapshot-save\",\"arguments\":{\"path\":\"$snap\"}}") || fail "snapshot-save: $r"
[ "$(last_pass a)" = "$at" ] || fail "the paused guest ran during the save: pass $at -> $(last_pass a)"
ctl "$T_TMP/a.sock" resume >/dev/null || fail "resume"
wait_passes a $((at + 2)) 20 || fail "the guest did not resume after the snapshot"
ctl "$T_TMP/a.sock" kill >/dev/null
wait_exit "$a_pid" 10
[ -s "$snap" ] || fail "no snapshot file"
alloc=$(( $(stat -c %b "$snap") * $(stat -c %B "$snap") ))
size=$(stat -c %s "$snap")
log "snapshot: $size bytes apparent, $alloc allocated"
[ "$alloc" -lt "$size" ] || fail "snapshot is not sparse ($alloc of $size bytes allocated)"

start_vmm b --restore "$snap"
wait_passes b 3 30 || fail "restored guest does not run: $(cat "$T_TMP/b.err")"
first=$(first_pass b)
# The snapshot holds the guest inside pass at+1, or inside the printing of its line (then the
# restored console starts with the rest of that line, "S 000000xx", and its first whole line
# is pass at+2).
[ "$first" -ge "$at" ] && [ "$first" -le $((at + 2)) ] ||
	fail "restored guest began at pass $first, the snapshot was taken after pass $at"
no_bad b
ctl "$T_TMP/b.sock" kill >/dev/null
wait_exit "$b_pid" 10

# refused restores: exit 1, one error line, the guest never ran
refused() {
	local what=$1 want=$2
	shift 2
	"$VMM" --firmware "$FW/dirty.bin" --console "file:$T_TMP/r.con" "$@" >"$T_TMP/r.out" 2>"$T_TMP/r.err" </dev/null &
	local p=$!
	wait_exit $p 20
	[ "$st" = 1 ] || fail "$what: exit $st, want 1: $(cat "$T_TMP/r.err")"
	grep -q "$want" "$T_TMP/r.err" || fail "$what: error does not say '$want': $(cat "$T_TMP/r.err")"
	! grep -aq PASS "$T_TMP/r.con" 2>/dev/null || fail "$what: the guest ran"
	log "$what refused: $(grep -a error "$T_TMP/r.err" | head -1)"
}
refused "64M into 32M snapshot" "memory size differs" --memory 64M --restore "$snap"
refused "2 vCPUs" "vCPU count differs" --memory 32M --cpus 2 --restore "$snap"
head -c 1000 "$snap" >"$T_TMP/trunc.snap"
refused "truncated" "inconsistent" --memory 32M --restore "$T_TMP/trunc.snap"
cp --sparse=always "$snap" "$T_TMP/hdr.snap"
printf '\xff' | dd of="$T_TMP/hdr.snap" bs=1 seek=20 conv=notrunc status=none
refused "header bit flip" "corrupt" --memory 32M --restore "$T_TMP/hdr.snap"
# a byte inside the state stream (after the header and the CONFIG list)
cp --sparse=always "$snap" "$T_TMP/state.snap"
soff=$(od -An -t u8 -j 24 -N 8 "$snap" | tr -d ' ')
slen=$(od -An -t u8 -j 32 -N 8 "$snap" | tr -d ' ')
printf '\x5a' | dd of="$T_TMP/state.snap" bs=1 seek=$((soff + slen / 2)) conv=notrunc status=none
refused "state bit flip" "state stream rejected" --memory 32M --restore "$T_TMP/state.snap"
head -c 100000 /dev/urandom >"$T_TMP/junk.snap"
refused "not a snapshot" "not a vmm snapshot" --memory 32M --restore "$T_TMP/junk.snap"
no_sanitizer_reports
pass "round trip continued at pass $first (snapshot after $at); 6 bad restores refused"
