"""Bring your own model: inspect a VAE trained with other code, in whatever shape that code left it.

The user names a local Python file and class (`my_vae.py:VanillaVAE`), the keyword arguments that
build it, and a weights file. `encode` may return (mu, logvar) as a tuple or list, a dict, or an
object with named fields (pythae's ModelOutput: embedding, log_covariance); `decode` a tensor or an
object with `.reconstruction` / `.sample`. Its output may be logits, probabilities or tanh in
[-1, 1], its input [0, 1] or [-1, 1]: images are mapped to the model's range and back.

Only the user's own local files are executed, never an upload; weights are read without unpickling
code (safetensors, or torch.load(weights_only=True)), Lightning's {"state_dict": ...} included.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file as load_safetensors
from torch import nn

from .checkpoint import Checkpoint, CheckpointError, read_state_dict, weights_mismatch
from .config import VAEConfig
from .model import VAE

DECODER_OUTPUTS = ("logits", "probabilities", "tanh")
INPUT_RANGES = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0)}
# The names VAE code gives the posterior's two parameters, in the order they are tried.
_POSTERIOR_FIELDS = (("mu", "logvar"), ("mu", "log_var"), ("embedding", "log_covariance"), ("mean", "logvar"),
                     ("z_mean", "z_log_var"))
_IMAGE_FIELDS = ("reconstruction", "recon", "sample", "x_recon")
_EPS = 1e-6  # probabilities are clamped to [eps, 1 - eps] before logit(): the loss needs finite logits


@dataclass(frozen=True)
class OwnModel:
    """A user's class and weights, as the command line (--model, --model-kwargs, --weights, ...) and
    the sidebar's form name them. Frozen: it is a cache key."""
    spec: str  # path/to/file.py:ClassName
    weights: str
    model_kwargs: str = ""  # a JSON object of constructor arguments
    decoder_outputs: str = "logits"
    input_range: str = "0,1"
    dataset: str = "digits"

    @property
    def label(self) -> str:
        file, _, class_name = self.spec.rpartition(":")
        return f"{Path(file).name}:{class_name}"


def _posterior(out) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) from whatever encode() returned; ValueError saying what was expected."""
    pair = None
    if isinstance(out, (tuple, list)) and len(out) == 2:
        pair = out[0], out[1]
    else:
        for a, b in _POSTERIOR_FIELDS:
            if isinstance(out, dict) and a in out and b in out:
                pair = out[a], out[b]
                break
            if not isinstance(out, dict) and hasattr(out, a) and hasattr(out, b):
                pair = getattr(out, a), getattr(out, b)
                break
    if pair is None or not all(torch.is_tensor(t) for t in pair) or pair[0].shape != pair[1].shape \
            or pair[0].dim() != 2:
        raise ValueError("encode(x) must return (mu, logvar): two tensors of shape (batch, latent size), as a "
                         "tuple, a list, a dict or an object with fields mu/logvar or embedding/log_covariance")
    return pair


def _image(out) -> torch.Tensor:
    """The image tensor from whatever decode() returned."""
    if torch.is_tensor(out):
        return out
    for name in _IMAGE_FIELDS:
        value = out.get(name) if isinstance(out, dict) else getattr(out, name, None)
        if torch.is_tensor(value):
            return value
    raise ValueError("decode(z) must return a tensor, or an object with a .reconstruction or .sample tensor")


class ExternalVAE(VAE):
    """A user's module seen through the VAE interface, so every page and metric works on it. Images
    reach it in its input range and come back from its output in [0, 1]."""

    def __init__(self, module: nn.Module, input_shape: tuple[int, int, int], decoder_outputs: str = "logits",
                 input_range: str = "0,1", likelihood: str = "bernoulli", obs_sigma: float = 0.1):
        nn.Module.__init__(self)  # not VAE.__init__: the layers are the user's
        if decoder_outputs not in DECODER_OUTPUTS:
            raise ValueError(f"decoder outputs must be one of {DECODER_OUTPUTS}, got {decoder_outputs!r}")
        if input_range not in INPUT_RANGES:
            raise ValueError(f"input range must be one of {tuple(INPUT_RANGES)}, got {input_range!r}")
        self.inner = module.eval()
        self.input_shape = tuple(input_shape)
        self.decoder_outputs, self.input_range = decoder_outputs, input_range
        self.source_digest = ""  # sha256 of the user's Python file, set by load_external
        probe = torch.zeros(2, *self.input_shape)
        with torch.inference_mode():
            # Many VAEs (pytorch/examples among them) expect flattened images; try both layouts.
            try:
                out = self.inner.encode(self._to_model_range(probe))
                self.flatten_input = False
            except RuntimeError:
                out = self.inner.encode(self._to_model_range(probe).flatten(1))
                self.flatten_input = True
            mu, _ = _posterior(out)
            if mu.shape[0] != len(probe):
                raise ValueError(f"encode() of a batch of {len(probe)} returned {mu.shape[0]} rows")
            image = _image(self.inner.decode(mu))
            if image.numel() != mu.shape[0] * torch.Size(self.input_shape).numel():
                raise ValueError(f"decode() returned {tuple(image.shape)}, not {len(probe)} images of "
                                 f"{self.input_shape}")
        self.config = VAEConfig(input_shape=self.input_shape, latent_dim=mu.shape[-1], architecture="external",
                                hidden_sizes=(1,), likelihood=likelihood, obs_sigma=obs_sigma)

    def weights_digest(self) -> str:
        """The weights, and what else decides what this model computes: how it is opened and the
        source of the user's file (a cache on disk must not serve the map of other settings)."""
        how = f"{self.decoder_outputs}|{self.input_range}|{self.flatten_input}|{self.source_digest}"
        return hashlib.sha256(f"{super().weights_digest()}|{how}".encode()).hexdigest()

    def _to_model_range(self, x):
        low, high = INPUT_RANGES[self.input_range]
        return x if (low, high) == (0.0, 1.0) else low + (high - low) * x

    def encode(self, x, y=None):
        x = self._to_model_range(x)
        return _posterior(self.inner.encode(x.flatten(1) if self.flatten_input else x))

    def decode(self, z, y=None):
        out = _image(self.inner.decode(z)).reshape(-1, *self.input_shape)
        if self.decoder_outputs == "logits":
            return torch.sigmoid(out)
        if self.decoder_outputs == "tanh":
            return ((out + 1) / 2).clamp(0, 1)
        return out.clamp(0, 1)

    def decoder_output(self, z, y=None):
        if self.decoder_outputs == "logits":
            return _image(self.inner.decode(z)).reshape(-1, *self.input_shape)
        return torch.logit(self.decode(z).clamp(_EPS, 1 - _EPS))  # back to logits, so the loss applies


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
        del sys.modules[module_name]  # no half-imported module left behind
        raise CheckpointError(f"{path.name} failed to import: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise CheckpointError(f"{path.name} defines no {class_name}")
    return cls


def parse_model_kwargs(text: str) -> dict:
    """--model-kwargs: a JSON object (empty: no arguments)."""
    if not text.strip():
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"the model's arguments are not JSON ({exc}); write them as an object such as "
                              '{"in_channels": 1, "latent_dim": 16}') from None
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"the model's arguments must be a JSON object of name: value, not {type(kwargs).__name__}")
    return kwargs


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """name -> tensor from .safetensors, or from a torch file (.pt, .pth, Lightning's .ckpt) loaded
    with weights_only=True; a {"state_dict": ...} wrapper is unwrapped."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"{path.name}: no such file")
        try:
            return load_safetensors(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path.name}: not a readable safetensors file ({exc})") from None
    return read_state_dict(path)


def _strip_prefix(weights: dict, expected: set[str]) -> dict:
    """The weights under the leading prefix (`model.`, `vae.`, ...) that makes the most names fit
    `expected`: a LightningModule saves its network's parameters under its attribute's name."""
    best, fits = weights, len(expected & set(weights))
    while fits < len(expected):
        prefixes = {k.split(".", 1)[0] + "." for k in best if "." in k}
        candidates = [{k[len(p):]: v for k, v in best.items() if k.startswith(p)} for p in sorted(prefixes)]
        better = max(candidates, key=lambda c: len(expected & set(c)), default=None)
        if better is None or len(expected & set(better)) <= fits:
            break
        best, fits = better, len(expected & set(better))
    return best


def fit_weights(module: nn.Module, weights: dict[str, torch.Tensor], name: str) -> None:
    """Load `weights` into `module`, stripping a common prefix when that makes them fit; a mismatch
    lists the missing, unexpected and wrongly shaped names, a few of each."""
    expected = module.state_dict()
    weights = _strip_prefix(weights, set(expected))
    problem = weights_mismatch(expected, weights)
    if problem:
        raise CheckpointError(f"{name} does not fit the model: {problem}")
    module.load_state_dict(weights)


def load_external(source: OwnModel, input_shape, label_names=None) -> Checkpoint:
    """Build the user's model with its arguments, load its weights, wrap it; CheckpointError says why not."""
    if source.decoder_outputs not in DECODER_OUTPUTS:  # before any probe, so the message names the real problem
        raise CheckpointError(f"decoder outputs must be one of {', '.join(DECODER_OUTPUTS)}, "
                              f"got {source.decoder_outputs!r}")
    if source.input_range not in INPUT_RANGES:
        raise CheckpointError(f"the input range must be one of {', '.join(INPUT_RANGES)}, got {source.input_range!r}")
    kwargs = parse_model_kwargs(source.model_kwargs)
    cls = import_class(source.spec)
    class_name = source.spec.rpartition(":")[2]
    try:
        module = cls(**kwargs)
    except Exception as exc:
        hint = "" if kwargs else " (give its constructor's arguments as a JSON object)"
        raise CheckpointError(f"{class_name}(**{json.dumps(kwargs)}) failed: {type(exc).__name__}: {exc}{hint}") from None
    if not isinstance(module, nn.Module):
        raise CheckpointError(f"{source.label}: the model must be a torch.nn.Module, not {type(module).__name__}")
    for method in ("encode", "decode"):
        if not callable(getattr(module, method, None)):
            raise CheckpointError(f"{source.label}: the model needs an {method}() method")
    weights_name = Path(source.weights).name
    fit_weights(module, read_weights(source.weights), weights_name)
    try:
        model = ExternalVAE(module, input_shape, source.decoder_outputs, source.input_range)
    except Exception as exc:
        raise CheckpointError(f"{source.label}: encode() and decode() on a {tuple(input_shape)} batch failed: "
                              f"{exc}") from None
    model.source_digest = hashlib.sha256(Path(source.spec.rpartition(":")[0]).expanduser().read_bytes()).hexdigest()
    return Checkpoint(model=model.eval(), path=Path(source.weights),
                      dataset={"name": source.dataset, "label_names": label_names or []})


@torch.inference_mode()
def reconstruction_warning(model: VAE, x: torch.Tensor, y=None) -> str:
    """A plain-words warning when a model's reconstructions of x are no better than drawing the
    dataset's average image, or all look alike: the sign of a wrong output or input range. "" if fine."""
    x = x[:64]
    recon = model.reconstruct(x, None if y is None or not model.config.conditional else y[:64])
    error = (recon - x).abs().mean().item()
    average = (x - x.mean(0)).abs().mean().item()
    spread, data_spread = recon.std(0).mean().item(), x.std(0).mean().item()
    if error < 0.8 * average and spread > 0.2 * data_spread:
        return ""
    how = ""
    if isinstance(model, ExternalVAE):
        how = (f" It was opened with decode(z) returning {model.decoder_outputs} and inputs in "
               f"[{model.input_range.replace(',', ', ')}].")
    if spread <= 0.2 * data_spread:
        return ("Every reconstruction looks the same: is the output range right?" + how +
                " A model trained on other data or the wrong weights file does this too.")
    return (f"Reconstructions are far from the inputs (mean pixel error {error:.2f}, while drawing the average "
            f"image would miss by {average:.2f}): is the output range right?" + how)
