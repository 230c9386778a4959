#!/bin/bash
# The test guest (firmware/guest) boots under QEMU+KVM to its readiness line with the CPU
# count and memory it was given, runs a command, and powers off (QEMU exits by itself).
. "$(dirname "$0")/../lib/harness.sh"
need_file "$GUEST/bzImage"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"
boot() {	# boot CPUS MEM_MIB ACTION [RUN]: console into $T_TMP/con, status in $st
	local extra=${4:+vmctl.run=$4}
	timeout -k 10 300 qemu-system-x86_64 -enable-kvm -cpu host -M q35 -smp "$1" -m "$2" -nodefaults \
		-display none -no-reboot -serial "file:$T_TMP/con" \
		-kernel "$GUEST/bzImage" -initrd "$GUEST/initramfs.cpio.gz" \
		-append "console=ttyS0 quiet panic=-1 vmctl.action=$3 $extra" </dev/null
	st=$?
}
check_ready() {	# check_ready CPUS MEM_MIB
	local line mem
	line=$(grep -a -m1 '^GUEST-READY' "$T_TMP/con")
	log "$line"
	[[ $line =~ ^GUEST-READY\ cpus=([0-9]+)\ mem_kib=([0-9]+)\ kernel=([^ ]+) ]] || fail "no readiness line"
	[ "${BASH_REMATCH[1]}" = "$1" ] || fail "guest sees ${BASH_REMATCH[1]} CPUs, want $1"
	mem=${BASH_REMATCH[2]}
	# MemTotal is RAM minus what the kernel reserves: between 85% and 100% of what was given
	[ "$mem" -le $(($2 * 1024)) ] && [ "$mem" -ge $(($2 * 1024 * 85 / 100)) ] ||
		fail "guest sees $mem KiB, given $(($2 * 1024))"
}
t0=$SECONDS
boot 2 1024 poweroff
log "2 vCPU / 1 GiB: exit $st after $((SECONDS - t0)) s"
[ $st = 0 ] || fail "QEMU exit $st (timeout or crash)"
check_ready 2 1024
grep -qa 'reboot: Power down' "$T_TMP/con" || fail "guest did not power off"

# a >4 GiB guest (RAM above the 32-bit gap) with one vCPU, running a command
cmd=$(printf 'echo ran-in-guest; exit 5' | base64 -w0)
boot 1 4608 run "b64:$cmd"
[ $st = 0 ] || fail "QEMU exit $st (timeout or crash)"
check_ready 1 4608
grep -qa '^ran-in-guest' "$T_TMP/con" || fail "vmctl.run command did not run"
grep -qa '^GUEST-RUN-EXIT status=5' "$T_TMP/con" || fail "command status not reported"
pass
