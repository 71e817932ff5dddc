"""Reading many byte ranges of store files at once: windows of frames for a batch.

A batch of 32 windows is 32 (or 64) reads of 0.5-1.6 MB at random places. Issued one after
another, a cold read waits for the disk each time; issued from a few threads (``preadv``
releases the GIL) the disk sees several at once: 32 cold response windows took 0.050 s
with 4 threads against 0.083 s with one, warm 0.010 vs 0.012-0.014 s (BENCHMARKS.md).
The threads live only for the call, so a forked DataLoader worker inherits no pool.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

READ_THREADS = 4
"""Reads in flight at once (more did not help on the machine measured)."""


def read_ranges(jobs: list[tuple[int, memoryview, int]]) -> list[int]:
    """For each ``(fd, buffer, offset)``, read ``len(buffer)`` bytes at ``offset`` into the
    buffer; returns the bytes each read got (short at a file's end)."""
    if len(jobs) < 2:
        return [os.preadv(fd, [buffer], offset) for fd, buffer, offset in jobs]
    with ThreadPoolExecutor(min(READ_THREADS, len(jobs)), thread_name_prefix="scandb-read") as pool:
        return list(pool.map(lambda job: os.preadv(job[0], [job[1]], job[2]), jobs))
