"""vae_core.heap: what a server's sessions freed goes back to the system (glibc's malloc_trim)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# In a fresh process: 190 MB of 64 kB blocks (malloc'd inside the heap, under the mmap threshold), then
# all freed but every 16th, which pins the freed pages between them: they stay in the process's RSS.
FRAGMENT = """
import os, sys, time
sys.path.insert(0, {root!r})
from vae_core import heap

def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

blocks = [bytes(64 * 1024) for _ in range(3000)]
kept = blocks[::16]
del blocks
held = rss_mib()
{release}
print(held - rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
@pytest.mark.parametrize("release", ["assert heap.trim()", "assert heap.start_trimming(0.05); time.sleep(0.5)",
                                     "time.sleep(0.5)"])
def test_freed_pages_go_back_to_the_system_when_trimmed(release):
    done = subprocess.run([sys.executable, "-c", FRAGMENT.format(root=str(ROOT), release=release)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    released = float(done.stdout)
    if "heap." in release:
        assert released > 80, f"only {released:.0f} MiB of the ~175 MiB freed went back"
    else:  # without a trim glibc keeps them: what the trimming is for
        assert released < 20
