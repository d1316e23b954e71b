"""A VAE written the way AntixK/PyTorch-VAE writes them: its VanillaVAE (constructor arguments,
BatchNorm, a list from encode(), tanh output, inputs in [-1, 1]), shrunk to 8x8 digits.

    python docs/examples/vanilla_vae.py vanilla.ckpt

trains it for a few seconds with that repository's loss and saves it as its PyTorch Lightning
experiment does: a `.ckpt` whose state_dict keys carry the LightningModule's `model.` prefix. The
README's "Bring your own model" opens it as it is; the tests do too.
"""
import sys
from typing import List

import torch
from torch import nn
from torch.nn import functional as F


class VanillaVAE(nn.Module):
    def __init__(self, in_channels: int, latent_dim: int, hidden_dims: List = None, **kwargs) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        modules = []
        if hidden_dims is None:
            hidden_dims = [16, 32]
        self.last_dim = hidden_dims[-1]
        out_channels = in_channels
        for h_dim in hidden_dims:
            modules.append(nn.Sequential(nn.Conv2d(in_channels, out_channels=h_dim, kernel_size=3, stride=2,
                                                   padding=1),
                                         nn.BatchNorm2d(h_dim), nn.LeakyReLU()))
            in_channels = h_dim
        self.encoder = nn.Sequential(*modules)
        self.fc_mu = nn.Linear(hidden_dims[-1] * 4, latent_dim)
        self.fc_var = nn.Linear(hidden_dims[-1] * 4, latent_dim)
        modules = []
        self.decoder_input = nn.Linear(latent_dim, hidden_dims[-1] * 4)
        hidden_dims = list(reversed(hidden_dims))
        for i in range(len(hidden_dims) - 1):
            modules.append(nn.Sequential(nn.ConvTranspose2d(hidden_dims[i], hidden_dims[i + 1], kernel_size=3,
                                                            stride=2, padding=1, output_padding=1),
                                         nn.BatchNorm2d(hidden_dims[i + 1]), nn.LeakyReLU()))
        self.decoder = nn.Sequential(*modules)
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(hidden_dims[-1], hidden_dims[-1], kernel_size=3, stride=2, padding=1,
                               output_padding=1),
            nn.BatchNorm2d(hidden_dims[-1]), nn.LeakyReLU(),
            nn.Conv2d(hidden_dims[-1], out_channels=out_channels, kernel_size=3, padding=1), nn.Tanh())

    def encode(self, input):
        result = torch.flatten(self.encoder(input), start_dim=1)
        return [self.fc_mu(result), self.fc_var(result)]

    def decode(self, z):
        result = self.decoder_input(z).view(-1, self.last_dim, 2, 2)
        return self.final_layer(self.decoder(result))

    def reparameterize(self, mu, logvar):
        return torch.randn_like(mu) * torch.exp(0.5 * logvar) + mu

    def forward(self, input, **kwargs):
        mu, log_var = self.encode(input)
        z = self.reparameterize(mu, log_var)
        return [self.decode(z), input, mu, log_var]

    def loss_function(self, *args, **kwargs) -> dict:
        recons, input, mu, log_var = args[0], args[1], args[2], args[3]
        kld_weight = kwargs['M_N']
        recons_loss = F.mse_loss(recons, input)
        kld_loss = torch.mean(-0.5 * torch.sum(1 + log_var - mu ** 2 - log_var.exp(), dim=1), dim=0)
        return {'loss': recons_loss + kld_weight * kld_loss, 'Reconstruction_Loss': recons_loss.detach(),
                'KLD': -kld_loss.detach()}


KWARGS = {"in_channels": 1, "latent_dim": 4}
KLD_WEIGHT = 0.00025  # configs/vae.yaml in PyTorch-VAE


def train(checkpoint: str, steps: int = 300, seed: int = 0) -> None:
    """Train on scikit-learn's digits, rescaled to [-1, 1] as PyTorch-VAE normalises, and save as Lightning does."""
    from sklearn.datasets import load_digits

    torch.manual_seed(seed)
    model = VanillaVAE(**KWARGS)
    x = torch.tensor(load_digits().images / 16, dtype=torch.float32).unsqueeze(1) * 2 - 1
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = x[torch.randint(len(x), (64,), generator=generator)]
        loss = model.loss_function(*model(batch), M_N=KLD_WEIGHT)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save({"epoch": 9, "global_step": steps, "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"params": {"LR": 0.005, "kld_weight": KLD_WEIGHT}},
                "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [], "callbacks": {}}, checkpoint)


if __name__ == "__main__":
    train(sys.argv[1] if len(sys.argv) > 1 else "vanilla.ckpt")
