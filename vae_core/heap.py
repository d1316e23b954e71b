"""Memory that a class of sessions freed, handed back to the system.

A server's sessions allocate and free tensors and pictures in many threads (Streamlit runs every script
run in a new one). glibc's malloc keeps freed pages in its arenas for reuse, scattered between chunks
still in use, so after a class has left the server keeps them, and a little more after each class
(bench/classroom.py --churn). malloc_trim(0) returns every whole free page of every arena (glibc 2.8
and later); the Python heap itself did not grow from class to class (the churn's --tracemalloc).
One daemon thread per server process trims every TRIM_SECONDS; elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import time

TRIM_SECONDS = 5.0  # a trim of a torch process's 1 GB heap took under 1 ms here (the first, 24 ms)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (another C library, or no C library found)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def trim() -> bool:
    """Return the heap's whole free pages to the system; False where there is no malloc_trim."""
    malloc_trim = _malloc_trim()
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True


def start_trimming(every: float = TRIM_SECONDS) -> threading.Thread | None:
    """Trim every `every` seconds in a daemon thread, for the life of the process; None without glibc."""
    if _malloc_trim() is None:
        return None

    def trim_forever():
        while True:
            time.sleep(every)
            trim()

    thread = threading.Thread(target=trim_forever, name="heap-trim", daemon=True)
    thread.start()
    return thread
