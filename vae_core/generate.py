"""Generation: attribute vectors, latent arithmetic operands, style transfer, class × sample grids
and synthetic data sets for augmentation. Pure torch/numpy (no Streamlit), so the tests pin it down.

Attribute vectors (White, 2016; Larsen et al., 2016) are differences of mean codes: the mean μ of the
points with an attribute minus the mean μ of those without it. From labels, "class 3 − class 8";
from ground-truth factors (the shapes data set), "bigger" = scale above the median − below it.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np
import torch

from .datasets import ImageDataset
from .images import ImageError, load_image, make_grid, png_bytes, to_uint8, upscale_factor
from .latent import attribute_vector, class_means
from .losses import gaussian_kl, log_likelihood

# factor name -> (attribute name, what "with the attribute" means). Rotation is an angle, so it
# is measured as the circular distance from upright (0): "rotated" = far from upright vs near it.
FACTOR_ATTRIBUTES = {
    "scale": ("bigger", "scale above the median vs below it"),
    "x": ("moved right", "x position above the median vs below it"),
    "y": ("moved up", "y position above the median vs below it"),
    "rotation": ("rotated", "rotated far from upright vs near upright (circular distance from 0)"),
}
UNLABELLED = -1  # the label of an unconditional model's samples in an exported data set


@dataclass
class Attribute:
    """A direction in latent space, with the two group means it is the difference of."""

    name: str
    vector: torch.Tensor  # (D,) = with_mean - without_mean
    with_mean: torch.Tensor  # (D,) mean code of the points with the attribute
    without_mean: torch.Tensor  # (D,) ... and without it
    description: str
    source: str  # "labels" or "factors"
    labels: tuple[int | None, int | None] = (None, None)  # the classes (with, without), for labels
    example: int | None = None  # a typical point without the attribute (nearest its group mean), to show it on


def _typical(z: torch.Tensor, members: torch.Tensor, centre: torch.Tensor) -> int:
    """Index of the member whose code lies nearest `centre`."""
    index = torch.nonzero(members).flatten()
    return int(index[(z[index] - centre).norm(dim=1).argmin()])


def label_attribute(z, labels, a: int, b: int, label_names=None) -> Attribute:
    """Mean code of class a minus mean code of class b: 'what makes an a different from a b'."""
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    names = label_names or [str(i) for i in range(int(labels.max()) + 1)]
    if a == b:
        raise ValueError("an attribute vector needs two different classes")
    means = class_means(z, labels, max(len(names), a + 1, b + 1))
    if torch.isnan(means[a]).any() or torch.isnan(means[b]).any():
        raise ValueError(f"no sample of class {names[a] if torch.isnan(means[a]).any() else names[b]}")
    return Attribute(f"class {names[a]} − class {names[b]}", means[a] - means[b], means[a], means[b],
                     f"mean code of class {names[a]} minus mean code of class {names[b]}", "labels", (a, b),
                     _typical(z, labels == b, means[b]))


def factor_attribute(z, factors, factor_names, factor: str) -> Attribute:
    """'bigger', 'moved right', 'moved up' or 'rotated' from a ground-truth factor, split at its median."""
    if factor not in FACTOR_ATTRIBUTES:
        raise ValueError(f"no attribute is defined for the factor {factor!r}; choose from {list(FACTOR_ATTRIBUTES)}")
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
    values = torch.as_tensor(np.asarray(factors), dtype=torch.float32)[:, list(factor_names).index(factor)]
    if factor == "rotation":
        values = torch.remainder(values + torch.pi, 2 * torch.pi).sub(torch.pi).abs()  # distance from upright
    median = values.median()
    above, below = values > median, values < median
    if not above.any() or not below.any():  # many ties at the median: split at it instead
        above, below = values >= median, values < median
    if not above.any() or not below.any():
        raise ValueError(f"the factor {factor!r} does not vary in these data")
    name, description = FACTOR_ATTRIBUTES[factor]
    with_mean, without_mean = z[above].mean(0), z[below].mean(0)
    vector = attribute_vector(z[above | below], above[above | below])
    return Attribute(name, vector, with_mean, without_mean, description, "factors",
                     example=_typical(z, below, without_mean))


def attribute_vectors(z, labels, label_names, factors=None, factor_names=None) -> dict[str, Attribute]:
    """Every attribute vector a data set offers, by name: the factor ones first (where the data set
    has ground-truth factors), then 'class a − class b' for every ordered pair of present classes."""
    out: dict[str, Attribute] = {}
    if factors is not None and factor_names:
        for factor in FACTOR_ATTRIBUTES:
            if factor in factor_names:
                try:
                    attribute = factor_attribute(z, factors, factor_names, factor)
                except ValueError:
                    continue
                out[attribute.name] = attribute
    present = sorted(set(np.asarray(labels).tolist()))
    for a in present:
        for b in present:
            if a != b:
                attribute = label_attribute(z, labels, a, b, label_names)
                out[attribute.name] = attribute
    return out


# -- conditional models ------------------------------------------------------------------------
def _check_conditional(model, what: str) -> None:
    if not model.config.conditional:
        raise ValueError(f"{what} needs a conditional model (a CVAE): this one does not take a class label")


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if x.dim() == 3 else x


@torch.inference_mode()
def infer_label(model, x: torch.Tensor) -> int:
    """The class under which a CVAE explains one image best: argmax_y of its ELBO (with z = μ for the
    reconstruction term). A CVAE doubles as a classifier; it is how an unlabelled upload is read."""
    _check_conditional(model, "reading an image's class")
    x = _as_batch(x)[:1]
    k = model.config.num_classes
    xs, ys = x.expand(k, *x.shape[1:]), torch.arange(k)
    mu, logvar = model.encode(xs, ys)
    recon = log_likelihood(xs, model.decoder_output(mu, ys), model.config.likelihood, model.config.obs_sigma)
    elbo = recon - gaussian_kl(mu, logvar).sum(1)
    return int(elbo.argmax())


@torch.inference_mode()
def style_code(model, x: torch.Tensor, y: int | None = None) -> tuple[torch.Tensor, int | None]:
    """(μ of x, the label it was encoded with): a CVAE's encoder reads the label too; with y=None it
    uses infer_label. An unconditional model's label is None."""
    x = _as_batch(x)[:1]
    if model.config.conditional and y is None:
        y = infer_label(model, x)
    labels = None if not model.config.conditional else torch.tensor([int(y)])
    return model.embed(x, labels)[0], (None if labels is None else int(y))


@torch.inference_mode()
def style_transfer(model, x: torch.Tensor, y: int | None = None) -> torch.Tensor:
    """Encode x (with its label y, or the inferred one), keep z = μ, and decode it with every class:
    (num_classes, C, H, W), row k = decode(z, k). The same style, drawn as each class."""
    _check_conditional(model, "style transfer")
    z, _ = style_code(model, x, y)
    k = model.config.num_classes
    return model.decode(z.unsqueeze(0).expand(k, -1), torch.arange(k))


def prior_codes(n: int, latent_dim: int, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
    """n draws from N(0, temperature² I), the same for the same seed on every machine."""
    generator = torch.Generator().manual_seed(int(seed))
    return temperature * torch.randn(n, latent_dim, generator=generator)


@torch.inference_mode()
def class_grid(model, classes, n: int, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
    """(len(classes) * n, C, H, W), row-major: one row per class, one column per prior draw. Column j
    uses the same z in every row, so a column shows one style written as each class."""
    _check_conditional(model, "a class × sample grid")
    classes = [int(c) for c in classes]
    if not classes or n < 1:
        raise ValueError("a grid needs at least one class and one sample")
    z = prior_codes(n, model.config.latent_dim, temperature, seed)
    labels = torch.tensor(classes).repeat_interleave(n)
    return model.decode(z.repeat(len(classes), 1), labels)


# -- synthetic data sets for augmentation -----------------------------------------------------
@dataclass
class SyntheticSet:
    images: np.ndarray  # uint8 (N, H, W) for one channel, (N, H, W, C) otherwise
    labels: np.ndarray  # int64 (N,): the class asked for, or UNLABELLED (-1) for an unconditional model
    label_names: list[str]


@torch.inference_mode()
def synthesize(model, n: int, label_names=None, temperature: float = 1.0, seed: int = 0,
               classes=None, batch_size: int = 1024) -> SyntheticSet:
    """Decoded prior samples as a data set, deterministic from the seed.

    A conditional model gives n per class (classes, default all), ordered by class; an unconditional
    one gives n samples labelled UNLABELLED (-1): it cannot be asked for a class, and a made-up label
    would poison a training set. Images are the decoder's mean E[x|z], rounded to uint8."""
    if n < 1:
        raise ValueError("ask for at least one sample")
    cfg = model.config
    names = list(label_names) if label_names else [str(i) for i in range(cfg.num_classes)]
    if cfg.conditional:
        classes = list(range(cfg.num_classes)) if classes is None else [int(c) for c in classes]
        labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(n)
    else:
        labels = torch.full((n,), UNLABELLED, dtype=torch.long)
    z = prior_codes(len(labels), cfg.latent_dim, temperature, seed)
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(z), batch_size):
        zb = z[start:start + batch_size].to(device)
        yb = labels[start:start + batch_size].to(device) if cfg.conditional else None
        chunks.append(to_uint8(model.decode(zb, yb).cpu()))
    images = np.concatenate(chunks)
    if images.shape[-1] == 1:
        images = images[..., 0]
    return SyntheticSet(np.ascontiguousarray(images), labels.numpy().astype(np.int64), names)


def npz_bytes(data: SyntheticSet) -> bytes:
    """An .npz with 'images' (uint8), 'labels' (int64) and 'label_names' (unicode): plain arrays that
    np.load(..., allow_pickle=False) reads, and that `--dataset npz:FILE` can train on (conditional sets)."""
    arrays = {"images": data.images, "labels": data.labels, "label_names": np.asarray(data.label_names, dtype=str)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:  # np.savez's layout, fixed timestamps
        for key, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(_entry(f"{key}.npy"), member.getvalue())
    return buf.getvalue()


def _entry(name: str) -> zipfile.ZipInfo:
    """A zip member with a fixed date, so the same data give the same bytes."""
    info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _folder_name(label: int, label_names: list[str]) -> str:
    if label == UNLABELLED:
        return "unlabelled"
    name = label_names[label] if label < len(label_names) else str(label)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or str(label)


def png_zip_bytes(data: SyntheticSet) -> bytes:
    """A zip of PNGs, one folder per class (<class>/<index>.png, 'unlabelled/' for an unconditional
    model): the ImageFolder layout that `--dataset folder:DIR` reads. Fixed timestamps, so the same
    seed gives the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for i, (image, label) in enumerate(zip(data.images, data.labels)):
            name = f"{_folder_name(int(label), data.label_names)}/{i:06d}.png"
            archive.writestr(_entry(name), png_bytes(image if image.ndim == 3 else image[..., None]))
    return buf.getvalue()


# -- uploads ------------------------------------------------------------------------------------
def image_from_upload(data: bytes, shape) -> tuple[torch.Tensor | None, str | None]:
    """An uploaded picture as a (1, C, H, W) tensor for a model of `shape`, or (None, why not).

    Never raises: a file a person chose is input to check, not a reason for a traceback."""
    try:
        return load_image(data, tuple(shape)), None
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 — a malformed file can trip any decoder plugin
        return None, f"the picture could not be read ({type(exc).__name__}: {exc})"


@torch.inference_mode()
def preview_grid(model, data: ImageDataset, n: int = 10, seed: int = 0) -> bytes:
    """PNG: n test images, their reconstructions, and 2n decoded prior draws (fixed noise, so from
    epoch to epoch only the model changes). A conditional model draws class 0, 1, 2 … per column."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        cfg = model.config
        x = data.x_test[:n].to(device)
        y = data.y_test[:n].to(device) if cfg.conditional else None
        recon = model.reconstruct(x, y)
        generator = torch.Generator().manual_seed(seed)
        labels = (torch.arange(2 * n) % cfg.num_classes).to(device) if cfg.conditional else None
        samples = model.sample(2 * n, labels, generator=generator)
        images = torch.cat([x, recon, samples]).float().cpu()
        return png_bytes(make_grid(images, n), upscale_factor(cfg.input_shape[1], 48))
    finally:
        model.train(was_training)
