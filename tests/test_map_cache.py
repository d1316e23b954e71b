"""Latent maps on disk: keyed by the exact weights, the data and the projection; atomic, bounded, and a
corrupt or foreign file is recomputed rather than trusted. The `map` CLI fills the same cache."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch

from conftest import tiny_config
from vae_core import VAE
from vae_core import map_cache
from vae_core.map_cache import MapKey, cached_projection, evict, load_map, map_file, read_map, store_map
from vae_core.projection import ProjectionParams

PCA2 = ProjectionParams("pca", 2)


def _key(digest="d" * 64, dataset="digits", split="test", params=PCA2) -> MapKey:
    return MapKey(digest, dataset, split, params)


def _points(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, n)


def test_round_trip_and_keys(tmp_path):
    z, y = _points()
    coords, _ = cached_projection(_key(), z, y, tmp_path)
    assert coords.shape == (50, 2)
    np.testing.assert_array_equal(load_map(_key(), tmp_path), coords)
    with np.load(map_file(_key(), tmp_path), allow_pickle=False) as data:  # no pickles: plain arrays
        assert set(data.files) == {"coords", "labels", "key"}
        np.testing.assert_array_equal(data["labels"], y)
    for other in (_key(digest="e" * 64), _key(dataset="mnist-5k"), _key(split="train"),
                  _key(params=ProjectionParams("pca", 3)), _key(params=ProjectionParams("umap", 2, n_neighbors=7))):
        assert map_file(other, tmp_path) != map_file(_key(), tmp_path) and load_map(other, tmp_path) is None


def test_a_cached_map_is_served_without_projecting(tmp_path, monkeypatch):
    z, y = _points()
    first, _ = cached_projection(_key(), z, y, tmp_path)
    monkeypatch.setattr(map_cache, "project_fitted", lambda *a: pytest.fail("projected again"))
    lines = []
    np.testing.assert_array_equal(cached_projection(_key(), z, y, tmp_path, report=lines.append)[0], first)
    assert lines and "found in the cache" in lines[0]


def test_new_weights_change_the_digest():
    model = VAE(tiny_config())
    before, weight = model.weights_digest(), model.to_mu.bias[0].item()
    with torch.no_grad():
        model.to_mu.bias[0] += 1e-3
    assert model.weights_digest() != before, "a change to one weight gives another key"
    model.to_mu.bias.data[0] = weight  # not -= 1e-3: float32 need not round back to the same weight
    assert model.weights_digest() == before


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other-key", "nan"])
def test_a_corrupt_or_foreign_file_is_ignored_and_recomputed(tmp_path, damage):
    z, y = _points()
    coords, _ = cached_projection(_key(), z, y, tmp_path)
    path = map_file(_key(), tmp_path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"not a zip at all")
    elif damage == "other-key":  # another map's content under this name
        path.write_bytes(map_cache.map_bytes(_key(dataset="other"), coords, y))
    else:
        path.write_bytes(map_cache.map_bytes(_key(), np.full_like(coords, np.nan), y))
    assert load_map(_key(), tmp_path) is None
    np.testing.assert_allclose(cached_projection(_key(), z, y, tmp_path)[0], coords, atol=1e-5)
    assert read_map(path, _key()) is not None, "recomputed and written again"


def test_concurrent_writers_leave_one_whole_file(tmp_path):
    z, y = _points(400)
    coords, _ = cached_projection(_key(), z, y, tmp_path / "reference")
    tmp_path = tmp_path / "cache"
    errors = []

    def write():
        try:
            for _ in range(20):
                store_map(_key(), coords, y, tmp_path)
                found = load_map(_key(), tmp_path)
                assert found is not None, "a reader saw half a file"
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    np.testing.assert_array_equal(load_map(_key(), tmp_path), coords)
    assert [p.name for p in tmp_path.iterdir()] == [map_file(_key(), tmp_path).name], "no temporary files left"


def test_the_least_recently_used_maps_go_first(tmp_path):
    z, y = _points(200)
    keys = [_key(digest=str(i) * 64) for i in range(4)]
    for i, key in enumerate(keys):
        store_map(key, z[:, :2], y, tmp_path, cap_bytes=10**9)
        os.utime(map_file(key, tmp_path), (1000 + i, 1000 + i))
    load_map(keys[0], tmp_path)  # used now: the newest
    size = map_file(keys[0], tmp_path).stat().st_size
    evict(tmp_path, cap_bytes=2 * size)
    assert [load_map(k, tmp_path) is not None for k in keys] == [True, False, False, True]


def test_an_unwritable_cache_still_gives_the_map(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    z, y = _points()
    assert cached_projection(_key(), z, y, blocker / "maps")[0].shape == (50, 2)


def test_a_map_from_disk_places_new_points_as_well_as_it_can(tmp_path):
    """A PCA read from disk is refitted (exact, instant); a UMAP read from disk keeps no fitted model
    (it would take a pickle): pages fall back to the neighbour average."""
    z, y = _points()
    fresh, pca = cached_projection(_key(), z, y, tmp_path)
    from_disk, refit = cached_projection(_key(), z, y, tmp_path)
    np.testing.assert_allclose(refit.transform(z[:5]), pca.transform(z[:5]), atol=1e-5)
    umap_key = _key(params=ProjectionParams("umap", 2))
    store_map(umap_key, fresh, y, tmp_path)  # as `python -m vae_core map --method umap` would leave it
    coords, reducer = cached_projection(umap_key, z, y, tmp_path)
    assert reducer is None and np.array_equal(coords, fresh)


def test_a_map_of_other_labels_is_not_served(tmp_path):
    """The dataset's files may change under its name (folder:, npz:, another --data-root)."""
    z, y = _points()
    cached_projection(_key(), z, y, tmp_path)
    assert load_map(_key(), tmp_path, y) is not None
    assert load_map(_key(), tmp_path, np.roll(y, 1)) is None
    coords, _ = cached_projection(_key(), z, y, tmp_path)
    assert not coords.flags.writeable, "a map is shared by every session: read-only"


# -- the job that computes a map in the background, for the page's progress bar ----------------------

def test_a_map_job_reports_its_steps_then_gives_the_map(tmp_path, monkeypatch):
    """The job passes the projection's progress on (steps, time left, in words) and ends with the map
    that cached_projection stored."""
    release = threading.Event()

    def slow_projection(z, params, progress=None, threads=None):
        for done in range(0, 101, 25):
            progress(done, 100)
            if done == 50:
                release.wait(10)
        return np.zeros((len(z), 2), np.float32), None

    monkeypatch.setattr(map_cache, "project_fitted", slow_projection)
    z, y = _points()
    job = map_cache.MapJob(_key(params=ProjectionParams("umap", 2)), z, y, tmp_path)
    deadline = time.monotonic() + 10
    while job.steps_done < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not job.finished and job.steps_done == 50 and job.fraction() == 0.5
    assert "UMAP: epoch 50 of 100" in job.status() and "left" in job.status()
    release.set()
    coords, reducer = job.result()
    assert job.finished and coords.shape == (50, 2) and reducer is None
    np.testing.assert_array_equal(load_map(job.key, tmp_path), coords)


def test_a_map_job_hands_on_what_went_wrong(tmp_path, monkeypatch):
    def failing(z, params, progress=None, threads=None):
        raise MemoryError("no room for the neighbour graph")

    monkeypatch.setattr(map_cache, "project_fitted", failing)
    job = map_cache.MapJob(_key(params=ProjectionParams("tsne", 2)), *_points(), tmp_path)
    assert job.wait(10) and isinstance(job.error, MemoryError)
    with pytest.raises(MemoryError, match="neighbour graph"):
        job.result()
    assert "t-SNE" in job.status() and "neighbours" in job.status()  # it never reached an iteration


def test_a_map_job_remembers_what_each_spot_decodes_to(tmp_path, monkeypatch):
    """UMAP's inverse triangulates the whole map: a page rerun must not pay for the same spot again."""
    calls = []

    def counting(points, z, coords, reducer, method):
        calls.append(points.tolist())
        return np.zeros((len(points), z.shape[1]), np.float32), "counted"

    monkeypatch.setattr(map_cache, "unproject", counting)
    job = map_cache.MapJob(_key(), *_points(), tmp_path)
    assert job.unproject([[1.0, 2.0]], "pca")[1] == "counted"
    job.unproject([[1.0, 2.0]], "pca")
    job.unproject([[3.0, 2.0]], "pca")
    assert calls == [[[1.0, 2.0]], [[3.0, 2.0]]]


def test_a_map_waiting_for_another_umap_fit_says_so(tmp_path, monkeypatch):
    from vae_core import projection

    started = threading.Event()

    def waiting(z, params, progress=None, threads=None):
        started.set()
        with projection._NUMBA_LOCK:  # as _umap does: it waits for whoever fits now
            return np.zeros((len(z), 2), np.float32), None

    monkeypatch.setattr(map_cache, "project_fitted", waiting)
    with projection._NUMBA_LOCK:
        monkeypatch.setattr(projection, "_numba_thread", threading.get_ident())  # this thread "fits"
        job = map_cache.MapJob(_key(params=ProjectionParams("umap", 2)), *_points(), tmp_path)
        assert started.wait(10)
        assert "waiting for another UMAP map, or the warm-up" in job.status()
        monkeypatch.setattr(projection, "_numba_thread", None)
    assert job.result()[0].shape == (50, 2)
