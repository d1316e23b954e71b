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


def total_correlation(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int,
                      estimator: str = "mws") -> torch.Tensor:
    """TC = KL(q(z) || prod_d q(z_d)) of the aggregate posterior, estimated on a minibatch (nats, batch mean).

    z_i ~ q(z|x_i) for the M inputs of a batch drawn from N training samples; log q(z_i) is a weighted
    logsumexp_j of log q(z_i|x_j), and the same per dimension for the marginals q(z_id) (Chen et al.,
    2018, https://arxiv.org/abs/1802.04942, Sec. 3 and Appendix C):
    - "mws", minibatch-weighted sampling (their eq. 5, what their code trains with): every j weighs
      1/(N M). Simple and low-variance, but it is offset from the true TC: with M = N it reads exactly
      (D - 1) log N more. The offset does not depend on the parameters much; the gradient is what counts.
    - "mss", minibatch-stratified sampling: x_i itself weighs 1/N and the other M - 1 inputs stand for
      the other N - 1 samples, (N - 1) / (N (M - 1)) each. With M = N it is the exact kernel estimate.
    """
    m, d = z.shape
    # log q(z_i,d | x_j) for every pair (i, j) and dimension d: (M, M, D)
    pairwise = -0.5 * ((z[:, None] - mu[None]).pow(2) / logvar[None].exp() + logvar[None] + _LOG_2PI)
    if estimator == "mws":
        log_weights = torch.full((m, m), -math.log(dataset_size * m), dtype=z.dtype, device=z.device)
    elif estimator == "mss":
        other = math.log(dataset_size - 1) - math.log(dataset_size * (m - 1)) if m > 1 else -math.inf
        log_weights = torch.full((m, m), other, dtype=z.dtype, device=z.device)
        log_weights.fill_diagonal_(-math.log(dataset_size))
    else:
        raise ValueError(f"estimator must be 'mws' or 'mss', got {estimator!r}")
    log_qz = torch.logsumexp(pairwise.sum(2) + log_weights, 1)
    log_prod_marginals = torch.logsumexp(pairwise + log_weights[..., None], 1).sum(1)
    return (log_qz - log_prod_marginals).mean()
