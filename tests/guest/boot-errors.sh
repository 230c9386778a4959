#!/bin/bash
# Start-up errors where a Linux guest could otherwise run (hardware KVM): one line, exit 1.
. "$(dirname "$0")/boot-common.bash"
expect1() {	# expect1 REGEX vmm-args...
	local re=$1
	shift
	timeout -k 5 60 "$VMM" "$@" >"$T_TMP/out" 2>"$T_TMP/err" </dev/null
	st=$?
	[ $st = 1 ] || { cat "$T_TMP/err"; fail "vmm $*: exit $st, want 1"; }
	[ "$(wc -l <"$T_TMP/err")" = 1 ] || { cat "$T_TMP/err"; fail "vmm $*: want one line"; }
	grep -qiE -- "$re" "$T_TMP/err" || fail "'$(cat "$T_TMP/err")' does not match /$re/"
	log "ok: $(cat "$T_TMP/err")"
}
dd if=/dev/urandom of="$T_TMP/junk" bs=1M count=2 2>/dev/null
expect1 'not a bzImage' --kernel "$T_TMP/junk" --memory 256M
truncate -s 300M "$T_TMP/big"
expect1 'initrd .*does not fit' --kernel "$GUEST/bzImage" --initrd "$T_TMP/big" --memory 256M
expect1 'more than this host has' --kernel "$GUEST/bzImage" --memory 64T
expect1 'allows at most|supports at most' --kernel "$GUEST/bzImage" --cpus 4000
pass
