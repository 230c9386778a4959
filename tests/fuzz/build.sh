#!/bin/bash
# Build the libFuzzer targets, independent of the Makefile (clang + libFuzzer from Debian:
# packages clang and libclang-rt-14-dev). Usage: tests/fuzz/build.sh [OUTDIR]
# (default build/fuzz). Prints the path of each target built.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/fuzz}
CC=${CC:-clang}
if ! command -v "$CC" >/dev/null; then
	echo "fuzz/build: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2
	exit 2
fi
mkdir -p "$out"
flags=(-std=gnu11 -D_GNU_SOURCE -g -O1 -I. -Wall -Wextra -Werror -Wno-unused-parameter
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)

# The virtqueue walker plus the few library files it needs (not libvmm.a: that is built
# without the fuzzer's coverage instrumentation).
"$CC" "${flags[@]}" -o "$out/fuzz_virtqueue" tests/fuzz/fuzz_virtqueue.c \
	tests/fuzz/fuzz_common.c vmm/virtio/queue.c vmm/memory.c vmm/lib/log.c
echo "$out/fuzz_virtqueue"

# The control socket's request parser and dispatcher.
"$CC" "${flags[@]}" -o "$out/fuzz_ctl_request" tests/fuzz/fuzz_ctl_request.c \
	vmm/ctl.c vmm/lib/evloop.c vmm/lib/log.c -luring -ljson-c -lpthread
echo "$out/fuzz_ctl_request"

# The migration/snapshot stream parsers (migrate/proto, migrate/pages, vmm/state).
"$CC" "${flags[@]}" -o "$out/fuzz_stream" tests/fuzz/fuzz_stream.c \
	vmm/state.c vmm/lib/crc32c.c migrate/proto.c migrate/pages.c migrate/postcopy_proto.c \
	vmm/memory.c vmm/kvm.c vmm/lib/log.c -lzstd -lpthread
echo "$out/fuzz_stream"

# The virtio-net request parsers (tx header + frame, control queue commands) over chains.
"$CC" "${flags[@]}" -o "$out/fuzz_net" tests/fuzz/fuzz_net.c tests/fuzz/fuzz_common.c \
	vmm/virtio/net_parse.c vmm/virtio/queue.c vmm/memory.c vmm/lib/log.c
echo "$out/fuzz_net"

# The virtio-blk request parser over chains.
"$CC" "${flags[@]}" -o "$out/fuzz_blk_req" tests/fuzz/fuzz_blk_req.c tests/fuzz/fuzz_common.c \
	vmm/virtio/blk_req.c vmm/virtio/queue.c vmm/memory.c vmm/lib/log.c
echo "$out/fuzz_blk_req"
