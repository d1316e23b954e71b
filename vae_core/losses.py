"""The terms of the ELBO (Kingma & Welling, 2014, eq. 10): E_q[log p(x|z)] - KL(q(z|x) || p(z))."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

_LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per latent dimension, in closed form (their Appendix B).

    expm1(lv) - lv rather than exp(lv) - 1 - lv: near the prior the latter cancels to rounding
    noise, even below zero; expm1(lv) >= lv holds in floating point too, so the KL stays >= 0.
    """
    return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar)


def log_likelihood(x: torch.Tensor, decoder_output: torch.Tensor, likelihood: str, obs_sigma: float) -> torch.Tensor:
    """log p(x|z) per sample, summed over pixels. decoder_output holds logits / pre-sigmoid means."""
    if likelihood == "bernoulli":
        # BCE against logits is the numerically stable form of -[x log p + (1-x) log(1-p)].
        per_pixel = -F.binary_cross_entropy_with_logits(decoder_output, x, reduction="none")
    else:
        mean = torch.sigmoid(decoder_output)
        per_pixel = -0.5 * ((x - mean) / obs_sigma).pow(2) - math.log(obs_sigma) - 0.5 * _LOG_2PI
    return per_pixel.flatten(1).sum(1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over dimensions."""
    return (-0.5 * ((z - mu).pow(2) / logvar.exp() + logvar + _LOG_2PI)).sum(-1)


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I): the prior's density, summed over the last dimension."""
    return (-0.5 * (z.pow(2) + _LOG_2PI)).sum(-1)
