# Sourced by tests/tiny/*.sh (not a test itself): builds the tiny guests (firmware/tiny) into
# the test's temp dir and runs them on this machine's /dev/kvm — any KVM will do, even an
# emulation-only one: each guest runs a few thousand instructions.
. "$(dirname "$0")/../lib/harness.sh"
VMM=$BIN/vmm
need_file "$VMM"
[ -c /dev/kvm ] || skip "no /dev/kvm"
command -v as >/dev/null && command -v ld >/dev/null || skip "binutils (as, ld) missing"
FW=$T_TMP/fw
"$ROOT/firmware/tiny/build.sh" "$FW" || fail "building firmware/tiny"

# run_tiny GUEST [vmm args...]: stdout in $T_TMP/out, stderr in $T_TMP/err, status in $st
run_tiny() {
	local g=$1
	shift
	timeout 60 "$VMM" --firmware "$FW/$g.bin" --memory 16M "$@" >"$T_TMP/out" 2>"$T_TMP/err" </dev/null
	st=$?
	[ $st = 124 ] && fail "$g: no exit within 60 s"
	no_sanitizer_report
}

no_sanitizer_report() {
	! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP/err" ||
		{ cat "$T_TMP/err"; fail "sanitizer report"; }
}
