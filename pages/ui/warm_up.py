"""What a server starts once, in the background: UMAP's compiled kernels warmed, and its heap trimmed
(vae_core.heap: what a class of sessions freed goes back to the system).

umap-learn JIT-compiles its kernels on first use, and numba's on-disk cache keeps only some of them:
without this the first UMAP map of 10,000 points in a new server took 11.5 s, against 5.0 s once
warmed (bench/map_bench.py). The
warm-up starts after the first page has been drawn, so it never delays it, on a thread the kernel
schedules behind the sessions' (nice 10); numba's compiler is Python and takes the GIL in short
slices, which the sessions' threads share. LATENT_EXPLORER_WARM_UP=0 turns it off (the tests do,
apart from the one that measures it).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading

import streamlit as st

from vae_core import heap
from vae_core.checkpoint import first_line
from vae_core.projection import warm_up_umap


def _warm_up() -> None:
    with contextlib.suppress(OSError, AttributeError):  # per-thread niceness is Linux's; elsewhere it just runs
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    try:
        warm_up_umap()
    except Exception as exc:  # noqa: BLE001 - a failed warm-up costs the first map its compile time, nothing more
        print(f"UMAP warm-up failed ({first_line(exc)}); the first UMAP map compiles instead", file=sys.stderr)


@st.cache_resource(show_spinner=False)
def start_umap_warm_up() -> threading.Thread | None:
    """Start the warm-up (once per server process); None when LATENT_EXPLORER_WARM_UP=0."""
    if os.environ.get("LATENT_EXPLORER_WARM_UP", "1") == "0":
        return None
    thread = threading.Thread(target=_warm_up, name="umap-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource(show_spinner=False)
def start_heap_trimming() -> threading.Thread | None:
    """vae_core.heap's trimming thread (once per server process); None where the C library has no
    malloc_trim."""
    return heap.start_trimming()
