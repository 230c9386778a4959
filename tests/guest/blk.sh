#!/bin/bash
# virtio-blk with the real Debian guest on our vmm (issue 4, item 3):
#   boot 1: two disks — vda (rw, serial) and vdb (ro). The guest checks the serial, the
#           read-only flag and that each disk has 2 request queues (VIRTIO_BLK_F_MQ, one per
#           vCPU: /sys/block/vdX/mq/0 and 1), refuses to write vdb, formats vda (ext2), writes files, prints their
#           sha256 and unmounts (flush). Host: the image holds the same bytes (debugfs), fsck
#           clean, the ro image unchanged, the device counted flushes.
#   boot 2: the guest verifies the sums, deletes the big file and fstrims: the image file
#           loses the blocks (discard reached it as a punched hole), the device counted discards.
#   boot 3: O_DIRECT on a block device (brd ramdisk, if the module loads): raw data written by
#           the guest is what the host reads from the device.
#   and: a missing image is a one-line start-up error.
# Runs where /dev/kvm is hardware-accelerated: directly, or inside tests/lab/run.
. "$(dirname "$0")/../lib/harness.sh"
VMM=$BIN/vmm
need_file "$VMM"
need_file "$GUEST/bzImage"
need_file "$GUEST/initramfs.cpio.gz"
"$BIN/kvmcheck" --no-calibrate >/dev/null 2>&1 || skip "needs hardware KVM (run inside tests/lab/run)"
"$VMM" --help 2>&1 | grep -q -- '--disk' || skip "this vmm has no --disk option yet"
command -v debugfs >/dev/null || skip "needs debugfs (e2fsprogs) to read the image on the host"
TO=${BOOT_TIMEOUT:-300}

# guest_run NAME 'guest shell script' [vmm args...]: boot, run the script through vmctl.run,
# power off. Console in $T_TMP/NAME.con, vmm stderr in $T_TMP/NAME.err.
guest_run() {
	local name=$1 script=$2 st
	shift 2
	timeout "$TO" "$VMM" --kernel "$GUEST/bzImage" --initrd "$GUEST/initramfs.cpio.gz" \
		--append "console=ttyS0 loglevel=4 panic=-1 vmctl.action=run vmctl.run=b64:$(printf '%s' "$script" | base64 -w0)" \
		--memory 512M --cpus 2 --console "file:$T_TMP/$name.con" "$@" \
		>"$T_TMP/$name.out" 2>"$T_TMP/$name.err" </dev/null
	st=$?
	[ $st = 124 ] && { tail -30 "$T_TMP/$name.con"; fail "$name: no exit within $TO s"; }
	! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$T_TMP/$name.err" ||
		{ cat "$T_TMP/$name.err"; fail "$name: sanitizer report"; }
	grep -qa 'GUEST-RUN-EXIT status=0' "$T_TMP/$name.con" ||
		{ tail -40 "$T_TMP/$name.con"; cat "$T_TMP/$name.err"; fail "$name: guest script failed (vmm exit $st)"; }
	[ $st = 0 ] || { cat "$T_TMP/$name.err"; fail "$name: vmm exit status $st"; }
	! grep -aE 'I/O error|blk_update_request|Buffer I/O|EXT[24]-fs error' "$T_TMP/$name.con" ||
		fail "$name: I/O errors in the guest's log"
}

# counter NAME FIELD: a device counter from the vmm's stop line ("blk0: stop: ... flush N ...")
counter() {
	grep -a 'blk0: stop:' "$T_TMP/$1.err" | sed -n "s/.* $2 \([0-9]*\).*/\1/p" | head -1
}

blocks() { stat -c %b "$1"; }

IMG=$T_TMP/disk.img
RO=$T_TMP/ro.img
truncate -s 64M "$IMG"
dd if=/dev/urandom of="$RO" bs=1M count=4 status=none
ro_sum=$(sha256sum <"$RO")

# ---- boot 1: format, write, checksums; ro disk refuses writes ----
guest_run boot1 'set -e
[ "$(cat /sys/block/vda/serial)" = VMCTL-DISK-A ] || { echo "serial: $(cat /sys/block/vda/serial)"; exit 1; }
[ "$(cat /sys/block/vda/ro)" = 0 ] && [ "$(cat /sys/block/vdb/ro)" = 1 ]
[ "$(cat /sys/block/vda/size)" = 131072 ] && [ "$(cat /sys/block/vdb/size)" = 8192 ]
[ "$(cat /sys/block/vdb/serial)" = blk1 ]
for d in vda vdb; do [ "$(ls /sys/block/$d/mq | wc -l)" = 2 ] || { echo "$d: hardware queues: $(ls /sys/block/$d/mq)"; exit 1; }; done
if echo x | dd of=/dev/vdb bs=512 count=1 conv=fsync 2>/dev/null; then echo RO-WRITE-ACCEPTED; exit 1; fi
echo RO-REFUSED
dd if=/dev/vdb bs=1M count=4 2>/dev/null | sha256sum | sed "s/^/ROSUM /;s/ *-$//"
mke2fs -q -b 4096 /dev/vda
mkdir -p /mnt && mount -t ext2 /dev/vda /mnt
dd if=/dev/urandom of=/mnt/big bs=64k count=96 2>/dev/null
dd if=/dev/urandom of=/mnt/small bs=1000 count=7 2>/dev/null
cd /mnt && sha256sum big small >sums && sed "s/^/SUM /" sums && cd /
umount /mnt
echo BOOT1-OK' --disk "$IMG,serial=VMCTL-DISK-A" --disk "$RO,ro"
grep -qa RO-REFUSED "$T_TMP/boot1.con" || fail "boot1: no RO-REFUSED"
grep -qa BOOT1-OK "$T_TMP/boot1.con" || fail "boot1: no BOOT1-OK"
[ "$(grep -a '^ROSUM' "$T_TMP/boot1.con" | tr -d '\r' | cut -d' ' -f2)" = "${ro_sum%% *}" ] ||
	fail "boot1: the guest read different bytes from the ro disk"
[ "$(sha256sum <"$RO")" = "$ro_sum" ] || fail "the read-only image changed"
for f in big small; do
	want=$(grep -a "^SUM .* $f" "$T_TMP/boot1.con" | tr -d '\r' | cut -d' ' -f2)
	got=$(debugfs -R "cat /$f" "$IMG" 2>/dev/null | sha256sum | cut -d' ' -f1)
	[ -n "$want" ] && [ "$want" = "$got" ] || fail "boot1: /$f on the host: $got, guest said $want"
done
e2fsck -fn "$IMG" >"$T_TMP/fsck.log" 2>&1 || { cat "$T_TMP/fsck.log"; fail "fsck of the image after boot 1"; }
fl=$(counter boot1 flush)
wr=$(counter boot1 write)
[ "${fl:-0}" -ge 1 ] && [ "${wr:-0}" -ge 1 ] || { grep -a stop: "$T_TMP/boot1.err"; fail "boot1: no flush/write counted"; }
perq=$(grep -a 'blk0: queues 2, requests completed per queue:' "$T_TMP/boot1.err" | sed 's/.*queue://')
[ -n "$perq" ] || { grep -a 'blk0:' "$T_TMP/boot1.err"; fail "boot1: blk0 has no per-queue summary (not 2 queues?)"; }
log "boot 1: formatted, 2 files written, host image matches; ro disk refused; flushes $fl; requests on queue 0/1:$perq"

# ---- boot 2: verify, delete, fstrim -> holes in the image ----
before=$(blocks "$IMG")
guest_run boot2 'set -e
mkdir -p /mnt && mount -t ext2 /dev/vda /mnt
cd /mnt && sha256sum -c sums && cd /
echo VERIFY-OK
rm /mnt/big && sync
fstrim -v /mnt
umount /mnt
echo BOOT2-OK' --disk "$IMG,serial=VMCTL-DISK-A"
grep -qa VERIFY-OK "$T_TMP/boot2.con" || fail "boot2: checksums did not verify"
after=$(blocks "$IMG")
dc=$(counter boot2 discard)
# /big was 6 MiB = 12288 sectors of 512 bytes; its blocks must be gone from the file
[ "${dc:-0}" -ge 1 ] || { grep -a stop: "$T_TMP/boot2.err"; fail "boot2: no discard counted"; }
[ $((before - after)) -ge 10000 ] || fail "boot2: image blocks $before -> $after after fstrim (want >= 10000 fewer)"
got=$(debugfs -R "cat /small" "$IMG" 2>/dev/null | sha256sum | cut -d' ' -f1)
want=$(grep -a "^SUM .* small" "$T_TMP/boot1.con" | tr -d '\r' | cut -d' ' -f2)
[ "$got" = "$want" ] || fail "boot2: /small changed"
log "boot 2: checksums verified in the guest; fstrim: $dc discards, image $before -> $after blocks"

# ---- boot 3: O_DIRECT on a block device ----
if [ "$(id -u)" = 0 ] && modprobe brd rd_nr=1 rd_size=32768 max_part=0 2>/dev/null && [ -b /dev/ram0 ]; then
	on_exit 'rmmod brd 2>/dev/null'
	guest_run boot3 'set -e
[ "$(cat /sys/block/vda/serial)" = blk0 ]
dd if=/dev/urandom of=/tmp/r bs=64k count=64 2>/dev/null
dd if=/tmp/r of=/dev/vda bs=64k conv=fsync 2>/dev/null
echo 3 >/proc/sys/vm/drop_caches
a=$(sha256sum </tmp/r); b=$(dd if=/dev/vda bs=64k count=64 2>/dev/null | sha256sum)
[ "$a" = "$b" ] && echo "RAWSUM ${a%% *}"' --disk /dev/ram0,direct
	want=$(grep -a '^RAWSUM' "$T_TMP/boot3.con" | tr -d '\r' | cut -d' ' -f2)
	got=$(dd if=/dev/ram0 bs=64k count=64 status=none | sha256sum | cut -d' ' -f1)
	[ -n "$want" ] && [ "$want" = "$got" ] || fail "boot3: /dev/ram0 holds $got, the guest wrote $want"
	grep -qa 'O_DIRECT' "$T_TMP/boot3.err" || fail "boot3: disk not opened with O_DIRECT"
	log "boot 3: O_DIRECT on /dev/ram0: 4 MiB written by the guest read back on the host"
else
	log "boot 3 skipped: no brd ramdisk here (O_DIRECT is covered by the unit tests)"
fi

# ---- a missing image: one line, start-up failure ----
"$VMM" --kernel "$GUEST/bzImage" --memory 256M --disk "$T_TMP/nope.img" --console "file:$T_TMP/x.con" \
	>/dev/null 2>"$T_TMP/nope.err" </dev/null
st=$?
[ $st = 1 ] && grep -q "disk $T_TMP/nope.img: No such file or directory" "$T_TMP/nope.err" ||
	{ cat "$T_TMP/nope.err"; fail "missing image: exit $st"; }
pass "virtio-blk: format/write/verify across boots, host image matches, flush+discard reach the file, ro refused"
