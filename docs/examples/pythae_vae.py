"""A VAE trained with pythae and saved with pythae's own `model.save()`, as its users have them.

    python docs/examples/pythae_vae.py my-pythae-vae

writes my-pythae-vae/ (model_config.json, model.pt, environment.json) after 3 epochs on mnist-5k
with pythae's default MLP for 1x28x28 images. The README's "Bring your own model" opens it.
"""
import sys
from pathlib import Path

import torch
from pythae.models import VAE, VAEConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for its bundled mnist-5k
from vae_core.datasets import load_dataset  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "my-pythae-vae"
torch.manual_seed(0)
model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce"))
x = load_dataset("mnist-5k").x_train
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(3):
    for batch in x[torch.randperm(len(x))].split(64):
        loss = model({"data": batch}).loss  # pythae's own forward and loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
model.save(out)
print(f"wrote {out}/ with pythae's model.save()")
