"""glibc's heap: what a class of sessions freed handed back to the system, what a training step frees kept.

A server's sessions allocate and free tensors and pictures in many threads (Streamlit runs every script
run in a new one). glibc's malloc keeps freed pages in its arenas for reuse, scattered between chunks
still in use, so after a class has left the server keeps them, and a little more after each class
(bench/classroom.py --churn). malloc_trim(0) returns every whole free page of every arena (glibc 2.8
and later); the Python heap itself did not grow from class to class (the churn's --tracemalloc).
One daemon thread per server process trims every TRIM_SECONDS; elsewhere than glibc it does nothing.

A training run wants the opposite: keep_freed_memory() keeps the memory a step frees for the next step.
torch allocates CPU tensors with the C library's malloc. glibc serves blocks above M_MMAP_THRESHOLD
with a fresh mmap, unmapped on free, and gives the top of its heap back to the system once more than
M_TRIM_THRESHOLD is free there. Both thresholds adapt to what a program frees, but only up to 32 MiB
(the mmap one) and twice that (the trim one). The 64x64 shapes net frees more than that after every
backward pass, so every step faulted its activations' pages in again: 7,914 minor page faults per
step at batch 32, its default recipe's, and 32,120 at batch 128. Fixed thresholds keep those pages:
0 faults, and a step took 36.6 ms instead of 53.2 at batch 32 and 142.8 instead of 215.9 at batch 128
(38.5 against 49.8 and 151.3 against 202.9 in a worker thread, as in the app's server). The 28x28
mnist-5k net frees less and did not fault with glibc's own thresholds either (bench/allocator_bench.py).

The cost: each of the process's malloc arenas (the main thread's, and one per few other threads) keeps
up to TRIM_THRESHOLD of freed memory at its top instead of returning it, after the run too; in a server, the trimming thread above still returns it every few
seconds (a step after each trim faults its pages in again). The maximum RSS grew by 4 MiB for the
shapes net with its data (2,045 MiB) and by 9-49 MiB for the mnist-5k net's (750-795 MiB).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import time

TRIM_SECONDS = 5.0  # a trim of a torch process's 1 GB heap took under 1 ms here (the first, 24 ms)


# mallopt's parameter numbers (glibc's malloc.h) and the values keep_freed_memory() sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to this come from the heap and stay there
TRIM_THRESHOLD = 256 << 20  # more than one step of the shapes net at batch 128 frees at once


@functools.cache
def _libc():
    """The C library, or None where none is found (find_library runs a compiler or ldconfig: once)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@functools.cache
def _libc_function(name: str, argtypes: tuple):
    """The C library's function `name`, returning an int; None where it has none (malloc_trim and mallopt
    are glibc's: macOS's libc has neither)."""
    function = getattr(_libc(), name, None)
    if function is None:
        return None
    function.argtypes, function.restype = list(argtypes), ctypes.c_int
    return function


def _malloc_trim():
    return _libc_function("malloc_trim", (ctypes.c_size_t,))


@functools.cache
def keep_freed_memory() -> bool:
    """Fix the thresholds (module doc), once per process; False where the C library has no mallopt or
    refuses them."""
    mallopt = _libc_function("mallopt", (ctypes.c_int, ctypes.c_int))
    return (mallopt is not None and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)


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
