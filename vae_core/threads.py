"""Torch threads for a training run inside a server that decodes on one thread per session.

torch.set_num_threads is process-wide in effect: it sets a process default that every
thread copies, lazily, the first time it runs a parallel op, and it also sets the calling thread's
own OpenMP and MKL pools. The app decodes on one thread per session (pages/ui calls
torch.set_num_threads(1)), which must stay so. A worker therefore (1) lets torch initialise its own
pools from the process default, (2) calls torch.set_num_threads(n), which sizes its own pools to n,
and (3) at once has a short-lived helper thread put the process default back, so threads started
later (Streamlit runs every script run in a new thread) still start with 1. Only a thread whose
very first parallel op falls in the microseconds between (2) and (3) would copy n instead; a lock
keeps workers from interleaving. n = compute_threads() = min(8, (usable cores - 1) // max_concurrent), at least 1:
one core stays free for serving pages, and small VAEs gain little beyond 8 threads. A process that serves
nobody (the `map` CLI) asks for every core, up to 8: compute_threads(spare_core=False).
"""
from __future__ import annotations

import os
import threading

import torch


def compute_threads(max_concurrent: int = 1, spare_core: bool = True) -> int:
    """Threads a long computation may take (a training run, a t-SNE map): module doc."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(8, (cores - int(spare_core)) // max(1, max_concurrent)))


_threads_lock = threading.Lock()


def use_torch_threads_in_this_thread(n: int) -> None:
    """Give the calling thread n torch threads, leaving the process default as it was (module doc)."""
    with _threads_lock:
        process_default = torch.get_num_threads()  # also makes torch initialise this thread's pools now
        if n == process_default:
            return
        torch.set_num_threads(n)
        restore = threading.Thread(target=torch.set_num_threads, args=(process_default,), name="torch-threads-restore")
        restore.start()
        restore.join()
