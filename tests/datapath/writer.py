"""A writer process for live-operation tests: rewrites random 4 KiB blocks of a device one at a time with
O_DIRECT until a stop file appears, then saves the order of its writes.

Every block it writes holds (generation, index) at both ends and a filler derived from them, so any
torn or misplaced block is detectable. Writes are sequential: the device's state at any instant is a
prefix of the logged sequence. Usage: writer.py DEVICE NBLOCKS LOG STOPFILE
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import random
import struct
import sys

BLOCK = 4096
HEAD = struct.Struct("<8sQQ")
MAGIC = b"ATOLLBLK"


def stamp(gen: int, idx: int) -> bytes:
    head = HEAD.pack(MAGIC, gen, idx)
    filler = hashlib.sha256(head).digest() * (BLOCK // 32)
    return head + filler[: BLOCK - 2 * HEAD.size] + head


def parse(block: bytes) -> tuple[int, int] | None:
    """(generation, index) of a stamped block; None for a block this writer never wrote; raise on a
    torn or corrupt one."""
    magic, gen, idx = HEAD.unpack_from(block)
    if magic != MAGIC:
        return None
    if block != stamp(gen, idx):
        raise ValueError(f"torn block: header says generation {gen} index {idx}")
    return gen, idx


def main(dev: str, nblocks: int, log: str, stop: str) -> None:
    buf = mmap.mmap(-1, BLOCK)
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    rng = random.Random(7)
    order: list[int] = []
    gen = 0
    while True:
        gen += 1
        idx = rng.randrange(nblocks)
        buf.seek(0)
        buf.write(stamp(gen, idx))
        os.pwritev(fd, [buf], idx * BLOCK)
        order.append(idx)
        if gen % 200 == 0:
            print(f"progress {gen}", flush=True)
            if os.path.exists(stop):
                break
    os.close(fd)
    with open(log, "w") as f:
        json.dump(order, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
