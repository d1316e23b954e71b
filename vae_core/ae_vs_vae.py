"""Autoencoder or VAE, and why a VAE's pictures are blurry: the numbers behind pages/ae_vs_vae.py.

An autoencoder (objective "ae") and a VAE of the same networks differ by the ELBO's second term. Without
KL(q(z|x) || N(0, I)) nothing asks the codes to fill the prior's ball: they sit wherever reconstruction
put them, at any scale and with gaps between classes, so a draw from N(0, I) usually lands where no
training code is and decodes to a smear. With it, the codes fill the ball and every draw decodes to
something like the data; the price is that each image's code is a cloud, and the decoder's best answer
to a cloud is the average of the images it could be: the blur.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class CodeCloud:
    codes: np.ndarray  # (N, 2): the codes on their two principal axes, origin kept (the prior's centre)
    prior: np.ndarray  # (M, 2): draws from N(0, I), projected the same way
    explained: float  # the share of the codes' variance the two axes show
    in_prior: float  # the share of codes inside the prior's 99% ball
    draws_near_codes: float  # the share of prior draws that land among the codes (see code_cloud)
    radius: float  # root mean square distance of the codes from the origin (N(0, I) in D dims: about sqrt(D))


def code_cloud(z: np.ndarray, draws: int = 1000, seed: int = 0) -> CodeCloud:
    """Where the codes z (N, D) sit against the prior N(0, I), in numbers and in a picture.

    The picture: the codes and `draws` prior draws on the codes' two principal axes, an orthogonal
    projection through the origin, so scale and offset stay as they are (no whitening, no centring).
    in_prior: the share of codes with |z|² within the chi-square 99% quantile of D dimensions, the ball
    that holds 99% of the prior's draws. draws_near_codes: the share of prior draws whose nearest code
    (in all D dimensions) is no farther than 95% of the codes are from their own nearest neighbour: a
    draw that lands among the codes, where the decoder learned something. The rest land in holes."""
    from scipy.stats import chi2
    from sklearn.neighbors import NearestNeighbors

    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) < 3:
        raise ValueError(f"a code cloud needs (N >= 3, D) codes, got shape {z.shape}")
    dims = z.shape[1]
    prior = np.random.default_rng(seed).standard_normal((draws, dims))
    _, singular, axes = np.linalg.svd(z - z.mean(0), full_matrices=False)
    axes = axes[:2] if dims >= 2 else np.vstack([axes, np.zeros_like(axes)])
    variance = singular ** 2
    index = NearestNeighbors(n_neighbors=2).fit(z)
    spacing = np.quantile(index.kneighbors(z)[0][:, 1], 0.95)  # [:, 0] is each code itself
    nearest = index.kneighbors(prior, n_neighbors=1)[0][:, 0]
    return CodeCloud(codes=(z @ axes.T).astype(np.float32), prior=(prior @ axes.T).astype(np.float32),
                     explained=float(variance[:2].sum() / variance.sum()) if variance.sum() > 0 else 1.0,
                     in_prior=float(((z ** 2).sum(1) <= chi2.ppf(0.99, dims)).mean()),
                     draws_near_codes=float((nearest <= spacing).mean()),
                     radius=float(np.sqrt((z ** 2).sum(1).mean())))


@dataclass
class PosteriorSpread:
    mean_image: torch.Tensor  # (C, H, W): decode(μ), what the Overview calls the reconstruction
    decoded_draws: torch.Tensor  # (S, C, H, W): decode(z) for z ~ q(z|x)
    pixel_variance: torch.Tensor  # (H, W): variance over those decodes, averaged over channels
    pixel_draws: torch.Tensor  # (S, C, H, W): images drawn from p(x|z) (Bernoulli pixels, or Gaussian noise)
    sweep: torch.Tensor  # (len(sweep_dims) * K, C, H, W): decode(μ + t·σ_d e_d), row d, column t
    sweep_steps: tuple[float, ...]  # the K values of t
    sweep_dims: tuple[int, ...]  # the dimensions swept: the least certain (largest σ) first


@torch.inference_mode()
def posterior_spread(model, x: torch.Tensor, y=None, draws: int = 8, seed: int = 0,
                     steps: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0), dims: int = 4) -> PosteriorSpread:
    """Why the reconstruction of one image x (C, H, W) (of class y, for a conditional model) is blurry: what its posterior q(z|x) holds.

    The encoder does not give one code but a cloud N(μ, σ²). Each z in it decodes to a sharper, slightly
    different image; decode(μ) is close to their average, the average of the plausible outputs, and the
    per-pixel variance shows where they disagree (the edges). The sweep moves μ by t posterior standard
    deviations along each of the `dims` least certain dimensions, one at a time. Draws are seeded, so a page shows the
    same pictures on every run. A model without a posterior (an autoencoder) raises NoPosterior."""
    model.require_posterior("the spread of q(z|x)")
    cfg = model.config
    device = next(model.parameters()).device
    x = torch.as_tensor(x, dtype=torch.float32).reshape(1, *cfg.input_shape).to(device)
    labels = None if y is None or not cfg.conditional else torch.as_tensor([int(y)], device=device)
    mu, logvar = model.encode(x, labels)
    sigma = torch.exp(0.5 * logvar)[0]
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn(draws, cfg.latent_dim, generator=generator).to(device)
    decoded = model.decode(mu + sigma * eps, None if labels is None else labels.expand(draws))
    if cfg.likelihood == "bernoulli":
        pixels = torch.bernoulli(decoded.cpu(), generator=generator)
    else:
        pixels = (decoded.cpu() + cfg.obs_sigma * torch.randn(decoded.shape, generator=generator)).clamp(0, 1)
    swept = [int(d) for d in torch.argsort(sigma, descending=True)[:dims]]
    offsets = torch.zeros(len(swept), len(steps), cfg.latent_dim, device=device)
    for row, d in enumerate(swept):
        offsets[row, :, d] = torch.tensor(steps, device=device) * sigma[d]
    offsets = offsets.reshape(-1, cfg.latent_dim)
    sweep_labels = None if labels is None else labels.expand(len(offsets))
    return PosteriorSpread(mean_image=model.decode(mu, labels)[0].cpu(), decoded_draws=decoded.cpu(),
                           pixel_variance=decoded.var(0).mean(0).cpu(), pixel_draws=pixels,
                           sweep=model.decode(mu + offsets, sweep_labels).cpu(), sweep_steps=tuple(steps),
                           sweep_dims=tuple(swept))
