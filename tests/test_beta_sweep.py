"""Choosing β: which checkpoints form a sweep, and that the rate falls as β grows."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vae_core.beta_sweep import DISENTANGLEMENT_BETAS, beta_sweep, neighbours, sweep_preset
from vae_core.checkpoint import Checkpoint, load_checkpoint
from vae_core.config import VAEConfig
from vae_core.model import VAE
from vae_core.recipe import Recipe
from vae_core.trainer import Trainer

TRAIN = {"epochs": 30, "batch_size": 64, "lr": 0.001, "seed": 0, "device": "cpu"}


def ckpt(beta: float, rate: float, distortion: float, *, latent: int = 4, objective: str = "vae",
         dataset: str = "mnist-5k", train: dict | None = None, metrics: bool = True, epochs_run: int | None = None):
    model = VAE(VAEConfig(input_shape=(1, 8, 8), latent_dim=latent, hidden_sizes=(8,), beta=beta, objective=objective))
    scores = {"test_kl": rate, "test_recon": distortion, "active_units": 3} if metrics else {}
    train = train or TRAIN
    history = [{"epoch": e + 1} for e in range(train["epochs"] if epochs_run is None else epochs_run)]
    return Checkpoint(model, dataset={"name": dataset}, history=history, metrics=scores,
                      train_state={"train_config": train})


def test_a_sweep_is_the_same_recipe_at_other_betas_ordered_by_beta():
    others = {"b4": ckpt(4, 2.0, 90), "b0.5": ckpt(0.5, 30.0, 70), "b2": ckpt(2, 8.0, 80),
              "wider": ckpt(2, 8.0, 80, latent=8), "other-data": ckpt(2, 8.0, 80, dataset="digits"),
              "longer": ckpt(2, 8.0, 80, train={**TRAIN, "epochs": 60}),
              "on-gpu": ckpt(8, 1.0, 95, train={**TRAIN, "device": "cuda", "save_optimizer": True}),  # no matter
              "stopped": ckpt(16, 0.5, 99, epochs_run=3),  # a run stopped early is not a point of the curve
              "tc": ckpt(3, 5.0, 85, objective="beta-tcvae"), "unscored": ckpt(16, 0.5, 99, metrics=False),
              "b4-again": ckpt(4, 2.5, 91)}
    points = beta_sweep(("b1", ckpt(1, 15.0, 75)), others)
    assert [(p.name, p.beta) for p in points] == [("b0.5", 0.5), ("b1", 1.0), ("b2", 2.0), ("b4", 4.0), ("on-gpu", 8.0)]
    assert points[1].neg_elbo == 90.0
    assert [p.name for p in beta_sweep(("tc", others["tc"]), others)] == ["tc"], "β-TCVAEs sweep among themselves"
    assert beta_sweep(("ae", ckpt(1, 0, 1, objective="ae")), {}) == []
    assert [p.beta for p in neighbours(points, 2.0)] == [1.0, 2.0, 4.0]
    assert [p.beta for p in neighbours(points, 0.5)] == [0.5, 1.0, 2.0]
    assert [p.beta for p in neighbours(points, 8.0)] == [2.0, 4.0, 8.0]


@pytest.mark.slow
def test_the_rate_falls_and_the_distortion_rises_as_beta_grows():
    """Three βs of one small recipe on the 8×8 digits, trained here: the trade-off the page draws."""
    torch.set_num_threads(1)
    found = {}
    for beta in (0.25, 1.0, 4.0):
        recipe = Recipe(hidden_sizes=(64,), latent_dim=4, beta=beta, epochs=30, batch_size=64)
        data = recipe.load_data()
        last = Trainer(recipe.build_model(data), data, recipe.train_config(device="cpu")).fit()[-1]
        found[beta] = (last["test_kl"], last["test_recon"])
    rates, distortions = zip(*(found[b] for b in sorted(found)))
    assert rates[0] > rates[1] > rates[2], found
    assert distortions[0] < distortions[1] < distortions[2], found


@pytest.mark.parametrize("name", ["shapes-tcvae", "mnist-ae"])
def test_a_sweep_preset_trains_the_checkpoints_network_at_each_beta(name):
    ckpt = load_checkpoint(Path(__file__).resolve().parent.parent / "checkpoints" / f"{name}.safetensors")
    preset = sweep_preset(ckpt)
    cfg = ckpt.config
    assert (preset["beta"], *preset["sweep"]) == DISENTANGLEMENT_BETAS
    assert preset["epochs"] == ckpt.train_state["train_config"]["epochs"]
    saved = ckpt.train_state["train_config"]
    assert (preset["kl_warmup"], preset["lr"], preset["batch_size"], preset["lr_schedule"]) == \
        (saved["kl_warmup_epochs"], saved["lr"], saved["batch_size"], "constant"), "how it trained, schedules unsaved"
    for beta in DISENTANGLEMENT_BETAS:
        recipe = Recipe(dataset=preset["dataset"], architecture=preset["architecture"], latent_dim=preset["latent_dim"],
                        hidden_sizes=preset["hidden_sizes"], dense_sizes=preset["dense_sizes"], beta=beta,
                        likelihood=preset["likelihood"], obs_sigma=preset["obs_sigma"], objective=preset["objective"],
                        conditional=preset["conditional"], epochs=preset["epochs"])
        assert (recipe.architecture, recipe.hidden_sizes, recipe.dense_sizes, recipe.latent_dim, recipe.likelihood) == \
            (cfg.architecture, cfg.hidden_sizes, cfg.dense_sizes, cfg.latent_dim, cfg.likelihood)
        assert recipe.dataset == ckpt.dataset["name"] and not recipe.server_limits()
    # An autoencoder has no β: its sweep is of VAEs of the same network.
    assert preset["objective"] == ("vae" if cfg.objective == "ae" else cfg.objective)
