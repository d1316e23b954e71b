"""2-D / 3-D maps of latent codes (PCA, UMAP, t-SNE), clustering scores and latent neighbours.

umap-learn is imported only when a UMAP map is asked for: importing it pulls in numba, and its
first call JIT-compiles for seconds. numba's compiler is not thread-safe and Streamlit runs every
browser session in its own thread, so every UMAP call holds one process-wide lock. t-SNE is
openTSNE (Poličar et al., 2024): compiled ahead of time, with progress callbacks and an
out-of-sample transform, which scikit-learn's t-SNE lacks.
"""
from __future__ import annotations

import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METHODS = ("pca", "umap", "tsne")
_NUMBA_LOCK = threading.Lock()
_numba_thread: int | None = None  # the thread holding _NUMBA_LOCK for a fit, for a waiting map's status
# openTSNE's transform writes into the fitted embedding (it re-centres it in place): one at a time
_TSNE_LOCK = threading.Lock()
Progress = Callable[[int, int], None]  # progress(steps done, steps in all) of a projection's optimisation


@dataclass(frozen=True)
class ProjectionParams:
    method: str = "pca"
    dims: int = 2
    n_neighbors: int = 15  # UMAP
    min_dist: float = 0.1  # UMAP
    perplexity: float = 30.0  # t-SNE
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"projection method must be one of {METHODS}, got {self.method!r}")
        if self.dims not in (2, 3):
            raise ValueError(f"maps are 2-D or 3-D, not {self.dims}-D")


def _ensure_numba_cache() -> None:
    # numba writes its compiled cache next to the package unless told otherwise; a read-only
    # site-packages then makes every start recompile. Point it at a writable folder.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "latent-explorer" / "numba"))


def project(z: np.ndarray, params: ProjectionParams) -> np.ndarray:
    """(N, dims) coordinates. A latent with no more dimensions than the map is returned as it is."""
    return project_fitted(z, params)[0]


def project_fitted(z: np.ndarray, params: ProjectionParams, progress: Progress | None = None,
                   threads: int | None = None):
    """(coords (N, dims), the fitted reducer) — the reducer places new points with the method's own
    transform (PCA, UMAP, openTSNE's embedding); None for a latent that is its own map. `progress`
    hears the optimisation's epochs (UMAP) or iterations (t-SNE) as they pass. `threads`: t-SNE's
    threads, by default compute_threads() (a core stays free for serving pages); a process that serves
    nobody (the `map` CLI) gives it every core, up to 8."""
    z = np.asarray(z, dtype=np.float32)
    if z.shape[1] <= params.dims:
        return np.pad(z, ((0, 0), (0, params.dims - z.shape[1]))), None
    from threadpoolctl import threadpool_limits

    # One BLAS/OpenMP thread per projection: on a shared server, t-SNE's threads fighting the
    # other sessions for the cores ran 10-30x slower than a single thread.
    with threadpool_limits(limits=1):
        if params.method == "pca":
            return fit_pca(z, params)
        if params.method == "tsne":
            return _tsne(z, params, progress, threads)
        return _umap(z, params, progress)


def _umap(z: np.ndarray, params: ProjectionParams, progress: Progress | None, n_epochs: int | None = None):
    global _numba_thread
    _ensure_numba_cache()
    n_neighbors = min(params.n_neighbors, len(z) - 1)
    neighbours = ExactNeighbours(z)
    knn_indices, knn_dists = neighbours.query(z, n_neighbors)
    if n_epochs is None and len(z) >= UMAP_SHORT_FROM:
        n_epochs = UMAP_SHORT_EPOCHS
    with _NUMBA_LOCK:
        _numba_thread = threading.get_ident()
        import umap

        reducer = umap.UMAP(n_components=params.dims, n_neighbors=n_neighbors, min_dist=params.min_dist,
                            random_state=params.seed, n_jobs=1, n_epochs=n_epochs,
                            precomputed_knn=(knn_indices, knn_dists, neighbours),
                            tqdm_kwds=None if progress is None else _EpochCounter(progress).tqdm_kwds())
        try:
            with warnings.catch_warnings():
                # umap-learn warns that an index other than pynndescent's cannot transform; this one
                # can (transform() only calls its query()), as the tests check.
                warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
                coords = reducer.fit_transform(z).astype(np.float32)
        finally:
            _numba_thread = None
        reducer.tqdm_kwds = {"disable": True}  # transform() runs epochs too: they report to no one
        return coords, reducer


# umap-learn runs 500 epochs up to 10,000 points and 200 above: at exactly 10k, 500 epochs took 10.5 s
# and 200 took 4.5 s, for 10-nearest-neighbour recall 0.408 against 0.396 (the shapes latents).
UMAP_SHORT_FROM, UMAP_SHORT_EPOCHS = 5_000, 200


class ExactNeighbours:
    """UMAP's neighbours, exact, from scikit-learn's tree search, in the place of pynndescent's
    approximate graph. pynndescent's kernels cannot use numba's on-disk cache, so every new process
    compiled them for 47 s before its first map (of 61 s for a 10k map); scikit-learn's search is
    compiled ahead of time, and took 0.6 s on 10k latents (4.8 s on 59k). umap-learn uses the object
    as its search index: transform() asks query() for a new point's neighbours."""

    _angular_trees = False  # read by umap-learn's transform() for its search tolerance, unused here

    def __init__(self, z: np.ndarray):
        from sklearn.neighbors import NearestNeighbors

        self._search = NearestNeighbors().fit(np.asarray(z, dtype=np.float32))

    def query(self, points: np.ndarray, k: int, epsilon: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices (M, k) int32, distances (M, k) float32) of each point's k nearest; a point of the
        data finds itself first, as umap-learn expects of its neighbour graph."""
        distances, indices = self._search.kneighbors(np.asarray(points, dtype=np.float32), n_neighbors=k)
        return indices.astype(np.int32), distances.astype(np.float32)


def umap_fit_thread() -> int | None:
    """The thread fitting UMAP now (a map, or the warm-up), else None: a map asked for waits for it."""
    holder = _numba_thread
    return holder if _NUMBA_LOCK.locked() else None


class _EpochCounter:
    """umap-learn reports its epochs only through a tqdm bar: the bar writes "done/total" into this
    file-like object (bar_format below), which passes the numbers on."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def tqdm_kwds(self) -> dict:
        return {"disable": False, "file": self, "bar_format": "{n}/{total}", "mininterval": 0.2, "desc": ""}

    def write(self, text: str) -> int:
        counts = re.findall(r"(\d+)/(\d+)", text)
        if counts:
            self.progress(int(counts[-1][0]), int(counts[-1][1]))
        return len(text)

    def flush(self) -> None:
        pass


# openTSNE's defaults: 250 exaggerated iterations, then 500 at momentum 0.8 and learning rate N (its
# "auto", N / exaggeration). Half the exaggerated iterations end where all of them do, and the rest at
# momentum 0.95 and learning rate 2N, in 250 iterations, reaches the exact KL of openTSNE's defaults at
# 10k points in 0.39x their time, ends 0.020 short of it at 5k in 0.44x, and far past openTSNE's FFT
# defaults at 59k in 1.2x (bench/map_bench.py's t-SNE table); in a one-off script also on the mnist-5k
# latents (1.510 against 1.515) and scikit-learn's digits, 2-D and 3-D. A learning rate of 4N was
# faster on 10k shapes latents and slower on mnist-5k.
TSNE_EARLY_ITERATIONS, TSNE_ITERATIONS, TSNE_MOMENTUM, TSNE_LEARNING_RATE_PER_POINT = 125, 250, 0.95, 2.0
TSNE_REPORT_EVERY = 10
TSNE_FFT_FROM = 20_000
TSNE_EXACT_NEIGHBOURS_BELOW = 20_000
# openTSNE's transform optimises new points against the fixed map for 250 iterations by default:
# 1.31 s for one point on a 10k map, where 50 took 0.28 s and landed about as close (bench/map_bench.py
# times both) - a slider's point must not wait seconds.
TSNE_TRANSFORM_ITERATIONS = 50
# umap-learn's inverse_transform triangulates the whole map and walks it in Python: 4.1 s for one spot
# on a 10k map, 22.5 s on 59k (bench/map_bench.py). Above this size a click decodes the fallback.
UMAP_INVERSE_MAX_POINTS = 20_000


def _tsne(z: np.ndarray, params: ProjectionParams, progress: Progress | None, threads: int | None = None):
    """openTSNE, in its two phases (early exaggeration, then the rest; schedule: the constants above).

    Gradients: openTSNE's FFT interpolation (Linderman et al., 2019) costs with the map's extent rather
    than its points, so it pays while the exaggerated map is compact, and above TSNE_FFT_FROM points
    throughout. Below that, the second phase (the map has spread out) is Barnes-Hut's: on 10k shapes
    latents FFT's gradients also left the map further from converged after as many iterations (exact
    KL 1.765 against 1.731 after 450, a one-off script). FFT is 2-D only: a 3-D map is Barnes-Hut's throughout.
    Neighbours are exact (scikit-learn's tree search) below TSNE_EXACT_NEIGHBOURS_BELOW points (at
    10k, quicker than building Annoy's index); Annoy above. Threads: compute_threads() unless told,
    the cores but one: beside a process busy on one of this machine's 2 cores, a 10k map took 21.2 s
    on 2 threads against 18.1 s on one (a one-off script; bench/map_bench.py times it alone)."""
    from openTSNE import TSNE

    from .threads import compute_threads

    total = TSNE_EARLY_ITERATIONS + TSNE_ITERATIONS
    phase_start = [0]  # iterations before the phase that runs: openTSNE counts each optimize() from 0

    def iterations_done(iteration, error, embedding) -> None:
        progress(phase_start[0] + iteration, total)

    perplexity = min(params.perplexity, max(2.0, (len(z) - 1) / 3))
    fft_throughout = params.dims == 2 and len(z) >= TSNE_FFT_FROM
    tsne = TSNE(n_components=params.dims, perplexity=perplexity, random_state=params.seed,
                n_jobs=threads or compute_threads(), negative_gradient_method="fft" if fft_throughout else "bh",
                neighbors="exact" if len(z) < TSNE_EXACT_NEIGHBOURS_BELOW else "annoy",
                callbacks=None if progress is None else iterations_done, callbacks_every_iters=TSNE_REPORT_EVERY)
    embedding = tsne.prepare_initial(z)
    embedding.optimize(TSNE_EARLY_ITERATIONS, exaggeration=tsne.early_exaggeration, momentum=tsne.initial_momentum,
                       negative_gradient_method="fft" if params.dims == 2 else "bh", inplace=True)
    phase_start[0] = TSNE_EARLY_ITERATIONS
    embedding.optimize(TSNE_ITERATIONS, exaggeration=tsne.exaggeration, momentum=TSNE_MOMENTUM,
                       learning_rate=TSNE_LEARNING_RATE_PER_POINT * len(z), inplace=True)
    if progress is not None:  # done, whether or not TSNE_REPORT_EVERY divides the phases
        progress(total, total)
    # transform() centres the map on its midrange, in place, before placing points: centre it now, or
    # every later point would land shifted from the coordinates drawn.
    embedding -= (embedding.max(0) + embedding.min(0)) / 2
    embedding.gradient_descent_params["callbacks"] = None  # transforms report to no progress bar
    return np.array(embedding, dtype=np.float32), embedding


def tsne_kl_divergence(coords: np.ndarray, p, block: int = 1024) -> float:
    """KL(P || Q) of a t-SNE map, computed exactly: the objective t-SNE minimises, the map's quality on
    one scale. `p` is the sparse affinity matrix (openTSNE's `embedding.affinities.P`). openTSNE's own
    `kl_divergence` estimates Q's normaliser with the gradient's approximation, so it reads Barnes-Hut
    and FFT maps differently. O(N^2) time, O(block * N) memory."""
    y = np.asarray(coords, dtype=np.float64)
    normaliser = 0.0  # sum over i != j of (1 + |y_i - y_j|^2)^-1
    for start in range(0, len(y), block):
        part = y[start:start + block]
        squared = (part ** 2).sum(1)[:, None] + (y ** 2).sum(1)[None] - 2 * part @ y.T
        normaliser += (1 / (1 + np.maximum(squared, 0))).sum() - len(part)
    p = p.tocoo()
    q = 1 / (1 + ((y[p.row] - y[p.col]) ** 2).sum(1)) / normaliser
    return float((p.data * np.log(p.data / q)).sum())


def fit_pca(z: np.ndarray, params: ProjectionParams):
    """(coords, the fitted PCA): deterministic, and fast enough to refit for a map read from disk."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=params.dims, random_state=params.seed)
    return pca.fit_transform(np.asarray(z, dtype=np.float32)).astype(np.float32), pca


def warm_up_umap() -> None:
    """Compile UMAP's numba kernels, off the hot path (a background thread): the fit's, and those of
    transform() and inverse_transform(), which have kernels of their own."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    z = rng.normal(size=(WARM_UP_POINTS, 8)).astype(np.float32)
    with threadpool_limits(limits=1):  # as every projection (project_fitted)
        # A few epochs compile the same kernels as the default 200-500, in a fraction of the time.
        _, reducer = _umap(z, ProjectionParams("umap", 2), None, n_epochs=WARM_UP_EPOCHS)
        # transform() and inverse_transform() compile for tens of seconds more: between the stages the
        # lock is left free for a moment, so a map someone asked for meanwhile goes first.
        for stage in (lambda: reducer.transform(z[:2]),
                      lambda: reducer.inverse_transform(np.zeros((1, 2), dtype=np.float32))):
            time.sleep(WARM_UP_YIELD_S)
            with _NUMBA_LOCK:
                stage()


WARM_UP_POINTS = 1_000  # any size takes the path a real map takes: neighbours are precomputed
WARM_UP_EPOCHS = 5
WARM_UP_YIELD_S = 0.5


def nearest_neighbours(z: np.ndarray, index: int, k: int = 8) -> np.ndarray:
    """Indices of the k points closest to z[index] in latent space (Euclidean), itself excluded."""
    d = np.linalg.norm(z - z[index], axis=1)
    d[index] = np.inf
    k = min(k, len(z) - 1)
    nearest = np.argpartition(d, k)[:k]
    return nearest[np.argsort(d[nearest])]


def cluster_scores(z: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """k-means in latent space (k = number of labels) against the labels: NMI and ARI in [0, 1]."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    k = len(np.unique(labels))
    assigned = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(z)
    return {"k": k, "nmi": float(normalized_mutual_info_score(labels, assigned)),
            "ari": float(adjusted_rand_score(labels, assigned))}


def place_on_map(z_new: np.ndarray, z_data: np.ndarray, coords: np.ndarray, reducer=None, k: int = 5) -> np.ndarray:
    """Map positions for new latent points (a slider's z, an interpolation path): the method's own
    out-of-sample transform when its fitted reducer is at hand (PCA, UMAP, openTSNE), else
    neighbour_average."""
    z_new = np.atleast_2d(np.asarray(z_new, dtype=np.float32))
    if z_data.shape[1] <= coords.shape[1]:  # the map is the latent space itself
        return np.pad(z_new, ((0, 0), (0, coords.shape[1] - z_new.shape[1])))
    if reducer is None:
        return neighbour_average(z_new, z_data, coords, k)
    module = type(reducer).__module__
    if module.startswith("umap"):
        lock, transform = _NUMBA_LOCK, reducer.transform
    elif module.startswith("openTSNE"):
        lock, transform = _TSNE_LOCK, lambda z: reducer.transform(z, n_iter=TSNE_TRANSFORM_ITERATIONS)
    else:
        return np.asarray(reducer.transform(z_new), dtype=np.float32)
    # A slider must not wait for another session's UMAP fit (tens of seconds under the lock) or
    # t-SNE placement: while the lock is taken, this point is placed by its neighbours instead.
    if not lock.acquire(timeout=0.05):
        return neighbour_average(z_new, z_data, coords, k)
    try:
        return np.asarray(transform(z_new), dtype=np.float32)
    finally:
        lock.release()


def neighbour_average(z_new: np.ndarray, z_data: np.ndarray, coords: np.ndarray, k: int = 5) -> np.ndarray:
    """The fallback placement, where no out-of-sample map is at hand (t-SNE; a UMAP map read from
    disk): each new point at the distance-weighted mean position of its k nearest encoded points,
    where the map shows the data the point most resembles."""
    z_new = np.atleast_2d(np.asarray(z_new, dtype=np.float32))
    d = np.linalg.norm(z_new[:, None, :] - z_data[None, :, :], axis=2)
    k = min(k, len(z_data))
    nearest = np.argpartition(d, k - 1, axis=1)[:, :k]
    weights = 1.0 / (np.take_along_axis(d, nearest, 1) + 1e-6)
    return (coords[nearest] * weights[..., None]).sum(1) / weights.sum(1, keepdims=True)


def unproject(points: np.ndarray, z_data: np.ndarray, coords: np.ndarray, reducer=None,
              method: str = "umap") -> tuple[np.ndarray, str] | None:
    """(latents (M, D) for map positions (M, dims), how they were found): the inverse of the map
    (what "decode anywhere on the map" decodes), or None where the method has no inverse (t-SNE).

    A latent that is its own map is read off directly; PCA and UMAP use their own inverse_transform.
    neighbour_average run backwards (the latents of the nearest map points, averaged) is the fallback,
    named as such: for a UMAP map read from the disk cache (it keeps no fitted model), and for spots
    outside the map's points, where UMAP's inverse (it interpolates inside the Delaunay triangle
    around a spot) would use an arbitrary triangle instead."""
    points = np.atleast_2d(np.asarray(points, dtype=np.float32))
    if z_data.shape[1] <= coords.shape[1]:
        return points[:, :z_data.shape[1]].copy(), "the map is the latent space itself"
    if method == "tsne":
        return None

    def fallback(why: str) -> tuple[np.ndarray, str]:
        return neighbour_average(points, coords, z_data).astype(np.float32), f"the average latent of the nearest points ({why})"

    if reducer is None:
        return fallback("the fitted UMAP is not kept with a cached map")
    if not type(reducer).__module__.startswith("umap"):
        return np.asarray(reducer.inverse_transform(points), dtype=np.float32), "PCA's inverse_transform"
    if len(coords) > UMAP_INVERSE_MAX_POINTS:
        return fallback(f"UMAP's inverse_transform takes tens of seconds on a map of {len(coords):,} points")
    from scipy.spatial import Delaunay

    if (Delaunay(coords).find_simplex(points) < 0).any():
        return fallback("the spot lies outside the map's points, where UMAP's inverse is undefined")
    with _NUMBA_LOCK:  # a click may wait for another session's fit: the answer is worth it
        return np.asarray(reducer.inverse_transform(points), dtype=np.float32), "UMAP's inverse_transform"
