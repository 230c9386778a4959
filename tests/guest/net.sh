#!/bin/bash
# virtio-net end to end with the Debian test guest on our vmm, in a network namespace made and
# removed by the test: the guest's NIC (eth0, virtio_net driver) comes up on a tap with the MAC
# given on the command line, pings the host side, fetches a 2 MiB file from the host (HTTP,
# busybox wget -> busybox httpd in the namespace) and sends a 2 MiB file of its own to the host
# (busybox nc), and both checksums match on both sides. The host->guest direction runs with
# the tap's TSO/checksum offloads on (large GSO packets into mergeable receive buffers).
. "$(dirname "$0")/boot-common.bash"
. "$(dirname "$0")/net-common.bash"
need_root
"$VMM" --help 2>&1 | grep -q -- '--net' || skip "this vmm has no --net option"
net_setup
MAC=52:54:00:12:34:56
mkdir -p "$T_TMP/www"
head -c $((2 << 20)) /dev/urandom >"$T_TMP/www/h2g.bin"
h2g=$(md5sum <"$T_TMP/www/h2g.bin" | cut -d' ' -f1)
in_ns timeout 300 busybox httpd -f -p "$NET_HOST_IP:8080" -h "$T_TMP/www" &
httpd_pid=$!
on_exit "kill $httpd_pid 2>/dev/null"
# The receiver reads until the guest's EOF and only then closes: busybox nc alone would
# half-close at once (its stdin is /dev/null) and the guest's nc would stop sending.
printf '#!/bin/sh\nexec cat >%s\n' "$T_TMP/g2h.bin" >"$T_TMP/recv.sh"
chmod +x "$T_TMP/recv.sh"
in_ns timeout 300 busybox nc -l -p 9000 -e "$T_TMP/recv.sh" </dev/null &
nc_pid=$!
on_exit "kill $nc_pid 2>/dev/null"

script="$GUEST_NET_UP
echo NET-PING-OK
wget -q -O /tmp/h2g http://$NET_HOST_IP:8080/h2g.bin || exit 12
echo \"NET-H2G \$(md5sum </tmp/h2g)\"
dd if=/dev/urandom of=/tmp/g2h bs=64k count=32 2>/dev/null
echo \"NET-G2H \$(md5sum </tmp/g2h)\"
nc $NET_HOST_IP 9000 </tmp/g2h || exit 13
echo NET-DONE"

VMM_NS=(ip netns exec "$NS")
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
t0=$SECONDS
timeout "$BOOT_TIMEOUT" "${VMM_NS[@]}" "$VMM" --kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" \
	--append "console=ttyS0 loglevel=4 panic=-1 $(guest_b64 "$script")" --memory 512M --cpus 2 \
	--console "file:$T_TMP/con" --net "tap=$TAP,mac=$MAC" >"$T_TMP/out" 2>"$T_TMP/err" </dev/null
st=$?
cp "$T_TMP/con" "${LAB_OUT:-$T_TMP}/net-guest.log" 2>/dev/null || true
[ $st = 124 ] && { tail -30 "$T_TMP/con"; cat "$T_TMP/err"; fail "no exit within $BOOT_TIMEOUT s"; }
! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP/err" || { cat "$T_TMP/err"; fail "sanitizer report"; }
[ $st = 0 ] || { tail -30 "$T_TMP/con"; cat "$T_TMP/err"; fail "vmm exit $st"; }
grep -qa 'GUEST-RUN-EXIT status=0' "$T_TMP/con" || { tail -30 "$T_TMP/con"; cat "$T_TMP/err"; fail "guest script failed"; }
grep -qa "NET-MAC $MAC mtu 1500" "$T_TMP/con" || { grep -a NET-MAC "$T_TMP/con"; fail "guest NIC MAC/MTU differs from $MAC/1500"; }
grep -qa 'NET-PING-OK' "$T_TMP/con" || fail "no ping reply"
got=$(grep -a 'NET-H2G' "$T_TMP/con" | tr -d '\r' | awk '{print $2}')
[ "$got" = "$h2g" ] || fail "host->guest checksum: guest $got, host $h2g"
wait $nc_pid 2>/dev/null
want=$(grep -a 'NET-G2H' "$T_TMP/con" | tr -d '\r' | awk '{print $2}')
have=$(md5sum <"$T_TMP/g2h.bin" | cut -d' ' -f1)
[ -n "$want" ] && [ "$want" = "$have" ] || fail "guest->host checksum: guest $want, host $have ($(stat -c %s "$T_TMP/g2h.bin") bytes)"
check_log_clean
log "ping, 2 MiB each way, checksums match ($((SECONDS - t0)) s)"
pass
