#!/bin/bash
# Reboot and panic with the real guest:
#  - a guest reboot makes the vmm exit 3 (documented: the supervisor restarts the VM);
#  - a guest panic (panic=-1) is on the console and ends in a reset: exit 3.
# (pause/resume/kill over the control socket: boot-control.sh)
. "$(dirname "$0")/boot-common.bash"
log "reboot"
vmm_boot 1 256 "vmctl.action=reboot"
[ $st = 3 ] || { cat "$T_TMP/err"; fail "reboot: exit $st, want 3"; }
check_ready 1 256
grep -qa 'reboot: Restarting system' "$T_TMP/con" || fail "guest did not reboot"

log "panic"
vmm_boot 1 256 "vmctl.action=panic"
[ $st = 3 ] || { cat "$T_TMP/err"; fail "panic: exit $st, want 3"; }
grep -qa 'Kernel panic - not syncing' "$T_TMP/con" || fail "no panic message on the console"
grep -qa 'guest reset' "$T_TMP/err" || fail "vmm did not report the reset: $(cat "$T_TMP/err")"
log "panic reported on the console, vmm exit 3"

pass "reboot 3, panic 3"
