"""Evaluation: test ELBO and its parts, the IWAE bound, KL per dimension, active units."""
from __future__ import annotations

import torch

from .model import VAE

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016): a unit is active if Var_x(E_q[z_u]) > 0.01


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.inference_mode()
def encode_all(model: VAE, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 1024):
    """(mu, logvar) for every row of x, in batches; (codes, None) for an autoencoder."""
    device = next(model.parameters()).device
    mus, logvars = [], []
    for s in _batches(len(x), batch_size):
        mu, logvar = model.encode(x[s].to(device), None if y is None else y[s].to(device))
        mus.append(mu.cpu())
        logvars.append(None if logvar is None else logvar.cpu())
    return torch.cat(mus), None if logvars[0] is None else torch.cat(logvars)


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> torch.Tensor:
    """Boolean mask of latent dimensions whose posterior mean varies across the data."""
    return mu.var(0) > threshold


@torch.inference_mode()
def evaluate(model: VAE, x: torch.Tensor, y: torch.Tensor | None = None, iwae_k: int = 0,
             batch_size: int = 512, seed: int = 0) -> dict:
    """Per-sample averages over x (nats): elbo, recon, kl, kl_per_dim, active_units, iwae (if k > 0).
    An autoencoder has recon and active_units only (an IWAE bound raises NoPosterior)."""
    device = next(model.parameters()).device
    labels = y if model.config.conditional else None
    generator = torch.Generator().manual_seed(seed)
    if iwae_k:
        model.require_posterior("an IWAE bound")
    terms = ("elbo", "recon", "kl") if model.config.probabilistic else ("recon",)
    totals = dict.fromkeys(terms + ("iwae",), 0.0)
    kl_per_dim = torch.zeros(model.config.latent_dim)
    for s in _batches(len(x), batch_size):
        xb = x[s].to(device)
        yb = None if labels is None else labels[s].to(device)
        eps = torch.randn(len(xb), model.config.latent_dim, generator=generator).to(device)
        parts = model.loss(xb, yb, eps=eps)
        n = len(xb)
        for key in terms:
            totals[key] += parts[key].item() * n
        if "kl_per_dim" in parts:
            kl_per_dim += parts["kl_per_dim"].cpu() * n
        if iwae_k:
            totals["iwae"] += model.iwae_bound(xb, yb, k=iwae_k).sum().item()
    result = {k: v / len(x) for k, v in totals.items()}
    if not iwae_k:
        del result["iwae"]
    mu, _ = encode_all(model, x, labels)
    if model.config.probabilistic:
        result["kl_per_dim"] = (kl_per_dim / len(x)).tolist()
    result["active_units"] = int(active_units(mu).sum())
    return result


@torch.inference_mode()
def measure(model: VAE, x: torch.Tensor, y: torch.Tensor | None = None, limit: int = 2000) -> dict:
    """Test ELBO, reconstruction (nats) and mean pixel error on the first `limit` images: the scores of
    a model that did not bring its own (one trained elsewhere), computed as evaluate() computes them.
    An autoencoder has no ELBO: no test_elbo."""
    x, y = x[:limit], None if y is None else y[:limit]
    scores = evaluate(model, x, y)
    labels = y if model.config.conditional else None
    recon = torch.cat([model.reconstruct(x[s], None if labels is None else labels[s]) for s in _batches(len(x), 512)])
    result = {"recon": scores["recon"], "images": len(x), "pixel_error": (recon - x).abs().mean().item()}
    if "elbo" in scores:
        result["test_elbo"] = scores["elbo"]
    return result
