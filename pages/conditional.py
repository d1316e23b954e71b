"""Conditional generation: ask a CVAE for a class, move one image's style to every class, export samples."""

import streamlit as st
import torch

from pages.ui import frame, session, show_images, slider_widget, sync_url, view, widget
from pages.ui.view import MAX_SEED
from vae_core.catalog import safe_name
from vae_core.generate import (UNLABELLED, class_grid, image_from_upload, npz_bytes, png_zip_bytes, style_code,
                               style_transfer, synthesize)

UPLOAD_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"]

handle = frame("conditional")
cfg = handle.config
v = view()
model = handle.model
names = handle.label_names
name_of = handle.label_name
own_dataset = handle.ckpt.dataset.get("name") or handle.dataset_name
st.title("Conditional generation")


def export_section() -> None:
    """Decoded prior samples as a data set to train something else on: .npz or a zip of PNGs."""
    st.subheader("Data augmentation export")
    if cfg.conditional:
        st.caption("Prior samples decoded as each class, labelled with the class they were asked for. "
                   "The same seed gives the same file.")
    else:
        st.caption(f"Prior samples of an unconditional model: it cannot be asked for a class, so every label is "
                   f"**{UNLABELLED}** (unlabelled). The same seed gives the same file.")
    e1, e2, e3, e4 = st.columns(4)
    n = int(e1.number_input("Samples per class" if cfg.conditional else "Samples", 1,
                            2_000 if cfg.conditional else 20_000, 100, key="export_n"))
    temperature = e2.slider("Temperature", 0.0, 2.0, 1.0, 0.1, key="export_temperature")
    seed = int(e3.number_input("Seed", 0, 10_000, 0, key="export_seed"))
    fmt = e4.radio("Format", ["npz", "zip"], key="export_format",
                   format_func={"npz": ".npz (NumPy arrays)", "zip": ".zip of PNGs (a folder per class)"}.get)
    total = n * cfg.num_classes if cfg.conditional else n
    stem = f"{safe_name(handle.ckpt.path.stem if handle.ckpt.path else 'model')}-samples-seed{seed}"

    def build() -> bytes:  # runs only when the button is clicked (deferred download)
        data = synthesize(model, n, names, temperature, seed)
        return npz_bytes(data) if fmt == "npz" else png_zip_bytes(data)

    st.download_button(f"Download {total:,} samples ({fmt})", build, f"{stem}.{fmt}",
                       "application/octet-stream" if fmt == "npz" else "application/zip", on_click="ignore",
                       key="export_download")
    if fmt == "npz":
        st.caption("`np.load(f, allow_pickle=False)` gives `images` (uint8, N×H×W or N×H×W×C), `labels` (int64) "
                   "and `label_names`; `python -m vae_core train --dataset npz:FILE` trains on it.")
    else:
        st.caption("Unzip and train on the folder with `python -m vae_core train --dataset folder:DIR`.")


if not cfg.conditional:
    st.info("This page needs a **conditional** VAE (a CVAE), and this model is a plain one.\n\n"
            "A CVAE is given the class label y next to the code z: it learns p(x | z, y). Because the decoder "
            "is told the class, z is free to hold everything else — the style: slant, thickness, size. "
            "So you can ask for a class, and draw one image's style as every class. A plain VAE learns "
            "p(x | z) only: the class is mixed into z with the style, and there is no knob to ask for one.")
    if st.button(f"Train a conditional model on {own_dataset}", type="primary"):
        session().train.preset = {"conditional": True, "dataset": own_dataset}
        st.switch_page("pages/train.py")
    export_section()
    st.stop()

st.caption("A conditional VAE decodes p(x | z, y): the class y is an input, so z only has to hold the style.")

# -- class × sample grid ----------------------------------------------------------------------
st.subheader("Samples of each class")
c1, c2, c3, c4 = st.columns([4, 1, 1, 1])
if v.classes is None:
    v.classes = tuple(range(cfg.num_classes))
classes = c1.multiselect("Classes (rows)", list(range(cfg.num_classes)), format_func=name_of, **widget("view.classes"))
n = c2.slider("Samples (columns)", 1, 16, **slider_widget("view.per_class"))
temperature = c3.slider("Temperature", 0.0, 2.0, step=0.1, **slider_widget("view.temperature"),
                        help="z ~ N(0, t²I): below 1 is safer and blander, above 1 stranger")
seed = int(c4.number_input("Seed", 0, MAX_SEED, **widget("view.seed")))
if classes:
    with torch.inference_mode():
        grid = class_grid(model, classes, n, temperature, seed)
    show_images(grid, n, f"rows: {', '.join(name_of(c) for c in classes)} · each column is one z, the same in "
                         "every row: one style, drawn as each class", height=48)
else:
    st.info("Choose at least one class.")

# -- style transfer -------------------------------------------------------------------------------
st.subheader("Style transfer")
st.caption("Encode one image, keep its code z, and decode z with every class label: the same style across all classes.")
source = st.radio("Style from", ["sample", "upload"], horizontal=True, **widget("view.style"),
                  format_func={"sample": "a test image", "upload": "your own picture"}.get)
x, true_label, origin = None, None, ""
s1, s2 = st.columns([1, 2])
if source == "sample":
    index = int(s1.number_input("Test image #", 0, len(handle.data.x_test) - 1, **widget("view.sample")))
    x, true_label, origin = handle.images([index]), int(handle.labels([index])[0]), f"test image #{index}"
else:
    file = s1.file_uploader("A picture (PNG, JPG, …)", type=UPLOAD_TYPES, key="style_upload",
                            help="Cropped to a square and shrunk to the model's size; a light background is inverted")
    if file is None:
        s2.info("Upload a picture: a digit written on paper works (it is inverted to light-on-dark).")
    else:
        x, error = image_from_upload(file.getvalue(), cfg.input_shape)
        if error:
            st.error(f"Could not use {file.name}: {error}.")
        origin = file.name
if x is not None:
    options = ["read"] + list(range(cfg.num_classes))
    label = s2.selectbox("Encode it as class", options, index=0 if true_label is None or true_label >= cfg.num_classes else true_label + 1,
                         format_func=lambda c: "read it from the image (best ELBO)" if c == "read" else name_of(c),
                         help="A CVAE's encoder is told the class too, so that z keeps only the rest")
    label = None if label == "read" else label
    _, used = style_code(model, x, label)  # the label the encoder reads: chosen, or inferred
    strip = style_transfer(model, x, used)
    k = len(strip)
    reconstruction = strip[used:used + 1]  # decoded with its own class: what the model sees in it
    if label is None:
        s2.caption(f"Read as **{name_of(used)}** (the class under which the model explains it best).")
    left, right = st.columns([1, 4])
    with left:
        show_images(torch.cat([x, reconstruction]), 2, f"{origin} · decode(z, {name_of(used)})", height=96)
    with right:
        show_images(strip, k, f"the same style across all classes: decode(z, y) for y = {', '.join(map(name_of, range(k)))}",
                    height=96)

export_section()
sync_url()  # the defaults this run chose join the link (app.py does it too, but not on a direct page run)
