#!/bin/bash
# Start-up errors: each is one line on stderr saying what and why, a non-zero exit status
# (1, or 2 for a bad command line), never a crash or a hang.
. "$(dirname "$0")/common.bash"
K=$GUEST/bzImage

# expect STATUS REGEX -- vmm args...   (PRE=(cmd...) runs vmm under cmd)
PRE=()
expect() {
	local want=$1 re=$2
	shift 3
	timeout 30 "${PRE[@]}" "$VMM" "$@" >"$T_TMP/out" 2>"$T_TMP/err" </dev/null
	st=$?
	no_sanitizer_report
	[ $st = "$want" ] || { cat "$T_TMP/err"; fail "vmm $*: exit $st, want $want"; }
	[ "$(wc -l <"$T_TMP/err")" = 1 ] || { cat "$T_TMP/err"; fail "vmm $*: want exactly one line on stderr"; }
	grep -qiE -- "$re" "$T_TMP/err" || fail "vmm $*: '$(cat "$T_TMP/err")' does not match /$re/"
	log "ok: $(cat "$T_TMP/err")"
}

expect 2 'unknown option' -- --kernel x --bogus
expect 2 '--cpus' -- --firmware "$FW/hello.bin" --cpus zero
expect 1 'no KVM|does not exist' -- --firmware "$FW/hello.bin" --kvm-device "$T_TMP/nokvm"
mknod "$T_TMP/kvm" c 10 232 && chmod 000 "$T_TMP/kvm"
# root would open it anyway: drop the capabilities that bypass file permissions
PRE=(setpriv --bounding-set=-dac_override,-dac_read_search --)
expect 1 'permission denied' -- --firmware "$FW/hello.bin" --kvm-device "$T_TMP/kvm"
PRE=()
expect 1 'kernel .*No such file' -- --kernel "$T_TMP/missing" --allow-emulated
dd if=/dev/urandom of="$T_TMP/notbz" bs=64k count=1 2>/dev/null
expect 1 'not a bzImage' -- --kernel "$T_TMP/notbz" --allow-emulated
expect 1 'more than this host has' -- --firmware "$FW/hello.bin" --memory 64T
expect 1 'at most 255' -- --firmware "$FW/hello.bin" --cpus 300
expect 1 'KVM on this host allows at most' -- --firmware "$FW/hello.bin" --cpus 4096
if [ -f "$K" ]; then
	truncate -s 200M "$T_TMP/big.initrd"
	expect 1 'initrd .*does not fit' -- --kernel "$K" --initrd "$T_TMP/big.initrd" --memory 128M --allow-emulated
	# an emulation-only /dev/kvm refuses a Linux kernel at once, with kvm_detect's verdict
	if [ "$(kvm_verdict)" = emulated ]; then
		t0=$(date +%s%N)
		expect 1 'emulation-only' -- --kernel "$K" --memory 256M
		ms=$((($(date +%s%N) - t0) / 1000000))
		[ $ms -lt 3000 ] || fail "refusal took $ms ms"
		log "emulation-only refusal after $ms ms"
	fi
else
	log "no $K: bzImage cases skipped (make guest)"
fi
pass
