"""Latent maps (PCA, UMAP, t-SNE), latent neighbours, clustering scores and placing new points on a map."""
from __future__ import annotations

import os
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from vae_core.projection import (ProjectionParams, cluster_scores, nearest_neighbours, neighbour_average, place_on_map,
                                 project, project_fitted, unproject)

# UMAP with a seed runs single-threaded and says so; that is what the app wants.
pytestmark = pytest.mark.filterwarnings("ignore:n_jobs value:UserWarning")

N_PER_BLOB, LATENT = 50, 6


@pytest.fixture(scope="module", autouse=True)
def _one_blas_and_openmp_thread():
    """t-SNE's OpenMP threads spin-wait: on a busy machine 2 threads run 10-30x slower than 1 (seconds,
    not a fraction of one). These tests are about results, not speed."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _blobs(seed=0, spread=0.3, distance=10.0):
    """3 well-separated Gaussian blobs in 6-D: (150, 6) float32 points and their blob labels."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((3, LATENT))
    centres[0, 0] = centres[1, 1] = centres[2, 2] = distance
    labels = np.repeat(np.arange(3), N_PER_BLOB)
    z = centres[labels] + spread * rng.normal(size=(len(labels), LATENT))
    return z.astype(np.float32), labels


def _assert_blobs_apart_on_average(coords, labels):
    """Points of a blob are closer to each other, on average, than to other blobs' points: the
    weaker check, for 3-D maps of 150 points, where blobs may come out smeared."""
    d = np.linalg.norm(coords[:, None, :] - coords[None], axis=2)
    same = labels[:, None] == labels[None]
    np.fill_diagonal(same, False)
    assert d[same].mean() < 0.9 * d[labels[:, None] != labels[None]].mean()


def _assert_blobs_stay_apart(coords, labels):
    """On the map, every point is nearer its own blob's centre than any other's, and its nearest
    neighbour is from its own blob."""
    centres = np.stack([coords[labels == b].mean(0) for b in range(3)])
    to_centres = np.linalg.norm(coords[:, None, :] - centres[None], axis=2)
    assert np.array_equal(to_centres.argmin(1), labels)
    d = np.linalg.norm(coords[:, None, :] - coords[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert np.array_equal(labels[d.argmin(1)], labels)
    same = labels[:, None] == labels[None]
    np.fill_diagonal(same, False)
    different = labels[:, None] != labels[None]
    assert d[same].mean() < 0.5 * d[different].mean()


# -- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
@pytest.mark.parametrize("dims", [2, 3])
def test_valid_params(method, dims):
    params = ProjectionParams(method, dims)
    assert (params.method, params.dims) == (method, dims)


@pytest.mark.parametrize("kwargs, word", [
    ({"method": "mds"}, "method"),
    ({"method": "PCA"}, "method"),
    ({"method": ""}, "method"),
    ({"dims": 4}, "4-D"),
    ({"dims": 1}, "1-D"),
    ({"dims": 0}, "0-D"),
], ids=["unknown", "upper-case", "empty", "dims-4", "dims-1", "dims-0"])
def test_invalid_params(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ProjectionParams(**kwargs)


# -- project -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs():
    return _blobs()


@pytest.fixture(scope="module")
def umap_fitted(blobs):
    """One real single-call UMAP map of the blobs and its fitted reducer (the first UMAP call
    compiles numba: share it)."""
    return project_fitted(blobs[0], ProjectionParams("umap", 2, seed=3))


@pytest.fixture(scope="module")
def umap_map(umap_fitted):
    return umap_fitted[0]


def test_umap_from_two_threads_at_once_matches_a_single_call(blobs, request):
    # The first real-UMAP test: in a fresh process both threads arrive while numba has still to compile.
    results, errors = [None, None], []
    start = threading.Barrier(2)

    def worker(i):
        try:
            start.wait()
            results[i] = project(blobs[0], ProjectionParams("umap", 2, seed=3))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    umap_map = request.getfixturevalue("umap_map")
    for result in results:
        assert result is not None and result.shape == (len(blobs[0]), 2)
        np.testing.assert_allclose(result, umap_map, atol=1e-4)


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
def test_project_keeps_blobs_apart(blobs, umap_map, method):
    z, labels = blobs
    coords = umap_map if method == "umap" else project(z, ProjectionParams(method, 2, perplexity=15))
    assert coords.shape == (len(z), 2) and coords.dtype == np.float32
    assert np.isfinite(coords).all()
    if method == "pca":
        _assert_blobs_stay_apart(coords, labels)
    else:
        _assert_blobs_apart_on_average(coords, labels)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_project_to_3d(blobs, method):
    z, labels = blobs[0][::3], blobs[1][::3]
    coords = project(z, ProjectionParams(method, 3, perplexity=10))
    assert coords.shape == (len(z), 3) and coords.dtype == np.float32
    assert np.isfinite(coords).all()
    if method == "pca":
        _assert_blobs_stay_apart(coords, labels)
    else:
        _assert_blobs_apart_on_average(coords, labels)


def test_pca_is_the_top_principal_plane(blobs):
    """PCA keeps the directions of largest variance: the map's variance is that of the top 2 components."""
    z = blobs[0].astype(np.float64)
    coords = project(z, ProjectionParams("pca", 2)).astype(np.float64)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(z.T)))[::-1]
    np.testing.assert_allclose(np.sort(np.var(coords, axis=0, ddof=1))[::-1], eigenvalues[:2], rtol=1e-4)
    np.testing.assert_allclose(coords.mean(0), 0, atol=1e-4)


@pytest.mark.parametrize("n", [4, 12])
def test_tsne_on_a_handful_of_points(n):
    """t-SNE needs perplexity < N; a default perplexity of 30 must still work on a few points."""
    z = np.random.default_rng(1).normal(size=(n, LATENT)).astype(np.float32)
    coords = project(z, ProjectionParams("tsne", 2))
    assert coords.shape == (n, 2) and np.isfinite(coords).all()


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
@pytest.mark.parametrize("latent, dims", [(2, 2), (3, 3), (2, 3), (1, 2), (1, 3)])
def test_small_latents_are_returned_as_they_are(method, latent, dims):
    z = np.random.default_rng(2).normal(size=(20, latent))  # float64 in: float32 out
    coords = project(z, ProjectionParams(method, dims))
    assert coords.shape == (20, dims) and coords.dtype == np.float32
    np.testing.assert_array_equal(coords[:, :latent], z.astype(np.float32))
    np.testing.assert_array_equal(coords[:, latent:], 0)


class _FakeUMAP:
    """Stands in for umap.UMAP: records how many fits run at the same time."""
    active = 0
    most = 0
    guard = threading.Lock()
    kwargs: list = []

    def __init__(self, **kwargs):
        type(self).kwargs.append(kwargs)
        self.n_components = kwargs["n_components"]

    def fit_transform(self, z):
        cls = type(self)
        cls.points = len(z)
        with cls.guard:
            cls.active += 1
            cls.most = max(cls.most, cls.active)
        time.sleep(0.02)
        with cls.guard:
            cls.active -= 1
        return np.zeros((len(z), self.n_components), dtype=np.float64)


@pytest.fixture
def fake_umap(monkeypatch):
    fake = types.ModuleType("umap")

    class UMAP(_FakeUMAP):
        active, most, kwargs = 0, 0, []

    fake.UMAP = UMAP
    monkeypatch.setitem(sys.modules, "umap", fake)
    return UMAP


def test_umap_calls_are_serialised(fake_umap):
    z = np.random.default_rng(0).normal(size=(30, LATENT)).astype(np.float32)
    threads = [threading.Thread(target=project, args=(z, ProjectionParams("umap", 2))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(fake_umap.kwargs) == 6
    assert fake_umap.most == 1, "two UMAP fits ran at once: numba is not thread-safe"


def test_umap_neighbours_fit_small_data(fake_umap):
    z = np.random.default_rng(0).normal(size=(8, LATENT)).astype(np.float32)
    coords = project(z, ProjectionParams("umap", 3, n_neighbors=15))
    assert coords.shape == (8, 3) and coords.dtype == np.float32
    (kwargs,) = fake_umap.kwargs
    assert kwargs["n_components"] == 3 and kwargs["n_neighbors"] <= 7


def test_umap_points_numba_at_a_writable_cache(fake_umap, monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    z = np.zeros((10, LATENT), dtype=np.float32)
    project(z, ProjectionParams("umap"))
    cache = Path(os.environ["NUMBA_CACHE_DIR"])
    assert cache.is_relative_to(tmp_path)
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/chosen")  # a person's own choice wins
    project(z, ProjectionParams("umap"))
    assert os.environ["NUMBA_CACHE_DIR"] == "/somewhere/chosen"


def test_pca_and_tsne_never_import_umap(monkeypatch):
    """umap-learn pulls in numba and compiles for seconds: PCA and t-SNE maps must not pay for it."""
    monkeypatch.setitem(sys.modules, "umap", None)  # any `import umap` now raises ImportError
    z = _blobs()[0][::5]
    for method in ("pca", "tsne"):
        assert project(z, ProjectionParams(method, 2, perplexity=5)).shape == (len(z), 2)


# -- nearest neighbours --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud():
    return np.random.default_rng(4).normal(size=(60, 5)).astype(np.float32)


@pytest.mark.parametrize("index", [0, 17, 59])
@pytest.mark.parametrize("k", [1, 5, 8, 20])
def test_nearest_neighbours_match_brute_force(cloud, index, k):
    found = nearest_neighbours(cloud, index, k)
    d = np.linalg.norm(cloud - cloud[index], axis=1)
    expected = [i for i in np.argsort(d) if i != index][:k]
    assert list(found) == expected
    assert index not in found
    assert np.all(np.diff(d[found]) >= 0)


def test_nearest_neighbours_k_larger_than_the_data(cloud):
    small = cloud[:6]
    found = nearest_neighbours(small, 2, k=50)
    assert sorted(found) == [0, 1, 3, 4, 5]
    d = np.linalg.norm(small - small[2], axis=1)
    assert np.all(np.diff(d[found]) >= 0)


def test_nearest_neighbours_keeps_duplicates_of_the_point(cloud):
    """A second copy of the same code is a neighbour (distance 0); only the point itself is left out."""
    z = np.concatenate([cloud, cloud[[10]]])
    found = nearest_neighbours(z, 10, k=3)
    assert found[0] == len(cloud) and 10 not in found


def test_nearest_neighbours_do_not_change_the_input(cloud):
    before = cloud.copy()
    nearest_neighbours(cloud, 3, 4)
    np.testing.assert_array_equal(cloud, before)


# -- clustering scores ---------------------------------------------------------------------------


def test_cluster_scores_on_separated_blobs(blobs):
    z, labels = blobs
    scores = cluster_scores(z, labels)
    assert scores["k"] == 3
    assert scores["nmi"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ari"] == pytest.approx(1.0, abs=1e-6)


def test_cluster_scores_do_not_depend_on_label_names(blobs):
    z, labels = blobs
    renamed = np.array([7, 2, 40])[labels]
    scores = cluster_scores(z, renamed)
    assert scores["k"] == 3 and scores["nmi"] == pytest.approx(1.0, abs=1e-6)


def test_cluster_scores_on_random_labels(blobs):
    z, _ = blobs
    labels = np.random.default_rng(5).integers(0, 3, size=len(z))
    scores = cluster_scores(z, labels)
    assert scores["k"] == 3
    assert 0 <= scores["nmi"] < 0.1
    assert abs(scores["ari"]) < 0.1


def test_cluster_scores_k_follows_the_labels(blobs):
    """k is the number of distinct labels: with two blobs moved next to each other and labelled as one,
    k = 2 and the two groups are found; labelled apart, k = 3 still finds all three."""
    z, labels = blobs
    z = z.copy()
    z[labels == 2] -= np.float32(9.0) * (np.eye(LATENT)[2] - np.eye(LATENT)[1])  # blob 2 now 1.0 from blob 1
    two = cluster_scores(z, np.minimum(labels, 1))
    assert two["k"] == 2 and two["nmi"] == pytest.approx(1.0, abs=1e-6)
    three = cluster_scores(z, labels)
    assert three["k"] == 3 and three["nmi"] == pytest.approx(1.0, abs=1e-6)


# -- placing new points on a map -----------------------------------------------------------------


@pytest.fixture(scope="module")
def a_map(blobs):
    """Any map works for place_on_map; a fixed random projection keeps this test free of UMAP."""
    z, _ = blobs
    coords = z @ np.random.default_rng(6).normal(size=(LATENT, 2)).astype(np.float32)
    return z, coords


@pytest.mark.parametrize("index", [0, 51, 149])
def test_a_data_point_lands_on_its_own_position(a_map, index):
    z, coords = a_map
    placed = place_on_map(z[index], z, coords)
    assert placed.shape == (1, 2)
    np.testing.assert_allclose(placed[0], coords[index], atol=1e-3)


def test_many_points_at_once(a_map):
    z, coords = a_map
    indices = [3, 70, 120, 8]
    placed = place_on_map(z[indices], z, coords)
    assert placed.shape == (4, 2)
    np.testing.assert_allclose(placed, coords[indices], atol=1e-3)
    coords3 = np.concatenate([coords, coords[:, :1]], 1)
    assert place_on_map(z[indices], z, coords3).shape == (4, 3)


def test_a_new_point_lands_among_its_neighbours(a_map, blobs):
    """A point between members of one blob is placed inside that blob's region of the map, within the
    span of its nearest neighbours' positions."""
    z, coords = a_map
    labels = blobs[1]
    new = z[labels == 1][:5].mean(0) + 0.05
    placed = place_on_map(new, z, coords, k=5)[0]
    nearest = np.argsort(np.linalg.norm(z - new, axis=1))[:5]
    assert np.all(placed >= coords[nearest].min(0) - 1e-5) and np.all(placed <= coords[nearest].max(0) + 1e-5)
    centres = np.stack([coords[labels == b].mean(0) for b in range(3)])
    assert np.linalg.norm(centres - placed, axis=1).argmin() == 1


@pytest.mark.parametrize("latent, dims", [(2, 2), (2, 3), (1, 2), (3, 3)])
def test_small_latent_maps_are_the_latent_space(latent, dims):
    rng = np.random.default_rng(7)
    z_data = rng.normal(size=(30, latent)).astype(np.float32)
    coords = project(z_data, ProjectionParams("pca", dims))
    z_new = rng.normal(size=(4, latent)).astype(np.float32)
    placed = place_on_map(z_new, z_data, coords)
    assert placed.shape == (4, dims)
    np.testing.assert_array_equal(placed[:, :latent], z_new)
    np.testing.assert_array_equal(placed[:, latent:], 0)
    assert place_on_map(z_new[0], z_data, coords).shape == (1, dims)


# -- the method's own out-of-sample placement ------------------------------------------------------

def test_umap_transform_puts_the_data_back_where_the_map_drew_it(blobs, umap_fitted):
    z, _ = blobs
    coords, reducer = umap_fitted
    assert reducer is not None
    placed = place_on_map(z[:60], z, coords, reducer)
    span = float(np.ptp(coords, axis=0).max())
    assert np.median(np.linalg.norm(placed - coords[:60], axis=1)) < 0.05 * span


def test_umap_transform_differs_from_the_neighbour_average_between_clusters(blobs, umap_fitted):
    """Halfway between two blobs the neighbour average lands in the empty space between them;
    UMAP's transform puts the point where UMAP would: by one of the blobs, not in the gap."""
    z, labels = blobs
    coords, reducer = umap_fitted
    a, b = z[labels == 0].mean(0), z[labels == 1].mean(0)
    middle = np.asarray([(a + b) / 2], dtype=np.float32)
    by_umap = place_on_map(middle, z, coords, reducer)[0]
    centres = [coords[labels == k].mean(0) for k in (0, 1)]
    nearest_centre = min(np.linalg.norm(by_umap - c) for c in centres)
    assert nearest_centre < 0.5 * np.linalg.norm(centres[0] - centres[1])
    assert not np.allclose(by_umap, neighbour_average(middle, z, coords)[0])


def test_pca_places_exactly(blobs):
    z, _ = blobs
    coords, pca = project_fitted(z, ProjectionParams("pca", 2))
    np.testing.assert_allclose(place_on_map(z[:10], z, coords, pca), coords[:10], atol=1e-4)


def test_tsne_places_with_opentsne_transform(blobs):
    """openTSNE's transform puts a training point back by its own blob's cluster on the map (where in
    it is noise: the blobs are isotropic; the fixed map's repulsion can leave it just past the edge)."""
    z, labels = blobs
    coords, embedding = project_fitted(z, ProjectionParams("tsne", 2, perplexity=10))
    assert type(embedding).__module__.startswith("openTSNE")
    placed = place_on_map(z[::10], z, coords, embedding)
    centres = np.stack([coords[labels == b].mean(0) for b in range(3)])
    assert np.array_equal(np.linalg.norm(placed[:, None] - centres[None], axis=2).argmin(1), labels[::10])
    radius = max(np.linalg.norm(coords[labels == b] - centres[b], axis=1).max() for b in range(3))
    assert np.linalg.norm(placed - centres[labels[::10]], axis=1).max() < 1.5 * radius


def test_3d_tsne_converges_as_far_as_2d(blobs):
    """scikit-learn's 3-D t-SNE stopped far from converged on these blobs (KL 0.86 against 0.19 in 2-D);
    openTSNE's ends no worse in 3-D than in 2-D (measured with the app's schedule: 0.12 and 0.18)."""
    kl = {dims: project_fitted(blobs[0], ProjectionParams("tsne", dims))[1].kl_divergence for dims in (2, 3)}
    assert kl[3] <= 1.1 * kl[2] and kl[2] < 0.4, kl


def test_tsne_schedule_ends_as_converged_as_opentsnes_default():
    """The app's t-SNE schedule (half of openTSNE's iterations, momentum 0.95, learning rate 2N) ends at
    an exact KL no worse than openTSNE's defaults on scikit-learn's digits (measured: 0.745 against
    0.756); openTSNE's own step for as many iterations ends short of it."""
    from openTSNE import TSNE
    from sklearn.datasets import load_digits

    from vae_core.projection import TSNE_EARLY_ITERATIONS, TSNE_ITERATIONS, tsne_kl_divergence

    z = load_digits().data.astype(np.float32)
    _, embedding = project_fitted(z, ProjectionParams("tsne", 2), threads=1)
    default = TSNE(n_jobs=1, random_state=0, neighbors="exact", negative_gradient_method="bh")
    short = default.prepare_initial(z)
    short.optimize(TSNE_EARLY_ITERATIONS, exaggeration=12, momentum=0.8, inplace=True)
    short.optimize(TSNE_ITERATIONS, momentum=0.8, inplace=True)
    kl = {name: tsne_kl_divergence(map_, map_.affinities.P) for name, map_ in
          (("app", embedding), ("default", default.fit(z)), ("default's step, app's iterations", short))}
    assert kl["app"] <= kl["default"] < kl["default's step, app's iterations"], kl


def test_tsne_placements_share_the_frame_of_the_drawn_map(blobs):
    """openTSNE's transform re-centres its embedding in place: the map drawn must already be centred,
    so that a point placed after any number of transforms lands in the same frame as the points."""
    z, _ = blobs
    coords, embedding = project_fitted(z, ProjectionParams("tsne", 2, perplexity=10))
    first = place_on_map(z[:5], z, coords, embedding)
    for _ in range(3):
        again = place_on_map(z[:5], z, coords, embedding)
    np.testing.assert_allclose(np.asarray(embedding), coords, atol=1e-4)  # the reference never moved
    np.testing.assert_allclose(again, first, atol=1.0)  # the same places, up to the optimiser's noise


def test_without_a_reducer_points_fall_back_to_their_neighbours(blobs):
    z, _ = blobs
    coords = project(z, ProjectionParams("pca", 2))
    np.testing.assert_allclose(place_on_map(z[:3], z, coords), neighbour_average(z[:3], z, coords))


# -- progress ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, dims", [("tsne", 2), ("tsne", 3), ("umap", 2)])
def test_progress_counts_the_optimisation_up_to_its_total(blobs, umap_fitted, method, dims):
    """The progress bar hears steps done out of a fixed total, in order, ending at the total."""
    seen = []
    coords, _ = project_fitted(blobs[0], ProjectionParams(method, dims, perplexity=10, seed=3),
                               progress=lambda done, total: seen.append((done, total)))
    assert coords.shape == (len(blobs[0]), dims)
    assert len(seen) >= 2 and seen[0][0] < seen[-1][0], seen  # a fast fit may report only its start and end
    totals = {total for _, total in seen}
    assert len(totals) == 1 and totals.pop() >= 200
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == seen[-1][1]


def test_a_reducer_reports_no_progress_after_its_fit(blobs):
    """transform() runs UMAP epochs too: they must not write into a finished map's progress bar."""
    seen = []
    _, reducer = project_fitted(blobs[0][:60], ProjectionParams("umap", 2, n_neighbors=5),
                                progress=lambda done, total: seen.append(done))
    fitted = len(seen)
    place_on_map(blobs[0][:2], blobs[0][:60], np.zeros((60, 2), np.float32), reducer)
    assert len(seen) == fitted


# -- decode anywhere: the map's inverse ---------------------------------------------------------------

def test_umap_inverse_transform_finds_the_latent_of_a_spot_on_the_map(blobs, umap_fitted):
    """A spot in the middle of a blob's cluster on the map inverts to a latent inside that blob."""
    z, labels = blobs
    coords, reducer = umap_fitted
    spots = np.stack([coords[labels == b].mean(0) for b in range(3)])
    latents, how = unproject(spots, z, coords, reducer, "umap")
    assert "inverse_transform" in how and latents.shape == (3, LATENT)
    centres = np.stack([z[labels == b].mean(0) for b in range(3)])
    distances = np.linalg.norm(latents[:, None] - centres[None], axis=2)
    assert np.array_equal(distances.argmin(1), [0, 1, 2])
    assert distances.min(1).max() < 2.0, "within the blob (blobs are 10 apart, 0.3 wide per dimension)"


def test_a_spot_outside_the_umap_map_falls_back_to_its_nearest_points(blobs, umap_fitted):
    """UMAP's inverse interpolates inside the Delaunay triangle around a spot; outside every triangle it
    would use an arbitrary one, so such a spot is decoded from its nearest points instead, and says so."""
    z, _ = blobs
    coords, reducer = umap_fitted
    outside = coords.max(0) + 0.5 * np.ptp(coords, axis=0)
    latents, how = unproject([outside], z, coords, reducer, "umap")
    assert "outside the map's points" in how
    np.testing.assert_allclose(latents, neighbour_average(outside[None], coords, z), rtol=1e-5)


def test_a_map_too_big_for_umaps_inverse_decodes_from_the_nearest_points(blobs, umap_fitted, monkeypatch):
    from vae_core import projection

    z, _ = blobs
    coords, reducer = umap_fitted
    monkeypatch.setattr(projection, "UMAP_INVERSE_MAX_POINTS", len(coords) - 1)
    latents, how = unproject(coords[:1], z, coords, reducer, "umap")
    assert "takes tens of seconds on a map of 150 points" in how
    np.testing.assert_allclose(latents, neighbour_average(coords[:1], coords, z), rtol=1e-5)


def test_pca_inverts_points_of_its_plane_exactly(blobs):
    z, _ = blobs
    coords, pca = project_fitted(z, ProjectionParams("pca", 2))
    latents, how = unproject(coords[:5], z, coords, pca, "pca")
    np.testing.assert_allclose(pca.transform(latents), coords[:5], atol=1e-3)
    assert "PCA" in how


def test_tsne_has_no_inverse_and_a_cached_umap_map_falls_back(blobs):
    z, _ = blobs
    coords = project(z, ProjectionParams("pca", 2))
    assert unproject(coords[:1], z, coords, object(), "tsne") is None
    latents, how = unproject(coords[:2], z, coords, None, "umap")
    np.testing.assert_allclose(latents, neighbour_average(coords[:2], coords, z), rtol=1e-5)
    assert "average" in how


def test_a_small_latent_is_its_own_inverse():
    z = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    latents, _ = unproject([[0.5, -1.0]], z, z, None, "tsne")
    np.testing.assert_array_equal(latents, [[0.5, -1.0]])


def test_the_warm_up_fits_transforms_and_inverts_on_a_real_maps_path(fake_umap):
    """The warm-up compiles what a first map needs: a short fit on neighbours given as a real map's are
    (the precomputed exact graph), then transform() and inverse_transform()."""
    from vae_core.projection import WARM_UP_POINTS, ExactNeighbours, warm_up_umap

    calls = []
    fake_umap.transform = lambda self, z: calls.append("transform") or np.zeros((len(z), 2))
    fake_umap.inverse_transform = lambda self, p: calls.append("inverse") or np.zeros((len(p), 8))
    warm_up_umap()
    (kwargs,) = fake_umap.kwargs
    assert kwargs["n_epochs"] and kwargs["n_epochs"] < 50 and fake_umap.points == WARM_UP_POINTS
    assert isinstance(kwargs["precomputed_knn"][2], ExactNeighbours)
    assert calls == ["transform", "inverse"]


def test_umap_gets_the_exact_neighbour_graph(fake_umap):
    """UMAP's neighbours come precomputed and exact: each point first (distance 0), then its nearest
    others, as a brute-force search finds them."""
    z = np.random.default_rng(1).normal(size=(300, LATENT)).astype(np.float32)
    project(z, ProjectionParams("umap", 2, n_neighbors=10))
    (kwargs,) = fake_umap.kwargs
    indices, distances, index = kwargs["precomputed_knn"]
    assert indices.shape == distances.shape == (300, 10) and indices.dtype == np.int32
    brute = np.linalg.norm(z[:, None] - z[None], axis=2)
    np.testing.assert_array_equal(indices[:, 0], np.arange(300))
    np.testing.assert_allclose(distances, np.sort(brute, axis=1)[:, :10], atol=1e-5)
    new = z[:4] + 0.01
    found, _ = index.query(new, 3)
    np.testing.assert_array_equal(found, np.argsort(np.linalg.norm(new[:, None] - z[None], axis=2), axis=1)[:, :3])


@pytest.mark.parametrize("points, epochs", [(4_999, None), (5_000, 200)])
def test_umap_runs_200_epochs_from_5000_points(fake_umap, points, epochs):
    """umap-learn's own choice is 500 epochs up to 10,000 points: on a 10k map 2.3x the time of 200
    for a barely better map. From 5,000 points the app asks for 200."""
    project(np.random.default_rng(0).normal(size=(points, LATENT)).astype(np.float32), ProjectionParams("umap", 2))
    (kwargs,) = fake_umap.kwargs
    assert kwargs["n_epochs"] == epochs


def test_a_slider_never_waits_for_another_sessions_umap_fit(blobs):
    """While numba is busy (another session fitting UMAP holds the lock), a point is placed by its
    neighbours at once instead of waiting tens of seconds."""
    from vae_core import projection

    class FakeUMAP:
        __module__ = "umap.umap_"

        def transform(self, z):
            return np.full((len(z), 2), 99.0, dtype=np.float32)

    z, _ = blobs
    coords = project(z, ProjectionParams("pca", 2))
    np.testing.assert_array_equal(place_on_map(z[:2], z, coords, FakeUMAP()), np.full((2, 2), 99.0))
    with projection._NUMBA_LOCK:
        placed = place_on_map(z[:2], z, coords, FakeUMAP())
    np.testing.assert_allclose(placed, neighbour_average(z[:2], z, coords))


def test_a_map_asked_for_during_the_warm_up_goes_before_its_last_stages(fake_umap):
    """The warm-up compiles the fit first, then transform and inverse_transform (tens of seconds more):
    a map asked for meanwhile takes the lock between stages instead of waiting for all of them."""
    from vae_core import projection
    from vae_core.projection import warm_up_umap

    order = []
    fake_umap.fit_transform = lambda self, z: order.append(f"fit {len(z)}") or np.zeros((len(z), 2))
    fake_umap.transform = lambda self, z: order.append("transform") or np.zeros((len(z), 2))
    fake_umap.inverse_transform = lambda self, p: order.append("inverse") or np.zeros((len(p), 8))
    warm = threading.Thread(target=warm_up_umap)
    warm.start()
    deadline = time.monotonic() + 10
    while not order and time.monotonic() < deadline:
        time.sleep(0.001)
    project(np.zeros((30, LATENT), np.float32), ProjectionParams("umap", 2))
    warm.join(10)
    assert order == [f"fit {projection.WARM_UP_POINTS}", "fit 30", "transform", "inverse"]
