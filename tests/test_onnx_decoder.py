"""The decoder exported to ONNX: the browser's live pad draws what PyTorch would, for every model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from apptest_support import SHIPPED
from conftest import tiny_config
from test_external import SHAPE, user_model  # noqa: F401 (a fixture: a user's own model, two kinds)
from vae_core import VAE, onnx_decoder
from vae_core.checkpoint import load_checkpoint
from vae_core.external import OwnModel, load_external
from vae_core.onnx_decoder import (TOLERANCE, DecoderExportError, decoder_onnx, export_decoder, max_difference, one_hot,
                                   run_decoder)


def assert_same_images(model, onnx_bytes: bytes, n: int, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    z = 2.5 * torch.randn(n, model.config.latent_dim, generator=generator)  # out to the prior's edges
    labels = torch.arange(n) % model.config.num_classes if model.config.conditional else None
    with torch.inference_mode():
        expected = model.decode(z, labels).numpy()
    got = run_decoder(onnx_bytes, z.numpy(), None if labels is None else one_hot(labels, model.config.num_classes))
    assert got.shape == expected.shape == (n, *model.config.input_shape)
    assert np.abs(got - expected).max() <= TOLERANCE


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_checkpoint_decodes_the_same_in_onnx_runtime(name, tmp_path):
    model = load_checkpoint(f"checkpoints/{name}.safetensors").model.eval()
    data = decoder_onnx(model, tmp_path)
    for n in (1, 7, 64):  # the batch dimension is dynamic
        assert_same_images(model, data, n, seed=n)


def test_a_users_own_model_decodes_the_same(user_model):  # noqa: F811
    kind, spec, _, weights, outputs, _ = user_model
    model = load_external(OwnModel(spec, str(weights[".pt"]), decoder_outputs=outputs), SHAPE).model
    assert_same_images(model, export_decoder(model), 9)


def test_every_architecture_exports(tiny_model):
    assert_same_images(tiny_model.eval(), export_decoder(tiny_model), 5)


@pytest.fixture(params=["mlp", "conv"])
def conditional_model(request):
    torch.manual_seed(0)
    return VAE(tiny_config(request.param, num_classes=4)).eval()


def test_a_conditional_graph_takes_the_label_as_one_hot_rows(conditional_model):
    data = export_decoder(conditional_model)
    z = np.zeros((2, conditional_model.config.latent_dim), np.float32)
    first, other = run_decoder(data, z, one_hot([0, 1], conditional_model.config.num_classes))
    assert np.abs(first - other).max() > 1e-3, "the label changes the picture"


def test_the_cache_returns_an_earlier_export_without_exporting(tmp_path, monkeypatch):
    model = load_checkpoint("checkpoints/mnist-vae-2d.safetensors").model.eval()
    first = decoder_onnx(model, tmp_path)
    assert len(list(tmp_path.glob("*.onnx"))) == 1
    monkeypatch.setattr(onnx_decoder, "export_decoder", lambda m: pytest.fail("exported again"))
    assert decoder_onnx(model, tmp_path) == first


def test_other_weights_are_exported_anew(tmp_path):
    model = load_checkpoint("checkpoints/mnist-vae-2d.safetensors").model.eval()
    decoder_onnx(model, tmp_path)
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    changed = decoder_onnx(model, tmp_path)
    assert len(list(tmp_path.glob("*.onnx"))) == 2
    assert_same_images(model, changed, 3)


def test_a_corrupt_cache_file_is_replaced(tmp_path):
    model = load_checkpoint("checkpoints/mnist-vae-2d.safetensors").model.eval()
    decoder_onnx(model, tmp_path)
    (cached,) = tmp_path.glob("*.onnx")
    cached.write_bytes(cached.read_bytes()[:100])  # truncated, as by a full disk
    assert_same_images(model, decoder_onnx(model, tmp_path), 3)
    assert cached.stat().st_size > 100


def test_an_unwritable_cache_still_exports(tmp_path):
    model = load_checkpoint("checkpoints/mnist-vae-2d.safetensors").model.eval()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert_same_images(model, decoder_onnx(model, blocked / "onnx"), 3)


def test_a_decoder_that_cannot_be_traced_gives_a_clear_error(user_model):  # noqa: F811
    kind, spec, _, weights, outputs, _ = user_model
    model = load_external(OwnModel(spec, str(weights[".pt"]), decoder_outputs=outputs), SHAPE).model
    # A branch on the values of z: PyTorch takes it per call; a traced graph would freeze one side
    original = model.inner.decode
    model.inner.decode = lambda z: original(z) if bool(z.sum() > 0) else 1 - original(z)
    with pytest.raises(DecoderExportError, match="could not be exported to ONNX"):
        export_decoder(model)


def test_a_graph_of_other_weights_is_caught():
    plain = load_checkpoint("checkpoints/mnist-vae.safetensors").model.eval()
    other = load_checkpoint("checkpoints/mnist-vae-no3.safetensors").model.eval()
    assert max_difference(plain, export_decoder(plain)) <= TOLERANCE
    assert max_difference(plain, export_decoder(other)) > 0.01


def test_label_weights_decode_as_integer_labels(conditional_model):
    z = torch.randn(4, conditional_model.config.latent_dim)
    labels = torch.tensor([0, 1, 2, 3])
    with torch.inference_mode():
        assert torch.equal(conditional_model.decode(z, labels), conditional_model.decode(z, torch.eye(4)[labels]))
    with pytest.raises(ValueError, match="label weights must have shape"):
        conditional_model.decode(z, torch.eye(3))
