#!/bin/bash
# Test host (L1) stage 2: PID 1 after switch_root, running from the host's shared tree (read-only
# virtio-fs under a tmpfs overlay). Loads the modules the tests need, sets up the network if
# asked, runs the command written by tests/lab/run with its output on ttyS1, reports the exit
# status on the console (ttyS0) and in the run directory, and powers off.
# All of it is one function, parsed before it runs: bash reads a script as it goes, so an edit
# of this file while test hosts run would otherwise break them mid-way. (Edit by writing a new
# file and renaming it over this one.)
main() {
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8
con=/dev/ttyS0
exec </dev/null >$con 2>&1

bye() { sync; /bin/busybox poweroff -f; sleep 10; }
trap bye EXIT

declare -A arg
for a in $(cat /proc/cmdline); do
	case "$a" in lab.*=*) k=${a%%=*}; arg[${k#lab.}]=${a#*=} ;; esac
done
run=${arg[run]:-}
kv=$(uname -r)
[ -n "${arg[debug]:-}" ] && { read -r up _ </proc/uptime; echo "LAB-STAGE2 uptime=$up"; }

mkdir -p /dev/pts /dev/shm
# what udev/systemd would make: bash's <(...) needs /dev/fd
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/lock /run/user
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
# The package's modules under the path modprobe expects (the host has none for this kernel)
if [ -n "${arg[kmod]:-}" ]; then
	mkdir -p "/lib/modules/$kv"
	mount --bind "${arg[kmod]}/lib/modules/$kv" "/lib/modules/$kv"
fi
# kvm-amd needs ~2 s of emulated CPU to initialise: load it on one vCPU while the other
# loads the rest, through busybox's modprobe (one static process, ~4x faster here than kmod's).
/bin/busybox modprobe kvm-amd &
kvmload=$!
# The rest through busybox's modprobe: one static process, ~4x faster here than kmod's.
/bin/busybox modprobe -a tun bridge veth nf_tables nft_chain_nat nft_masq nf_nat nf_conntrack \
	virtio_net || echo "LAB: some modules did not load"
# Anything else in the package loads on demand (the kernel's request_module, or modprobe).
wait "$kvmload" || echo "LAB: kvm-amd did not load"
[ -n "${arg[debug]:-}" ] && { read -r up _ </proc/uptime; echo "LAB-MODULES uptime=$up"; }
hostname "${arg[name]:-lab}"
ip link set lo up
if [ -n "${arg[ip]:-}" ]; then
	dev=$(ls /sys/class/net | grep -v '^lo$' | head -1)
	ip addr add "${arg[ip]}" dev "$dev" && ip link set "$dev" up
fi
# virtiofsd holds one open file per inode the test host has cached, and may not raise its
# limit here (20000 on these machines): when the cached FUSE inodes near it, drop the clean
# ones (the FORGETs let virtiofsd close them). A builtin-only loop: no process per check.
# The same loop is the heartbeat: every 5 s it touches $run/heartbeat, which tests/lab/run
# watches from outside — a test host whose user space stops (a nested-KVM hang of L1 that
# prints nothing) is then reported as hung within minutes instead of at the command's timeout.
[ -n "$run" ] && echo 0 >"$run/heartbeat"
(
	mkfifo /run/lab-tick && exec 4<>/run/lab-tick || exit 0
	tick=0
	while :; do
		read -r -t 1 -u 4 _
		while read -r name active _; do
			[ "$name" = fuse_inode ] || continue
			[ "$active" -gt 14000 ] && echo 2 >/proc/sys/vm/drop_caches
			break
		done </proc/slabinfo
		tick=$((tick + 1))
		[ -n "$run" ] && [ $((tick % 5)) = 1 ] && echo "$tick" >"$run/heartbeat"
	done
) &
echo $! >/run/lab-heartbeat.pid	# tests/host/lab-failure-paths.sh stops it to fake a hang
read -r up _ </proc/uptime
echo "LAB-READY uptime=$up kvm=$([ -c /dev/kvm ] && echo yes || echo no)"

st=125
if [ -n "$run" ] && [ -f "$run/cmd.sh" ]; then
	stty -F /dev/ttyS1 raw -echo 2>/dev/null
	exec 3>/dev/ttyS1
	setsid -w /bin/bash "$run/cmd.sh" </dev/null >&3 2>&3
	st=$?
	exec 3>&-	# the last close waits until the UART has sent everything
	echo "$st" >"$run/status"
else
	echo "LAB: no command (lab.run=$run)"
fi
echo "LAB-EXIT status=$st"
}
main "$@"
exit
