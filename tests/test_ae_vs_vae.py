"""The autoencoder as a model kind of its own, and the numbers of the Autoencoder-or-VAE page."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from test_cli import assert_ok, cli
from vae_core.ae_vs_vae import code_cloud, posterior_spread
from vae_core.analysis import anomaly_scores, impute, rectangle_mask
from vae_core.catalog import model_card
from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig, VAEConfig
from vae_core.metrics import encode_all, evaluate
from vae_core.model import VAE, NoPosterior
from vae_core.recipe import Recipe
from vae_core.trainer import Trainer


def model_of(objective: str, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(VAEConfig(input_shape=(1, 8, 8), latent_dim=3, hidden_sizes=(32,), objective=objective)).eval()


def test_the_autoencoder_has_a_deterministic_encoder_and_no_kl_term():
    ae, vae = model_of("ae"), model_of("vae")
    assert not ae.config.probabilistic and vae.config.probabilistic
    assert "to_logvar.weight" not in ae.state_dict() and "to_logvar.weight" in vae.state_dict()
    x = torch.rand(5, 1, 8, 8)
    code, logvar = ae.encode(x)
    assert logvar is None
    # forward() with different noise: the same code, the same decoder output (nothing is drawn)
    out_a, z_a, _ = ae(x, eps=torch.randn(5, 3))
    out_b, z_b, _ = ae(x, eps=torch.randn(5, 3))
    assert torch.equal(out_a, out_b) and torch.equal(z_a, code)
    parts = ae.loss(x)
    assert set(parts) == {"recon", "loss"} and torch.equal(parts["loss"], parts["recon"])
    vae_parts = vae.loss(x)
    assert {"kl", "elbo"} <= set(vae_parts) and vae_parts["kl"] > 0


def test_what_needs_a_posterior_says_so_for_an_autoencoder():
    ae = model_of("ae")
    x = torch.rand(6, 1, 8, 8)
    result = evaluate(ae, x)
    assert set(result) == {"recon", "active_units"}
    for call in (lambda: evaluate(ae, x, iwae_k=5), lambda: ae.iwae_bound(x, k=2),
                 lambda: posterior_spread(ae, x[0]), lambda: impute(ae, x, rectangle_mask(8, 8, 2, 2, 3, 3),
                                                                  mode="gibbs")):
        with pytest.raises(NoPosterior, match="autoencoder.*reconstruction error"):
            call()
    assert set(anomaly_scores(ae, x)) == {"recon_error"}
    assert impute(ae, x, rectangle_mask(8, 8, 2, 2, 3, 3), iterations=2).filled.shape == x.shape
    assert encode_all(ae, x)[1] is None
    with pytest.raises(ValueError, match="unconditional"):
        VAEConfig(objective="ae", num_classes=10)


def test_an_autoencoder_trains_saves_and_loads_without_elbo(tmp_path):
    recipe = Recipe(objective="ae", hidden_sizes=(32,), latent_dim=3, epochs=2)
    data = recipe.load_data()
    path = tmp_path / "ae.safetensors"
    history = Trainer(recipe.build_model(data), data, recipe.train_config(), checkpoint_path=path).fit()
    assert {"recon", "loss", "test_recon"} <= set(history[-1])
    assert not {"kl", "elbo", "test_elbo", "kl_per_dim"} & set(history[-1])
    assert history[-1]["test_recon"] < history[0]["test_recon"] or len(history) == 1
    ckpt = load_checkpoint(path)
    assert ckpt.config.objective == "ae" and "test_elbo" not in ckpt.metrics
    card = model_card(ckpt)
    assert card["objective"] == "autoencoder (no KL)" and "none" in card["test ELBO"]
    assert card["reconstruction"] == f"{ckpt.metrics['test_recon']:.1f} nats"


def test_the_cli_trains_and_evaluates_an_autoencoder(tmp_path, capsys):
    out = tmp_path / "cli-ae.safetensors"
    trained = cli(capsys, "train", "--dataset", "digits", "--hidden", "32", "--latent-dim", "3", "--objective", "ae",
                  "--epochs", "1", "--quiet", "--out", out)
    assert_ok(trained)
    assert "an autoencoder: test reconstruction" in trained.stdout and "ELBO -" not in trained.stdout
    evaluated = cli(capsys, "eval", out, "--iwae-k", "5")
    assert_ok(evaluated)
    assert "no ELBO, KL or IWAE" in evaluated.stdout and "reconstruction" in evaluated.stdout
    assert "IWAE (k=" not in evaluated.stdout
    exported = cli(capsys, "export-onnx", out, "--out", tmp_path / "pair")
    assert exported.returncode != 0 and "autoencoder" in exported.stderr and "Traceback" not in exported.stderr


def test_the_code_cloud_tells_a_filled_ball_from_scattered_codes():
    rng = np.random.default_rng(1)
    ball = rng.standard_normal((2000, 4))
    # an autoencoder's kind of codes: three tight clusters far from the origin, at their own scale
    centres = rng.standard_normal((3, 4)) * 8
    clusters = centres[rng.integers(0, 3, 2000)] + 0.3 * rng.standard_normal((2000, 4))
    filled, scattered = code_cloud(ball, seed=0), code_cloud(clusters, seed=0)
    assert filled.in_prior > 0.97 and scattered.in_prior < 0.5
    assert filled.draws_near_codes > 0.8 and scattered.draws_near_codes < 0.1
    assert filled.radius == pytest.approx(2.0, rel=0.1)  # sqrt(4)
    # the projection is orthogonal and through the origin: scaling the codes scales the picture
    assert np.allclose(code_cloud(3 * ball, seed=0).codes, 3 * filled.codes, atol=1e-4)
    assert filled.prior.shape == (1000, 2) and 0 < filled.explained <= 1
    with pytest.raises(ValueError):
        code_cloud(ball[:2])


def test_the_posterior_spread_shows_the_average_of_the_plausible_outputs():
    vae = model_of("vae")
    x = torch.rand(1, 8, 8)
    a, b = posterior_spread(vae, x, draws=6, seed=3), posterior_spread(vae, x, draws=6, seed=3)
    assert torch.equal(a.decoded_draws, b.decoded_draws) and torch.equal(a.pixel_draws, b.pixel_draws)
    assert a.decoded_draws.shape == (6, 1, 8, 8) and a.pixel_variance.shape == (8, 8)
    assert set(a.pixel_draws.unique().tolist()) <= {0.0, 1.0}  # Bernoulli pixels
    assert len(a.sweep_dims) == 3 and a.sweep.shape == (3 * 5, 1, 8, 8)  # a 3-D latent: all three
    centre = a.sweep_steps.index(0.0)
    assert all(torch.allclose(a.sweep[row * 5 + centre], a.mean_image) for row in range(3))
    with torch.inference_mode():
        sigma = torch.exp(0.5 * vae.encode(x[None])[1])[0]
    assert list(a.sweep_dims) == torch.argsort(sigma, descending=True).tolist(), "least certain first"
    assert torch.allclose(a.pixel_variance, a.decoded_draws.var(0).mean(0))
    assert a.pixel_variance.max() > 0
    # a posterior with (almost) no spread: every draw decodes to the mean image
    with torch.no_grad():
        vae.to_logvar.bias.fill_(-30.0)
        vae.to_logvar.weight.zero_()
    sharp = posterior_spread(vae, x, draws=6, seed=3)
    assert sharp.pixel_variance.max() < 1e-10
    assert torch.allclose(sharp.decoded_draws, sharp.mean_image.expand(6, 1, 8, 8), atol=1e-6)


def test_kl_warm_up_leaves_an_autoencoder_loss_alone():
    """KL warm-up weighs a term an autoencoder does not have: its loss stays the reconstruction."""
    recipe = Recipe(objective="ae", hidden_sizes=(16,), latent_dim=2, epochs=1, kl_warmup=5)
    data = recipe.load_data()
    history = Trainer(recipe.build_model(data), data, TrainConfig(epochs=1, kl_warmup_epochs=5)).fit()
    assert np.isfinite(history[-1]["loss"]) and history[-1]["loss"] == pytest.approx(history[-1]["recon"])
