"""Latent Explorer's VAE engine: models, datasets, training, checkpoints and latent-space maths."""
__version__ = "0.1.0"

import os  # noqa: E402
from pathlib import Path  # noqa: E402


def cache_root() -> Path:
    """$LATENT_EXPLORER_CACHE, or .cache/ beside the code: where every on-disk cache lives (the
    exported decoders, the maps, the 3-D map's page)."""
    return Path(os.environ.get("LATENT_EXPLORER_CACHE", Path(__file__).resolve().parent.parent / ".cache"))


from .config import TrainConfig, VAEConfig  # noqa: E402
from .model import VAE  # noqa: E402

__all__ = ["VAE", "VAEConfig", "TrainConfig", "__version__", "cache_root"]
