"""Latent map: every encoded image as a point, projected to 2-D/3-D; select points to inspect them."""
import threading
from dataclasses import astuple

import numpy as np
import streamlit as st
import torch

from pages.ui import latent_map, map_figure, frame, show_images
from vae_core.images import data_uris
from vae_core.projection import ProjectionParams, cluster_scores, nearest_neighbours, warm_up_umap

active = frame()
cfg = active.config
state = st.session_state
st.title("Latent map")
st.caption("Each point is one image's posterior mean μ. Nearby points are images the model thinks alike.")


@st.cache_resource
def _umap_warm_up() -> threading.Thread:
    """Compile UMAP once per server, in the background, when someone first opens this page."""
    thread = threading.Thread(target=warm_up_umap, name="umap-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_data(max_entries=32, show_spinner=False)
def _cluster_scores(model_token: str, dataset_name: str, split: str, _z, _labels) -> dict:
    return cluster_scores(_z, _labels)


with st.form("map_settings"):
    c1, c2, c3 = st.columns([2, 1, 1])
    if cfg.latent_dim <= 3:
        method = "pca"
        c1.info(f"The latent space is {cfg.latent_dim}-D: it is plotted as it is, no projection.")
        dims = max(2, cfg.latent_dim)
    else:
        method = c1.radio("Projection", ["pca", "umap", "tsne"], horizontal=True,
                          format_func={"pca": "PCA (instant)", "umap": "UMAP", "tsne": "t-SNE"}.get)
        dims = c2.radio("Map", [2, 3], horizontal=True, format_func=lambda d: f"{d}-D")
    split = c3.radio("Data", ["test", "train"], horizontal=True, help="which split to encode")
    p1, p2, p3 = st.columns(3)
    n_neighbors = p1.slider("UMAP neighbours", 2, 100, 15, help="larger: more global structure")
    min_dist = p2.slider("UMAP min_dist", 0.0, 0.99, 0.1, help="smaller: tighter clusters")
    perplexity = p3.slider("t-SNE perplexity", 5.0, 100.0, 30.0, help="roughly the number of neighbours kept")
    submitted = st.form_submit_button("Compute map", type="primary")

if cfg.latent_dim > 3:  # a UMAP map may come next: compile it now, in the background
    _umap_warm_up()

params = astuple(ProjectionParams(method, dims, n_neighbors, min_dist, perplexity))
spec = (active.token, active.dataset_name, split, params)
if submitted or cfg.latent_dim <= 3:
    state.map_spec = spec
if state.get("map_spec", (None,))[:2] != spec[:2]:
    st.info("Choose a projection and press **Compute map**. PCA is instant; UMAP and t-SNE take seconds "
            "the first time and are cached afterwards.")
    st.stop()

_, _, split, params = state.map_spec
with st.status(f"Building the map ({params[0].upper()})…", expanded=False) as status:
    status.write(f"Encoding the {split} split of {active.dataset_name}…")
    z, labels = active.encodings(split)
    status.write(f"Projecting {len(z)} points from {z.shape[1]}-D to {params[1]}-D…")
    coords = latent_map(active.token, active.dataset_name, split, params, z)
    status.update(label=f"Map: {len(z)} points, {params[0].upper()} {params[1]}-D", state="complete")

selected = [i for i in state.get("selected", []) if i < len(z)]
marks = [("selected", coords[selected], "#FFD700", "markers")] if selected else []
thumbnails = None
if params[1] == 2 and st.toggle("Show images on the map", help="Plotly's hover cannot show pictures, so a "
                                "random sample of points carries its image on the map instead"):
    shown = np.random.default_rng(0).choice(len(z), min(150, len(z)), replace=False)
    thumbnails = (shown, data_uris(active.images(shown, split)))
event = st.plotly_chart(map_figure(coords, labels, active.label_names, marks, thumbnails=thumbnails), key="map_chart",
                        on_select="rerun", selection_mode=("points", "box", "lasso"), width="stretch")
picked = sorted({int(p["customdata"]) for p in (event.selection.points if event else []) if "customdata" in p})
if picked and picked != selected:
    state.selected = picked
    state.sample = picked[0]
    st.rerun()

left, right = st.columns([3, 2])
with left:
    st.subheader("Selected points")
    typed = st.number_input("…or pick a sample by index", 0, len(z) - 1, min(state.sample, len(z) - 1))
    if typed != state.sample and typed not in selected:
        state.selected, state.sample = [int(typed)], int(typed)
        st.rerun()
    chosen = selected or [state.sample]
    shown = chosen[:12]
    x = active.images(shown, split)
    y = active.labels(shown, split) if cfg.conditional else None
    with torch.inference_mode():
        recon = active.model.reconstruct(x, y)
    st.caption(f"{len(chosen)} selected" + (f", first {len(shown)} shown" if len(chosen) > len(shown) else ""))
    show_images(x, len(shown), "images", height=64)
    show_images(recon, len(shown), "reconstructions", height=64)
    k = 8
    neighbours = nearest_neighbours(z, shown[0], k)
    show_images(active.images(neighbours, split), k,
                f"the {k} nearest neighbours of #{shown[0]} in latent space ({z.shape[1]}-D, not on the map)",
                height=64)
with right:
    st.subheader("Does the latent space cluster by label?")
    st.write("k-means in latent space (k = number of labels), scored against the true labels: 1 is a perfect "
             "match, 0 is chance.")
    if st.button("Run k-means"):
        state.cluster_for = spec[:3]
    if state.get("cluster_for") == spec[:3]:
        scores = _cluster_scores(active.token, active.dataset_name, split, z, labels)
        m1, m2 = st.columns(2)
        m1.metric("NMI", f"{scores['nmi']:.3f}", help="normalised mutual information")
        m2.metric("ARI", f"{scores['ari']:.3f}", help="adjusted Rand index")
