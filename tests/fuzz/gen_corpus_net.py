#!/usr/bin/env python3
# Writes the seed corpus for fuzz_net (input layout: see fuzz_net.c): valid and refused tx
# packets and control commands the fuzzer mutates from. Re-run after changing the layout.
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "net")
F = dict(CSUM=0, HOST_TSO4=11, HOST_TSO6=12, HOST_ECN=13, HOST_UFO=14, CTRL_VQ=17, CTRL_RX=18,
         CTRL_VLAN=19, GUEST_ANNOUNCE=21, MQ=22, CTRL_MAC_ADDR=23)
ALL = sum(1 << b for b in F.values())


def chain(kind, feats, segs, n_out):
    """segs: list of bytes (readable first, then writable)."""
    out = bytes([kind]) + struct.pack("<Q", feats) + bytes([len(segs) - 1, n_out])
    out += b"".join(struct.pack("<H", len(s) - 1) for s in segs)
    return out + b"".join(segs)


def hdr(flags=0, gso=0, hdr_len=0, gso_size=0, cs=0, co=0):
    return struct.pack("<BBHHHHH", flags, gso, hdr_len, gso_size, cs, co, 0)


def eth(n):
    return bytes.fromhex("525400123456525400abcdef0800") + bytes(range(256)) * (n // 256) + bytes(n % 256)


def ctrl(cls, cmd, data, feats=ALL, ack=1):
    return chain(1, feats, [bytes([cls, cmd]) + data, bytes(ack)], 1)


def seeds():
    yield "tx-plain", chain(0, ALL, [hdr() + eth(60)], 1)
    yield "tx-split-hdr", chain(0, ALL, [hdr()[:5], hdr()[5:], eth(100)], 3)
    yield "tx-csum", chain(0, ALL, [hdr(1, 0, 0, 0, 34, 16), eth(200)], 2)
    yield "tx-tso4", chain(0, ALL, [hdr(1, 1, 54, 1448, 34, 16), eth(3000), eth(3000)], 3)
    yield "tx-tso6-ecn", chain(0, ALL, [hdr(1, 0x84, 74, 1428, 54, 16), eth(2000)], 2)
    yield "tx-ufo", chain(0, ALL, [hdr(1, 3, 42, 1472, 34, 6), eth(1500)], 2)
    yield "tx-writable", chain(0, ALL, [hdr() + eth(60), bytes(16)], 1)
    yield "tx-short", chain(0, ALL, [hdr() + eth(4)], 1)
    yield "tx-no-feat", chain(0, 0, [hdr(1, 1, 54, 1448, 34, 16), eth(2000)], 2)
    yield "ctrl-promisc", ctrl(0, 0, b"\x01")
    yield "ctrl-allmulti", ctrl(0, 1, b"\x00")
    yield "ctrl-mac-set", ctrl(1, 1, bytes.fromhex("525400aabbcc"))
    yield "ctrl-mac-table", ctrl(1, 0, struct.pack("<I", 1) + bytes(6) + struct.pack("<I", 2) + bytes(12))
    yield "ctrl-mac-table-bad", ctrl(1, 0, struct.pack("<I", 0x2aaaaaab) + bytes(6))
    yield "ctrl-vlan-add", ctrl(2, 0, struct.pack("<H", 100))
    yield "ctrl-announce-ack", ctrl(3, 0, b"")
    yield "ctrl-mq-set", ctrl(4, 0, struct.pack("<H", 2))
    yield "ctrl-no-ack", chain(1, ALL, [b"\x00\x00\x01"], 1)
    yield "ctrl-split", chain(1, ALL, [b"\x01", b"\x01\x52\x54", b"\x00\xaa\xbb\xcc", b"\x00"], 3)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
