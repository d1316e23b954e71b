"""The few-labels harness: seeded, paired, and it tells good features from bad ones."""
from __future__ import annotations

import numpy as np
import pytest

from vae_core.few_labels import REPRESENTATIONS, few_labels, labelled_subset


def toy(seed: int = 0, n_train: int = 300, n_test: int = 150, classes: int = 3, pixels: int = 64):
    """Images whose pixels are pure noise, and codes that hold the class: the codes must win."""
    rng = np.random.default_rng(seed)
    y_train, y_test = rng.integers(0, classes, n_train), rng.integers(0, classes, n_test)
    centres = 4 * rng.standard_normal((classes, 2))
    code = lambda y: centres[y] + 0.3 * rng.standard_normal((len(y), 2))  # noqa: E731
    x = lambda n: rng.random((n, 1, 8, pixels // 8)).astype(np.float32)  # noqa: E731
    return code(y_train), code(y_test), x(n_train), x(n_test), y_train, y_test


def test_labelled_subset_takes_that_many_of_every_class():
    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    chosen = labelled_subset(y, 5, np.random.default_rng(0))
    assert len(set(chosen.tolist())) == len(chosen)
    assert np.bincount(y[chosen]).tolist() == [5, 3, 5], "all of a class that has fewer"


def test_the_same_seed_gives_the_same_numbers_and_another_seed_other_ones():
    data = toy()
    a = few_labels(*data, labels_per_class=(1, 5), draws=3, seed=0)
    b = few_labels(*data, labels_per_class=(1, 5), draws=3, seed=0)
    c = few_labels(*data, labels_per_class=(1, 5), draws=3, seed=1)
    assert all(np.array_equal(a.accuracy[k], b.accuracy[k]) for k in REPRESENTATIONS)
    assert any(not np.array_equal(a.accuracy[k], c.accuracy[k]) for k in REPRESENTATIONS)
    assert a.accuracy["pixels"].shape == (2, 3) and a.dims == {"latent μ": 2, "PCA": 2, "pixels": 64}


def test_features_that_hold_the_class_beat_noise_and_more_labels_help():
    result = few_labels(*toy(), labels_per_class=(1, 20), draws=4, seed=0)
    assert result.best(0) == result.best(1) == "latent μ"
    assert result.mean("latent μ")[1] > 0.9 and result.mean("pixels")[1] < 0.6  # 3 classes: chance is 1/3
    assert result.mean("latent μ")[1] >= result.mean("latent μ")[0]
    assert np.all(result.std("latent μ") >= 0)


def test_pixels_win_when_the_codes_hold_nothing():
    z_train, z_test, x_train, x_test, y_train, y_test = toy()
    rng = np.random.default_rng(5)
    x_train[:, 0, 0, 0], x_test[:, 0, 0, 0] = y_train, y_test  # one pixel holds the class
    z_train, z_test = rng.standard_normal(z_train.shape), rng.standard_normal(z_test.shape)
    result = few_labels(z_train, z_test, x_train, x_test, y_train, y_test, labels_per_class=(20,), draws=2)
    assert result.best(0) != "latent μ"
    with pytest.raises(ValueError, match="at least 1"):
        few_labels(z_train, z_test, x_train, x_test, y_train, y_test, labels_per_class=(0,), draws=1)


def test_a_big_split_fits_its_statistics_on_a_seeded_subset(monkeypatch):
    import vae_core.few_labels as few

    monkeypatch.setattr(few, "UNLABELLED_FIT", 100)  # toy() has 300 training images
    a = few_labels(*toy(), labels_per_class=(20,), draws=2, seed=0)
    b = few_labels(*toy(), labels_per_class=(20,), draws=2, seed=0)
    assert all(np.array_equal(a.accuracy[k], b.accuracy[k]) for k in REPRESENTATIONS)
    assert a.best(0) == "latent μ" and a.mean("latent μ")[0] > 0.9
