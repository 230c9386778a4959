#!/bin/bash
# The Debian test guest boots on our vmm to its readiness line with 1, 2 and 4 vCPUs and from
# 256 MiB to more than 4 GiB (RAM above the 32-bit MMIO gap), reports exactly what it was given,
# has no monitor-defect lines in its kernel log, and powers off: the vmm exits 0.
. "$(dirname "$0")/boot-common.bash"
for cfg in "1 256" "2 1024" "4 4608"; do
	set -- $cfg
	vmm_boot "$1" "$2" "vmctl.action=poweroff"
	[ $st = 0 ] || { tail -20 "$T_TMP/con"; cat "$T_TMP/err"; fail "$1 vCPU / $2 MiB: exit $st, want 0"; }
	check_ready "$1" "$2"
	grep -qa 'reboot: Power down' "$T_TMP/con" || fail "guest did not power off through ACPI"
	check_log_clean
	cp "$T_TMP/con" "${LAB_OUT:-$T_TMP}/boot-$1cpu-$2M.log" 2>/dev/null || true
done
pass
