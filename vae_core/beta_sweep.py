"""Choosing β: a sweep of one recipe over β, read as a rate-distortion curve (Alemi et al., 2018,
"Fixing a Broken ELBO", https://arxiv.org/abs/1711.00464).

The two terms of the negative ELBO are a rate R = E_x KL(q(z|x) || p(z)), the nats each code carries
about its image, and a distortion D = E_x E_q[-log p(x|z)], the nats the decoder still needs. Training
with weight β minimises D + β R: a small β buys sharp reconstructions with a high rate (codes the prior
does not cover), a large β squeezes the rate until dimensions collapse and the pictures blur. β = 1
trains the ELBO itself: in principle the point where R + D, the bound on -log p(x), is lowest along the
curve (the page marks the lowest it measured).
"""
from __future__ import annotations

from dataclasses import dataclass

from .checkpoint import Checkpoint

MIN_POINTS = 3  # a curve needs three βs to be read as one
DISENTANGLEMENT_BETAS = (1.0, 2.0, 4.0, 8.0)  # a sweep to compare MIG along (--beta 1 2 4 8)
# What must match for two checkpoints to be points of one sweep: everything but β.
_SAME_CONFIG = ("input_shape", "latent_dim", "architecture", "hidden_sizes", "dense_sizes", "likelihood",
                "obs_sigma", "objective", "num_classes")


@dataclass(frozen=True)
class SweepPoint:
    name: str
    beta: float
    rate: float  # test KL, nats per image
    distortion: float  # test -log p(x|z), nats per image
    active_units: int | None

    @property
    def neg_elbo(self) -> float:
        return self.rate + self.distortion


def _recipe(ckpt: Checkpoint) -> tuple:
    cfg, train = ckpt.config, ckpt.trained_with
    # Where it trained, whether Adam's moments were kept, how often it was scored and whether the step was
    # compiled do not change the model it made.
    for setting in ("device", "save_optimizer", "eval_time_share", "compile"):
        train.pop(setting, None)
    return (tuple(getattr(cfg, f) for f in _SAME_CONFIG), ckpt.dataset.get("name"),
            tuple(sorted((k, repr(v)) for k, v in train.items())))


def sweep_preset(ckpt: Checkpoint, betas: tuple[float, ...] = DISENTANGLEMENT_BETAS) -> dict:
    """The Train page's preset (pages/train.py, apply_preset) for the recipe `ckpt` was trained with, at each
    of `betas` in one run: its data, network, likelihood, objective and, where it saved them, its epochs, KL
    warm-up, batch and learning rate (a run saved before schedules existed trained at a constant rate), on
    every class (checkpoints do not say which class a run left out)."""
    cfg = ckpt.config
    preset = {"dataset": ckpt.dataset.get("name"), "architecture": cfg.architecture,
              "hidden_sizes": list(cfg.hidden_sizes), "dense_sizes": list(cfg.dense_sizes),
              "latent_dim": cfg.latent_dim, "likelihood": cfg.likelihood, "obs_sigma": cfg.obs_sigma,
              "objective": "vae" if cfg.objective == "ae" else cfg.objective, "conditional": cfg.num_classes > 0,
              "beta": betas[0], "sweep": list(betas[1:]), "holdout_class": None}
    train = ckpt.trained_with
    epochs = train.get("epochs") or len(ckpt.history)
    if epochs:
        preset["epochs"] = epochs
    if ckpt.train_state.get("train_config"):  # files without it (an ONNX pair) leave the form's schedule
        preset["lr_schedule"] = train["lr_schedule"]
    for name, saved in (("kl_warmup", "kl_warmup_epochs"), ("batch_size", "batch_size"), ("lr", "lr")):
        if saved in train:
            preset[name] = train[saved]
    return preset


def beta_sweep(current: tuple[str, Checkpoint], others: dict[str, Checkpoint]) -> list[SweepPoint]:
    """The points of the sweep `current` belongs to: the checkpoints among `others` (and it) trained with
    the same recipe, data and seed but another β, that carry their test rate and distortion and ran all
    their epochs (a stopped run is not a point of the curve), by β. An autoencoder has no rate; one
    checkpoint per β (the first by name)."""
    name, ckpt = current
    if not ckpt.config.probabilistic:
        return []
    key = _recipe(ckpt)
    points: dict[float, SweepPoint] = {}
    for other_name, other in sorted({**others, name: ckpt}.items()):
        m = other.metrics
        finished = len(other.history) >= other.train_state.get("train_config", {}).get("epochs", 0)
        if _recipe(other) == key and finished and "test_kl" in m and "test_recon" in m and \
                other.config.beta not in points:
            points[other.config.beta] = SweepPoint(other_name, other.config.beta, float(m["test_kl"]),
                                                   float(m["test_recon"]), m.get("active_units"))
    return sorted(points.values(), key=lambda p: p.beta)


def neighbours(points: list[SweepPoint], beta: float) -> list[SweepPoint]:
    """The point at β and the ones on either side of it along the sweep (two at an end)."""
    index = min(range(len(points)), key=lambda i: abs(points[i].beta - beta))
    low = max(0, min(index - 1, len(points) - 3))
    return points[low:low + 3]
