"""The live pad in the pages, through AppTest: what Python hands the browser, what it does with the
vector the browser reports on release, and the server-side fallback. (The browser half is in
test_browser_live_pad.py.)"""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from apptest_support import ROOT, assert_clean, image_urls, query, session_of, start, view_of
from vae_core import onnx_decoder
from vae_core.checkpoint import load_checkpoint
from vae_core.onnx_decoder import DecoderExportError, one_hot, run_decoder


def pad_of(at):
    (component,) = at.get("component_instance")
    proto = component.proto
    return json.loads(proto.json_args), {a.key: a.bytes for a in proto.special_args}


def mark(at, name: str) -> tuple[float, float]:
    """The (x, y) of the first point of the named trace in the page's charts."""
    traces = [t for chart in at.get("plotly_chart") for t in json.loads(chart.proto.spec)["data"]]
    trace = next(t for t in traces if t.get("name", "").startswith(name))
    return float(values(trace["x"])[0]), float(values(trace["y"])[0])


def values(data) -> np.ndarray:
    """A plotly array: a list, or a typed array {"dtype", "bdata": base64} as plotly >= 6 writes numpy."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"])
    return np.asarray(data)


@pytest.mark.parametrize("model", ["digits-vae", "mnist-cvae", "shapes-vae"])
def test_traversal_hands_the_browser_this_models_decoder_and_z(checkpoints, model):
    at = start("pages/traversal.py", model)
    assert_clean(at)
    args, blobs = pad_of(at)
    cfg = load_checkpoint(ROOT / "checkpoints" / f"{model}.safetensors").config
    assert args["z"] == list(view_of(at).z) and args["latent_dim"] == cfg.latent_dim
    assert sorted(args["order"]) == list(range(cfg.latent_dim)) and args["shape"] == list(cfg.input_shape)
    # the bytes are this model's decoder: ONNX Runtime draws what the checkpoint draws
    reference = load_checkpoint(ROOT / "checkpoints" / f"{model}.safetensors").model.eval()
    z = np.asarray([args["z"]], dtype=np.float32)
    y = one_hot([args["label"]], cfg.num_classes) if cfg.conditional else None
    with torch.inference_mode():
        expected = reference.decode(torch.from_numpy(z), None if y is None else torch.tensor([args["label"]])).numpy()
    assert np.abs(run_decoder(blobs["model"], z, y) - expected).max() <= 1e-4
    assert not [s for s in at.slider if s.key == "view.z.0"], "no server-side sliders beside the live pad"


def test_a_release_in_the_browser_moves_the_page_along(checkpoints):
    at = start("pages/traversal.py", "mnist-vae-2d")
    reported = [1.25, -2.5]
    at.session_state["traversal_live_pad"] = {"status": "ok", "source": "pad", "z": reported, "id": "t-1"}
    at.run()
    assert_clean(at)
    assert list(view_of(at).z) == reported
    assert query(at, "z") == "1.25,-2.50", "the share link carries the new vector"
    assert mark(at, "current z") == pytest.approx(tuple(reported)), "a 2-D latent's map shows z where it is"
    assert pad_of(at)[0]["pad_axes"] == [0, 1], "the pad lies as the map does"
    at.toggle(key="view.live_pad").set_value(False).run()
    assert_clean(at)
    assert [at.slider(key=f"view.z.{d}").value for d in range(2)] == reported, "server sliders start there"


def test_a_new_start_point_is_not_overwritten_by_an_old_report(checkpoints):
    at = start("pages/traversal.py")
    latent = len(list(view_of(at).z))  # the default model's
    at.session_state["traversal_live_pad"] = {"status": "ok", "source": "slider", "z": [3.0] * latent, "id": "t-1"}
    at.run()
    at.radio(key="view.base").set_value("zero").run()  # the component still holds its last report
    assert_clean(at)
    assert list(view_of(at).z) == [0.0] * latent
    assert pad_of(at)[0]["z"] == [0.0] * latent


def test_a_browser_without_webassembly_gets_the_server_sliders(checkpoints):
    at = start("pages/traversal.py")
    at.session_state["traversal_live_pad"] = {"status": "unsupported", "reason": "this browser has no WebAssembly"}
    at.run()
    assert_clean(at)
    assert any("cannot run the live pad (this browser has no WebAssembly)" in i.value for i in at.info)
    assert not at.get("component_instance")
    slider = at.slider(key="view.z.0")
    before = image_urls(at)[0]
    slider.set_value(min(4.0, slider.value + 1.5)).run()
    assert image_urls(at)[0] != before, "the server decodes instead"


def test_a_decoder_that_cannot_be_exported_leaves_the_server_sliders(checkpoints, monkeypatch):
    def refuse(model, cache_dir=None):
        raise DecoderExportError("the decoder could not be exported to ONNX (Unsupported: a test)")

    monkeypatch.setattr(onnx_decoder, "decoder_onnx", refuse)
    at = start("pages/traversal.py", "mnist-vae-2d")
    assert_clean(at)
    assert not at.get("component_instance")
    assert any("could not be exported to ONNX" in c.value for c in at.caption)
    assert at.slider(key="view.z.0")


def test_interpolation_scrubber_reports_a_point_on_the_path(checkpoints):
    at = start("pages/interpolation.py", "mnist-vae-2d")
    args, _ = pad_of(at)
    a, b = args["scrubber"]["a"], args["scrubber"]["b"]
    assert args["sections"] == [] and args["scrubber"]["mode"] == "slerp"
    at.session_state["interpolation_scrubber"] = {"status": "ok", "source": "scrubber", "z": b, "t": 1.0,
                                                   "mode": "lerp", "id": "s-1"}
    at.run()
    assert_clean(at)
    assert mark(at, "scrubbed: lerp, t = 1.00") == pytest.approx(tuple(b))
    assert a != b


def test_interpolation_scrubber_falls_back_to_the_server(checkpoints):
    at = start("pages/interpolation.py", "mnist-vae-2d")
    at.session_state["interpolation_scrubber"] = {"status": "unsupported", "reason": "no WebAssembly"}
    at.run()
    assert_clean(at)
    assert not at.get("component_instance")
    before = image_urls(at)
    at.slider(key="view.scrub_t").set_value(0.9).run()
    assert_clean(at)
    assert image_urls(at) != before
    assert session_of(at).scrubbed[2] == 0.9
