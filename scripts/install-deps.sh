#!/bin/bash
# Install every Debian package vmctl needs to build, test and run its test host.
# Idempotent: asks dpkg first and runs apt-get only for what is missing, so a second run
# changes nothing and needs no network. Usage (as root): scripts/install-deps.sh [--check]
#   --check   only report what is missing (exit 1 if anything is)
set -euo pipefail

PKGS=(
	# build
	build-essential pkg-config gcc make
	liburing-dev libzstd-dev libjson-c-dev libcmocka-dev
	libnl-3-dev libnl-route-3-dev libnftnl-dev libmnl-dev
	libseccomp-dev libcap-dev libsodium-dev
	# test guest and test host: kernel package tools, initramfs, QEMU + virtiofsd
	qemu-system-x86 qemu-utils busybox-static cpio gzip e2fsprogs kmod xz-utils zstd
	util-linux procps psmisc coreutils
	# networking and tests
	iproute2 dnsmasq-base nftables fio
	# fuzz targets (tests/fuzz): clang-14 with libFuzzer and the sanitizer runtimes
	clang libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#PKGS[@]} packages present"
	exit 0
fi
if [ "${1:-}" = --check ]; then
	echo "install-deps: missing: ${missing[*]}" >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages (${missing[*]}); run as root" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
