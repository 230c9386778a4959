#!/bin/bash
# The serial console on stdin/stdout (the default): what is typed into the vmm's stdin reaches
# the guest's shell through the UART, and its answer comes back on stdout.
. "$(dirname "$0")/boot-common.bash"
mkfifo "$T_TMP/in"
"$VMM" --kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" --memory 256M --cpus 1 \
	--append "console=ttyS0 quiet panic=-1 vmctl.action=shell" \
	<"$T_TMP/in" >"$T_TMP/con" 2>"$T_TMP/err" &
pid=$!
on_exit "kill -9 $pid 2>/dev/null"
exec 3>"$T_TMP/in"
on_exit "exec 3>&-"
wait_for "$T_TMP/con" 'GUEST-READY' "$BOOT_TIMEOUT" || { tail "$T_TMP/con"; fail "guest not ready"; }
sleep 1
echo 'echo CONSOLE-$((6*7))' >&3
wait_for "$T_TMP/con" 'CONSOLE-42' 30 || { tail "$T_TMP/con"; fail "no answer to console input"; }
echo 'poweroff -f' >&3
for _ in $(seq 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && fail "vmm still running 30 s after poweroff"
wait $pid
st=$?
[ $st = 0 ] || { cat "$T_TMP/err"; fail "exit $st after poweroff, want 0"; }
pass "typed command answered on stdout, power-off exit 0"
