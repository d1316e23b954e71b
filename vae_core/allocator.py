"""Keep the memory a training step frees for the next step (glibc's malloc, Linux).

torch allocates CPU tensors with the C library's malloc. glibc serves blocks above M_MMAP_THRESHOLD
with a fresh mmap, unmapped on free, and gives the top of its heap back to the system once more than
M_TRIM_THRESHOLD is free there. Both thresholds adapt to what a program frees, but only up to 32 MiB
(the mmap one) and twice that (the trim one). The 64x64 shapes net frees more than that after every
backward pass, so every step faulted its activations' pages in again: 31,450 minor page faults per
step at batch 128 and 7,994 at batch 32, its default recipe's batch. Fixed thresholds keep those
pages: 0 faults, and a step took 142 ms instead of 207, and 37 ms instead of 55 at batch 32
(bench/train_bench.py; python's resource.getrusage counts the faults).

The cost: the process keeps up to TRIM_THRESHOLD of freed memory instead of returning it, after the
run too. Peak memory did not change (maximum RSS 2,045 MiB against 2,041 for that net and its data).
"""
from __future__ import annotations

import ctypes
import platform
import threading

# mallopt's parameter numbers (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to this come from the heap and stay there
TRIM_THRESHOLD = 256 << 20  # more than one step of the shapes net at batch 128 frees at once

_lock = threading.Lock()
_kept: bool | None = None  # None: not tried yet


def keep_freed_memory() -> bool:
    """Set glibc's thresholds (module doc) once per process; False where the C library is not glibc."""
    global _kept
    with _lock:
        if _kept is None:
            _kept = False
            if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
                try:
                    libc = ctypes.CDLL(None)
                    _kept = (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                             and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
                except (OSError, AttributeError):
                    pass
        return _kept
