"""Latent maps cached on disk, so a map survives a restart: a teacher's prepared maps open at once.

A map is keyed by what determines it: the weights' digest, the dataset, the split and the
projection's parameters. Each is one `.npz` under $LATENT_EXPLORER_CACHE/maps holding the
coordinates (N, dims), the labels and the key, and loads with allow_pickle=False. Writes are
atomic; the folder keeps at most a size cap, the least recently used maps going first; a file
that does not load, or holds another key, is ignored (and overwritten by the next computation).
`python -m vae_core map` writes into the same folder, so the app finds what it precomputed.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import cache_root
from .checkpoint import write_atomic
from .projection import Progress, ProjectionParams, fit_pca, project_fitted, umap_fit_thread, unproject

CAP_BYTES = int(float(os.environ.get("LATENT_EXPLORER_MAP_CACHE_MB", 512)) * 1024**2)


@dataclass(frozen=True)
class MapKey:
    digest: str  # VAE.weights_digest(): the exact weights
    dataset: str
    split: str
    params: ProjectionParams

    def text(self) -> str:
        return json.dumps({"digest": self.digest, "dataset": self.dataset, "split": self.split,
                           "params": asdict(self.params)}, sort_keys=True)

    def file_name(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()[:32] + ".npz"


def map_file(key: MapKey, folder: Path | None = None) -> Path:
    return (folder or cache_root() / "maps") / key.file_name()


def map_bytes(key: MapKey, coords: np.ndarray, labels: np.ndarray) -> bytes:
    """The .npz of a map: coords (N, dims) float32, labels (N,) int64, key (its JSON)."""
    buffer = io.BytesIO()
    np.savez(buffer, coords=np.asarray(coords, dtype=np.float32), labels=np.asarray(labels, dtype=np.int64),
             key=np.array(key.text()))
    return buffer.getvalue()


def read_map(path: Path, key: MapKey | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(coords, labels) of a map file; None when it does not load, or holds another key than `key`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            coords, labels, stored = data["coords"], data["labels"], str(data["key"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if key is not None and stored != key.text():
        return None
    if coords.ndim != 2 or labels.shape != (len(coords),) or not np.isfinite(coords).all():
        return None
    return coords, labels


def load_map(key: MapKey, folder: Path | None = None, labels: np.ndarray | None = None) -> np.ndarray | None:
    """The cached coordinates for `key` (and, if given, these labels in this order: the dataset's
    files may have changed under its name), or None; a hit counts as a use for the eviction order."""
    path = map_file(key, folder)
    found = read_map(path, key)
    if found is None or (labels is not None and not np.array_equal(found[1], labels)):
        return None
    try:
        os.utime(path)
    except OSError:  # a read-only cache still serves its maps
        pass
    return found[0]


def store_map(key: MapKey, coords: np.ndarray, labels: np.ndarray, folder: Path | None = None,
              cap_bytes: int | None = None) -> Path | None:
    """Write a map atomically, then evict the least recently used maps beyond the cap. The cache is
    an optimisation: an unwritable folder returns None instead of failing the map."""
    path = map_file(key, folder)
    try:
        write_atomic(path, map_bytes(key, coords, labels))
        evict(path.parent, CAP_BYTES if cap_bytes is None else cap_bytes, keep=path)
    except OSError:
        return None
    return path


def evict(folder: Path, cap_bytes: int, keep: Path | None = None) -> None:
    """Delete the least recently used maps until the folder holds at most cap_bytes (never `keep`)."""
    entries = []
    for path in folder.glob("*.npz"):
        try:
            stat = path.stat()
        except FileNotFoundError:  # another process evicted it first
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries, key=lambda e: e[0]):
        if total <= cap_bytes:
            break
        if path != keep:
            path.unlink(missing_ok=True)
            total -= size


def cached_projection(key: MapKey, z: np.ndarray, labels: np.ndarray, folder: Path | None = None,
                      report: Callable[[str], None] = lambda line: None, progress: Progress | None = None,
                      threads: int | None = None):
    """(coords, the fitted reducer or None; see projection.project_fitted) of the map for `key`:
    from the disk cache, else projected now and stored for next time. A map read from disk keeps
    no fitted UMAP (it would take a pickle); a PCA is refitted, which is instant and exact.
    `report` hears what happens, a line at a time; `progress` the optimisation's steps; `threads` as
    project_fitted takes them."""
    coords = load_map(key, folder, labels)
    if coords is not None and len(coords) == len(z):
        report(f"found in the cache: {map_file(key, folder)}")
        pca = key.params.method == "pca" and z.shape[1] > key.params.dims
        coords.setflags(write=False)  # shared by every session
        return coords, fit_pca(z, key.params)[1] if pca else None
    report(f"projecting {len(z):,} points with {key.params.method} ({key.params.dims}-D) …")
    start = time.perf_counter()
    coords, reducer = project_fitted(z, key.params, progress, threads)
    coords.setflags(write=False)
    path = store_map(key, coords, labels, folder)
    report(f"projected in {time.perf_counter() - start:.1f} s; "
           + (f"cached in {path}" if path else "the cache folder is not writable: not cached"))
    return coords, reducer


STEP_NAMES = {"umap": "epoch", "tsne": "iteration"}
MAX_REMEMBERED_SPOTS = 64


class MapJob:
    """One map computed in a background thread, so that a page can draw its progress while it waits.
    Every session that asks for the same map watches the same job (the app keeps one per key)."""

    def __init__(self, key: MapKey, z: np.ndarray, labels: np.ndarray, folder: Path | None = None,
                 threads: int | None = None):
        self.key = key
        self.lines: list[str] = []  # what cached_projection reported
        self.steps_done = self.steps_total = 0
        self.error: BaseException | None = None
        self._started = time.monotonic()
        self._first_step: tuple[float, int] | None = None  # (when, steps done) at the first report
        self._result = None
        self._z = z
        self._inverses: dict[tuple, tuple | None] = {}  # unproject()'s answers, by spot
        self._inverses_lock = threading.Lock()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(z, labels, folder, threads), daemon=True,
                                        name=f"map-{key.params.method}-{key.split}")
        self._thread.start()

    def _run(self, z, labels, folder, threads) -> None:
        try:
            self._result = cached_projection(self.key, z, labels, folder, self.lines.append, self._progress, threads)
        except Exception as exc:  # handed to whoever waits for the result
            self.error = exc
        finally:
            self._finished.set()

    def _progress(self, done: int, total: int) -> None:
        if self._first_step is None:
            self._first_step = (time.monotonic(), done)
        self.steps_done, self.steps_total = done, total

    def wait(self, timeout: float | None = None) -> bool:
        """True once the map is computed (or failed)."""
        return self._finished.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def result(self):
        """(coords, fitted reducer or None), waiting for it; re-raises what the projection raised."""
        self._finished.wait()
        if self.error is not None:
            raise self.error
        return self._result

    def unproject(self, points, method: str) -> tuple[np.ndarray, str] | None:
        """projection.unproject on this map, remembered per spot: UMAP's inverse triangulates the whole
        map (seconds at 10k points), and a page reruns on every click while the spot stays shown."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float32))
        spot = (method, points.tobytes())
        with self._inverses_lock:
            if spot in self._inverses:
                return self._inverses[spot]
        found = unproject(points, self._z, *self.result(), method)
        with self._inverses_lock:  # sessions click at once: one writer at a time
            if len(self._inverses) >= MAX_REMEMBERED_SPOTS:
                self._inverses.pop(next(iter(self._inverses)))
            self._inverses[spot] = found
        return found

    def fraction(self) -> float:
        return self.steps_done / self.steps_total if self.steps_total else 0.0

    def seconds_left(self) -> float | None:
        """The optimisation's remaining steps at its rate so far; None before two reports."""
        if self._first_step is None or self.steps_done <= self._first_step[1]:
            return None
        when, first = self._first_step
        rate = (self.steps_done - first) / (time.monotonic() - when)
        return (self.steps_total - self.steps_done) / rate

    def status(self) -> str:
        """What a progress bar says: the step reached and the time left, or the stage before them."""
        elapsed = time.monotonic() - self._started
        method = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}[self.key.params.method]
        fitting = umap_fit_thread()
        if not self.steps_total and self.key.params.method == "umap" and fitting not in (None, self._thread.ident):
            return f"{method}: waiting for another UMAP map, or the warm-up, to finish… ({elapsed:.0f} s)"
        if not self.steps_total:
            before = {"umap": "building the neighbour graph (a new server compiles UMAP first)",
                      "tsne": "finding each point's nearest neighbours"}.get(self.key.params.method, "projecting")
            return f"{method}: {before}… ({elapsed:.0f} s)"
        left = self.seconds_left()
        step = STEP_NAMES.get(self.key.params.method, "step")
        return (f"{method}: {step} {self.steps_done:,} of {self.steps_total:,}"
                + (f" · about {left:.0f} s left" if left is not None else "") + f" ({elapsed:.0f} s so far)")
