"""ONNX pairs: a model that runs no Python. A folder (or a zip of one) of three files:

  encoder.onnx  x (N, C, H, W) in [0, 1] [, y (N, num_classes) one-hot] -> mu, logvar (N, latent_dim)
  decoder.onnx  z (N, latent_dim) [, y] -> image (N, C, H, W) in [0, 1]   (onnx_decoder's graph, byte for byte)
  model.json    {"format", "format_version", "config", "dataset", "metrics"}

export_pair writes one from a VAE; open_onnx_pair reads one back as a Checkpoint whose model, an
OnnxVAE, runs both graphs in ONNX Runtime behind the VAE interface, so every page and metric works
on it unchanged. Opening checks the files before any ONNX Runtime session exists: a graph is
refused for its size, for external data files, and for operators outside the standard domains
(a custom-op domain would need a native library that this app does not load).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from .checkpoint import Checkpoint, CheckpointError, first_line, write_atomic
from .config import VAEConfig
from .model import VAE
from .onnx_decoder import TOLERANCE, DecoderExportError, example_inputs, export_decoder, export_graph, input_names

ONNX_FILES = {"encoder.onnx", "decoder.onnx", "model.json"}
FORMAT = "latent-explorer-onnx"
FORMAT_VERSION = 1
MAX_GRAPH_BYTES = 256 * 1024**2
STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml"}
# A small file can still ask ONNX Runtime for a huge tensor (ConstantOfShape of a constant shape):
# 64M elements (256 MB of float32) is far above anything a VAE of images computes per image.
MAX_TENSOR_ELEMENTS = 64 * 1024**2
# mu and logvar are unbounded (unlike pixels in [0, 1]): the encoder is held to TOLERANCE relative to
# the largest output magnitude (at least 1). float32 convolutions summed in another order differ by
# ~1e-6 of that magnitude; a graph that computes something else differs by far more.
ENCODER_TOLERANCE = TOLERANCE
# decoder_output() recovers logits from the decoder graph's image as logit(clamp(p, eps, 1 - eps)).
# ONNX Runtime's float32 Sigmoid resolves p only to about 2**-24 ~ 6e-8 at both ends (it returns 0
# below a logit of about -17, and multiples of 2**-24 near 0; 1 - p is a multiple of 2**-24 near 1),
# so no logit beyond +-16.6 can be read back. eps = 2**-24 is exactly that resolution: it keeps every
# p the graph can tell apart and maps 0 and 1 to -+16.6. Measured on the first 500 test images of
# every shipped checkpoint, the test ELBO then stays within 0.005 nats of PyTorch's; eps = 1e-6 moves
# it by up to 0.009, 1e-4 by up to 0.39 (shapes), and leaving 0 unclamped at the float32 minimum (a
# logit of -87 for pixels ORT flushed to 0) by up to 0.09.
LOGIT_EPS = 2.0**-24


class OnnxPairError(DecoderExportError):
    """The model's encoder could not be exported to ONNX, or not faithfully."""


class EncoderGraph(nn.Module):
    """What gets exported as encoder.onnx: the model's own encode(), inputs named x[, y]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.model.encode(x, y)


def encoder_input_names(config: VAEConfig) -> list[str]:
    return ["x", "y"] if config.conditional else ["x"]


def export_encoder(model) -> bytes:
    """The encoder as a serialised ONNX model (weights inside), checked against PyTorch."""
    model.require_posterior("encoder.onnx (x -> mu, logvar)")
    example = example_inputs(model, model.config.input_shape)
    data = export_graph(EncoderGraph(model), example, encoder_input_names(model.config), ["mu", "logvar"], "encoder",
                        OnnxPairError)
    difference = encoder_difference(model, data)
    if not difference <= ENCODER_TOLERANCE:
        raise OnnxPairError(f"the encoder could not be exported to ONNX faithfully (mu and logvar differ from "
                            f"PyTorch's by up to {difference:.3g}, relative)")
    return data


def encoder_difference(model, onnx_bytes: bytes, n: int = 16, seed: int = 0) -> float:
    """Max abs difference of (mu, logvar) between ONNX Runtime and PyTorch on n random images in [0, 1],
    divided by max(1, the largest |output|)."""
    config = model.config
    x = torch.rand(n, *config.input_shape, generator=torch.Generator().manual_seed(seed))
    y = torch.eye(config.num_classes)[torch.arange(n) % config.num_classes] if config.conditional else None
    device = next(model.parameters()).device
    with torch.inference_mode():
        expected = [t.float().cpu().numpy() for t in model.encode(x.to(device), None if y is None else y.to(device))]
    try:
        got = _run(_session(onnx_bytes), ["mu", "logvar"], _feeds("x", x.numpy(), None if y is None else y.numpy()))
    except Exception as exc:  # onnxruntime raises its own types for graphs it cannot run
        raise OnnxPairError(f"ONNX Runtime cannot run the exported encoder ({type(exc).__name__})") from exc
    if any(g.shape != e.shape for g, e in zip(got, expected)):
        return float("inf")
    scale = max(1.0, *(float(np.abs(e).max()) for e in expected))
    return max(float(np.abs(g - e).max()) for g, e in zip(got, expected)) / scale


def export_pair(model, dataset: dict, out_dir, metrics: dict | None = None) -> Path:
    """Write encoder.onnx, decoder.onnx and model.json into out_dir (created if missing); returns it.

    Both graphs are checked against PyTorch first (DecoderExportError if either differs), and each
    file is written atomically, so a reader never sees half a file."""
    out = Path(out_dir)
    encoder = export_encoder(model)
    decoder = export_decoder(model)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config.to_dict(),
            "dataset": dict(dataset or {}), "metrics": dict(metrics or {})}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "encoder.onnx", encoder)
    write_atomic(out / "decoder.onnx", decoder)
    write_atomic(out / "model.json", (json.dumps(meta, indent=2) + "\n").encode())
    return out


# -- running the graphs ------------------------------------------------------------------------
def _session(onnx_bytes: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def _feeds(first: str, value: np.ndarray, y: np.ndarray | None) -> dict[str, np.ndarray]:
    feeds = {first: np.ascontiguousarray(value, dtype=np.float32)}
    if y is not None:
        feeds["y"] = np.ascontiguousarray(y, dtype=np.float32)
    return feeds


def _tensor(array: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float32)).to(device)


def _run(session, outputs: list[str], feeds: dict) -> list[np.ndarray]:
    return session.run(outputs, feeds)


class OnnxVAE(VAE):
    """A VAE whose encoder and decoder are ONNX Runtime sessions: no Python of the model's own runs.

    It holds no weights; `anchor`, a zero-size parameter, gives next(model.parameters()).device,
    and `graph_digest` (a buffer) names the two graphs in state_dict(), so a cache keyed on the
    weights tells two pairs of the same config apart. `onnx_decoder` holds decoder.onnx's bytes
    for the browser. ONNX Runtime's run() is thread-safe, so one model serves every session."""

    def __init__(self, config: VAEConfig, encoder: bytes, decoder: bytes, encoder_session=None, decoder_session=None):
        nn.Module.__init__(self)
        self.config = config
        self.onnx_encoder = encoder
        self.onnx_decoder = decoder
        self.encoder_session = encoder_session if encoder_session is not None else _session(encoder)
        self.decoder_session = decoder_session if decoder_session is not None else _session(decoder)
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        digest = hashlib.sha256(hashlib.sha256(encoder).digest() + hashlib.sha256(decoder).digest()).digest()
        self.register_buffer("graph_digest", torch.tensor(list(digest), dtype=torch.uint8))

    def _label_feed(self, y, n: int) -> np.ndarray | None:
        """The graphs' y input: VAE._label_rows (its checks, one-hot rows) as float32, or None."""
        return self._numpy(self._label_rows(y, n, "cpu")) if self.config.conditional else None

    @staticmethod
    def _numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    def encode(self, x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = _run(self.encoder_session, ["mu", "logvar"],
                          _feeds("x", self._numpy(x), self._label_feed(y, len(x))))
        return _tensor(mu, x.device), _tensor(logvar, x.device)

    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        (image,) = _run(self.decoder_session, ["image"], _feeds("z", self._numpy(z), self._label_feed(y, len(z))))
        return _tensor(image, z.device)

    def decoder_output(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """Logits recovered from the image (see LOGIT_EPS): what the likelihoods in losses.py take."""
        return torch.logit(self.decode(z, y), eps=LOGIT_EPS)


# -- opening a pair ----------------------------------------------------------------------------
def open_onnx_pair(bundle) -> Checkpoint:
    """A Checkpoint from an archive.Bundle holding encoder.onnx, decoder.onnx and model.json.

    Every problem is a CheckpointError naming the file and the reason."""
    name = bundle.name
    missing = sorted(ONNX_FILES - set(bundle.files))
    if missing:
        raise CheckpointError(f"{name}: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing "
                              f"(an ONNX model folder holds {', '.join(sorted(ONNX_FILES))})")
    meta, config = _read_meta(bundle.files["model.json"], f"{name}/model.json")
    for graph, inputs, outputs in (("encoder.onnx", encoder_input_names(config), ["mu", "logvar"]),
                                   ("decoder.onnx", input_names(SimpleNamespace(config=config)), ["image"])):
        _check_graph(bundle.files[graph], f"{name}/{graph}", inputs, outputs)
    encoder, decoder = bundle.files["encoder.onnx"], bundle.files["decoder.onnx"]
    sessions = []
    for graph, data in (("encoder.onnx", encoder), ("decoder.onnx", decoder)):
        try:
            sessions.append(_session(data))
        except Exception as exc:  # onnxruntime's own error types
            raise CheckpointError(f"{name}/{graph}: ONNX Runtime cannot load it ({first_line(exc)})") from None
    model = OnnxVAE(config, encoder, decoder, *sessions)
    _probe(model, name)
    return Checkpoint(model=model.eval(), dataset=meta["dataset"], metrics=meta["metrics"])


def _read_meta(data: bytes, label: str) -> tuple[dict, VAEConfig]:
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{label}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{label}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{label}: not a Latent Explorer ONNX model (format is {meta.get('format')!r}, "
                              f"expected {FORMAT!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise CheckpointError(f"{label}: format version {version!r} is not supported "
                              f"(this is version {FORMAT_VERSION}; upgrade Latent Explorer)")
    raw = meta.get("config")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{label}: 'config' must be an object")
    try:
        config = VAEConfig.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{label}: {first_line(exc)}") from None
    for key in ("dataset", "metrics"):
        meta.setdefault(key, {})
        if not isinstance(meta[key], dict):
            raise CheckpointError(f"{label}: '{key}' must be an object, got {type(meta[key]).__name__}")
    return meta, config


def _check_graph(data: bytes, label: str, inputs: list[str], outputs: list[str]) -> None:
    import onnx

    if len(data) > MAX_GRAPH_BYTES:
        raise CheckpointError(f"{label}: {len(data) / 1e6:.0f} MB is larger than this app loads "
                              f"(at most {MAX_GRAPH_BYTES / 1e6:.0f} MB)")
    try:
        proto = onnx.load_model_from_string(data)
    except Exception:  # protobuf's DecodeError, or others for bytes that are not a model at all
        raise CheckpointError(f"{label}: truncated or not an ONNX file") from None
    if not proto.HasField("graph") or not proto.graph.node:
        raise CheckpointError(f"{label}: truncated or not an ONNX file (no graph in it)")
    if any(onnx.external_data_helper.uses_external_data(t) for t in _tensors(proto)):
        raise CheckpointError(f"{label}: the graph refers to external data files, which a model folder must not; "
                              "save it with its weights inside (onnx.save(model, path, save_as_external_data=False))")
    domain = _foreign_domain(proto)
    if domain is not None:
        raise CheckpointError(f"{label}: uses operators of the custom domain {domain!r}; only standard ONNX "
                              "operators (ai.onnx, ai.onnx.ml) run here")
    largest = _largest_tensor(proto, label)
    if largest > MAX_TENSOR_ELEMENTS:
        raise CheckpointError(f"{label}: the graph builds a tensor of {largest:,} elements per batch, more than a "
                              f"VAE of images needs (at most {MAX_TENSOR_ELEMENTS:,})")
    got_in = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    got_out = [o.name for o in proto.graph.output]
    if got_in != inputs or got_out != outputs:
        raise CheckpointError(f"{label}: expected inputs {inputs} and outputs {outputs}, "
                              f"the graph has inputs {got_in} and outputs {got_out}")


def _largest_tensor(proto, label: str) -> int:
    """The most elements of any tensor whose shape ONNX's shape inference can tell (propagating
    constant shapes through Shape/ConcatOfShape arithmetic); the dynamic batch dimension counts as 1."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    except Exception as exc:  # onnx's InferenceError: types or shapes that do not fit together
        raise CheckpointError(f"{label}: the graph's shapes do not fit together ({first_line(exc)})") from None
    largest = 0
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        largest = max(largest, math.prod(d.dim_value for d in dims if d.HasField("dim_value")))
    return largest


def _graphs(proto):
    """Every graph of a model: the main one, those of its functions' and nodes' attributes, nested."""
    import onnx

    pending = [list(proto.graph.node)] + [list(f.node) for f in proto.functions]
    graphs = [proto.graph]
    while pending:
        for node in pending.pop():
            for attr in node.attribute:
                subs = ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else
                        list(attr.graphs) if attr.type == onnx.AttributeProto.GRAPHS else [])
                graphs += subs
                pending += [list(g.node) for g in subs]
    return graphs


def _nodes(proto):
    for graph in _graphs(proto):
        yield from graph.node
    for function in proto.functions:
        yield from function.node


def _tensors(proto):
    """Every TensorProto: initializers (dense and sparse) and tensors in node attributes, everywhere."""
    import onnx

    for graph in _graphs(proto):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
    for node in _nodes(proto):
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == onnx.AttributeProto.SPARSE_TENSOR:
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            elif attr.type == onnx.AttributeProto.SPARSE_TENSORS:
                for sparse in attr.sparse_tensors:
                    yield sparse.values
                    yield sparse.indices


def _foreign_domain(proto) -> str | None:
    """The first domain that is neither standard ONNX nor a function defined in the model itself.

    torch.onnx's dynamo exporter emits only the default domain for these models (after its
    optimiser inlines the torch_lib functions); a model that keeps functions defines them inside."""
    functions = {(f.domain, f.name) for f in proto.functions}
    function_domains = {f.domain for f in proto.functions}
    for node in _nodes(proto):
        if node.domain not in STANDARD_DOMAINS and (node.domain, node.op_type) not in functions:
            return node.domain
    imports = list(proto.opset_import) + [o for f in proto.functions for o in f.opset_import]
    for opset in imports:
        if opset.domain not in STANDARD_DOMAINS and opset.domain not in function_domains:
            return opset.domain
    return None


def _probe(model: OnnxVAE, name: str) -> None:
    """Run each graph on a batch of 2 zeros and check the shapes against the config."""
    config = model.config
    y = torch.eye(config.num_classes)[:2] if config.conditional else None
    with torch.inference_mode():
        try:
            mu, logvar = model.encode(torch.zeros(2, *config.input_shape), y)
        except Exception as exc:  # onnxruntime's errors: wrong input shapes, types, bad kernels
            raise CheckpointError(f"{name}/encoder.onnx: ONNX Runtime cannot run it on a batch of "
                                  f"{(2, *config.input_shape)} ({first_line(exc)})") from None
        expected = (2, config.latent_dim)
        if tuple(mu.shape) != expected or tuple(logvar.shape) != expected:
            raise CheckpointError(f"{name}/encoder.onnx: mu and logvar have shapes {tuple(mu.shape)} and "
                                  f"{tuple(logvar.shape)}, model.json's config says {expected}")
        try:
            image = model.decode(torch.zeros(2, config.latent_dim), y)
        except Exception as exc:
            raise CheckpointError(f"{name}/decoder.onnx: ONNX Runtime cannot run it on a batch of "
                                  f"{expected} ({first_line(exc)})") from None
        if tuple(image.shape) != (2, *config.input_shape):
            raise CheckpointError(f"{name}/decoder.onnx: the image has shape {tuple(image.shape)}, "
                                  f"model.json's config says {(2, *config.input_shape)}")
