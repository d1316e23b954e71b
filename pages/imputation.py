"""Imputation: hide part of an image and let the VAE fill it in, by encoding and decoding repeatedly."""
import numpy as np
import streamlit as st
import torch

from pages.ui import frame, show_images, slider_widget, sync_url, view, widget
from pages.ui.view import MAX_SEED
from vae_core.analysis import impute, masked_mse, random_mask, rectangle_mask

handle = frame("imputation")
cfg = handle.config
v = view()
_, height, width = cfg.input_shape
st.title("Imputation")
st.caption("Hide some pixels, then fill them in: encode the image, decode it, copy the decoded pixels into the "
           "hidden ones only (the visible pixels never change), and repeat. Each round the model's guess "
           "conditions on a better picture.")


@st.cache_data(max_entries=16, show_spinner=False)
def _mean_image(dataset_name: str, _x_train: torch.Tensor) -> torch.Tensor:
    return _x_train.mean(0)


n_test = len(handle.data.x_test)
if v.box is None:  # the middle quarter of the image
    v.box = (height // 4, width // 4, height // 2, width // 2)
c1, c2, c3 = st.columns([1, 2, 2])
with c1:
    index = st.number_input("Test image #", 0, n_test - 1, **widget("view.sample"))
    kind = st.radio("Mask", ["rectangle", "random"], **widget("view.mask"),
                    format_func={"rectangle": "a rectangle", "random": "random pixels"}.get)
with c2:
    r1, r2 = st.columns(2)
    if kind == "rectangle":
        top = r1.slider("Top", 0, height - 1, **slider_widget("view.box.0"))
        left = r2.slider("Left", 0, width - 1, **slider_widget("view.box.1"))
        box_h = r1.slider("Height", 1, height, **slider_widget("view.box.2"))
        box_w = r2.slider("Width", 1, width, **slider_widget("view.box.3"))
        mask = rectangle_mask(height, width, top, left, box_h, box_w)
    else:
        fraction = r1.slider("Missing fraction", 0.05, 0.95, step=0.05, **slider_widget("view.fraction"))
        seed = r2.number_input("Seed", 0, MAX_SEED, **widget("view.mask_seed"))
        mask = random_mask(height, width, fraction, int(seed))
with c3:
    iterations = st.slider("Iterations", 1, 50, **slider_widget("view.rounds"))
    fill_kind = st.radio("Hidden pixels start as", ["zero", "mean"], horizontal=True, **widget("view.fill"),
                         format_func={"zero": "black (0)", "mean": "the training mean image"}.get)
    if not cfg.probabilistic and v.round_mode == "gibbs":
        v.round_mode = "mean"  # an autoencoder has no q(z|x) to draw from
    mode = st.radio("Each round decodes", ["mean", "gibbs"] if cfg.probabilistic else ["mean"], horizontal=True,
                    **widget("view.round_mode"),
                    format_func={"mean": "the posterior mean μ", "gibbs": "a draw z ~ q(z|x) (pseudo-Gibbs)"}.get,
                    help="μ converges to one completion; drawing z (seeded) explores other plausible ones")

x = handle.images([index])
y = handle.labels([index]) if cfg.conditional else None  # impute() conditions on it
mean_image = _mean_image(handle.dataset_name, handle.data.x_train)
fill = 0.0 if fill_kind == "zero" else mean_image
result = impute(handle.model, x, mask, int(iterations), y=y, fill=fill, mode=mode, seed=0)
missing = result.mask
n_missing = int(mask.sum())

# The masked image drawn in colour: hidden pixels red, so the mask shows on a black background too.
shown_masked = result.masked.expand(-1, 3, -1, -1).clone() if cfg.input_shape[0] == 1 else result.masked.clone()
red = torch.tensor([0.9, 0.15, 0.15]).view(1, 3, 1, 1).expand_as(shown_masked)
shown_masked = torch.where(mask.view(1, 1, height, width).expand_as(shown_masked), red, shown_masked)

p1, p2, p3 = st.columns(3)
with p1:
    show_images(x, 1, "original", height=180)
with p2:
    show_images(shown_masked, 1, "masked (red: hidden)", height=180)
    st.caption(f"{n_missing} of {height * width} pixels hidden; the model sees "
               f"{'0' if fill_kind == 'zero' else 'the training mean'} there.")
with p3:
    show_images(result.filled, 1, "filled", height=180)
    st.caption(f"after {iterations} encode/decode round{'s' if iterations > 1 else ''}")

if n_missing == 0:
    st.info("No pixel is hidden: widen the mask.")
else:
    zero_error = float(masked_mse(torch.where(missing, torch.zeros_like(x), x), x, missing)[0])
    mean_error = float(masked_mse(torch.where(missing, mean_image.expand_as(x), x), x, missing)[0])
    filled_error = float(result.error_filled[0])
    baseline = zero_error if fill_kind == "zero" else mean_error
    st.subheader("Error on the hidden pixels (mean squared error)")
    m1, m2, m3 = st.columns(3)
    m1.metric("masked image, hidden = 0", f"{zero_error:.4f}")
    m2.metric("masked image, hidden = training mean", f"{mean_error:.4f}")
    m3.metric(f"VAE fill ({iterations} iterations)", f"{filled_error:.4f}",
              delta=f"{filled_error - baseline:+.4f} vs its start", delta_color="inverse")

st.subheader("Iteration by iteration")
shown = np.unique(np.linspace(0, len(result.steps) - 1, min(len(result.steps), 12)).round().astype(int))
strip = torch.cat([result.masked] + [result.steps[i] for i in shown])
show_images(strip, len(strip), "start · " + " · ".join(f"{i + 1}" for i in shown), height=72)
if n_missing:
    errors = [float(masked_mse(step, x, missing)[0]) for step in result.steps]
    st.line_chart({"error on the hidden pixels": [float(result.error_baseline[0])] + errors}, height=200,
                  x_label="iteration", y_label="MSE")
sync_url()  # the defaults this run chose join the link (app.py does it too, but not on a direct page run)
