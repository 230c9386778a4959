#!/usr/bin/env python3
# Writes the seed corpus for fuzz_virtqueue (input layout: see fuzz_virtqueue.c). Seeds are
# well-formed and hostile guests the fuzzer mutates from; re-run after changing the layout.
import os
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "virtqueue")
DESC, AVAIL, USED = 0x0, 0x400, 0x600   # region 0: 8 KiB at 0; region 1: 4 KiB at 0x3000
NEXT, WRITE, INDIRECT = 1, 2, 4


class Guest:
    def __init__(self, size_log2=3, flags=0, cap=16, seed=1, ram=0x2000):
        self.hdr = bytes([size_log2, flags, cap - 1, seed]) + struct.pack("<HHH", DESC, AVAIL, USED)
        self.size = 1 << size_log2
        self.ram = bytearray(ram)
        self.idx = 0

    def desc(self, i, addr, length, flags=0, nxt=0, table=DESC):
        struct.pack_into("<QIHH", self.ram, table + 16 * i, addr, length, flags, nxt)

    def avail(self, head):
        struct.pack_into("<H", self.ram, AVAIL + 4 + 2 * (self.idx % self.size), head)
        self.idx += 1
        struct.pack_into("<H", self.ram, AVAIL + 2, self.idx)

    def used_event(self, v):
        struct.pack_into("<H", self.ram, AVAIL + 4 + 2 * self.size, v)

    def bytes(self):
        tail = bytes(getattr(self, "r1", b""))
        return self.hdr + bytes(self.ram) + tail


def seeds():
    g = Guest()                                   # blk-like: header, data, status
    g.desc(0, 0x1000, 16, NEXT, 1); g.desc(1, 0x1100, 512, NEXT, 2); g.desc(2, 0x1400, 1, WRITE)
    g.avail(0)
    yield "direct", g

    g = Guest(flags=2)                            # indirect table after a direct header
    g.desc(0, 0x1000, 16, NEXT, 1); g.desc(1, 0x1800, 48, INDIRECT)
    g.desc(0, 0x1100, 64, NEXT, 2, table=0x1800); g.desc(2, 0x1200, 64, WRITE | NEXT, 1, table=0x1800)
    g.desc(1, 0x1300, 1, WRITE, table=0x1800)
    g.avail(0)
    yield "indirect", g

    g = Guest(size_log2=4, flags=1, seed=7)       # event idx, several chains
    for i in range(6):
        g.desc(i, 0x1000 + 0x100 * i, 0x80, WRITE)
        g.avail(i)
    g.used_event(3)
    yield "event_idx", g

    g = Guest()                                   # descriptor loop
    g.desc(0, 0x1000, 8, NEXT, 1); g.desc(1, 0x1000, 8, NEXT, 0); g.avail(0)
    yield "loop", g

    g = Guest()                                   # buffer in the hole / in region 1
    g.desc(0, 0x2800, 8); g.desc(1, 0x3010, 0x100, WRITE); g.avail(1); g.avail(0)
    yield "regions", g

    g = Guest(flags=2)                            # tables and buffers flush with region ends
    g.desc(0, 0x1fe0, 32, INDIRECT)
    g.desc(0, 0x1ff8, 8, NEXT, 1, table=0x1fe0); g.desc(1, 0x3ff0, 16, WRITE, table=0x1fe0)
    g.desc(1, 0x3fe0, 32, INDIRECT)
    g.avail(0); g.avail(1)
    g.r1 = bytearray(0x1000)
    struct.pack_into("<QIHH", g.r1, 0xfe0, 0x1000, 8, NEXT, 1)
    struct.pack_into("<QIHH", g.r1, 0xff0, 0x3000, 0x1000, WRITE, 0)
    yield "edges", g

    g = Guest(flags=3 | 4, cap=4)                 # everything on, small device limit
    g.desc(0, 0x1800, 32, INDIRECT); g.desc(0, 0x1000, 8, NEXT, 1, table=0x1800)
    g.desc(1, 0x1100, 8, WRITE, table=0x1800)
    g.desc(1, 0x1000, 8, NEXT, 2); g.desc(2, 0x1000, 8, NEXT, 3); g.desc(3, 0x1000, 8, NEXT, 4)
    g.desc(4, 0x1000, 8, NEXT, 5); g.desc(5, 0x1000, 8)
    g.avail(0); g.avail(1)
    yield "mixed", g


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, g in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(g.bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
