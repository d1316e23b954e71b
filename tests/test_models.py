"""The VAE models: every architecture x image shape x (un)conditional, config validation, learning."""
from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import tiny_config
from vae_core import VAE, VAEConfig

# the image shapes the datasets give, and an odd one that no stride-2 stack divides evenly
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 64, 64), (1, 27, 31)]
NUM_CLASSES = 3


def _model(architecture, shape, conditional, **overrides):
    torch.manual_seed(0)
    return VAE(tiny_config(architecture, NUM_CLASSES if conditional else 0, input_shape=shape, **overrides)).eval()


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "cond"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_every_method_gives_the_right_shapes(architecture, shape, conditional):
    model = _model(architecture, shape, conditional)
    n, d = 5, model.config.latent_dim
    x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 1, 0]) if conditional else None
    with torch.no_grad():
        mu, logvar = model.encode(x, y)
        assert mu.shape == logvar.shape == (n, d)
        assert torch.equal(model.embed(x, y), mu)
        z = torch.randn(n, d) * 3
        images = model.decode(z, y)
        assert images.shape == (n, *shape)
        assert images.min() >= 0 and images.max() <= 1
        assert model.decoder_output(z, y).shape == (n, *shape)
        assert model.reconstruct(x, y).shape == (n, *shape)
        out, mu2, logvar2 = model(x, y)
        assert out.shape == (n, *shape) and torch.equal(mu2, mu) and torch.equal(logvar2, logvar)
        samples = model.sample(4, y=1 if conditional else None)
        assert samples.shape == (4, *shape)
        assert samples.min() >= 0 and samples.max() <= 1
        bound = model.iwae_bound(x, y, k=3)
        assert bound.shape == (n,) and torch.isfinite(bound).all()
        parts = model.loss(x, y)
        assert parts["loss"].dim() == 0 and torch.isfinite(parts["loss"])
        assert parts["kl_per_dim"].shape == (d,)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "cond"])
def test_sample_at_temperature_zero_decodes_the_origin(architecture, conditional):
    model = _model(architecture, (1, 27, 31), conditional)
    y = 2 if conditional else None
    with torch.no_grad():
        samples = model.sample(6, y=y, temperature=0.0)
        labels = torch.full((1,), 2) if conditional else None
        origin = model.decode(torch.zeros(1, model.config.latent_dim), labels)
        hot = model.sample(6, y=y, temperature=1.0)
    # all n identical (up to the last bit a batched matmul may differ in from row to row)
    assert torch.allclose(samples, samples[:1].expand_as(samples), rtol=0, atol=1e-6)
    assert torch.allclose(samples[0], origin[0], atol=1e-6)
    assert not torch.allclose(hot[0], hot[1])  # at temperature 1 the draws differ


def test_sample_is_reproducible_with_a_generator(tiny_model):
    y = 1 if tiny_model.config.conditional else None
    with torch.no_grad():
        first = tiny_model.sample(3, y=y, generator=torch.Generator().manual_seed(42))
        again = tiny_model.sample(3, y=y, generator=torch.Generator().manual_seed(42))
        other = tiny_model.sample(3, y=y, generator=torch.Generator().manual_seed(43))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_conditional_sample_takes_one_label_or_one_per_image(architecture):
    model = _model(architecture, (1, 8, 8), conditional=True)
    with torch.no_grad():
        per_image = model.sample(4, y=[0, 1, 2, 0], temperature=0.0)
        single = model.sample(4, y=2, temperature=0.0)
    assert torch.allclose(single, single[:1].expand_as(single), rtol=0, atol=1e-6)
    assert torch.allclose(per_image[2], single[0], atol=1e-6)
    assert not torch.allclose(per_image[0], per_image[1])  # the label changes the image


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_conditional_model_rejects_missing_or_bad_labels(architecture):
    model = _model(architecture, (1, 8, 8), conditional=True)
    x, z = torch.rand(2, 1, 8, 8), torch.zeros(2, model.config.latent_dim)
    for call in (lambda: model.encode(x), lambda: model.decode(z), lambda: model.sample(2),
                 lambda: model.loss(x), lambda: model.iwae_bound(x, k=2), lambda: model.reconstruct(x)):
        with pytest.raises(ValueError, match="needs a label"):
            call()
    for bad in (NUM_CLASSES, -1, [0, NUM_CLASSES + 5]):
        with pytest.raises(ValueError, match="labels must lie in"):
            model.encode(x, bad)
        with pytest.raises(ValueError, match="labels must lie in"):
            model.decode(z, bad)
    with pytest.raises(ValueError, match="labels must lie in"):
        model.sample(2, y=NUM_CLASSES)


def test_unconditional_model_ignores_labels():
    model = _model("mlp", (1, 8, 8), conditional=False)
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.embed(x, torch.tensor([0, 1, 2])), model.embed(x))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40), st.integers(1, 4))
def test_conv_decoder_returns_the_exact_input_size(channels, height, width, layers):
    """The decoder's output_padding recovers every size, odd or even, through 1..4 stride-2 layers."""
    config = VAEConfig(input_shape=(channels, height, width), latent_dim=2, architecture="conv",
                       hidden_sizes=(2,) * layers)
    model = VAE(config)
    with torch.no_grad():
        out = model(torch.rand(2, channels, height, width), eps=torch.zeros(2, 2))[0]
    assert out.shape == (2, channels, height, width)


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("input_shape", (1, 8)),
    ("input_shape", (1, 0, 8)),
    ("latent_dim", 0),
    ("latent_dim", -3),
    ("architecture", "transformer"),
    ("hidden_sizes", ()),
    ("hidden_sizes", (16, 0)),
    ("likelihood", "poisson"),
    ("beta", -0.5),
    ("beta", math.nan),
    ("beta", math.inf),
    ("num_classes", 1),
    ("num_classes", -2),
    ("obs_sigma", 0.0),
    ("obs_sigma", -0.1),
    ("obs_sigma", math.nan),
    ("obs_sigma", math.inf),
])
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field) as info:
        VAEConfig(**{field: value})
    assert "invalid VAE config" in str(info.value)


def test_config_reports_every_problem_at_once():
    with pytest.raises(ValueError) as info:
        VAEConfig(latent_dim=0, likelihood="laplace", obs_sigma=-1)
    message = str(info.value)
    assert "latent_dim" in message and "likelihood" in message and "obs_sigma" in message


@pytest.mark.parametrize("field, value", [("latent_dim", "eight"), ("input_shape", None), ("beta", "big")])
def test_config_rejects_values_of_the_wrong_type(field, value):
    with pytest.raises((ValueError, TypeError)):
        VAEConfig(**{field: value})


def test_config_normalises_types():
    config = VAEConfig(input_shape=[3, "32", 32.0], hidden_sizes=[8, 16], latent_dim="4", beta="2", num_classes=0)
    assert config.input_shape == (3, 32, 32) and config.hidden_sizes == (8, 16)
    assert config.latent_dim == 4 and isinstance(config.latent_dim, int)
    assert config.beta == 2.0 and isinstance(config.beta, float)
    assert not config.conditional and VAEConfig(num_classes=10).conditional


@pytest.mark.parametrize("config", [
    VAEConfig(),
    VAEConfig(input_shape=(3, 27, 31), latent_dim=5, architecture="conv", hidden_sizes=(4, 8, 16),
              likelihood="gaussian", beta=4.0, num_classes=10, obs_sigma=0.25),
], ids=["default", "everything-set"])
def test_config_dict_round_trip_through_json(config):
    data = config.to_dict()
    assert data["latent_dim"] == config.latent_dim and data["architecture"] == config.architecture
    again = VAEConfig.from_dict(json.loads(json.dumps(data)))  # as stored in a checkpoint
    assert again == config
    assert again.input_shape == config.input_shape and isinstance(again.input_shape, tuple)


def test_config_from_dict_rejects_unknown_fields():
    data = VAEConfig().to_dict() | {"latnet_dim": 4, "dropout": 0.1}
    with pytest.raises(ValueError, match="unknown fields") as info:
        VAEConfig.from_dict(data)
    assert "latnet_dim" in str(info.value) and "dropout" in str(info.value)


def test_config_from_dict_fills_defaults_for_missing_fields():
    assert VAEConfig.from_dict({"latent_dim": 2}) == VAEConfig(latent_dim=2)


# -- learning ------------------------------------------------------------------------------------


def test_small_model_overfits_sixteen_digits():
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().images[:16] / 16.0, dtype=torch.float32)[:, None]
    torch.manual_seed(0)
    model = VAE(VAEConfig(input_shape=(1, 8, 8), latent_dim=4, hidden_sizes=(32,)))
    zeros = torch.zeros(16, 4)

    def deterministic_loss():  # z = mu: no sampling noise in the comparison
        with torch.no_grad():
            return model.loss(x, eps=zeros)["loss"].item()

    before = deterministic_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = model.loss(x)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = deterministic_loss()
    # the data term cannot go below the entropy of the grey levels: measure the drop against that floor
    floor = -(x * x.clamp_min(1e-6).log() + (1 - x) * (1 - x).clamp_min(1e-6).log()).flatten(1).sum(1).mean().item()
    assert after < before - 0.6 * (before - floor), (before, after, floor)
    with torch.no_grad():
        error = (model.reconstruct(x) - x).abs().mean().item()
        untrained = (VAE(model.config).reconstruct(x) - x).abs().mean().item()
    assert error < 0.15 and error < untrained / 2, (error, untrained)
