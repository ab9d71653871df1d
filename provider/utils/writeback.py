"""Write-behind for long sequential writes: the disk starts on each range as soon as it is written.

The kernel starts writing dirty pages back only when they pass ``vm.dirty_background_ratio`` of
memory (10 %: 2.3 GiB on a 23 GiB machine), so a 2 GiB upload stays in dirty pages until its final
fsync, which then waits for every byte while the client waits for its answer (1.3-1.6 s of a 5 s
Swift PUT, measured). :class:`WriteBehind` asks for the writeback of each range right after it is
written (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which does not wait), so the disk works while the
next bytes arrive, and waits for ranges far behind the writer, so one upload holds at most
``2 * LAG`` of dirty pages instead of filling the page cache. Durability still comes from the
caller's fsync: this only moves the work earlier, and where the call is missing or refused (another
libc, a filesystem without it) it simply stops.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4
STEP = 8 << 20  # ask for writeback once this much more is written
LAG = 64 << 20  # wait for what lies further behind the writer than this

_Call = Callable[[int, int, int, int], int]


@functools.cache
def _sync_file_range() -> _Call | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


class WriteBehind:
    """Follows a writer of ``fd`` that writes from offset 0 onwards; call :meth:`advance` with the
    offset written up to after each write."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.started = 0  # writeback requested for [0, started)
        self.waited = 0  # on disk (or failed, for the final fsync to report) for [0, waited)
        self._call = _sync_file_range()
        self.calls = 0

    def advance(self, end: int) -> None:
        if self._call is None or end - self.started < STEP:
            return
        self._range(self.started, end, SYNC_FILE_RANGE_WRITE)
        self.started = end
        if self.started - self.waited >= 2 * LAG:
            upto = self.started - LAG
            flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
            self._range(self.waited, upto, flags)
            self.waited = upto

    def _range(self, start: int, end: int, flags: int) -> None:
        if self._call is not None and self._call(self.fd, start, end - start, flags) != 0:
            self._call = None  # refused here (EINVAL, ESPIPE, EIO...): the caller's fsync reports errors
        self.calls += 1
