"""Interpolation: walk from one latent point to another, straight (lerp) or along the sphere (slerp)."""
import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st
import torch

from pages.ui import frame, map_figure, session, show_images, slider_widget, sync_url, view, widget
from pages.ui.live_pad import live_pad, unsupported_reason
from pages.ui.view import MAX_SEED
from vae_core.images import gif_bytes, make_grid, png_bytes, upscale_factor
from vae_core.latent import lerp, lerp_at, prior_log_density, slerp, slerp_at

handle = frame("interpolation")
cfg = handle.config
v = view()
st.title("Interpolation")
st.caption("Decode the points on a path between two codes. Lerp cuts straight through the middle of the "
           "latent space; slerp follows the sphere where prior draws live.")

z_test, y_test = handle.encodings("test")


def random_pair() -> None:
    v.pair_from, v.pair_to = (int(i) for i in np.random.default_rng().choice(len(z_test), 2, replace=False))


def pair_from_selection() -> None:
    v.pair_from, v.pair_to = v.selected[:2]


st.radio("Endpoints", ["samples", "prior"], horizontal=True, **widget("view.ends"),
         format_func={"samples": "two test images", "prior": "two prior draws"}.get)
c1, c2, c3 = st.columns([1, 1, 2])
if v.ends == "samples":
    if v.pair_from is None:  # an end the link does not give: from the map's selection, else the current sample
        v.pair_from = v.selected[0] if v.selected else v.sample
    if v.pair_to is None:
        v.pair_to = v.selected[1] if len(v.selected) > 1 else (v.pair_from + 1) % len(z_test)
    c3.button("Random pair", on_click=random_pair)
    if len(v.selected) >= 2:
        c3.button("Use the first two points selected on the map", on_click=pair_from_selection)
    a_index = c1.number_input("From test image #", 0, len(z_test) - 1, **widget("view.pair_from"))
    b_index = c2.number_input("To test image #", 0, len(z_test) - 1, **widget("view.pair_to"))
    a, b = torch.as_tensor(z_test[a_index]), torch.as_tensor(z_test[b_index])
    label = int(y_test[a_index])
else:
    c1.number_input("Seed A", 0, MAX_SEED, **widget("view.seed_from"))
    c2.number_input("Seed B", 0, MAX_SEED, **widget("view.seed_to"))
    a, b = handle.prior(1, v.seed_from)[0], handle.prior(1, v.seed_to)[0]
    label = 0
if cfg.conditional:
    label = st.selectbox("Class", range(cfg.num_classes), index=label, format_func=handle.label_name)

steps = st.slider("Steps", 3, 20, **slider_widget("view.steps"))
paths = {"lerp": lerp(a, b, steps), "slerp": slerp(a, b, steps)}
decoded = {name: handle.decode(path, label) for name, path in paths.items()}

for name, images in decoded.items():
    show_images(images, steps, f"{name}: A → B", height=72)

st.subheader("Scrub along the path")
path_token = repr((handle.token, a.tolist(), b.tolist(), label))
onnx_model, export_problem = handle.browser_decoder()
if onnx_model is not None and not unsupported_reason():
    st.caption("Drag t: your browser decodes every point on the way, lerp or slerp.")
    report = live_pad(onnx_model, handle.token, cfg, a.tolist(), label=label, sections=(),
                      scrubber={"a": a.tolist(), "b": b.tolist(), "t": v.scrub_t, "mode": v.scrub_path},
                      reset_token=path_token, image_px=160, key="interpolation_scrubber")
    if report:
        v.scrub_t, v.scrub_path = float(report["t"]), report["mode"]
        v.normalise()
        session().scrubbed = (path_token, report["z"], v.scrub_t, v.scrub_path)
else:
    st.caption(f"Decoded on the server: {export_problem or 'this browser cannot run the live pad'}.")

    @st.fragment
    def server_scrubber():
        left, right = st.columns([3, 1])
        t = left.slider("t", 0.0, 1.0, step=0.01, **slider_widget("view.scrub_t"))
        mode = left.radio("Path", ["slerp", "lerp"], horizontal=True, **widget("view.scrub_path"))
        z = (slerp_at if mode == "slerp" else lerp_at)(a, b, t)
        with right:
            show_images(handle.decode(z, label), 1, f"{mode}, t = {t:.2f}", height=160)
        session().scrubbed = (path_token, z[0].tolist(), t, mode)
        sync_url()  # a fragment's run ends here, not in app.py

    server_scrubber()
scrubbed = session().scrubbed if (session().scrubbed or [None])[0] == path_token else None

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
    found = handle.latent_map(v)
    if found is None:
        st.info("Compute a map on the Latent map page to see the paths here.")
    else:
        coords, _, map_labels = found
        marks = [(name, handle.place_on_map(v, path.numpy()), colour, "lines+markers")
                 for (name, path), colour in zip(paths.items(), ("#FF4B4B", "#00C0F2"))]
        if scrubbed:
            marks.append((f"scrubbed: {scrubbed[3]}, t = {scrubbed[2]:.2f}",
                          handle.place_on_map(v, [scrubbed[1]]), "#FFBD45", "markers"))
        st.plotly_chart(map_figure(coords, map_labels, handle.label_names, marks, height=320), width="stretch",
                        key="interpolation_map")
        st.caption(f"The paths are placed by {handle.placed_by(v)}.")

e1, e2 = st.columns(2)
# Deferred downloads (built on click), as on the Traversal page.
e1.download_button("Download both strips (PNG)", lambda: png_bytes(make_grid(torch.cat(list(decoded.values())), steps),
                                                                   upscale_factor(cfg.input_shape[1], 64)),
                   "interpolation.png", "image/png", on_click="ignore")
e2.download_button("Download slerp animation (GIF)",
                   lambda: gif_bytes(decoded["slerp"], upscale_factor(cfg.input_shape[1], 128)),
                   "interpolation-slerp.gif", "image/gif", on_click="ignore")
sync_url()  # the defaults this run chose join the link (app.py does it too, but not on a direct page run)
