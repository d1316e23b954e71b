"""vae_core.generate on the shipped checkpoints: attribute vectors that do what their names say, style
transfer that keeps z, class-mean analogies that change the class, exports that load back, uploads
that fail with a message."""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from vae_core import VAE
from vae_core.checkpoint import load_checkpoint
from vae_core.datasets import load_dataset
from vae_core.generate import (UNLABELLED, attribute_vectors, class_grid, factor_attribute, image_from_upload,
                               infer_label, label_attribute, npz_bytes, png_zip_bytes, style_code, style_transfer,
                               synthesize)
from vae_core.images import ImageError, load_image
from vae_core.latent import arithmetic, class_means
from vae_core.metrics import encode_all

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist-5k")


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes")


def shipped(name: str) -> VAE:
    return load_checkpoint(CHECKPOINTS / f"{name}.safetensors").model.eval()


@pytest.fixture(scope="module")
def cvae():
    return shipped("mnist-cvae")


def _knn_judge(data):
    """3-nearest-neighbours on the real training digits' pixels: an independent judge of which digit
    a decoded image shows (98.6% on the 8x8 digits test split, 94% on mnist-5k's)."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(3).fit(data.x_train.flatten(1).numpy(), data.y_train.numpy())
    return lambda images: knn.predict(np.asarray(images, dtype=np.float32).reshape(len(images), -1))


@pytest.fixture(scope="module")
def pixel_classifier(digits):
    return _knn_judge(digits)


@pytest.fixture(scope="module")
def mnist_classifier(mnist):
    return _knn_judge(mnist)


# -- style transfer --------------------------------------------------------------------------------
def test_style_transfer_decodes_one_z_with_every_label(cvae, mnist):
    x, y = mnist.x_test[:1], int(mnist.y_test[0])
    strip = style_transfer(cvae, x, y)
    assert strip.shape == (10, 1, 28, 28)
    with torch.inference_mode():
        z = cvae.embed(x, torch.tensor([y]))  # the encoder reads the label too
        for k in range(10):
            assert torch.allclose(strip[k], cvae.decode(z, torch.tensor([k]))[0], atol=1e-6), k
    flat = strip.flatten(1)
    distances = torch.cdist(flat, flat) + torch.eye(10) * 1e9
    assert distances.min() > 0.5, "every class label gives a visibly different image"


def test_style_transfer_writes_each_class(cvae, mnist, mnist_classifier):
    """The strip shows the digits 0..9 in that order, not ten copies of the input."""
    hits = sum((mnist_classifier(style_transfer(cvae, mnist.x_test[i], int(mnist.y_test[i]))) == np.arange(10)).sum()
               for i in range(10))
    assert hits / 100 >= 0.8


def test_an_unlabelled_image_is_read_by_its_best_elbo(cvae, mnist):
    accuracy = np.mean([infer_label(cvae, mnist.x_test[i]) == int(mnist.y_test[i]) for i in range(150)])
    assert accuracy >= 0.9
    x = mnist.x_test[3]
    z, used = style_code(cvae, x)  # no label given: the inferred one is used, and said
    assert used == infer_label(cvae, x)
    assert torch.equal(style_transfer(cvae, x), style_transfer(cvae, x, used))


def test_style_transfer_needs_a_conditional_model(digits):
    with pytest.raises(ValueError, match="conditional"):
        style_transfer(shipped("digits-vae"), digits.x_test[:1])


def test_class_grid_rows_are_classes_and_columns_share_z(cvae, mnist_classifier):
    grid = class_grid(cvae, [2, 7], n=5, temperature=0.8, seed=3)
    assert grid.shape == (10, 1, 28, 28)
    assert torch.equal(grid, class_grid(cvae, [2, 7], n=5, temperature=0.8, seed=3)), "same seed, same grid"
    assert not torch.equal(grid, class_grid(cvae, [2, 7], n=5, temperature=0.8, seed=4))
    assert not torch.equal(grid, class_grid(cvae, [2, 7], n=5, temperature=1.5, seed=3))
    assert (mnist_classifier(grid) == np.repeat([2, 7], 5)).mean() >= 0.8
    # Column j of row "7" is row "2"'s z decoded as a 7: the same as a one-class grid with that seed.
    assert torch.allclose(grid[5:], class_grid(cvae, [7], n=5, temperature=0.8, seed=3), atol=1e-6)


# -- attribute vectors and arithmetic -------------------------------------------------------------------
@pytest.fixture(scope="module", params=["shapes-betavae", "shapes-vae"])
def shapes_model(request, shapes):
    model = shipped(request.param)
    mu, _ = encode_all(model, shapes.x_test)
    return model, mu, attribute_vectors(mu, shapes.y_test, shapes.label_names, shapes.factors_test,
                                        shapes.factor_names)


def _moments(images: torch.Tensor):
    """Mass, and centre of mass (column, row) of each (N, 1, H, W) image."""
    mass = images.sum((1, 2, 3))
    rows = torch.arange(images.shape[2], dtype=torch.float32).view(1, 1, -1, 1)
    cols = torch.arange(images.shape[3], dtype=torch.float32).view(1, 1, 1, -1)
    return mass, (images * cols).sum((1, 2, 3)) / mass, (images * rows).sum((1, 2, 3)) / mass


def test_shapes_offer_the_factor_attributes_then_the_class_pairs(shapes_model, shapes):
    _, _, attributes = shapes_model
    names = list(attributes)
    assert names[:4] == ["bigger", "moved right", "moved up", "rotated"]
    assert len(names) == 4 + 3 * 2 and "class heart − class square" in names
    assert all(a.source == "factors" for a in list(attributes.values())[:4])


def test_bigger_moved_right_and_moved_up_do_what_they_say(shapes_model, shapes):
    """Added to the codes of the smallest shapes, 'bigger' grows them, 'moved right' and 'moved up' move them."""
    model, mu, attributes = shapes_model
    small = torch.nonzero(shapes.factors_test[:, 1] == shapes.factors_test[:, 1].min()).flatten()
    assert len(small) > 100
    with torch.inference_mode():
        mass, x, y = _moments(model.decode(mu[small]))
        big_mass, _, _ = _moments(model.decode(mu[small] + attributes["bigger"].vector))
        _, right_x, _ = _moments(model.decode(mu[small] + attributes["moved right"].vector))
        _, _, up_y = _moments(model.decode(mu[small] + attributes["moved up"].vector))
    assert (big_mass > mass).float().mean() >= 0.95 and (big_mass / mass).mean() > 1.3
    assert (right_x > x).float().mean() >= 0.65 and (right_x - x).mean() > 1.0  # pixels
    assert (up_y < y).float().mean() >= 0.8 and (y - up_y).mean() > 1.0  # rows count downwards
    # The example shown beside an attribute is a typical shape without it: a small one.
    assert shapes.factors_test[attributes["bigger"].example, 1] < shapes.factors_test[:, 1].median()


def test_rotation_is_measured_as_the_distance_from_upright():
    angles = torch.linspace(0, 2 * torch.pi, 9)[:-1]  # 0, π/4, ..., 7π/4
    distance = torch.remainder(angles + torch.pi, 2 * torch.pi).sub(torch.pi).abs()
    z = torch.stack([distance, torch.cos(angles)], 1)
    attribute = factor_attribute(z, torch.stack([angles] * 5, 1), ["shape", "scale", "rotation", "x", "y"],
                                 "rotation")
    # far from upright: 3π/4, π, 5π/4; near: 0, π/4, 7π/4 (7π/4 is close to 0, not "most rotated")
    assert attribute.vector[0].item() == pytest.approx(2 * np.pi / 3, abs=1e-5)
    assert attribute.vector[1].item() < -1.0


def test_factor_attributes_need_a_factor_that_varies():
    z = torch.randn(10, 2)
    with pytest.raises(ValueError, match="does not vary"):
        factor_attribute(z, torch.ones(10, 5), ["shape", "scale", "rotation", "x", "y"], "scale")
    with pytest.raises(ValueError, match="no attribute"):
        factor_attribute(z, torch.ones(10, 5), ["shape", "scale", "rotation", "x", "y"], "shape")


def test_label_attribute_is_the_difference_of_class_means():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
    attribute = label_attribute(z, torch.tensor([0, 0, 1, 1]), 1, 0, ["cat", "dog"])
    assert attribute.name == "class dog − class cat"
    assert attribute.vector.tolist() == [-1.0, 5.0]
    assert attribute.labels == (1, 0) and attribute.example in (0, 1)
    digits_attributes = attribute_vectors(torch.randn(30, 2), torch.arange(30) % 10, [str(i) for i in range(10)])
    assert len(digits_attributes) == 90, "no factors: every ordered pair of classes"
    with pytest.raises(ValueError):
        label_attribute(z, torch.tensor([0, 0, 1, 1]), 1, 1)


def test_class_mean_arithmetic_turns_a_digit_into_another(digits, pixel_classifier):
    """c − mean(class of c) + mean(class a): a plain VAE's analogy mostly yields an a."""
    model = shipped("digits-vae")
    mu, _ = encode_all(model, digits.x_test)
    means = class_means(mu, digits.y_test, 10)
    codes, originals, targets = [], [], []
    for b in range(10):
        c = mu[digits.y_test == b][:4]
        for a in range(10):
            if a != b:
                codes.append(arithmetic(means[a], means[b], c))
                originals.append(c)
                targets += [a] * len(c)
    with torch.inference_mode():
        moved = pixel_classifier(model.decode(torch.cat(codes)))
        unmoved = pixel_classifier(model.decode(torch.cat(originals)))
    targets = np.asarray(targets)
    assert (moved == targets).mean() >= 0.6
    assert (unmoved == targets).mean() < 0.05, "without the vector, c is still its own digit"


# -- augmentation export -------------------------------------------------------------------------------
def _load_npz(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def test_npz_export_has_n_samples_per_class_with_their_labels(cvae, mnist, mnist_classifier, tmp_path):
    data = npz_bytes(synthesize(cvae, 7, mnist.label_names, temperature=1.0, seed=5))
    arrays = _load_npz(data)
    assert arrays["images"].shape == (70, 28, 28) and arrays["images"].dtype == np.uint8
    assert arrays["labels"].dtype == np.int64 and arrays["labels"].tolist() == np.repeat(np.arange(10), 7).tolist()
    assert arrays["label_names"].tolist() == [str(i) for i in range(10)]
    assert arrays["images"].max() > 200, "uint8 0..255, not 0..1"
    # the judge reads 94% of real mnist-5k test digits right (98.6% of the 8x8 ones): 80% is near its limit
    assert (mnist_classifier(arrays["images"] / 255.0) == arrays["labels"]).mean() >= 0.8, "each image shows its label"
    assert npz_bytes(synthesize(cvae, 7, mnist.label_names, temperature=1.0, seed=5)) == data, "same seed, same file"
    assert not np.array_equal(_load_npz(npz_bytes(synthesize(cvae, 7, mnist.label_names, seed=6)))["images"],
                              arrays["images"])
    path = tmp_path / "samples.npz"
    path.write_bytes(data)
    again = load_dataset(f"npz:{path}")  # what `--dataset npz:FILE` trains on
    assert len(again.x_train) + len(again.x_test) == 70 and again.label_names == mnist.label_names


def test_unconditional_export_is_n_unlabelled_samples(shapes):
    arrays = _load_npz(npz_bytes(synthesize(shipped("shapes-vae"), 12, shapes.label_names, seed=1)))
    assert arrays["images"].shape == (12, 64, 64) and arrays["images"].dtype == np.uint8
    assert arrays["labels"].tolist() == [UNLABELLED] * 12
    assert arrays["label_names"].tolist() == ["square", "ellipse", "heart"]


def test_colour_models_export_channels_last():
    torch.manual_seed(0)
    model = VAE(tiny_config("conv", num_classes=2, input_shape=(3, 8, 8))).eval()
    arrays = _load_npz(npz_bytes(synthesize(model, 3, ["a", "b"], seed=0)))
    assert arrays["images"].shape == (6, 8, 8, 3)
    names = zipfile.ZipFile(io.BytesIO(png_zip_bytes(synthesize(model, 3, ["a", "b"], seed=0)))).namelist()
    assert Image.open(io.BytesIO(zipfile.ZipFile(io.BytesIO(png_zip_bytes(synthesize(model, 1, ["a", "b"]))))
                                 .read("a/000000.png"))).mode == "RGB"
    assert len(names) == 6


def test_zip_export_has_one_png_per_sample_in_a_folder_per_class(cvae, mnist, tmp_path):
    data = png_zip_bytes(synthesize(cvae, 3, mnist.label_names, seed=2))
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    assert len(names) == 30 and all(n.endswith(".png") for n in names)
    assert sorted({n.split("/")[0] for n in names}) == [str(i) for i in range(10)]
    for name in names:
        image = Image.open(io.BytesIO(archive.read(name)))
        assert image.size == (28, 28) and image.mode == "L"
    expected = synthesize(cvae, 3, mnist.label_names, seed=2).images
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(archive.read("4/000013.png")))), expected[13])
    assert png_zip_bytes(synthesize(cvae, 3, mnist.label_names, seed=2)) == data, "same seed, same file"
    archive.extractall(tmp_path / "set")
    assert len(load_dataset(f"folder:{tmp_path / 'set'}", image_size=28).label_names) == 10


def test_unconditional_zip_goes_to_an_unlabelled_folder():
    names = zipfile.ZipFile(io.BytesIO(png_zip_bytes(synthesize(shipped("mnist-vae-2d"), 4, seed=0)))).namelist()
    assert names == [f"unlabelled/{i:06d}.png" for i in range(4)]


# -- uploads -------------------------------------------------------------------------------------------
def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header(width: int, height: int) -> bytes:
    """A well-formed PNG that claims a size, with (almost) no pixel data behind it: what a hostile
    upload looks like, a few dozen bytes that would decode to gigabytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + _chunk(b"IEND", b""))


def _png(array: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("data, message", [
    (b"this is not a picture at all", "not an image"),
    (b"", "empty"),
    (_png_header(6000, 5000), "too large"),  # 30 Mpx: past the app's limit, under Pillow's own
    (_png_header(100_000, 100_000), "too large"),  # past Pillow's decompression-bomb limit too
    (_png_header(64, 64), "could not be decoded"),  # the pixels are missing
])
def test_unusable_uploads_give_a_message_not_an_exception(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data, (1, 8, 8))
    tensor, error = image_from_upload(data, (1, 8, 8))
    assert tensor is None and message in error


def test_a_real_picture_becomes_a_model_input(mnist, cvae):
    """A dark digit on light paper, 112×112 with transparency: inverted, flattened, shrunk to 28×28, and
    read as the digit it shows."""
    digit = (mnist.x_test[0, 0].numpy() * 255).astype(np.uint8)
    paper = 255 - np.kron(digit, np.ones((4, 4), dtype=np.uint8))
    rgba = np.dstack([paper] * 3 + [np.full_like(paper, 255)])
    tensor, error = image_from_upload(_png(rgba, "RGBA"), (1, 28, 28))
    assert error is None and tensor.shape == (1, 1, 28, 28)
    assert np.corrcoef(tensor.flatten(), mnist.x_test[0].flatten())[0, 1] > 0.95  # shrinking blurs a little
    assert infer_label(cvae, tensor) == int(mnist.y_test[0])
