"""The VAE (Kingma & Welling, 2014, https://arxiv.org/abs/1312.6114), plain, beta, beta-TC and conditional.

encode -> (mu, logvar); reparameterize -> z = mu + sigma * eps; decode -> p(x|z).
MLP and convolutional bodies share the same heads, so every method below works for both.
"""
from __future__ import annotations

import hashlib
import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import VAEConfig
from . import losses


class _ConvEncoder(nn.Module):
    """Stride-2 3x3 convs: each halves the size, rounding up (ceil(H/2)), for any image size."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        channels, height, width = config.input_shape
        layers, self.sizes = [], [(height, width)]
        for out_channels in config.hidden_sizes:
            layers += [nn.Conv2d(channels, out_channels, 3, stride=2, padding=1), nn.SiLU()]
            channels = out_channels
            height, width = (height + 1) // 2, (width + 1) // 2
            self.sizes.append((height, width))
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.out_features = channels * height * width

    def forward(self, x):
        return self.body(x)


class _ConvDecoder(nn.Module):
    """Mirror of _ConvEncoder; output_padding picks 2h or 2h-1 so the exact input size comes back."""

    def __init__(self, config: VAEConfig, sizes: list[tuple[int, int]], in_features: int):
        super().__init__()
        channels = list(reversed(config.hidden_sizes))
        self.start = (channels[0], *sizes[-1])
        self.project = nn.Sequential(nn.Linear(in_features, math.prod(self.start)), nn.SiLU())
        layers = []
        targets = list(reversed(sizes[:-1]))
        outs = channels[1:] + [config.input_shape[0]]
        for i, (c_in, c_out) in enumerate(zip(channels, outs)):
            (h_in, w_in), (h_out, w_out) = ([self.start[1:]] + targets)[i], targets[i]
            pad = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
            layers.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=pad))
            if i < len(channels) - 1:
                layers.append(nn.SiLU())
        self.body = nn.Sequential(*layers)

    def forward(self, h):
        return self.body(self.project(h).view(-1, *self.start))


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers)


class NoPosterior(ValueError):
    """Asked an autoencoder for what only a posterior q(z|x) gives (a KL, an ELBO, posterior draws)."""

    def __init__(self, what: str):
        super().__init__(f"{what} needs a probabilistic encoder, and this model is an autoencoder: its encoder "
                         "gives one code per image, not a distribution q(z|x), so there is no KL term and no "
                         "ELBO. What applies is its reconstruction error.")


class VAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        if config.architecture == "external":
            raise ValueError("an 'external' model is the user's own code; open it with vae_core.external")
        self.config = config
        c = config
        n_pixels = math.prod(c.input_shape)
        if c.architecture == "mlp":
            self.encoder_body = nn.Sequential(nn.Flatten(), _mlp([n_pixels, *c.hidden_sizes]))
            features = c.hidden_sizes[-1]
        else:
            self.encoder_body = _ConvEncoder(c)
            features = self.encoder_body.out_features
        if c.dense_sizes:  # only then, so checkpoints without dense layers keep their parameter names
            self.encoder_dense = _mlp([features, *c.dense_sizes])
            features = c.dense_sizes[-1]
        # The label enters after the body (encoder) and before it (decoder): one-hot concatenation.
        self.to_mu = nn.Linear(features + c.num_classes, c.latent_dim)
        if c.probabilistic:  # an autoencoder's encoder stops at the code
            self.to_logvar = nn.Linear(features + c.num_classes, c.latent_dim)
        decoder_in = c.latent_dim + c.num_classes
        if c.dense_sizes:
            self.decoder_dense = _mlp([decoder_in, *reversed(c.dense_sizes)])
            decoder_in = c.dense_sizes[0]
        if c.architecture == "mlp":
            widths = list(reversed(c.hidden_sizes))
            self.decoder_body = nn.Sequential(
                _mlp([decoder_in, *widths]), nn.Linear(widths[-1], n_pixels), nn.Unflatten(1, c.input_shape)
            )
        else:
            self.decoder_body = _ConvDecoder(c, self.encoder_body.sizes, decoder_in)

    # -- the four functions of pytorch/examples vae/main.py -------------------------------------
    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """q(z|x[,y]) = N(mu, diag(exp(logvar))). An autoencoder: (its code, None)."""
        h = self.encoder_body(x)
        if self.config.dense_sizes:
            h = self.encoder_dense(h)
        h = self._with_label(h, y)
        return self.to_mu(h), self.to_logvar(h) if self.config.probabilistic else None

    @staticmethod
    def reparameterize(mu, logvar, eps: torch.Tensor | None = None):
        # z = mu + sigma * eps keeps z differentiable in (mu, logvar): the reparameterisation trick.
        if logvar is None:  # an autoencoder's code: nothing to draw
            return mu
        if eps is None:
            eps = torch.randn_like(mu)
        return mu + torch.exp(0.5 * logvar) * eps

    def decoder_output(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Parameters of p(x|z[,y]): logits (Bernoulli) or pre-sigmoid means (Gaussian)."""
        h = self._with_label(z, y)
        if self.config.dense_sizes:
            h = self.decoder_dense(h)
        return self.decoder_body(h)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean image E[x|z] in [0, 1], shape (N, C, H, W)."""
        return torch.sigmoid(self.decoder_output(z, y))

    def forward(self, x, y=None, eps=None):
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar, eps)
        return self.decoder_output(z, y), mu, logvar

    # -- objective -----------------------------------------------------------------------------
    def loss(self, x, y=None, eps=None, beta: float | None = None, dataset_size: int | None = None):
        """Batch-mean training loss and its parts (see loss_terms)."""
        if eps is None:
            eps = torch.randn(len(x), self.config.latent_dim, device=x.device)
        return self.loss_terms(x, *self(x, y, eps), beta=beta, eps=eps, dataset_size=dataset_size)

    def loss_terms(self, x, decoder_output, mu, logvar, beta: float | None = None, eps=None,
                   dataset_size: int | None = None, kl_weight: float = 1.0) -> dict[str, torch.Tensor]:
        """The loss from forward()'s outputs; separate so a DDP wrapper's forward can feed it.

        vae:        recon + kl_weight * beta * KL.
        ae:         recon alone (no "kl" or "elbo" in the parts: there is no posterior).
        beta-tcvae: recon + kl_weight * (KL + (beta - 1) * TC), TC estimated on the batch by minibatch-
                    weighted sampling over a training set of `dataset_size` (default: the batch is the
                    whole set) at z drawn with `eps`, the noise forward() decoded. KL = MI + TC +
                    dimension-wise KL, so beta weights TC alone.
        kl_weight ramps the regulariser in during KL warm-up (Bowman et al., 2016).
        """
        recon = -losses.log_likelihood(x, decoder_output, self.config.likelihood, self.config.obs_sigma)
        if not self.config.probabilistic:  # an autoencoder: the reconstruction term alone
            return {"recon": recon.mean(), "loss": recon.mean()}
        kl_per_dim = losses.gaussian_kl(mu, logvar)
        kl = kl_per_dim.sum(1)
        beta = self.config.beta if beta is None else beta
        parts = {
            "recon": recon.mean(),
            "kl": kl.mean(),
            "elbo": -(recon + kl).mean(),  # the true ELBO, whatever the objective trains with
            "kl_per_dim": kl_per_dim.mean(0).detach(),
        }
        if self.config.objective == "beta-tcvae":
            if eps is None:
                raise ValueError("the beta-tcvae loss needs eps, the draw forward() decoded")
            tc = losses.total_correlation(self.reparameterize(mu, logvar, eps), mu, logvar, dataset_size or len(x))
            parts["tc"] = tc
            parts["loss"] = (recon + kl_weight * kl).mean() + kl_weight * (beta - 1) * tc
        else:
            parts["loss"] = (recon + kl_weight * beta * kl).mean()
        return parts

    # -- what the app and pythae-style users call ---------------------------------------------
    def embed(self, x, y=None) -> torch.Tensor:
        """Posterior means: the point each input sits at in latent space."""
        return self.encode(x, y)[0]

    def reconstruct(self, x, y=None) -> torch.Tensor:
        """Decode the posterior mean (no sampling noise): what the model 'sees' in x."""
        return self.decode(self.embed(x, y), y)

    def sample(self, n: int, y=None, temperature: float = 1.0, generator: torch.Generator | None = None):
        """Decode n draws from the prior N(0, temperature^2 I); y is a label or n labels."""
        device = next(self.parameters()).device
        z = temperature * torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        return self.decode(z, self._labels(y, n))

    def iwae_bound(self, x, y=None, k: int = 50) -> torch.Tensor:
        """Per-sample importance-weighted bound on log p(x) (Burda et al., 2016); k=1 gives the ELBO."""
        self.require_posterior("an IWAE bound")
        mu, logvar = self.encode(x, y)
        std = torch.exp(0.5 * logvar)
        log_weights = []
        for _ in range(k):
            z = mu + std * torch.randn_like(mu)
            out = self.decoder_output(z, y)
            log_px_z = losses.log_likelihood(x, out, self.config.likelihood, self.config.obs_sigma)
            log_weights.append(log_px_z + losses.standard_normal_log_density(z) - losses.gaussian_log_density(z, mu, logvar))
        return torch.logsumexp(torch.stack(log_weights), 0) - math.log(k)

    def require_posterior(self, what: str) -> None:
        """Raise NoPosterior, saying why `what` does not apply, if this model is an autoencoder."""
        if not self.config.probabilistic:
            raise NoPosterior(what)

    def weights_digest(self) -> str:
        """sha256 of the config and every tensor of state_dict(): names these exact weights, for
        caches on disk (an exported decoder, a map) that outlive the process."""
        h = hashlib.sha256(repr(self.config).encode())
        for name, tensor in self.state_dict().items():
            h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # 0-d too
        return h.hexdigest()

    # -- helpers -------------------------------------------------------------------------------
    def _labels(self, y, n: int):
        if not self.config.conditional:
            return None
        if y is None:
            raise ValueError("a conditional model needs a label y")
        y = torch.as_tensor(y, dtype=torch.long, device=next(self.parameters()).device)
        return y.expand(n) if y.dim() == 0 else y

    def _with_label(self, h: torch.Tensor, y) -> torch.Tensor:
        if not self.config.conditional:
            return h
        return torch.cat([h, self._label_rows(y, h.shape[0], h.device).to(h.dtype)], 1)

    def _label_rows(self, y, n: int, device=None) -> torch.Tensor:
        """y as (n, num_classes) rows: integer labels (one, or one each) one-hot; rows of class
        weights (floating point, e.g. one-hot) used as given."""
        if y is None:
            raise ValueError("a conditional model needs a label y")
        if torch.is_tensor(y) and y.is_floating_point():
            if y.shape != (n, self.config.num_classes):
                raise ValueError(f"label weights must have shape ({n}, {self.config.num_classes}), got {tuple(y.shape)}")
            return y
        y = torch.as_tensor(y, dtype=torch.long, device=device)
        if y.dim() == 0:
            y = y.expand(n)
        if y.numel() and (y.min() < 0 or y.max() >= self.config.num_classes):
            raise ValueError(f"labels must lie in [0, {self.config.num_classes}), got {y.min().item()}..{y.max().item()}")
        return F.one_hot(y, self.config.num_classes)
