"""Latent Explorer's VAE engine: models, datasets, training, checkpoints and latent-space maths."""
__version__ = "0.1.0"

from .config import TrainConfig, VAEConfig  # noqa: E402
from .model import VAE  # noqa: E402

__all__ = ["VAE", "VAEConfig", "TrainConfig", "__version__"]
