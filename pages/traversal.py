"""Traversal: move one latent dimension at a time and watch the decoded image change."""
import numpy as np
import streamlit as st
import torch

from pages.ui import browser_decoder, current_map, frame, latent_order, map_figure, persistent, show_images, store
from pages.ui.live_pad import live_pad, unsupported_reason
from vae_core.images import gif_bytes, upscale_factor
from vae_core.latent import traversal_grid, traverse
from vae_core.metrics import ACTIVE_UNIT_THRESHOLD
from vae_core.projection import place_on_map

active = frame()
cfg = active.config
state = st.session_state
st.title("Traversal")
st.caption("Start from a point in latent space, then move one dimension at a time. "
           "Dimensions are ordered by how much information they carry (KL); inactive ones barely change anything.")

order, kl = latent_order(active)
z_test, y_test = active.encodings("test")
dead = set(np.flatnonzero(z_test.var(0) <= ACTIVE_UNIT_THRESHOLD).tolist())

c1, c2, c3 = st.columns([2, 1, 1])
base_kind = c1.radio("Start from", ["sample", "prior", "zero"], horizontal=True, key="traversal_base",
                     format_func={"sample": "a test image's μ", "prior": "a random prior draw", "zero": "the origin"}.get)
if base_kind == "sample":
    state.sample = min(state.sample, len(z_test) - 1)
    c2.number_input("Test image #", 0, len(z_test) - 1, key=persistent("sample"), on_change=store, args=("sample",))
    base = torch.as_tensor(z_test[state.sample])
elif base_kind == "prior":
    c2.number_input("Seed", 0, 10_000, key=persistent("seed"), on_change=store, args=("seed",))
    base = torch.randn(cfg.latent_dim, generator=torch.Generator().manual_seed(int(state.seed)))
else:
    base = torch.zeros(cfg.latent_dim)
label = None
if cfg.conditional:
    default = int(y_test[state.sample]) if base_kind == "sample" else 0
    label = c3.selectbox("Class", range(cfg.num_classes), index=default, format_func=lambda i: active.label_names[i])


def current_z() -> list[float]:
    """The vector the sliders hold (the server-side sliders' own state, which the live pad also sets)."""
    return [float(state[f"slider_z{d}"]) for d in range(cfg.latent_dim)]


# New base, model or start point: the sliders jump to it. Otherwise they keep the student's moves.
signature = (active.token, base_kind, state.sample if base_kind == "sample" else state.seed)
if state.get("traversal_signature") != signature:
    state.traversal_signature = signature
    for d in range(cfg.latent_dim):
        state[f"slider_z{d}"] = round(float(base[d]), 2)
    state.current_z = current_z()
else:
    saved = state.get("current_z") or []
    for d in range(cfg.latent_dim):
        if f"slider_z{d}" not in state:  # back from another page: restore where the student left them
            state[f"slider_z{d}"] = saved[d] if len(saved) == cfg.latent_dim else round(float(base[d]), 2)
    if len(saved) != cfg.latent_dim:
        state.current_z = current_z()

show_map = current_map(active) is not None
if not show_map and cfg.latent_dim > 3:
    st.caption("Compute a map on the Latent map page to see the current point on it here.")


def follow(z: list[float]) -> None:
    """The rest of the page (map marker, grid, share link) follows the latent vector z."""
    state.current_z = z
    st.query_params["z"] = ",".join(f"{v:.2f}" for v in z)


def show_on_map(z: list[float], height: int = 300) -> None:
    if show_map:
        coords, z_map, labels = current_map(active)
        here = place_on_map(np.asarray([z], dtype=np.float32), z_map, coords)
        st.plotly_chart(map_figure(coords, labels, active.label_names, [("current z", here, "#FF4B4B", "markers")],
                                   height=height), key="traversal_map")


@st.fragment
def slider_panel():
    """Server-side sliders: only this panel reruns when one moves: one decode, one picture."""
    left, right = st.columns([3, 2])
    with left:
        columns = st.columns(2)
        for i, d in enumerate(order):
            status = " · inactive" if d in dead else ""
            columns[i % 2].slider(f"z{d} · KL {kl[d]:.2f}{status}", -4.0, 4.0, step=0.05, key=f"slider_z{d}")
    z = current_z()
    follow(z)
    with torch.inference_mode():
        image = active.model.decode(torch.tensor([z]), None if label is None else torch.tensor([label]))
    with right:
        show_images(image, 1, "decode(z)", height=220)
        show_on_map(z)


@st.fragment
def live_panel(onnx_model: bytes):
    """The live pad: the browser decodes on every input event; Python hears the vector on release."""
    sections = ("sliders", "pad") if cfg.latent_dim >= 2 else ("sliders",)
    axes = (0, 1) if cfg.latent_dim == 2 else None  # a 2-D latent is its own map: the pad lies as the map does
    report = live_pad(onnx_model, active.token, cfg, state.current_z, order=order, kl=kl, dead=sorted(dead),
                      label=label, sections=sections, pad_axes=axes, reset_token=repr(signature), key="traversal_live_pad")
    if report:
        for d, v in enumerate(report["z"]):
            state[f"slider_z{d}"] = round(float(v), 2)
        state.current_z = [float(v) for v in report["z"]]
    follow(state.current_z)
    show_on_map(state.current_z, height=320)


onnx_model, export_problem = browser_decoder(active)
if onnx_model is None:
    st.caption(f"The sliders run on the server: {export_problem}.")
    slider_panel()
elif unsupported_reason():
    st.info(f"This browser cannot run the live pad ({unsupported_reason()}), so the sliders run on the "
            "server: each move is sent there and the picture comes back.")
    slider_panel()
elif st.toggle("Decode in this browser", key=persistent("live_pad_on", True), on_change=store, args=("live_pad_on",),
               help="On: the picture follows a dragged slider at the screen's frame rate (the decoder runs in "
                    "your browser). Off: each move goes to the server and the picture comes back."):
    live_panel(onnx_model)
else:
    slider_panel()

st.subheader("Traversal grid")
g1, g2, g3 = st.columns([3, 1, 1])
default_rows = [d for d in order if d not in dead][:8] or order[:8]
rows = g1.multiselect("Dimensions (rows)", order, default=default_rows, format_func=lambda d: f"z{d}")
span = g2.slider("Span ±kσ", 0.5, 4.0, 3.0, 0.5)
steps = g3.slider("Columns", 3, 15, 9, 2)
if rows:
    start = torch.tensor(state.current_z, dtype=torch.float32)
    latents = traversal_grid(start, rows, span, steps)
    labels_for_grid = None if label is None else torch.full((len(latents),), label)
    with torch.inference_mode():
        grid_images = active.model.decode(latents, labels_for_grid)
    grid_png = show_images(grid_images, steps, f"rows: {', '.join(f'z{d}' for d in rows)}; columns: −{span}σ … +{span}σ",
                           height=64)
    e1, e2, e3 = st.columns(3)
    gif_dim = e2.selectbox("Animate dimension", rows, format_func=lambda d: f"z{d}")

    def traversal_gif() -> bytes:  # built on click only: most runs of this page are never downloaded
        with torch.inference_mode():
            frames = active.model.decode(traverse(start, gif_dim, torch.linspace(-span, span, 24)),
                                         None if label is None else torch.full((24,), label))
        return gif_bytes(frames, upscale_factor(cfg.input_shape[1], 128))

    # Downloads are deferred (a callable) and do not rerun the page (on_click="ignore"): under load,
    # files made ahead were deleted by the session's next run before the browser fetched them.
    e1.download_button("Download grid (PNG)", lambda: grid_png, "traversal-grid.png", "image/png", on_click="ignore")
    e3.download_button("Download animation (GIF)", traversal_gif, f"traversal-z{gif_dim}.gif", "image/gif",
                       on_click="ignore")
