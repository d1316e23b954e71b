"""Bring your own model: inspect a VAE trained with other code.

The user names a local Python file and class (`my_vae.py:VAE`) whose instances have
`encode(x) -> (mu, logvar)` and `decode(z) -> x` (logits or probabilities), plus a weights file.
Only the user's own local files are executed — never an upload — and the weights are read
without unpickling code (safetensors, or torch.load(weights_only=True)).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file as load_safetensors
from torch import nn

from .checkpoint import Checkpoint, CheckpointError, read_state_dict
from .config import VAEConfig
from .model import VAE

DECODER_OUTPUTS = ("logits", "probabilities")


class ExternalVAE(VAE):
    """A user's module seen through the VAE interface, so every page and metric works on it."""

    def __init__(self, module: nn.Module, input_shape: tuple[int, int, int], decoder_outputs: str = "logits"):
        nn.Module.__init__(self)  # not VAE.__init__: the layers are the user's
        if decoder_outputs not in DECODER_OUTPUTS:
            raise ValueError(f"decoder outputs must be one of {DECODER_OUTPUTS}, got {decoder_outputs!r}")
        self.inner = module.eval()
        self.input_shape = tuple(input_shape)
        self.decoder_outputs = decoder_outputs
        probe = torch.zeros(2, *self.input_shape)
        with torch.inference_mode():
            # Many VAEs (pytorch/examples among them) expect flattened images; try both layouts.
            try:
                out = self.inner.encode(probe)
                self.flatten_input = False
            except RuntimeError:
                out = self.inner.encode(probe.flatten(1))
                self.flatten_input = True
        # A lone (2, d) tensor would unpack into two rows without complaint: check the pair itself.
        if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(torch.is_tensor(t) for t in out)
                and out[0].shape == out[1].shape and out[0].dim() == 2 and out[0].shape[0] == len(probe)):
            raise ValueError("encode(x) must return (mu, logvar), two tensors of shape (batch, latent size)")
        mu = out[0]
        self.config = VAEConfig(input_shape=self.input_shape, latent_dim=mu.shape[-1], architecture="external",
                                hidden_sizes=(1,))

    def encode(self, x, y=None):
        mu, logvar = self.inner.encode(x.flatten(1) if self.flatten_input else x)
        return mu, logvar

    def decoder_output(self, z, y=None):
        out = self.inner.decode(z).reshape(-1, *self.input_shape)
        if self.decoder_outputs == "logits":
            return out
        return torch.logit(out.clamp(1e-6, 1 - 1e-6))  # back to logits, so the Bernoulli loss applies


def import_class(spec: str):
    """`path/to/file.py:ClassName` -> the class, importing the user's local file."""
    file, sep, class_name = spec.rpartition(":")
    if not sep or not file.endswith(".py") or not class_name.isidentifier():
        raise CheckpointError(f"model must be given as path/to/file.py:ClassName, got {spec!r}")
    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise CheckpointError(f"{file}: no such Python file")
    module_name = f"latent_explorer_user_{abs(hash(str(path)))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        raise CheckpointError(f"{path.name} failed to import: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise CheckpointError(f"{path.name} defines no {class_name}")
    return cls


def load_external(spec: str, weights: str | Path, input_shape, decoder_outputs: str = "logits",
                  dataset: str = "digits", label_names=None) -> Checkpoint:
    """Build the user's model (no constructor arguments), load its weights, wrap it."""
    if decoder_outputs not in DECODER_OUTPUTS:  # before any probe, so the message names the real problem
        raise CheckpointError(f"decoder outputs must be one of {DECODER_OUTPUTS}, got {decoder_outputs!r}")
    cls = import_class(spec)
    try:
        module = cls()
    except Exception as exc:
        raise CheckpointError(f"{spec}: the class must build with no arguments ({type(exc).__name__}: {exc})") from None
    if not isinstance(module, nn.Module):
        raise CheckpointError(f"{spec}: the model must be a torch.nn.Module, not {type(module).__name__}")
    for method in ("encode", "decode"):
        if not callable(getattr(module, method, None)):
            raise CheckpointError(f"{spec}: the model needs an {method}() method")
    weights = Path(weights)
    if weights.suffix == ".safetensors":
        try:
            state = load_safetensors(str(weights))
        except Exception as exc:
            raise CheckpointError(f"{weights.name}: not a readable safetensors file ({exc})") from None
    else:
        state = read_state_dict(weights)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights.name} does not fit {spec}: {str(exc).splitlines()[0]}") from None
    try:
        model = ExternalVAE(module, input_shape, decoder_outputs)
    except Exception as exc:
        raise CheckpointError(f"{spec}: encode() on a {tuple(input_shape)} batch failed: {exc}") from None
    return Checkpoint(model=model.eval(), path=weights,
                      dataset={"name": dataset, "label_names": label_names or []})
