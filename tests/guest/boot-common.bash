# Sourced by tests/guest/boot*.sh: boot the test guest (firmware/guest) on our vmm. Runs where
# /dev/kvm is hardware-accelerated: directly, or inside the test host (tests/lab/run).
. "$(dirname "$0")/../lib/harness.sh"
VMM=$BIN/vmm
need_file "$VMM"
need_file "$GUEST/bzImage"
need_file "$GUEST/initramfs.cpio.gz"
# by module, not by the speed calibration, which a loaded test host can fail
timeout -k 5 60 "$BIN/kvmcheck" --no-calibrate >/dev/null 2>&1 || skip "needs hardware KVM (run inside tests/lab/run)"
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}	# generous: the test host shares 2 cores with other work
VMM_WRAP=()	# a command vmm_boot runs the vmm under, e.g. (ip netns exec NS)

# vmm_boot CPUS MEM_MIB "EXTRA CMDLINE" [vmm args...]: console in $T_TMP/con, stderr in
# $T_TMP/err, exit status in $st, wall seconds in $secs
vmm_boot() {
	local cpus=$1 mem=$2 extra=$3 t0=$SECONDS
	shift 3
	# -k: a vmm whose main loop is stuck cannot act on SIGTERM; kill it and say so
	timeout -k 10 "$BOOT_TIMEOUT" "${VMM_WRAP[@]}" "$VMM" --kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" \
		--append "console=ttyS0 loglevel=5 panic=-1 $extra" --memory "${mem}M" --cpus "$cpus" \
		--console "file:$T_TMP/con" "$@" >"$T_TMP/out" 2>"$T_TMP/err" </dev/null
	st=$?
	secs=$((SECONDS - t0))
	[ $st = 124 ] && { tail -20 "$T_TMP/con"; fail "no exit within $BOOT_TIMEOUT s"; }
	[ $st = 137 ] && { tail -20 "$T_TMP/con"; cat "$T_TMP/err"; fail "vmm ignored SIGTERM after $BOOT_TIMEOUT s: killed"; }
	! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP/err" ||
		{ cat "$T_TMP/err"; fail "sanitizer report"; }
}

# check_ready CPUS MEM_MIB: the readiness line reports what the guest was given
check_ready() {
	local line mem
	line=$(grep -a -m1 'GUEST-READY' "$T_TMP/con" | tr -d '\r')
	[[ $line =~ GUEST-READY\ cpus=([0-9]+)\ mem_kib=([0-9]+) ]] ||
		{ tail -30 "$T_TMP/con"; fail "no readiness line"; }
	[ "${BASH_REMATCH[1]}" = "$1" ] || fail "guest sees ${BASH_REMATCH[1]} CPUs, want $1"
	mem=${BASH_REMATCH[2]}
	# MemTotal is RAM minus what the kernel keeps for itself: its image and tables (~45 MiB)
	# and struct pages (1.6%) — so at least 97% of what was given minus 48 MiB
	[ "$mem" -le $(($2 * 1024)) ] && [ "$mem" -ge $(($2 * 1024 * 97 / 100 - 49152)) ] ||
		fail "guest sees $mem KiB, given $(($2 * 1024))"
	log "$1 vCPU / $2 MiB: $line (exit $st after $secs s)"
}

# Lines in the guest's kernel log (loglevel=5: errors and warnings) that point at a monitor
# defect. Lines known to come from the test host itself (nested KVM on TCG: the XSAVE size
# warning) are listed with their reason in docs/vmm.md and filtered here.
check_log_clean() {
	local bad
	bad=$(grep -aE 'IO-APIC|IOAPIC.*(fail|not)|APIC.*(disabled|not detected|missing)|ACPI (Error|BIOS Error|Warning)|[Ff]irmware [Bb]ug|\.\.MP-BIOS bug|timer (doesn.t work|not connected)|falling back|fallback|unchecked MSR|unhandled (rd|wr)msr|Unhandled WRMSR|Unhandled RDMSR|not listed by BIOS|No irq handler|spurious|I/O error|WARNING: CPU|BUG:|Oops' "$T_TMP/con" |
		grep -v 'XSAVE consistency problem' | grep -v 'fpu/xstate.c' | head -5)
	[ -z "$bad" ] || { echo "$bad"; fail "guest log points at a monitor defect"; }
}
