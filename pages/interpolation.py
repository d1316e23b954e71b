"""Interpolation: walk from one latent point to another, straight (lerp) or along the sphere (slerp)."""
import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st
import torch

from pages.ui import browser_decoder, current_map, frame, map_figure, show_images
from pages.ui.live_pad import live_pad, unsupported_reason
from vae_core.images import gif_bytes, make_grid, png_bytes, upscale_factor
from vae_core.latent import lerp, lerp_at, prior_log_density, slerp, slerp_at
from vae_core.projection import place_on_map

active = frame()
cfg = active.config
state = st.session_state
st.title("Interpolation")
st.caption("Decode the points on a path between two codes. Lerp cuts straight through the middle of the "
           "latent space; slerp follows the sphere where prior draws live.")

z_test, y_test = active.encodings("test")
kind = st.radio("Endpoints", ["samples", "prior"], horizontal=True,
                format_func={"samples": "two test images", "prior": "two prior draws"}.get)
c1, c2, c3 = st.columns([1, 1, 2])
if kind == "samples":
    selected = [i for i in state.get("selected", []) if i < len(z_test)]
    if "interp_a" not in state:
        state.interp_a = selected[0] if selected else min(state.sample, len(z_test) - 1)
        state.interp_b = selected[1] if len(selected) > 1 else (state.interp_a + 1) % len(z_test)
    if c3.button("Random pair"):
        pair = np.random.default_rng().choice(len(z_test), 2, replace=False)
        state.interp_a, state.interp_b = int(pair[0]), int(pair[1])
    if len(selected) >= 2 and c3.button("Use the first two points selected on the map"):
        state.interp_a, state.interp_b = selected[0], selected[1]
    a_index = c1.number_input("From test image #", 0, len(z_test) - 1, key="interp_a")
    b_index = c2.number_input("To test image #", 0, len(z_test) - 1, key="interp_b")
    a, b = torch.as_tensor(z_test[a_index]), torch.as_tensor(z_test[b_index])
    label = int(y_test[a_index])
else:
    seed_a = c1.number_input("Seed A", 0, 10_000, 1)
    seed_b = c2.number_input("Seed B", 0, 10_000, 2)
    a = torch.randn(cfg.latent_dim, generator=torch.Generator().manual_seed(int(seed_a)))
    b = torch.randn(cfg.latent_dim, generator=torch.Generator().manual_seed(int(seed_b)))
    label = 0
if cfg.conditional:
    label = st.selectbox("Class", range(cfg.num_classes), index=label, format_func=lambda i: active.label_names[i])

steps = st.slider("Steps", 3, 20, 10)
paths = {"lerp": lerp(a, b, steps), "slerp": slerp(a, b, steps)}
labels = None if not cfg.conditional else torch.full((steps,), label)
with torch.inference_mode():
    decoded = {name: active.model.decode(path, labels) for name, path in paths.items()}

for name, images in decoded.items():
    show_images(images, steps, f"{name}: A → B", height=72)

st.subheader("Scrub along the path")
path_token = repr((active.token, a.tolist(), b.tolist(), label))
onnx_model, export_problem = browser_decoder(active)
if onnx_model is not None and not unsupported_reason():
    st.caption("Drag t: your browser decodes every point on the way, lerp or slerp.")
    report = live_pad(onnx_model, active.token, cfg, a.tolist(), label=label, sections=(),
                      scrubber={"a": a.tolist(), "b": b.tolist(), "t": 0.5, "mode": "slerp"},
                      reset_token=path_token, image_px=160, key="interpolation_scrubber")
    if report:
        state.scrubbed = (path_token, report["z"], report["t"], report["mode"])
else:
    st.caption(f"Decoded on the server: {export_problem or 'this browser cannot run the live pad'}.")

    @st.fragment
    def server_scrubber():
        left, right = st.columns([3, 1])
        t = left.slider("t", 0.0, 1.0, 0.5, 0.01, key="scrub_t")
        mode = left.radio("Path", ["slerp", "lerp"], horizontal=True, key="scrub_mode")
        z = (slerp_at if mode == "slerp" else lerp_at)(a, b, t)
        with torch.inference_mode(), right:
            show_images(active.model.decode(z, None if labels is None else labels[:1]), 1, f"{mode}, t = {t:.2f}",
                        height=160)
        state.scrubbed = (path_token, z[0].tolist(), t, mode)

    server_scrubber()
scrubbed = state.get("scrubbed") if (state.get("scrubbed") or [None])[0] == path_token else None

left, right = st.columns(2)
with left:
    st.subheader("How typical is each point?")
    table = pd.DataFrame({"step": np.tile(np.arange(steps), 2), "path": np.repeat(list(paths), steps),
                          "log p(z)": torch.cat([prior_log_density(p) for p in paths.values()]).numpy()})
    figure = px.line(table, x="step", y="log p(z)", color="path", markers=True)
    figure.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(figure, width="stretch")
    st.caption("In many dimensions, prior draws sit on a shell of radius about √d, not at the centre. "
               "Lerp's midpoint falls inside the shell, where the log-density is higher than any "
               "training code ever had — an atypical place that can decode to a washed-out blend. "
               "Slerp keeps the norm, so its points look like prior draws all the way.")
with right:
    st.subheader("The paths on the latent map")
    found = current_map(active)
    if found is None:
        st.info("Compute a map on the Latent map page to see the paths here.")
    else:
        coords, z_map, map_labels = found
        marks = [(name, place_on_map(path.numpy(), z_map, coords), colour, "lines+markers")
                 for (name, path), colour in zip(paths.items(), ("#FF4B4B", "#00C0F2"))]
        if scrubbed:
            marks.append((f"scrubbed: {scrubbed[3]}, t = {scrubbed[2]:.2f}",
                          place_on_map(np.asarray([scrubbed[1]], dtype=np.float32), z_map, coords), "#FFBD45", "markers"))
        st.plotly_chart(map_figure(coords, map_labels, active.label_names, marks, height=320), width="stretch",
                        key="interpolation_map")

e1, e2 = st.columns(2)
# Deferred downloads (built on click), as on the Traversal page.
e1.download_button("Download both strips (PNG)", lambda: png_bytes(make_grid(torch.cat(list(decoded.values())), steps),
                                                                   upscale_factor(cfg.input_shape[1], 64)),
                   "interpolation.png", "image/png", on_click="ignore")
e2.download_button("Download slerp animation (GIF)",
                   lambda: gif_bytes(decoded["slerp"], upscale_factor(cfg.input_shape[1], 128)),
                   "interpolation-slerp.gif", "image/gif", on_click="ignore")
