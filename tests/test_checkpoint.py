"""Checkpoints: a faithful round trip, atomic saves, and CheckpointError (only) for every bad file."""
from __future__ import annotations

import json
import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save
from safetensors.torch import save_file

from conftest import tiny_config
from vae_core import VAE, VAEConfig
from vae_core import checkpoint as ckpt_module
from vae_core.checkpoint import CheckpointError, load_checkpoint, load_state_dict_pt, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATASET = {"name": "digits", "label_names": [str(i) for i in range(4)], "factor_names": None}
HISTORY = [{"epoch": 1, "loss": 40.5, "kl_per_dim": [0.1, 0.2, 0.3]}, {"epoch": 2, "loss": 30.25, "kl_per_dim": [1, 2, 3]}]
METRICS = {"test_elbo": -31.5, "active_units": 2}
TRAIN_STATE = {"epoch": 2, "seed": 7, "train_config": {"lr": 0.001, "batch_size": 16}}


def _trained(architecture="mlp", num_classes=4, steps=3, seed=0):
    """A small model and its Adam optimizer after a few steps, so the moments are not zero."""
    torch.manual_seed(seed)
    model = VAE(tiny_config(architecture, num_classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(8, 1, 8, 8)
    y = torch.arange(8) % num_classes if num_classes else None
    for _ in range(steps):
        loss = model.loss(x, y)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


def _save(path, architecture="mlp", num_classes=4, optimizer=True, seed=0):
    model, opt = _trained(architecture, num_classes, seed=seed)
    save_checkpoint(path, model, dataset=DATASET, history=HISTORY, metrics=METRICS, train_state=TRAIN_STATE,
                    optimizer=opt if optimizer else None)
    return model, opt


def _split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _join(header: dict, region: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes
    return struct.pack("<Q", len(text)) + text + region


def _edit_metadata(path: Path, **changes) -> None:
    """Rewrite a checkpoint's metadata as a deliberate edit would: a well-formed file that says something else.

    A value of None removes the key. Any integrity field is recomputed, so the edit is what gets judged.
    """
    header, region = _split(path.read_bytes())
    meta = header["__metadata__"]
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    path.write_bytes(_reseal(header, region))


def _reseal(header: dict, region: bytes) -> bytes:
    """The file for an edited header, its checksum recomputed: the edit is judged, not the checksum."""
    meta = header.get("__metadata__", {})
    if "sha256" in meta:
        meta["sha256"] = ckpt_module._digest(header, region)
    return _join(header, region)


def _edit_config(path: Path, **changes) -> None:
    header, _ = _split(path.read_bytes())
    config = json.loads(header["__metadata__"]["config"]) | changes
    _edit_metadata(path, config=json.dumps(config))


def _load_error(path, match) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    return str(info.value)


# -- round trip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture, num_classes", [("mlp", 4), ("conv", 4), ("mlp", 0)],
                         ids=["mlp-cond", "conv-cond", "mlp"])
def test_round_trip_restores_everything(tmp_path, architecture, num_classes):
    path = tmp_path / "model.safetensors"
    model, opt = _save(path, architecture, num_classes)
    loaded = load_checkpoint(path)

    assert loaded.path == path
    assert loaded.config == model.config
    assert not loaded.model.training
    original = model.state_dict()
    assert loaded.model.state_dict().keys() == original.keys()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert loaded.dataset == DATASET
    assert loaded.history == HISTORY
    assert loaded.metrics == METRICS
    assert loaded.train_state == TRAIN_STATE

    # same function: identical outputs on the same input and noise
    x, eps = torch.rand(3, 1, 8, 8), torch.randn(3, 3)
    y = torch.tensor([0, 1, 3]) if num_classes else None
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(x, y, eps)[0], model(x, y, eps)[0])

    # the optimizer resumes exactly: a fresh Adam takes the same next step as the original
    restored = torch.optim.Adam(loaded.model.parameters(), lr=0.5)  # lr comes back from the checkpoint
    restored.load_state_dict(loaded.optimizer_state)
    assert restored.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert list(restored.param_groups[0]["betas"]) == list(opt.param_groups[0]["betas"])
    for p_old, p_new in zip(model.parameters(), loaded.model.parameters()):
        s_old, s_new = opt.state[p_old], restored.state[p_new]
        assert float(s_new["step"]) == float(s_old["step"]) == 3
        assert torch.equal(s_new["exp_avg"], s_old["exp_avg"])
        assert torch.equal(s_new["exp_avg_sq"], s_old["exp_avg_sq"])
    model.train()
    loaded.model.train()
    for m, o in ((model, opt), (loaded.model, restored)):
        o.zero_grad()
        m.loss(x, y, eps)["loss"].backward()
        o.step()
    for p_old, p_new in zip(model.parameters(), loaded.model.parameters()):
        assert torch.allclose(p_old, p_new, rtol=0, atol=1e-7)


def test_checkpoint_without_optimizer_or_extras(tmp_path):
    path = tmp_path / "bare.safetensors"
    model = VAE(tiny_config("conv"))
    save_checkpoint(path, model)
    loaded = load_checkpoint(path)
    assert loaded.optimizer_state is None
    assert loaded.dataset == {} and loaded.history == [] and loaded.metrics == {} and loaded.train_state == {}
    assert loaded.config == model.config


def test_saved_file_is_a_plain_safetensors_file_with_string_metadata(tmp_path):
    """No pickle anywhere: the file is safetensors, and its metadata JSON strings describe the model."""
    path = tmp_path / "m.safetensors"
    model, _ = _save(path, "mlp", 4)
    header, _ = _split(path.read_bytes())
    meta = header["__metadata__"]
    assert meta["format"] == "latent-explorer-vae" and meta["format_version"] == "1"
    assert all(isinstance(v, str) for v in meta.values())
    assert VAEConfig.from_dict(json.loads(meta["config"])) == model.config
    assert any(k.startswith("optimizer.") for k in header)
    assert len(meta["sha256"]) == 64 and int(meta["sha256"], 16) >= 0
    data = path.read_bytes()
    assert data[8:9] == b"{"  # the safetensors framing: u64 header length, then a JSON header


# -- atomic saves --------------------------------------------------------------------------------


def _leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_save_over_an_existing_checkpoint(tmp_path):
    path = tmp_path / "m.safetensors"
    first, _ = _save(path, seed=1)
    second, _ = _save(path, seed=2)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded.model.to_mu.weight, second.to_mu.weight)
    assert not torch.equal(loaded.model.to_mu.weight, first.to_mu.weight)
    assert _leftovers(tmp_path, path.name) == []


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_save_keeps_the_old_checkpoint_and_no_temp_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "m.safetensors"
    old, _ = _save(path, seed=1)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(ckpt_module.os, failing, crash)
    with pytest.raises(OSError, match="simulated"):
        _save(path, seed=2)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(path).model.to_mu.weight, old.to_mu.weight)
    assert _leftovers(tmp_path, path.name) == []


def test_interrupted_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    """A KeyboardInterrupt (Ctrl-C in the CLI) mid-write cleans up too."""
    path = tmp_path / "m.safetensors"
    _save(path, seed=1)
    before = path.read_bytes()

    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_module.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _save(path, seed=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, path.name) == []


def test_a_writer_killed_mid_save_never_leaves_a_broken_checkpoint(tmp_path):
    """SIGKILL a process that saves over the same file in a loop: the target is always whole."""
    path = tmp_path / "m.safetensors"
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        from vae_core import VAE, VAEConfig
        from vae_core.checkpoint import save_checkpoint
        torch.manual_seed(0)
        models = [VAE(VAEConfig(input_shape=(1, 28, 28), latent_dim=4, hidden_sizes=(256,))) for _ in range(2)]
        i = 0
        while True:
            save_checkpoint({str(path)!r}, models[i % 2], history=[{{"epoch": i}}])
            if i == 0:
                print("saved", flush=True)
            i += 1
    """)
    rng = random.Random(0)
    for attempt in range(2):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "saved"
            time.sleep(rng.uniform(0.05, 0.4))  # land somewhere in the middle of later saves
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        loaded = load_checkpoint(path)  # whole, whichever save was the last to finish
        assert loaded.config.input_shape == (1, 28, 28)
        assert loaded.history[0]["epoch"] >= 0
        # a killed writer may leave its hidden temp file, never a half-written target
        assert all(n.startswith(f".{path.name}.") and n.endswith(".tmp") for n in _leftovers(tmp_path, path.name))


# -- every bad file is a CheckpointError ---------------------------------------------------------


@pytest.fixture
def good(tmp_path) -> Path:
    path = tmp_path / "good.safetensors"
    _save(path, "mlp", 4)
    return path


def test_missing_path(tmp_path):
    _load_error(tmp_path / "nope.safetensors", "no such file")


def test_directory(tmp_path):
    (tmp_path / "dir.safetensors").mkdir()
    _load_error(tmp_path / "dir.safetensors", "not a regular file")


@pytest.mark.parametrize("content, word", [
    (b"", "empty"),
    (b"\x01\x02\x03", "too short"),
    (bytes(random.Random(0).getrandbits(8) for _ in range(4096)), "not a safetensors"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200), "not a safetensors"),
    (struct.pack("<Q", 2**60) + b"{}" + bytes(100), "header claims"),
    (struct.pack("<Q", 2**64 - 1) + bytes(100), "header claims"),
    (struct.pack("<Q", 20) + b"{}", "truncated"),
    (struct.pack("<Q", 8) + b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", "not JSON"),
    (struct.pack("<Q", 8) + b"[1, 2]  ", "malformed"),
    (struct.pack("<Q", 8) + b'"text"  ', "malformed"),
    (b"\x80\x04\x95" + pickle.dumps({"a": 1})[3:], "not a safetensors"),
], ids=["empty", "short", "random", "png", "huge-header", "max-header", "header-past-end", "binary-header",
        "list-header", "string-header", "pickle"])
def test_not_a_checkpoint(tmp_path, content, word):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    message = _load_error(path, word)
    assert message.startswith("bad.safetensors:")  # names the file the person chose


def test_truncated_checkpoint(good):
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 12, 8 + len(data) // 1000):
        good.write_bytes(data[:cut])
        _load_error(good, "truncated|damaged|header")


def test_plain_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file(VAE(tiny_config()).state_dict(), path)
    _load_error(path, "not a Latent Explorer checkpoint")
    save_file({"w": torch.zeros(2)}, path, metadata={"format": "something-else"})
    _load_error(path, "not a Latent Explorer checkpoint")


@pytest.mark.parametrize("version", ["2", "0", "1.0", "", None])
def test_unknown_format_version(good, version):
    _edit_metadata(good, format_version=version)
    _load_error(good, "format version .* not supported")


def test_weights_for_another_architecture(good):
    _edit_config(good, architecture="conv", hidden_sizes=[4, 8])
    message = _load_error(good, "do not fit")
    assert "conv" in message and ("missing" in message or "unexpected" in message)


def test_weights_for_another_latent_size(good):
    _edit_config(good, latent_dim=5)
    _load_error(good, "wrong shapes")


def test_weights_for_an_unconditional_config(good):
    _edit_config(good, num_classes=0)
    _load_error(good, "wrong shapes")


@pytest.mark.parametrize("config, word", [
    ("{not json", "not valid JSON"),
    ('{"latent_dim": 0}', "latent_dim"),
    ('{"latnet_dim": 3}', "unknown fields"),
    ('{"architecture": "external"}', "architecture|external"),
    ('{"input_shape": "abc"}', "input_shape|invalid"),
    ("5", "config"),
    ("null", "config"),
    ('["latent_dim"]', "config"),
], ids=["not-json", "invalid-value", "unknown-field", "external", "bad-shape", "number", "null", "list"])
def test_bad_config_metadata(good, config, word):
    _edit_metadata(good, config=config)
    _load_error(good, word)


@pytest.mark.parametrize("key, value", [
    ("dataset", "[1, 2]"), ("dataset", '"digits"'), ("history", '{"epoch": 1}'), ("metrics", "[]"),
    ("train_state", "3"), ("history", "{oops"),
])
def test_metadata_of_the_wrong_shape(good, key, value):
    """The app calls ckpt.dataset.get(...) and iterates ckpt.history: a list or number there is a bad file."""
    _edit_metadata(good, **{key: value})
    _load_error(good, key)


@pytest.mark.parametrize("optimizer", ["[]", '"adam"', '{"scalars": {"nodot": 1.0}}', '{"scalars": {"x.step": 1.0}}',
                                       '{"scalars": {"0.step": "fast"}}', '{"scalars": [1]}', "{bad json"])
def test_bad_optimizer_metadata(good, optimizer):
    _edit_metadata(good, optimizer=optimizer)
    _load_error(good, "optimizer")


def test_bad_optimizer_tensor_name(good):
    header, region = _split(good.read_bytes())
    name = next(k for k in header if k.startswith("optimizer."))
    header["optimizer.first." + name.split(".", 2)[2]] = header.pop(name)
    good.write_bytes(_reseal(header, region))
    _load_error(good, "optimizer")


def _first_weight(header: dict) -> str:
    return next(k for k in sorted(header) if k != "__metadata__" and not k.startswith("optimizer."))


def test_header_that_lies_about_shapes(good):
    header, region = _split(good.read_bytes())
    name = next(k for k, v in header.items() if k != "__metadata__" and len(v["shape"]) == 2 and v["shape"][0] != v["shape"][1]
                and not k.startswith("optimizer."))
    header[name]["shape"] = header[name]["shape"][::-1]  # same byte count, transposed
    good.write_bytes(_reseal(header, region))
    _load_error(good, "wrong shapes")

    header[name]["shape"] = [header[name]["shape"][0] + 1, header[name]["shape"][1]]  # more bytes than stored
    good.write_bytes(_reseal(header, region))
    _load_error(good, "damaged")


def test_header_that_lies_about_offsets(good):
    header, region = _split(good.read_bytes())
    name = _first_weight(header)
    start, end = header[name]["data_offsets"]
    for offsets in ([start + 4, end + 4], [0, end - start] if start else [4, end - start + 4],
                    [start, len(region) + 400], [end, start]):
        header[name]["data_offsets"] = offsets
        good.write_bytes(_reseal(header, region))
        _load_error(good, "damaged")


def test_header_that_lies_about_dtype(good):
    header, region = _split(good.read_bytes())
    name = _first_weight(header)
    header[name]["dtype"] = "F16"  # half the bytes the offsets cover
    good.write_bytes(_reseal(header, region))
    _load_error(good, "damaged")
    header[name]["dtype"] = "NOPE"
    good.write_bytes(_reseal(header, region))
    _load_error(good, "damaged")


def test_non_float_weights(good):
    header, region = _split(good.read_bytes())
    header[_first_weight(header)]["dtype"] = "I32"  # same size: safetensors accepts it, we do not
    good.write_bytes(_reseal(header, region))
    _load_error(good, "floating-point")


def test_non_float_weights_written_by_safetensors(tmp_path):
    model = VAE(tiny_config())
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["to_mu.bias"] = torch.arange(3, dtype=torch.int64)
    meta = {"format": "latent-explorer-vae", "format_version": "1", "config": json.dumps(model.config.to_dict())}
    path = tmp_path / "ints.safetensors"
    path.write_bytes(st_save(tensors, metadata=meta))
    _load_error(path, "floating-point")


def test_checksum_covers_the_metadata(good):
    header, region = _split(good.read_bytes())
    header["__metadata__"]["metrics"] = json.dumps({"test_elbo": -1.0})  # a flattering edit, not resealed
    good.write_bytes(_join(header, region))
    _load_error(good, "checksum")


def test_files_without_a_checksum_still_load(good):
    """Checkpoints written before the checksum existed carry none; they load as before."""
    _edit_metadata(good, sha256=None)
    assert load_checkpoint(good).history == HISTORY


def test_bit_flip_in_the_data_region(good):
    data = bytearray(good.read_bytes())
    header, region = _split(bytes(data))
    data_start = len(data) - len(region)
    name = _first_weight(header)
    start, end = header[name]["data_offsets"]
    for position in (data_start + start + 1, data_start + (start + end) // 2, len(data) - 1):
        flipped = bytearray(data)
        flipped[position] ^= 0x10  # a mantissa bit: the file still parses, the weights are just wrong
        good.write_bytes(bytes(flipped))
        _load_error(good, "damaged|checksum")


@pytest.mark.parametrize("what", ["header-json", "header-length", "metadata-value"])
def test_bit_flip_in_the_header(good, what):
    data = bytearray(good.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    text = data[8:8 + n].decode()
    if what == "header-json":
        data[8] ^= 0x01  # '{' -> 'z'
        word = "not JSON"
    elif what == "header-length":
        data[3] ^= 0x01  # 2**24 more bytes than the file has
        word = "header claims"
    else:
        i = 8 + text.index("latent-explorer-vae")
        data[i] ^= 0x04  # 'l' -> 'h': no longer our format
        word = "not a Latent Explorer"
    good.write_bytes(bytes(data))
    _load_error(good, word)


def test_random_bit_flips_only_ever_raise_checkpoint_error(good):
    """Any single flipped bit, anywhere: a clean CheckpointError or a checkpoint that still loads."""
    data = good.read_bytes()
    header, region = _split(data)
    header_end = len(data) - len(region)
    rng = random.Random(1234)
    positions = rng.sample(range(header_end), 300) + rng.sample(range(header_end, len(data)), 40)
    failures = []
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 1 << rng.randrange(8)
        good.write_bytes(bytes(flipped))
        try:
            load_checkpoint(good)
        except CheckpointError:
            pass
        except Exception as exc:  # noqa: BLE001 - the point is to catch anything else
            failures.append(f"byte {position}: {type(exc).__name__}: {exc}")
        else:
            if position >= header_end:
                failures.append(f"byte {position} in the weights: a damaged file loaded silently")
    assert not failures, "\n".join(failures[:10])


# -- .pt state_dicts -----------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@dataclass
class _Foreign:
    weights: torch.Tensor


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_pt_state_dict_round_trip(tmp_path, architecture):
    model = VAE(tiny_config(architecture, 4))
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    for config in (model.config, model.config.to_dict()):
        loaded = load_state_dict_pt(path, config)
        assert loaded.path == path and not loaded.model.training
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[key], value)
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)  # the common wrapped layout
    assert torch.equal(load_state_dict_pt(path, model.config).model.to_mu.weight, model.to_mu.weight)


def test_pt_from_uploaded_bytes(tmp_path):
    model = VAE(tiny_config())
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    loaded = load_state_dict_pt(path.read_bytes(), model.config, name="upload.pt")
    assert torch.equal(loaded.model.to_mu.weight, model.to_mu.weight)
    with pytest.raises(CheckpointError, match="upload.pt"):
        load_state_dict_pt(b"not a pickle at all", model.config, name="upload.pt")


def _pt_error(path, match, config=None):
    with pytest.raises(CheckpointError, match=match) as info:
        load_state_dict_pt(path, config or tiny_config())
    return str(info.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("layout", ["torch.save", "raw-pickle", "inside-state-dict"])
def test_malicious_pickle_never_runs(tmp_path, layout):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if layout == "torch.save":
        torch.save(_Evil(marker), path)
    elif layout == "raw-pickle":
        path.write_bytes(pickle.dumps(_Evil(marker)))
    else:
        torch.save({"to_mu.weight": torch.zeros(3, 16), "extra": _Evil(marker)}, path)
    assert not marker.exists()
    message = _pt_error(path, "never unpickles|not a PyTorch weights file")
    assert not marker.exists()
    assert "weights_only" not in message  # torch's advice to load unsafely is not passed on


def test_pt_with_a_foreign_class(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save(_Foreign(torch.zeros(2)), path)
    assert "_Foreign" in _pt_error(path, "never unpickles")  # the foreign class is named
    torch.save(VAE(tiny_config()), path)  # a whole pickled module, not a state_dict
    _pt_error(path, "never unpickles.*torch.save\\(model.state_dict\\(\\)")


def test_pt_with_wrong_shapes_or_keys(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(VAE(tiny_config(latent_dim=5)).state_dict(), path)
    _pt_error(path, "wrong shapes")
    torch.save(VAE(tiny_config("conv")).state_dict(), path)
    _pt_error(path, "missing")


@pytest.mark.parametrize("content", [[torch.zeros(2)], {"a": 1}, {1: torch.zeros(1)}, torch.zeros(3), "text"],
                         ids=["list", "not-tensor", "int-key", "tensor", "string"])
def test_pt_that_is_not_a_state_dict(tmp_path, content):
    path = tmp_path / "w.pt"
    torch.save(content, path)
    _pt_error(path, "state_dict")


def test_pt_with_non_float_weights(tmp_path):
    model = VAE(tiny_config())
    state = {k: v.to(torch.int32) for k, v in model.state_dict().items()}
    path = tmp_path / "ints.pt"
    torch.save(state, path)
    _pt_error(path, "floating-point")


def test_pt_bad_files(tmp_path):
    _pt_error(tmp_path / "missing.pt", "no such file|not a file")
    (tmp_path / "dir.pt").mkdir()
    _pt_error(tmp_path / "dir.pt", "regular file|not a file")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _pt_error(empty, "empty")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(bytes(random.Random(1).getrandbits(8) for _ in range(1000)))
    _pt_error(junk, "damaged")
    torch.save(VAE(tiny_config()).state_dict(), junk)
    junk.write_bytes(junk.read_bytes()[: junk.stat().st_size // 2])
    _pt_error(junk, "damaged")


def test_pt_with_an_invalid_config(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(VAE(tiny_config()).state_dict(), path)
    _pt_error(path, "config for w.pt", config={"latent_dim": 0})
    _pt_error(path, "unknown fields", config={"size": 3})
