"""Random small writes through every kernelspace path read back exactly (the FUSE + loop trap)."""

from __future__ import annotations

import os
import random

from tests.conftest import StoreEnv


def test_random_sector_writes_read_back(denv: StoreEnv) -> None:
    """Scattered 512 B-8 KiB writes through the block device, then read back through it and, after
    detach, through the store: every sector holds the last bytes written to it.

    A direct-I/O loop device over QEMU 7.2's FUSE export loses most of such writes; the qcow2 path must
    not use it.
    """
    store = denv.open()
    store.volumes.create("v", size=1 << 30)
    dev = store.volumes.attach("v").device
    assert dev is not None
    rng = random.Random(7)
    expect: dict[int, bytes] = {}
    fd = os.open(dev, os.O_RDWR)
    try:
        for _ in range(200):
            off = rng.randrange(0, (1 << 30) - 8192) // 512 * 512
            data = rng.randbytes(rng.choice([512, 1024, 4096, 8192]))
            os.pwrite(fd, data, off)
            for j in range(0, len(data), 512):
                expect[off + j] = data[j : j + 512]
        os.fsync(fd)
        assert [o for o, d in expect.items() if os.pread(fd, 512, o) != d] == []
    finally:
        os.close(fd)
    store.volumes.detach("v")
    dev = store.volumes.attach("v").device
    assert dev is not None
    fd = os.open(dev, os.O_RDONLY)
    try:
        assert [o for o, d in expect.items() if os.pread(fd, 512, o) != d] == []
    finally:
        os.close(fd)
        store.volumes.detach("v")
