#!/usr/bin/env python3
"""Writes a seed for the `bus_image` target: the first bytes of a 1 MiB bus holding the fresh-bus
placeholder and two records (layout in shmif/FORMAT.md). Run from fuzz/."""
import os
import struct

DATA_SIZE = (1 << 20) - 32
frames = [b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\0" * 46, b"\x02" * 12 + b"\x08\x00" + b"E" * 84]
ring = struct.pack("<IIIIQ", 0, 0, 0, 0, 0)  # placeholder record at 0
last = 0
for seq, f in enumerate(frames, start=1):
    last = len(ring)
    ring += struct.pack("<IIIIQ", len(f), 1700000000, seq, seq, 0x1234) + f
header = struct.pack("<IIQIIII", 0xCA11D054, 3, 0, DATA_SIZE, last, 0, 0)
out = os.path.join(os.path.dirname(__file__), "bus_image")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "two_records"), "wb") as f:
    f.write(header + ring)
