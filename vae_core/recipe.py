"""One training run, described once. `python -m vae_core train`, the server's job queue (jobs.py)
and the Train page all build their runs from a `Recipe`: every default lives here, and a recipe is
checked when it is made (ValueError says everything that is wrong at once)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .catalog import safe_name
from .config import LR_SCHEDULES, OBJECTIVES, TrainConfig, VAEConfig
from .datasets import DATASETS, DatasetError, ImageDataset, load_dataset
from .model import VAE

ARCHITECTURES = ("mlp", "conv")
DEFAULT_HIDDEN = {"mlp": (256, 128), "conv": (32, 64)}


@dataclass(frozen=True)
class Optimisation:
    """What a Recipe trains with, unless it says otherwise: Adam's peak rate, its schedule, the batch."""
    lr: float
    lr_schedule: str  # config.LR_SCHEDULES
    batch_size: int


# The fastest recipes measured per architecture (bench/train_bench.py's time-to-quality race, against the
# pytorch/examples recipe: batch 128, Adam 1e-3 constant). One-cycle lets a high peak rate make fast
# progress and still end low. The MLP, overhead-bound, keeps batch 128 (a smaller one costs more per
# image); the conv nets, compute-bound, take 4x the steps per epoch at batch 32 for little more per image.
# Constant rates were slower: 3e-3 at batch 128 got the 64x64 shapes net 9 nats worse than the peer.
DEFAULT_OPTIMISATION = {"mlp": Optimisation(lr=1e-2, lr_schedule="one-cycle", batch_size=128),
                        "conv": Optimisation(lr=5e-3, lr_schedule="one-cycle", batch_size=32)}
# What a shared server trains (JobQueue.submit checks server_limits()); the command line has no cap.
MAX_EPOCHS = 500
MAX_LATENT = 64
MAX_LAYERS = 4
MAX_WIDTH = 1024
MAX_BATCH = 4096


@dataclass(frozen=True)
class Recipe:
    # data
    dataset: str = "digits"  # a name in datasets.DATASETS, or folder:PATH / npz:PATH
    holdout_class: int | None = None  # left out of training, for anomaly experiments
    # model
    architecture: str = "mlp"
    latent_dim: int = 8
    hidden_sizes: tuple[int, ...] | None = None  # None: DEFAULT_HIDDEN[architecture]
    dense_sizes: tuple[int, ...] = ()  # Burgess et al. (2018) for 64x64: conv 32-32-64-64, dense 256
    likelihood: str = "bernoulli"
    obs_sigma: float = 0.1  # the Gaussian likelihood's σ
    beta: float = 1.0
    objective: str = "vae"  # "vae" (β weighs the KL) or "beta-tcvae" (β weighs the total correlation)
    conditional: bool = False
    # optimisation: None takes the architecture's DEFAULT_OPTIMISATION
    epochs: int = TrainConfig.epochs
    batch_size: int | None = None
    lr: float | None = None
    lr_schedule: str | None = None  # config.LR_SCHEDULES
    kl_warmup: int = TrainConfig.kl_warmup_epochs  # epochs over which the KL weight ramps from 0 to β
    seed: int = TrainConfig.seed  # the data split, the initial weights and the batch order
    name: str = ""  # the model's name; "" picks default_name()

    def __post_init__(self):
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        problems = []
        if not isinstance(self.dataset, str) or not (self.dataset in DATASETS or
                                                     self.dataset.startswith(("folder:", "npz:"))):
            problems.append(f"dataset must be one of {', '.join(d for d in DATASETS if ':' not in d)}, "
                            f"or folder:PATH / npz:PATH, got {self.dataset!r}")
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        for name, default in (("hidden_sizes", DEFAULT_HIDDEN.get(self.architecture, (1,))), ("dense_sizes", ())):
            value = getattr(self, name)
            try:
                sizes = tuple(int(h) for h in (default if value is None else value))
            except (TypeError, ValueError):
                sizes = (0,)
            if (name == "hidden_sizes" and not sizes) or not all(h >= 1 for h in sizes):
                problems.append(f"{name.replace('_', ' ')} must be positive widths, got {value}")
            fix(name, sizes)
        default = DEFAULT_OPTIMISATION.get(self.architecture, DEFAULT_OPTIMISATION["mlp"])
        for name in ("batch_size", "lr", "lr_schedule"):
            if getattr(self, name) is None:
                fix(name, getattr(default, name))
        ints = {"latent_dim": (1, math.inf), "epochs": (1, math.inf), "batch_size": (1, math.inf),
                "kl_warmup": (0, math.inf), "seed": (0, 2**31 - 1)}
        for name, (low, high) in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high or value != int(value):  # int() of inf or NaN would raise
                problems.append(f"{name} must be a whole number from {low} to {high}, got {value!r}")
            else:
                fix(name, int(value))
        for name, zero_ok in (("lr", False), ("beta", True), ("obs_sigma", False)):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
                    and (value >= 0 if zero_ok else value > 0):
                fix(name, float(value))
            else:
                problems.append(f"{name} must be a finite number {'>= 0' if zero_ok else '> 0'}, got {value!r}")
        if self.holdout_class is not None and (isinstance(self.holdout_class, bool)
                                               or not isinstance(self.holdout_class, int) or self.holdout_class < 0):
            problems.append(f"holdout_class must be a class index >= 0 or None, got {self.holdout_class!r}")
        if self.objective not in OBJECTIVES:
            problems.append(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.objective == "ae" and self.conditional:
            problems.append("an autoencoder (objective ae) is unconditional here: untick conditional")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.likelihood not in ("bernoulli", "gaussian"):
            problems.append(f"likelihood must be 'bernoulli' or 'gaussian', got {self.likelihood!r}")
        fix("conditional", bool(self.conditional))
        fix("name", str(self.name or "")[:200])
        if problems:
            raise ValueError("; ".join(problems))

    def server_limits(self) -> list[str]:
        """What this recipe asks beyond what a shared server trains (empty: nothing)."""
        limits = {"latent_dim": MAX_LATENT, "epochs": MAX_EPOCHS, "batch_size": MAX_BATCH, "kl_warmup": 10 * MAX_EPOCHS}
        problems = [f"{name} must be at most {high} here, got {getattr(self, name)}"
                    for name, high in limits.items() if getattr(self, name) > high]
        for name in ("hidden_sizes", "dense_sizes"):
            sizes = getattr(self, name)
            if len(sizes) > MAX_LAYERS or any(h > MAX_WIDTH for h in sizes):
                problems.append(f"{name.replace('_', ' ')}: at most {MAX_LAYERS} widths of at most {MAX_WIDTH} here, "
                                f"got {sizes}")
        if ":" in self.dataset:
            problems.append("the server trains on its own datasets only, not on folder: or npz: paths")
        return problems

    @property
    def model_name(self) -> str:
        """The sanitised name the checkpoint gets (before a -2, -3 … that avoids existing files)."""
        return safe_name(self.name) if self.name.strip() else default_name(self)

    def load_data(self, loader: Callable[..., ImageDataset] = load_dataset, **options) -> ImageDataset:
        """The data to train on: the dataset split with this recipe's seed, without the held-out class.
        loader(name, seed=…, **options) is load_dataset or a cache in front of it."""
        data = loader(self.dataset, seed=self.seed, **options)
        if self.holdout_class is None:
            return data
        if self.holdout_class >= data.num_classes:
            raise DatasetError(f"{self.dataset} has no class {self.holdout_class} "
                               f"(it has {data.num_classes}: 0 to {data.num_classes - 1})")
        return data.without_class(self.holdout_class)

    def model_config(self, data: ImageDataset) -> VAEConfig:
        return VAEConfig(input_shape=data.image_shape, latent_dim=self.latent_dim, architecture=self.architecture,
                         hidden_sizes=self.hidden_sizes, dense_sizes=self.dense_sizes, likelihood=self.likelihood,
                         obs_sigma=self.obs_sigma, beta=self.beta, objective=self.objective,
                         num_classes=data.num_classes if self.conditional else 0)

    def build_model(self, data: ImageDataset) -> VAE:
        """The untrained model. Seeds torch's global RNG first: the same recipe, the same initial
        weights (callers that build models in several threads hold a lock around this)."""
        torch.manual_seed(self.seed)
        return VAE(self.model_config(data))

    def train_config(self, device: str = "auto", save_optimizer: bool = True, compile: bool = False) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, lr_schedule=self.lr_schedule,
                           seed=self.seed, kl_warmup_epochs=self.kl_warmup, device=device,
                           save_optimizer=save_optimizer, compile=compile)


def default_name(recipe: Recipe) -> str:
    """A name that says what the recipe trains: mnist-5k-betavae-conv-z10-b4-without-3."""
    if recipe.objective == "ae":  # β weighs nothing in an autoencoder
        kind = "ae"
    else:
        kind = "tcvae" if recipe.objective == "beta-tcvae" else ("betavae" if recipe.beta != 1 else "vae")
    parts = [recipe.dataset, "cvae" if recipe.conditional else kind, recipe.architecture, f"z{recipe.latent_dim}"]
    if recipe.beta != 1 and recipe.objective != "ae":
        parts.append(f"b{recipe.beta:g}")
    if recipe.holdout_class is not None:
        parts.append(f"without-{recipe.holdout_class}")
    return safe_name("-".join(parts))


# The Train page's starting point: the default digits MLP recipe with a KL warm-up. Its 50 epochs end at a
# test ELBO of -23.77 nats, against -24.13 at the earlier default (Adam 3e-3, constant; `python -m vae_core
# train --dataset digits --kl-warmup 10 --epochs 50 [--lr 3e-3 --lr-schedule constant]`).
QUICK = Recipe(kl_warmup=10)
