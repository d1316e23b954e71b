"""2-D / 3-D maps of latent codes (PCA, UMAP, t-SNE), clustering scores and latent neighbours.

umap-learn is imported only when a UMAP map is asked for: importing it pulls in numba, and its
first call JIT-compiles for seconds. numba's compiler is not thread-safe and Streamlit runs every
browser session in its own thread, so every UMAP call holds one process-wide lock.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METHODS = ("pca", "umap", "tsne")
_NUMBA_LOCK = threading.Lock()


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


def project_fitted(z: np.ndarray, params: ProjectionParams):
    """(coords (N, dims), the fitted reducer) — the reducer places new points with the method's own
    transform (PCA, UMAP); None for t-SNE (scikit-learn's has no out-of-sample map) and for a latent
    that is its own map."""
    z = np.asarray(z, dtype=np.float32)
    if z.shape[1] <= params.dims:
        return np.pad(z, ((0, 0), (0, params.dims - z.shape[1]))), None
    from threadpoolctl import threadpool_limits

    # One BLAS/OpenMP thread per projection: on a shared server, t-SNE's threads fighting the
    # other sessions for the cores ran 10-30x slower than a single thread.
    with threadpool_limits(limits=1):
        return _project(z, params)


def _project(z: np.ndarray, params: ProjectionParams):
    if params.method == "pca":
        return fit_pca(z, params)
    if params.method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(params.perplexity, max(2.0, (len(z) - 1) / 3))
        return TSNE(n_components=params.dims, perplexity=perplexity, random_state=params.seed,
                    init="pca").fit_transform(z).astype(np.float32), None
    _ensure_numba_cache()
    with _NUMBA_LOCK:
        import umap

        reducer = umap.UMAP(n_components=params.dims, n_neighbors=min(params.n_neighbors, len(z) - 1),
                            min_dist=params.min_dist, random_state=params.seed, n_jobs=1)
        return reducer.fit_transform(z).astype(np.float32), reducer


def fit_pca(z: np.ndarray, params: ProjectionParams):
    """(coords, the fitted PCA): deterministic, and fast enough to refit for a map read from disk."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=params.dims, random_state=params.seed)
    return pca.fit_transform(np.asarray(z, dtype=np.float32)).astype(np.float32), pca


def warm_up_umap() -> None:
    """Compile UMAP's numba kernels on a tiny problem, off the hot path (a background thread)."""
    rng = np.random.default_rng(0)
    project(rng.normal(size=(64, 4)).astype(np.float32), ProjectionParams("umap", 2, n_neighbors=5))


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
    out-of-sample transform when its fitted reducer is at hand (PCA, UMAP), else neighbour_average."""
    z_new = np.atleast_2d(np.asarray(z_new, dtype=np.float32))
    if z_data.shape[1] <= coords.shape[1]:  # the map is the latent space itself
        return np.pad(z_new, ((0, 0), (0, coords.shape[1] - z_new.shape[1])))
    if reducer is None:
        return neighbour_average(z_new, z_data, coords, k)
    if not type(reducer).__module__.startswith("umap"):
        return np.asarray(reducer.transform(z_new), dtype=np.float32)
    # A slider must not wait for another session's UMAP fit (tens of seconds under the lock): while
    # numba is busy, this point is placed by its neighbours instead.
    if not _NUMBA_LOCK.acquire(timeout=0.05):
        return neighbour_average(z_new, z_data, coords, k)
    try:
        return np.asarray(reducer.transform(z_new), dtype=np.float32)
    finally:
        _NUMBA_LOCK.release()


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
