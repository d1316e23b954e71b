"""Anomalies: how surprising each image is to the model. A class it never saw should stand out."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from pages.ui import frame, map_figure, show_images, slider_widget, sync_url, view, widget
from pages.ui.view import View
from vae_core.analysis import SCORES, anomaly_scores, held_out_class, holdout_auc
from vae_core.catalog import units_note
from vae_core.images import ImageError, load_image

handle = frame("anomalies")
cfg = handle.config
v = view()
st.title("Anomalies")
st.caption("A VAE scores an image by how well it can explain it: the negative ELBO (reconstruction cost plus "
           "the KL of its code) or simply how far its reconstruction is from it. Images unlike the training "
           "data score high. Scores use the posterior mean μ (no sampling), so they are the same on every run. "
           + units_note(cfg.likelihood, cfg.obs_sigma))


scores = handle.point_scores("test")
y_test = handle.data.y_test.numpy()
held_out = held_out_class(handle.ckpt.dataset.get("name"))
if held_out is not None and not (y_test == held_out).any():
    held_out = None  # encoding a dataset without that class: nothing to separate


def score_changed() -> None:
    v.threshold = None  # the new score's 95th percentile


if not cfg.probabilistic:
    st.info("This model is an autoencoder: its encoder gives one code per image, not a distribution, so there is no "
            "ELBO to score by. What applies is the reconstruction error.")
    if v.score not in scores:
        v.score, v.threshold = "recon_error", None
kind = st.radio("Score", [k for k in SCORES if k in scores], format_func=SCORES.get, horizontal=True,
                **widget("view.score", score_changed))
values = scores[kind]
fmt = "%.1f" if kind == "neg_elbo" else "%.4f"
low, high = float(values.min()), float(values.max())
# A new model, dataset or score puts the threshold at the 95th percentile; otherwise it stays put.
if v.threshold is None:
    v.threshold = float(np.quantile(values, 0.95))
elif not low <= v.threshold <= high:
    st.warning(f"The threshold {v.threshold:g} lies outside this score's range ({low:g} … {high:g}): it was moved "
               "to the nearest end.", icon="🔗")
v.normalise()  # as the link writes it, then within the slider's range
# A threshold at an end of the range stays exactly there: rounded as the link writes it, the top could
# fall just below the highest score and flag that image.
ends = {View.as_linked("threshold", end): end for end in (low, high)}
v.threshold = ends.get(v.threshold, min(high, max(low, v.threshold)))

# The uploaded image is scored first (right column), so the histogram (left) can show where it falls.
upload_score, upload_image, upload_label = None, None, None

left, right = st.columns([3, 2])
with right:
    st.subheader("Score your own image")
    file = st.file_uploader("A picture (PNG or JPG)", type=["png", "jpg", "jpeg"], key="anomaly_upload",
                            help=f"It is converted to {'grey' if cfg.input_shape[0] == 1 else 'RGB'}, centre-cropped "
                                 f"to a square and resized to {cfg.input_shape[1]}×{cfg.input_shape[2]}.")
    invert = st.radio("Colours", ["auto", "keep", "invert"], horizontal=True, key="anomaly_invert",
                      help="The datasets draw light shapes on a dark background; 'auto' inverts a mostly light "
                           "picture (a digit written on paper).")
    if file is not None:
        try:
            upload_image = load_image(file.getvalue(), tuple(cfg.input_shape),
                                      {"auto": None, "keep": False, "invert": True}[invert])
        except ImageError as exc:
            st.error(f"Could not use {file.name}: {exc}.")
        except Exception as exc:  # noqa: BLE001 - whatever a hostile file does, the page stays up
            st.error(f"Could not use {file.name}: the picture could not be read ({type(exc).__name__}).")
    if upload_image is not None:
        upload_scores = anomaly_scores(handle.model, upload_image)
        upload_score = float(upload_scores[kind][0])
        best = None
        if cfg.conditional:  # reconstruct under the class that explains it best
            per_class = anomaly_scores(handle.model, upload_image.repeat(cfg.num_classes, 1, 1, 1),
                                       torch.arange(cfg.num_classes))
            best = int(np.argmin(per_class[kind]))
        upload_label = best
        recon = handle.reconstruct(upload_image, best)
        show_images(torch.cat([upload_image, recon]), 2, "yours · reconstruction",
                    height=96)
        percentile = 100.0 * float((values < upload_score).mean())
        above = upload_score > v.threshold
        st.metric(f"Its {SCORES[kind]}", fmt % upload_score, help="higher: more anomalous")
        st.write(f"Higher than **{percentile:.1f}%** of the test images — "
                 + ("**above** the threshold: flagged as an anomaly." if above else "below the threshold: normal."))
        if cfg.conditional:
            st.caption(f"A conditional model needs a class: scored under the one that explains it best "
                       f"({handle.label_name(best)}).")

with left:
    st.subheader(f"{SCORES[kind][0].upper()}{SCORES[kind][1:]} of every test image")
    threshold = st.slider("Threshold", low, high, step=(high - low) / 200 or 1.0, format=fmt,
                          **slider_widget("view.threshold"), help="images scoring above it are flagged")
    figure = go.Figure()
    size = (high - low) / 50 or 1.0
    bins = dict(start=low, end=high + size / 2, size=size)  # the same bins for every trace
    if held_out is not None:
        name = handle.label_name(held_out)
        unseen = y_test == held_out
        figure.add_trace(go.Histogram(x=values[~unseen], name="classes seen in training", xbins=bins, opacity=0.7))
        figure.add_trace(go.Histogram(x=values[unseen], name=f"class {name} (never seen)", xbins=bins, opacity=0.7,
                                      marker_color="#E45756"))
        figure.update_layout(barmode="overlay")
    else:
        figure.add_trace(go.Histogram(x=values, name="test images", xbins=bins, marker_color="#4C78A8"))
    figure.add_vline(x=threshold, line=dict(color="black", dash="dash"), annotation_text="threshold")
    if upload_score is not None:
        figure.add_vline(x=upload_score, line=dict(color="#F58518", width=3), annotation_text="your image",
                         annotation_position="top left")
    figure.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=SCORES[kind],
                         yaxis_title="images", legend=dict(orientation="h", y=1.12))
    st.plotly_chart(figure, width="stretch", key="anomaly_histogram")
    flagged = int((values > threshold).sum())
    m1, m2 = st.columns(2)
    m1.metric("Images above the threshold", f"{flagged} of {len(values)}")
    m2.metric("Share flagged", f"{100.0 * flagged / len(values):.1f}%")

if held_out is not None:
    st.subheader("Can the scores find the class the model never saw?")
    name = handle.label_name(held_out)
    st.write(f"This model was trained without class **{name}** ({handle.ckpt.dataset.get('name')}); the test set "
             f"still has {int((y_test == held_out).sum())} of them among {len(y_test)} images. ROC AUC: the chance "
             f"that a random class-{name} image scores higher than a random other one (0.5: chance, 1: perfect).")
    available = {score: title for score, title in SCORES.items() if score in scores}  # an autoencoder: no ELBO
    for column, (score, title) in zip(st.columns(len(available)), available.items()):
        column.metric(f"ROC AUC · {title}", f"{holdout_auc(scores[score], y_test, held_out):.3f}")
elif handle.ckpt.dataset.get("name"):
    st.caption("Train a model with a class left out (`python -m vae_core train … --holdout-class 3`, shipped as "
               "mnist-vae-no3) to see how well these scores find a class the model never saw.")

st.subheader("The most anomalous test images")
k = st.slider("How many", 4, 24, step=4, **slider_widget("view.top_k"))
top = np.argsort(-values, kind="stable")[:k]
x = handle.images(top)
recon = handle.reconstruct(x, handle.labels(top))
ncols = min(k, 12)
show_images(x, ncols, "images, most anomalous first", height=64)
show_images(recon, ncols, "their reconstructions", height=64)
st.caption(" · ".join(f"#{i} ({handle.label_name(int(y_test[i]))}): "
                      f"{fmt % values[i]}" for i in top))

st.subheader("Scores on the latent map")
found = handle.latent_map(v)
if found is None:
    st.caption("Compute a map on the Latent map page to see the scores on it here.")
else:
    coords, _, labels = found
    split = handle.map_split(v)
    marks = []
    if upload_image is not None:  # where the model puts your picture, by the map's own transform
        marks.append(("your picture", handle.place_on_map(v, handle.embed(upload_image, upload_label)), "#FF4B4B",
                      "markers"))
    figure = map_figure(coords, labels, handle.label_names, marks, height=480,
                        values=(SCORES[kind], handle.point_scores(split)[kind]))
    st.plotly_chart(figure, width="stretch", key="anomaly_map")
    st.caption(f"The {split} split, coloured by {SCORES[kind]}: bright points are the ones the model explains worst.")
sync_url()  # the defaults this run chose join the link (app.py does it too, but not on a direct page run)
