"""Checkpoints: one .safetensors file with the weights and JSON metadata. Loading never unpickles.

Metadata keys (all JSON strings, as safetensors requires str -> str):
  format="latent-explorer-vae", format_version, library_version,
  config (VAEConfig), dataset ({name, label_names, factor_names}), history (per-epoch records),
  metrics (test ELBO etc.), train_state (epoch, seed, train config: what resuming needs).
Tensor keys: model weights as in state_dict(); optimizer moments under "optimizer.<i>.<name>".
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from . import __version__
from .config import VAEConfig
from .model import VAE

FORMAT = "latent-explorer-vae"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 16 * 1024 * 1024  # a real header is a few KB; refuse absurd claims before reading
MAX_CHECKPOINT_BYTES = 2 * 1024**3
_OPTIMIZER_PREFIX = "optimizer."


class CheckpointError(Exception):
    """A file that is not a usable checkpoint; the message says why, for the person who chose it."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its type's name), for a one-line message."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


@dataclass
class Checkpoint:
    model: VAE
    dataset: dict = field(default_factory=dict)  # {"name", "label_names", "factor_names"}
    history: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    train_state: dict = field(default_factory=dict)
    optimizer_state: dict | None = None  # torch optimizer state_dict, when saved for resuming
    path: Path | None = None

    @property
    def config(self) -> VAEConfig:
        return self.model.config

    @property
    def trained_with(self) -> dict:
        """The TrainConfig fields the run saved, as a new dict. A run saved before schedules existed trained
        at a constant rate, and says so here."""
        return {"lr_schedule": "constant", **self.train_state.get("train_config", {})}


def save_checkpoint(path, model: VAE, *, dataset: dict | None = None, history=None, metrics=None,
                    train_state=None, optimizer: torch.optim.Optimizer | None = None) -> Path:
    """Write atomically: a temp file in the same folder, fsync, then os.replace over the target."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "library_version": __version__,
        "config": json.dumps(model.config.to_dict()),
        "dataset": json.dumps(dataset or {}),
        "history": json.dumps(history or []),
        "metrics": json.dumps(metrics or {}),
        "train_state": json.dumps(train_state or {}),
    }
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars = {}
        for index, slots in state["state"].items():
            for name, value in slots.items():
                if torch.is_tensor(value) and value.dim() > 0:
                    tensors[f"{_OPTIMIZER_PREFIX}{index}.{name}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{index}.{name}"] = float(value)
        meta["optimizer"] = json.dumps({"param_groups": state["param_groups"], "scalars": scalars})
    data = st_save(tensors, metadata=meta)
    meta["sha256"] = _digest(*_split(data))  # the tensor bytes do not move when the metadata grows
    data = st_save(tensors, metadata=meta)
    write_atomic(path, data)
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """A temp file in the same folder, fsync, then os.replace over the target: a reader sees the old
    file or the new one, never half of one, and a crash leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a model file is an ordinary shared file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _split(data: bytes) -> tuple[dict, bytes]:
    """(header, tensor bytes) of well-framed safetensors data."""
    (header_len,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + header_len]), data[8 + header_len:]


def _digest(header: dict, region: bytes) -> str:
    """sha256 of the header (keys sorted, the digest itself left out) and the tensor bytes.

    safetensors has no checksum: a flipped bit in the weights would load silently as other weights.
    """
    meta = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != "sha256"}
    canonical = json.dumps({**header, "__metadata__": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode() + region).hexdigest()


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise CheckpointError(f"{path.name}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path.name}: not a regular file")
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path.name}: {size / 1e9:.1f} GB is larger than any VAE this app loads")
    return path.read_bytes()


def _check_framing(data: bytes, name: str) -> dict:
    """The safetensors header, after checking the framing by hand: size, header length, JSON."""
    size = len(data)
    if size == 0:
        raise CheckpointError(f"{name}: the file is empty")
    if size < 8:
        raise CheckpointError(f"{name}: too short to be a safetensors checkpoint ({size} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
        raise CheckpointError(
            f"{name}: not a safetensors checkpoint, or truncated (header claims {header_len} bytes, file has {size})"
        )
    try:
        header = json.loads(data[8:8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{name}: not a safetensors checkpoint (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name}: not a safetensors checkpoint (malformed header)")
    return header


def _json_field(meta: dict, key: str, name: str, default):
    """The JSON in meta[key], of the same type as default (a dict or a list: what the callers index)."""
    try:
        value = json.loads(meta[key]) if key in meta else default
    except json.JSONDecodeError:
        raise CheckpointError(f"{name}: the '{key}' metadata is not valid JSON") from None
    if not isinstance(value, type(default)):
        kind = "an object" if isinstance(default, dict) else "a list"
        raise CheckpointError(f"{name}: the '{key}' metadata is not {kind} but {type(value).__name__}")
    return value


def load_checkpoint(path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a .safetensors checkpoint into an eval-mode VAE, or raise CheckpointError."""
    path = Path(path)
    checkpoint = parse_checkpoint(_read_file(path), path.name, device)
    checkpoint.path = path
    return checkpoint


def parse_checkpoint(data: bytes, name: str, device: str | torch.device = "cpu") -> Checkpoint:
    """A checkpoint from bytes (an upload): the same checks as load_checkpoint, nothing unpickled."""
    header = _check_framing(data, name)
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors reports bad offsets, dtypes, overlaps... as its own errors
        raise CheckpointError(f"{name}: damaged safetensors data ({exc})") from None
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{name}: a safetensors file, but not a Latent Explorer checkpoint (no config). "
            "For weights trained elsewhere, see 'Bring your own model' in the README."
        )
    version = meta.get("format_version", "?")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f"{name}: checkpoint format version {version} is not supported "
                              f"(this is version {FORMAT_VERSION}; upgrade Latent Explorer)")
    if "sha256" in meta and meta["sha256"] != _digest(header, _split(data)[1]):  # older files have none
        raise CheckpointError(f"{name}: damaged: the contents do not match the checksum saved with them "
                              "(corrupted on disk or in transfer?)")
    try:
        config = VAEConfig.from_dict(_json_field(meta, "config", name, {}))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    weights = {k: v for k, v in tensors.items() if not k.startswith(_OPTIMIZER_PREFIX)}
    model = build_model(config, weights, name)
    optimizer_state = None
    if "optimizer" in meta:
        try:
            optimizer_state = _optimizer_state(_json_field(meta, "optimizer", name, {}), tensors)
        except (AttributeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{name}: malformed optimizer state ({exc})") from None
    return Checkpoint(
        model=model.to(device).eval(),
        dataset=_json_field(meta, "dataset", name, {}),
        history=_json_field(meta, "history", name, []),
        metrics=_json_field(meta, "metrics", name, {}),
        train_state=_json_field(meta, "train_state", name, {}),
        optimizer_state=optimizer_state,
    )


def build_model(config: VAEConfig, weights: dict[str, torch.Tensor], name: str) -> VAE:
    """A VAE for `config` holding `weights`; a mismatch becomes a message naming the first few keys."""
    try:
        model = VAE(config)
    except ValueError as exc:  # a config VAEConfig accepts but VAE cannot build ("external")
        raise CheckpointError(f"{name}: {exc}") from None
    problem = weights_mismatch(model.state_dict(), weights)
    if problem:
        raise CheckpointError(f"{name}: the weights do not fit the config ({config.architecture}, "
                              f"latent {config.latent_dim}): {problem}")
    if not all(torch.is_floating_point(w) for w in weights.values()):
        raise CheckpointError(f"{name}: weights must be floating-point tensors")
    model.load_state_dict({k: w.float() for k, w in weights.items()})
    return model


def weights_mismatch(expected: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], shown: int = 3) -> str:
    """"" when `weights` has exactly the names and shapes of `expected`; else the missing, unexpected
    and wrongly shaped names, a few of each, for a message."""
    def few(names):
        return ", ".join(names[:shown]) + (f" … ({len(names)} in all)" if len(names) > shown else "")

    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in weights and weights[k].shape != v.shape]
    parts = []
    if missing:
        parts.append(f"missing {few(missing)}")
    if unexpected:
        parts.append(f"unexpected {few(unexpected)}")
    if wrong:
        parts.append(f"wrong shapes {'; '.join(wrong[:shown])}")
    return "; ".join(parts)


def _optimizer_state(info: dict, tensors: dict) -> dict:
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith(_OPTIMIZER_PREFIX):
            index, name = key[len(_OPTIMIZER_PREFIX):].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    for key, value in info.get("scalars", {}).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = torch.tensor(value)
    return {"state": state, "param_groups": info.get("param_groups", [])}


def read_state_dict(source, name: str | None = None) -> dict[str, torch.Tensor]:
    """A plain PyTorch state_dict from a path or an upload's bytes, via torch.load(weights_only=True):
    tensors and containers only, so a pickle that would run code or build a foreign class is refused.
    """
    if isinstance(source, (bytes, bytearray)):
        label, data = name or "upload.pt", bytes(source)
    else:
        label, data = Path(source).name, _read_file(Path(source))
    if not data:
        raise CheckpointError(f"{label}: the file is empty")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError for foreign classes, RuntimeError for damage
        raise CheckpointError(f"{label}: {_refusal(exc)}") from None
    for wrapper in ("state_dict", "model_state_dict"):  # Lightning's .ckpt and other trainers; pythae's model.pt
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise CheckpointError(f"{label}: expected a state_dict (a dict of name -> tensor)")
    return obj


def _refusal(exc: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in our words: torch's own message goes on to
    recommend loading with weights_only=False, which would run whatever code the file carries."""
    text = str(exc)
    foreign = sorted(set(re.findall(r"GLOBAL ([\w.]+)", text)))
    if foreign:
        return (f"it holds Python objects ({', '.join(foreign[:3])}) that only unpickling could rebuild, and this "
                "app never unpickles a file it is given. Save the weights alone from the code that trained the "
                "model: torch.save(model.state_dict(), 'weights.pt'), or safetensors' save_file")
    return "not a PyTorch weights file, or damaged (truncated or corrupted in transfer)"


def load_state_dict_pt(source, config: VAEConfig | dict, device="cpu", name: str | None = None) -> Checkpoint:
    """A .pt state_dict (path or upload bytes, see read_state_dict) plus the config it was trained with."""
    label = name or ("upload.pt" if isinstance(source, (bytes, bytearray)) else Path(source).name)
    weights = read_state_dict(source, label)
    try:
        config = config if isinstance(config, VAEConfig) else VAEConfig.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config for {label}: {exc}") from None
    path = None if isinstance(source, (bytes, bytearray)) else Path(source)
    return Checkpoint(model=build_model(config, weights, label).to(device).eval(), path=path)
