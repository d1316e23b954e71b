"""Python imports this at start-up when this folder is on PYTHONPATH (bench/classroom.py --tracemalloc).

With PYTHONTRACEMALLOC set (tracemalloc on from the first allocation) and $LATENT_EXPLORER_SNAPSHOTS
naming a folder, each SIGUSR1 collects garbage and writes a tracemalloc snapshot of the process there:
snapshot-01.trace, snapshot-02.trace, ... The benchmark compares them (what each class leaves behind)."""
import os
import signal
import tracemalloc

_folder = os.environ.get("LATENT_EXPLORER_SNAPSHOTS")
if _folder and tracemalloc.is_tracing():
    _taken = [0]

    def _snapshot(signum, frame):
        import gc

        gc.collect()
        _taken[0] += 1
        path = os.path.join(_folder, f"snapshot-{_taken[0]:02d}.trace")
        tracemalloc.take_snapshot().dump(path + ".tmp")
        os.replace(path + ".tmp", path)  # the benchmark waits for the name

    signal.signal(signal.SIGUSR1, _snapshot)
