"""Model configuration: everything needed to rebuild a VAE from a checkpoint's JSON metadata."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

ARCHITECTURES = ("mlp", "conv", "external")  # external: a user's own module (external.py)
LIKELIHOODS = ("bernoulli", "gaussian")
# vae: recon + beta * KL (beta > 1: Higgins et al., 2017). beta-tcvae: recon + KL + (beta - 1) * TC, the
# total correlation of the aggregate posterior alone pushed harder (Chen et al., 2018). ae: a plain
# autoencoder, for comparison: the same networks, a deterministic encoder and the reconstruction term
# alone; no posterior, so no KL, ELBO or IWAE, and no prior it was trained to decode.
OBJECTIVES = ("vae", "beta-tcvae", "ae")
LR_SCHEDULES = ("constant", "one-cycle")


@dataclass
class VAEConfig:
    input_shape: tuple[int, int, int] = (1, 8, 8)  # (channels, height, width)
    latent_dim: int = 8
    architecture: str = "mlp"  # "mlp" | "conv" | "external"
    # MLP: widths of the hidden layers. conv: channels of each stride-2 conv layer.
    hidden_sizes: tuple[int, ...] = (256, 128)
    # Dense layers between the body and the latent heads (mirrored in the decoder): Burgess et al.
    # (2018) put 256 units after four stride-2 convs of 32-32-64-64 channels.
    dense_sizes: tuple[int, ...] = ()
    likelihood: str = "bernoulli"  # p(x|z): "bernoulli" (BCE) or "gaussian" (fixed obs_sigma)
    beta: float = 1.0  # weight of the KL term (vae) or of the total correlation (beta-tcvae)
    objective: str = "vae"  # see OBJECTIVES
    num_classes: int = 0  # > 0 makes a conditional VAE: q(z|x,y), p(x|z,y)
    obs_sigma: float = 0.1  # std of the Gaussian likelihood; unused for Bernoulli

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        self.dense_sizes = tuple(int(h) for h in self.dense_sizes)
        problems = []
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            problems.append(f"input_shape must be (channels, height, width), got {self.input_shape}")
        if int(self.latent_dim) < 1:
            problems.append(f"latent_dim must be at least 1, got {self.latent_dim}")
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            problems.append(f"hidden_sizes must be positive integers, got {self.hidden_sizes}")
        if self.dense_sizes and min(self.dense_sizes) < 1:
            problems.append(f"dense_sizes must be positive integers, got {self.dense_sizes}")
        if self.objective not in OBJECTIVES:
            problems.append(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.likelihood not in LIKELIHOODS:
            problems.append(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if not 0 <= float(self.beta) < math.inf:
            problems.append(f"beta must be finite and >= 0, got {self.beta}")
        if self.objective == "ae" and int(self.num_classes) > 0:
            problems.append("an autoencoder (objective 'ae') is unconditional here: num_classes must be 0")
        if int(self.num_classes) < 0 or int(self.num_classes) == 1:
            problems.append(f"num_classes must be 0 (unconditional) or >= 2, got {self.num_classes}")
        if not 0 < float(self.obs_sigma) < math.inf:
            problems.append(f"obs_sigma must be finite and > 0, got {self.obs_sigma}")
        if problems:
            raise ValueError("invalid VAE config: " + "; ".join(problems))
        self.latent_dim, self.num_classes = int(self.latent_dim), int(self.num_classes)
        self.beta, self.obs_sigma = float(self.beta), float(self.obs_sigma)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def probabilistic(self) -> bool:
        """Does the encoder give a posterior q(z|x)? False for an autoencoder: one code per image."""
        return self.objective != "ae"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VAEConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"invalid VAE config: unknown fields {sorted(unknown)}")
        return cls(**data)


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3  # batch 128, Adam 1e-3, constant: pytorch/examples'; the project's: recipe.DEFAULT_OPTIMISATION
    seed: int = 0
    kl_warmup_epochs: int = 0  # KL weight ramps linearly 0 -> beta over these epochs (Bowman et al., 2016)
    device: str = "auto"  # "auto" picks cuda, then mps, then cpu
    grad_clip: float = 0.0  # 0 disables clipping
    save_optimizer: bool = True  # Adam's moments in the checkpoint, for --resume (they triple its size)
    lr_schedule: str = "constant"  # see LR_SCHEDULES
    # Test-set evaluation (and the checkpoint save that goes with it) runs after an epoch while it has
    # taken at most this share of the run's time so far; always after the first and the last epoch. On
    # digits an epoch trains in ~15 ms, so evaluating and saving after every one doubled the run.
    eval_time_share: float = 0.1
    compile: bool = False  # torch.compile the forward pass and loss (trainer.CompiledStep)

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0 < self.eval_time_share < math.inf:
            raise ValueError(f"eval_time_share must be a finite number > 0, got {self.eval_time_share}")

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate of optimiser step `step` (0-based) of `total_steps`. A function of the step
        alone, so a resumed run follows the schedule the uninterrupted one would have."""
        if self.lr_schedule == "constant":
            return self.lr
        # one-cycle (Smith & Topin, 2019), step for step torch's OneCycleLR with its defaults (cosine,
        # up from lr/25 over the first 30% of the steps, then down to lr/25/1e4), without its momentum
        # cycling; torch's scheduler object is not used because a resumed run could not restore it.
        start, end = self.lr / 25, self.lr / 25 / 1e4
        peak = float(0.3 * total_steps) - 1
        if step <= peak:
            low, high, t = start, self.lr, step / peak if peak > 0 else 1.0
        else:
            low, high, t = self.lr, end, (step - peak) / max(total_steps - 1 - peak, 1e-12)
        return high + (low - high) / 2 * (1 + math.cos(math.pi * min(t, 1.0)))
