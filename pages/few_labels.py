"""Few labels: what the latent space is worth to a classifier that sees only a handful of labelled images."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from pages.ui import frame, shared_dataset, sync_url
from vae_core.few_labels import DRAWS, LABELS_PER_CLASS, REPRESENTATIONS, few_labels

COLOURS = {"latent μ": "#4C78A8", "PCA": "#F58518", "pixels": "#54A24B"}

handle = frame("few_labels")
cfg = handle.config
st.title("Few labels")
st.caption("A VAE learns from images without labels. Are its codes useful features when labels are scarce? A "
           "logistic regression on each image's μ is compared with one on the raw pixels and one on PCA features "
           "of the same size, each taught with 1 to 100 labelled images per class and tested on the whole test "
           f"split, {DRAWS} times over with different labelled images (the same ones for all three).")


@st.cache_data(max_entries=16, show_spinner="Training 150 small classifiers (about half a minute)…")
def _few_labels(model_token: str, dataset_name: str, _z_train: np.ndarray, _z_test: np.ndarray):
    data = shared_dataset(dataset_name)
    return few_labels(_z_train, _z_test, data.x_train.numpy(), data.x_test.numpy(), data.y_train.numpy(),
                      data.y_test.numpy(), LABELS_PER_CLASS, DRAWS, seed=0)


data = handle.data
if cfg.conditional:
    st.info("This model is conditional: its encoder reads each image's label as well, so its codes cannot be "
            "features for predicting that label. Choose an unconditional model.")
    st.stop()
if data.num_classes < 2:
    st.info(f"**{handle.dataset_name}** has no classes to predict.")
    st.stop()
result = _few_labels(handle.token, handle.dataset_name, handle.encodings("train")[0], handle.encodings("test")[0])

figure = go.Figure()
for name in REPRESENTATIONS:
    figure.add_trace(go.Scatter(x=list(result.labels_per_class), y=result.mean(name),
                                error_y=dict(type="data", array=result.std(name)), mode="lines+markers",
                                name=f"{name} ({result.dims[name]} features)", line=dict(color=COLOURS[name])))
figure.update_layout(height=420, margin=dict(l=10, r=10, t=10, b=10), yaxis=dict(title="test accuracy", range=[0, 1]),
                     xaxis=dict(title="labelled images per class", type="log", tickvals=list(result.labels_per_class)),
                     legend=dict(orientation="h", y=-0.2))
st.plotly_chart(figure, width="stretch", key="few_labels_curve")
st.caption(f"Mean test accuracy over {DRAWS} draws of the labelled images; bars: one standard deviation.")

rows = {f"{k} per class": {name: f"{result.mean(name)[i]:.1%} ± {result.std(name)[i]:.1%}" for name in REPRESENTATIONS}
        for i, k in enumerate(result.labels_per_class)}
st.table(rows)
fewest, most = 0, len(result.labels_per_class) - 1
verdicts = []
for i in (fewest, most):
    best, k = result.best(i), result.labels_per_class[i]
    others = ", ".join(f"{name} {result.mean(name)[i]:.0%}" for name in REPRESENTATIONS if name != best)
    verdicts.append(f"with {k} label{'s' if k > 1 else ''} per class, **{best}** is best: "
                    f"{result.mean(best)[i]:.0%} (against {others})")
st.markdown("Measured on this model and data: " + "; ".join(verdicts) + ".")
if result.best(fewest) != "latent μ":
    st.warning(f"Here the model's codes are not the best features with few labels: {result.best(fewest)} wins.")
sync_url()
