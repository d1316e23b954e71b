"""The decoder as an ONNX graph, so that a browser can decode while a slider moves (onnxruntime-web).

The graph is decode(z[, y]) -> image in [0, 1], shape (N, C, H, W), with a dynamic batch dimension,
exported by torch.onnx's torch.export-based exporter. A conditional model takes its label as rows of
class weights (one-hot), not as integers: the graph then has no data-dependent checks, and a page
may blend classes if it wants to. Exports are cached on disk under a digest of the weights.
"""
from __future__ import annotations

import hashlib
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import cache_root
from .checkpoint import first_line

OPSET = 18  # onnxruntime-web 1.30 runs it; older opsets lack nothing this graph needs
TOLERANCE = 1e-4  # max abs pixel difference (pixels in [0, 1]) allowed between ONNX Runtime and PyTorch
CACHE_DIR = cache_root() / "onnx"
# torch.export traces through process-wide state (dispatch modes, the fake-tensor cache): one export
# at a time, whichever session asks.
_export_lock = threading.Lock()


class DecoderExportError(RuntimeError):
    """The model's decoder could not be exported (a user's own code that torch.export cannot trace)."""


class DecoderGraph(nn.Module):
    """What gets exported: the model's own decode(), with its inputs named for the browser."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.decode(z, y)


def input_names(model) -> list[str]:
    return ["z", "y"] if model.config.conditional else ["z"]


def example_inputs(model, shape: tuple[int, ...]) -> list[torch.Tensor]:
    """A batch of 2 zero inputs of `shape` to trace with, and one-hot label rows for a conditional model."""
    config, device = model.config, next(model.parameters()).device
    example = [torch.zeros(2, *shape, device=device)]
    if config.conditional:
        example.append(torch.eye(config.num_classes, device=device)[:2])
    return example


def export_graph(graph: nn.Module, example: list[torch.Tensor], inputs: list[str], outputs: list[str],
                 what: str, error: type[Exception]) -> bytes:
    """graph(*example) as a serialised ONNX model (weights inside) with a dynamic batch dimension;
    `error` (naming `what`) for code torch.export cannot trace."""
    batch = torch.export.Dim("batch")
    with _export_lock, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and "training mode" chatter
        try:
            program = torch.onnx.export(graph, tuple(example), dynamo=True, verbose=False, input_names=inputs,
                                        output_names=outputs, dynamic_shapes=tuple({0: batch} for _ in example),
                                        opset_version=OPSET)
        except Exception as exc:  # torch.export raises many types for code it cannot trace
            raise error(f"the {what} could not be exported to ONNX ({type(exc).__name__}: {first_line(exc)})") from exc
    return program.model_proto.SerializeToString()


def export_decoder(model) -> bytes:
    """The decoder as a serialised ONNX model (weights inside)."""
    example = example_inputs(model, (model.config.latent_dim,))
    data = export_graph(DecoderGraph(model), example, input_names(model), ["image"], "decoder", DecoderExportError)
    # The exporter can "succeed" on code it does not understand (NumPy inside decode() becomes a
    # constant): only a graph that draws what PyTorch draws may reach a browser.
    difference = max_difference(model, data)
    if not difference <= TOLERANCE:
        raise DecoderExportError(f"the decoder could not be exported to ONNX faithfully (pictures differ from "
                                 f"PyTorch's by up to {difference:.3g})")
    return data


def max_difference(model, onnx_bytes: bytes, n: int = 16, seed: int = 0) -> float:
    """Max abs pixel difference between ONNX Runtime and PyTorch on n latent vectors out to ±2.5σ."""
    config = model.config
    z = 2.5 * torch.randn(n, config.latent_dim, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(n) % config.num_classes if config.conditional else None
    device = next(model.parameters()).device
    with torch.inference_mode():
        expected = model.decode(z.to(device), None if labels is None else labels.to(device)).float().cpu().numpy()
    try:
        got = run_decoder(onnx_bytes, z.numpy(), None if labels is None else one_hot(labels, config.num_classes))
    except Exception as exc:  # onnxruntime raises its own types for graphs it cannot run
        raise DecoderExportError(f"ONNX Runtime cannot run the exported decoder ({type(exc).__name__})") from exc
    return float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")


def weights_digest(model) -> str:
    """Names the exact weights, architecture and export settings: the cache key."""
    return hashlib.sha256(f"{model.weights_digest()}|opset{OPSET}|torch{torch.__version__}".encode()).hexdigest()


def decoder_onnx(model, cache_dir: Path | None = CACHE_DIR) -> bytes:
    """export_decoder(model), read from cache_dir when these weights were exported before.

    The cache is only an optimisation: an unreadable or unwritable folder means a fresh export."""
    path = None if cache_dir is None else Path(cache_dir) / f"{weights_digest(model)[:32]}.onnx"
    if path is not None and path.is_file():
        data = path.read_bytes()
        if _is_onnx(data):
            return data
    data = export_decoder(model)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # atomic: a reader never sees half a file
        except OSError:
            pass
    return data


def _is_onnx(data: bytes) -> bool:
    import onnx

    try:
        onnx.checker.check_model(onnx.load_model_from_string(data))
        return True
    except Exception:  # a truncated or foreign file in the cache: export again
        return False


def run_decoder(onnx_bytes: bytes, z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Decode with ONNX Runtime (Python): what the browser computes, for tests and the CLI's check."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    feeds = {"z": np.asarray(z, dtype=np.float32)}
    if y is not None:
        feeds["y"] = np.asarray(y, dtype=np.float32)
    return session.run(["image"], feeds)[0]


def one_hot(labels, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]
