"""What a trained VAE can be used for: anomaly scores, filling in missing pixels, disentanglement.

Pure functions of a model and tensors (no Streamlit), so the app's pages only lay them out and
the tests can pin them down:

* anomaly_scores: per-sample negative ELBO, reconstruction error and KL; holdout_auc: how well a score
  separates a class the model never saw (ROC AUC).
* rectangle_mask / random_mask / impute: iterative encode-decode imputation of missing pixels.
* mutual_information_gap: MIG (Chen et al., 2018) between latent means and ground-truth factors.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from . import losses

# -- anomalies ---------------------------------------------------------------------------------
SCORES = {
    "neg_elbo": "negative ELBO (nats)",
    "recon_error": "reconstruction error (MSE per pixel)",
}


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.inference_mode()
def _scores_given_labels(model, x, y, samples: int, seed: int, batch_size: int) -> dict[str, torch.Tensor]:
    cfg = model.config
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    eps_all = torch.randn(samples, len(x), cfg.latent_dim, generator=generator) if samples else None
    neg_elbo, recon_error, kls = [], [], []
    for s in _batches(len(x), batch_size):
        xb = x[s].to(device)
        yb = None if y is None else y[s].to(device)
        mu, logvar = model.encode(xb, yb)
        mean_out = model.decoder_output(mu, yb)
        recon_error.append((torch.sigmoid(mean_out) - xb).pow(2).flatten(1).mean(1).cpu())
        if logvar is None:  # an autoencoder: no posterior, so no KL and no ELBO
            continue
        kl = losses.gaussian_kl(mu, logvar).sum(1)
        if samples:  # Monte Carlo E_q[-log p(x|z)] with fixed draws: the ELBO as trained
            nll = torch.stack([
                -losses.log_likelihood(xb, model.decoder_output(model.reparameterize(mu, logvar, e.to(device)), yb),
                                       cfg.likelihood, cfg.obs_sigma)
                for e in eps_all[:, s]
            ]).mean(0)
        else:  # the posterior mean as a one-point estimate of E_q: deterministic, no sampling noise
            nll = -losses.log_likelihood(xb, mean_out, cfg.likelihood, cfg.obs_sigma)
        neg_elbo.append((nll + kl).cpu())
        kls.append(kl.cpu())
    if not cfg.probabilistic:
        return {"recon_error": torch.cat(recon_error)}
    return {"neg_elbo": torch.cat(neg_elbo), "recon_error": torch.cat(recon_error), "kl": torch.cat(kls)}


def anomaly_scores(model, x: torch.Tensor, y: torch.Tensor | None = None, samples: int = 0, seed: int = 0,
                   batch_size: int = 512) -> dict[str, np.ndarray]:
    """Per-sample anomaly scores of images x (N, C, H, W); higher means more anomalous.

    neg_elbo:    -log p(x|z) + KL(q(z|x) || p(z)) in nats, the per-sample negative ELBO with beta = 1
                 (whatever beta the model trained with). With samples=0 (default) the reconstruction
                 term is evaluated at the posterior mean z = mu, a deterministic one-point estimate of
                 E_q[-log p(x|z)] (slightly optimistic: it is the decoder's best guess); samples=S > 0
                 averages S reparameterised draws from a generator seeded with `seed` instead.
    recon_error: mean over pixels of (reconstruct(x) - x)^2, reconstruct() decoding the posterior mean.
    kl:          KL(q(z|x) || p(z)) in nats: how far the encoder moves this image's posterior from the prior.
    An autoencoder has recon_error only: it has no posterior, so neither an ELBO nor a KL.

    A conditional model needs a label: with y given it scores each image under its own label; with
    y=None it scores under every class and keeps, per image, each score's lowest over the classes (its
    most plausible class for that score: the three may come from different classes).
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if tuple(x.shape[1:]) != tuple(model.config.input_shape):
        raise ValueError(f"images of shape {tuple(x.shape[1:])} do not fit a model of {model.config.input_shape}")
    if not model.config.conditional:
        result = _scores_given_labels(model, x, None, samples, seed, batch_size)
    elif y is not None:
        result = _scores_given_labels(model, x, torch.as_tensor(y, dtype=torch.long), samples, seed, batch_size)
    else:
        per_class = [_scores_given_labels(model, x, torch.full((len(x),), c, dtype=torch.long), samples, seed,
                                          batch_size) for c in range(model.config.num_classes)]
        result = {k: torch.stack([p[k] for p in per_class]).min(0).values for k in per_class[0]}
    return {k: v.numpy().astype(np.float64) for k, v in result.items()}


def held_out_class(dataset_name: str | None) -> int | None:
    """The class a --holdout-class run left out, from the dataset name it records ("digits-without-3")."""
    match = re.fullmatch(r".+-without-(\d+)", dataset_name or "")
    return int(match[1]) if match else None


def holdout_auc(scores: np.ndarray, labels: np.ndarray, held_out: int) -> float:
    """ROC AUC of a score separating class `held_out` (positives) from the rest: 0.5 is chance, 1 perfect."""
    from sklearn.metrics import roc_auc_score

    positives = np.asarray(labels) == held_out
    if positives.all() or not positives.any():
        raise ValueError(f"an AUC needs samples both of class {held_out} and of other classes")
    return float(roc_auc_score(positives, np.asarray(scores)))


# -- imputation --------------------------------------------------------------------------------
def rectangle_mask(height: int, width: int, top: int, left: int, box_height: int, box_width: int) -> torch.Tensor:
    """(H, W) bool mask, True where pixels are missing: a rectangle clipped to the image."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[max(0, top):max(0, top + box_height), max(0, left):max(0, left + box_width)] = True
    return mask


def random_mask(height: int, width: int, fraction: float, seed: int = 0) -> torch.Tensor:
    """(H, W) bool mask with round(fraction * H * W) missing pixels, chosen by a seeded generator."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the missing fraction must lie in [0, 1], got {fraction}")
    n = height * width
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[:round(fraction * n)]] = True
    return mask.view(height, width)


@dataclass
class Imputation:
    original: torch.Tensor  # (N, C, H, W)
    masked: torch.Tensor  # the input with the missing pixels set to the baseline fill
    filled: torch.Tensor  # after the last iteration
    steps: list[torch.Tensor]  # the filled image after each iteration (steps[-1] is `filled`)
    mask: torch.Tensor  # (N, C, H, W) bool, True where missing
    error_baseline: torch.Tensor  # (N,) MSE on the missing pixels of `masked`
    error_filled: torch.Tensor  # (N,) MSE on the missing pixels of `filled`


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error over the pixels where mask is True (NaN for an empty mask)."""
    sq = (a - b).pow(2) * mask
    return sq.flatten(1).sum(1) / mask.flatten(1).sum(1)


@torch.inference_mode()
def impute(model, x: torch.Tensor, mask: torch.Tensor, iterations: int = 10, y: torch.Tensor | None = None,
           fill: torch.Tensor | float = 0.0, mode: str = "mean", seed: int = 0) -> Imputation:
    """Fill the missing pixels of x by iterating encode/decode with the observed pixels held fixed.

    Start from x with the missing pixels set to `fill` (0, or e.g. the training set's mean image);
    each iteration encodes the current image, decodes, and copies the decoded pixels into the
    missing ones only. mode="mean" decodes the posterior mean (deterministic, converges to a fixed
    point); mode="gibbs" decodes a draw z ~ q(z|x) from a generator seeded with `seed` — the
    pseudo-Gibbs sampler of Rezende et al. (2014, Sec. 5.2), using the decoder's mean image rather
    than a pixel-noise sample, so each step is a plausible completion rather than a blurred one.

    x: (N, C, H, W) or (C, H, W); mask: (H, W), (N, H, W) or (N, C, H, W), True = missing.
    The errors compare the missing pixels with the original, for the masked baseline and the fill.
    """
    if mode not in ("mean", "gibbs"):
        raise ValueError(f"mode must be 'mean' or 'gibbs', got {mode!r}")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.dim() in (2, 3):  # (H, W) or (N, H, W): the same pixels missing in every channel
        mask = mask.unsqueeze(-3)
    mask = mask.expand_as(x)
    fill = torch.as_tensor(fill, dtype=torch.float32).expand_as(x)
    if y is not None:
        y = torch.as_tensor(y, dtype=torch.long).reshape(-1).expand(len(x))
    elif model.config.conditional:
        raise ValueError("a conditional model needs the images' labels y to impute")
    if mode == "gibbs":
        model.require_posterior("imputing with posterior draws")
    generator = torch.Generator().manual_seed(seed)
    masked = torch.where(mask, fill, x)
    current, steps = masked, []
    for _ in range(iterations):
        mu, logvar = model.encode(current, y)
        if mode == "gibbs":
            mu = model.reparameterize(mu, logvar, torch.randn(mu.shape, generator=generator).to(mu.device))
        current = torch.where(mask, model.decode(mu, y), x)
        steps.append(current)
    return Imputation(x, masked, current, steps, mask, masked_mse(masked, x, mask), masked_mse(current, x, mask))


# -- disentanglement ---------------------------------------------------------------------------
def discretize(values: np.ndarray, bins: int = 20) -> np.ndarray:
    """Each column of (N, D) values into `bins` equal-width bins over its range (codes 0..bins-1),
    as disentanglement_lib's histogram discretiser does for MIG."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    codes = np.empty(values.shape, dtype=np.int64)
    for j in range(values.shape[1]):
        edges = np.histogram_bin_edges(values[:, j], bins)
        codes[:, j] = np.digitize(values[:, j], edges[1:-1])
    return codes


def factor_codes(factors: np.ndarray, max_values: int = 20) -> np.ndarray:
    """Ground-truth factors (N, K) as integer codes: their distinct values, or `max_values` bins
    for a factor with more distinct values than that (a continuous one)."""
    factors = np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    codes = np.empty(factors.shape, dtype=np.int64)
    for k in range(factors.shape[1]):
        distinct, inverse = np.unique(factors[:, k], return_inverse=True)
        codes[:, k] = inverse if len(distinct) <= max_values else discretize(factors[:, k], max_values)[:, 0]
    return codes


def _entropy(codes: np.ndarray) -> float:
    p = np.bincount(codes) / len(codes)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats from the empirical joint distribution of two code vectors."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= len(a)
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(max(0.0, (joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum()))


@dataclass
class MIGResult:
    mig: float  # mean over factors (with entropy > 0) of the normalised gap
    gaps: np.ndarray  # (K,) (top1 - top2 MI) / H(factor) per factor; NaN for a constant factor
    normalized_mi: np.ndarray  # (D, K) I(z_d; v_k) / H(v_k)
    mutual_info: np.ndarray  # (D, K) in nats
    entropy: np.ndarray  # (K,) H(v_k) in nats
    best_factor: np.ndarray  # (D,) the factor each dimension shares most information with; -1: none (< min_info)
    top_dims: np.ndarray  # (K, 2) the two dimensions with the most information about each factor


def mutual_information_gap(z: np.ndarray, factors: np.ndarray, bins: int = 20, min_info: float = 0.05) -> MIGResult:
    """MIG (Chen et al., 2018, https://arxiv.org/abs/1802.04942): for each ground-truth factor v_k,
    the gap between the two latent dimensions with the most mutual information about it, divided by
    H(v_k); MIG is its mean over factors. 1: each factor lives in exactly one dimension; 0: none does.

    z: (N, D) latent means, discretised into `bins` equal-width bins per dimension (the estimator of
    Locatello et al.'s disentanglement_lib); factors: (N, K) ground truth (see factor_codes).
    A dimension whose normalised MI with every factor is below `min_info` tracks no factor (-1).
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) != len(factors):
        raise ValueError(f"need latents (N, D) and factors (N, K) for the same N, got {z.shape} and {np.shape(factors)}")
    z_codes, v_codes = discretize(z, bins), factor_codes(factors)
    d, k = z_codes.shape[1], v_codes.shape[1]
    mi = np.array([[_mutual_information(z_codes[:, i], v_codes[:, j]) for j in range(k)] for i in range(d)])
    entropy = np.array([_entropy(v_codes[:, j]) for j in range(k)])
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = np.where(entropy > 0, mi / entropy, np.nan)
    ranked = np.sort(mi, axis=0)[::-1]  # per factor, most informative dimension first
    second = ranked[1] if d > 1 else np.zeros(k)
    with np.errstate(invalid="ignore", divide="ignore"):
        gaps = np.where(entropy > 0, (ranked[0] - second) / entropy, np.nan)
    top_dims = np.argsort(-mi, axis=0, kind="stable")[:2].T if d > 1 else np.zeros((k, 2), dtype=int)
    filled = np.nan_to_num(normalized, nan=-1.0)
    best = np.where(filled.max(1) >= min_info, filled.argmax(1), -1)
    valid = gaps[~np.isnan(gaps)]
    return MIGResult(float(valid.mean()) if len(valid) else math.nan, gaps, normalized, mi, entropy, best, top_dims)
