"""The live latent pad: sliders, a 2-D pad and an interpolation scrubber whose pictures are decoded in
the student's browser (onnxruntime-web, WebAssembly), redrawn on every input event while dragging.

A Streamlit custom component (v1). Its source is frontend/src; frontend/build holds the built files
that the app serves, committed so that `make run` needs no Node (rebuild: `make live-pad`, which runs
`npm ci && npm run build` in frontend/). Nothing is fetched from outside the app: the ONNX decoder
comes in the component's arguments, the WebAssembly runtime from frontend/build.

The component answers None until the student releases a control, then {"status": "ok", "source",
"z": [...]} (plus "t" and "mode" for the scrubber), or {"status": "unsupported", "reason"} when the
browser cannot run it: the page then falls back to server-side sliders.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from ..state import session

BUILD = Path(__file__).parent / "frontend" / "build"
_component = components.declare_component("live_pad", path=str(BUILD))


def unsupported_reason() -> str | None:
    """Why this session's browser cannot run the pad (it said so once), or None."""
    return session().live_pad_unsupported


def _opaque(text: str) -> str:
    """A short name for text the browser needs to compare but not read (server paths, tokens)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def live_pad(onnx_model: bytes, model_key: str, config, z: Sequence[float], *, order: Sequence[int] = (),
             kl: Sequence[float] = (), kl_name: str = "KL", dead: Sequence[int] = (), label: int | None = None,
             sections: Sequence[str] = ("sliders", "pad"), pad_axes: Sequence[int] | None = None,
             scrubber: dict | None = None, reset_token: str = "", value_range: float = 4.0,
             image_px: int = 220, key: str) -> dict | None:
    """Draw the pad; return the student's latest report the first time Python sees it, else None.

    `kl`: each dimension's number beside its slider, named `kl_name` (an autoencoder's is its codes' σ).
    `reset_token`: when it changes, the controls jump to `z`; otherwise they keep the student's moves
    across reruns. `scrubber`: {"a": [...], "b": [...], "t", "mode"} endpoints. A browser that
    cannot run the pad is remembered for the session (unsupported_reason()) and the app reruns, so
    the page draws its server-side fallback instead."""
    order = [int(d) for d in order] or list(range(config.latent_dim))
    kl = list(kl) or [0.0] * config.latent_dim
    value = _component(
        model=onnx_model, model_key=_opaque(model_key), latent_dim=config.latent_dim,
        shape=list(config.input_shape), num_classes=config.num_classes, label=0 if label is None else int(label),
        z=[float(v) for v in z], order=order, kl=[float(v) for v in kl], kl_name=kl_name, dead=[int(d) for d in dead],
        sections=list(sections), pad_axes=list(pad_axes or (order + order)[:2]), scrubber=scrubber,
        reset_token=_opaque(reset_token), range=value_range, image_px=image_px, key=key, default=None,
    )
    if value and value.get("status") == "unsupported":
        session().live_pad_unsupported = value.get("reason") or "unknown reason"
        st.rerun()
    # The component keeps answering its last report on every rerun: hand each one over once, so a
    # new start point chosen since is not overwritten by an old gesture.
    seen = session().component_reports_seen
    if not value or value.get("id") == seen.get(key) or len(value.get("z", [])) != config.latent_dim:
        return None
    seen[key] = value["id"]
    return value
