"""Disentanglement: does each latent dimension capture one ground-truth factor? MIG and traversals."""
import numpy as np
import plotly.express as px
import streamlit as st
import torch

from pages.ui import ModelHandle, frame, other_checkpoints, session, shared_dataset, show_images, slider_widget, sync_url, view, widget
from vae_core.analysis import mutual_information_gap
from vae_core.beta_sweep import DISENTANGLEMENT_BETAS, sweep_preset
from vae_core.catalog import objective_label
from vae_core.datasets import available_datasets
from vae_core.latent import traversal_grid
from vae_core.recipe import ARCHITECTURES

handle = frame("disentanglement")
v = view()
data = handle.data
MAX_COMPARED = 2  # three panels side by side: β = 1, β-VAE, β-TCVAE
st.title("Disentanglement")
st.caption("A disentangled latent space gives each generative factor of the data (shape, size, position…) "
           "its own dimension, so moving one dimension changes one thing.")

with st.expander("How MIG measures it"):
    st.markdown(r"""
The **Mutual Information Gap** (Chen et al., 2018) needs data whose ground-truth factors $v_k$ are known.
Each latent mean $z_d$ is binned (equal-width bins), and for every pair the mutual information
$I(z_d; v_k)$ is estimated from counts and divided by the factor's entropy $H(v_k)$: 1 means $z_d$
determines $v_k$ completely. For each factor, the **gap** is the normalised information of its best
dimension minus that of its second best; MIG is the mean gap over factors.

- MIG ≈ 1: every factor lives in exactly one dimension.
- MIG ≈ 0: factors are spread over several dimensions (or not captured at all).

A β-VAE (β > 1) presses the posterior towards the factorised prior, which often — not always — raises MIG
at the cost of blurrier reconstructions. A β-TCVAE splits the KL into three parts (the information
z keeps about x, the **total correlation** between dimensions, and each dimension's distance from
the prior) and weighs only the total correlation by β: dimensions become independent without
throwing away as much of the image.
""")

if not data.factor_names or data.factors_test is None:
    st.info(f"**{handle.dataset_name}** has no ground-truth factors, so there is nothing to measure "
            "disentanglement against: MIG compares each latent dimension with known generative factors. "
            "The **shapes** dataset has them (shape, scale, rotation, x, y): pick **shapes-vae** (β = 1), "
            "**shapes-betavae** or **shapes-tcvae** in the sidebar. The Traversal page still shows what each "
            "dimension of this model does.")
    st.stop()

factor_names = list(data.factor_names)
bins = st.select_slider("Bins per latent dimension", [10, 20, 30, 50], **widget("view.mig_bins"),
                        help="MIG discretises each latent mean into this many equal-width bins (20 is usual)")


@st.cache_data(max_entries=32, show_spinner="Estimating mutual information…")
def _mig(model_token: str, dataset_name: str, bins: int, _z: np.ndarray):
    return mutual_information_gap(_z, shared_dataset(dataset_name).factors_test.numpy(), bins=bins)


def _panel(title: str, model: ModelHandle) -> None:
    """MIG, the normalised-MI heat map and one traversal row per dimension, for one model."""
    z = model.encodings("test")[0]
    result = _mig(model.token, model.dataset_name, bins, z)
    st.markdown(f"#### {title}")
    m1, m2 = st.columns(2)
    m1.metric("MIG", f"{result.mig:.3f}", help="0: entangled · 1: each factor in one dimension")
    m2.metric("β", f"{model.config.beta:g}", help=objective_label(model.config))
    st.caption(objective_label(model.config))
    gaps = " · ".join(f"{name} {gap:.2f}" for name, gap in zip(factor_names, result.gaps) if np.isfinite(gap))
    st.caption(f"Gap per factor: {gaps}")
    tracked = [factor_names[f] if f >= 0 else "—" for f in result.best_factor]
    figure = px.imshow(result.normalized_mi, x=factor_names, y=[f"z{d} → {t}" for d, t in enumerate(tracked)],
                       zmin=0, zmax=1, color_continuous_scale="Blues", text_auto=".2f", aspect="auto",
                       labels=dict(color="I(z; v) / H(v)"))
    figure.update_layout(height=60 + 34 * len(tracked), margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(figure, width="stretch", key=f"mig_heatmap_{title}")

    dims = list(range(model.config.latent_dim))
    start = torch.as_tensor(z[v.sample]) if v.mig_base == "sample" else torch.zeros(model.config.latent_dim)
    images = model.decode(traversal_grid(start, dims, span, steps), int(data.y_test[v.sample]))
    for d in dims:
        best = result.best_factor[d]
        label = (f"**z{d}** → {factor_names[best]} ({result.normalized_mi[d, best]:.2f})" if best >= 0
                 else f"**z{d}** → no factor")
        c_label, c_row = st.columns([1, 4], vertical_alignment="center")
        c_label.markdown(label)
        with c_row:
            show_images(images[d * steps:(d + 1) * steps], steps, height=48)


c1, c2, c3 = st.columns([2, 1, 1])
c1.radio("Traversals start from", ["zero", "sample"], horizontal=True, **widget("view.mig_base"),
         format_func={"zero": "the origin", "sample": f"test image #{v.sample}'s μ"}.get)
span = c2.slider("Span ±", 0.5, 4.0, step=0.5, **slider_widget("view.mig_span"))
steps = c3.slider("Columns", 3, 13, step=2, **slider_widget("view.mig_steps"))

others = other_checkpoints(handle, lambda other: bool(other.dataset.get("factor_names")))  # data with factors
if v.compare is not None and not set(v.compare) <= set(others):
    st.warning(f"There is nothing named {', '.join(sorted(set(v.compare) - set(others)))} to compare this model "
               "with here: it was left out.", icon="🔗")
    v.compare = tuple(name for name in v.compare if name in others)
if v.compare is None:
    v.compare = tuple(list(others)[:MAX_COMPARED])
compare = st.multiselect("Side by side with", list(others), **widget("view.compare"), max_selections=MAX_COMPARED,
                         placeholder="nothing (this model only)",
                         help="other checkpoints trained on data with the same factors: β = 1, β-VAE, β-TCVAE")
if handle.ckpt.dataset.get("name") in available_datasets() and handle.config.architecture in ARCHITECTURES:
    betas = ", ".join(f"{b:g}" for b in DISENTANGLEMENT_BETAS)
    if st.button(f"Train this recipe at β = {betas}", icon=":material/model_training:", key="train_beta_sweep",
                 help="Opens the Train page with this model's data, network, objective and epochs, and a β sweep: "
                      "every β trains in one run, one model each, to compare here when they are done"):
        session().train.preset = sweep_preset(handle.ckpt)
        st.switch_page("pages/train.py")
panels = [(handle.name, handle)] + [(name, others[name]) for name in compare]
for column, panel in zip(st.columns(len(panels)), panels):
    with column:
        _panel(*panel)
st.caption("Each row sweeps one dimension from −span to +span with the others held fixed; its label is the factor "
           "that dimension shares most information with (normalised MI in brackets, “no factor” below 0.05).")
sync_url()  # the defaults this run chose join the link (app.py does it too, but not on a direct page run)
