"""Latent map: every encoded image as a point, projected to 2-D/3-D; select points to inspect them."""
import numpy as np
import streamlit as st

from pages.ui import form_widget, frame, map_figure, show_images, store, sync_url, view, widget
from pages.ui.map_view import clickable_map
from vae_core.images import data_uris
from vae_core.projection import cluster_scores, nearest_neighbours

handle = frame("latent_map")
cfg = handle.config
v = view()
st.title("Latent map")
st.caption("Each point is one image's posterior mean μ. Nearby points are images the model thinks alike.")


@st.cache_data(max_entries=32, show_spinner=False)
def _cluster_scores(model_token: str, dataset_name: str, split: str, _z, _labels) -> dict:
    return cluster_scores(_z, _labels)


FORM = ("view.map_method", "view.map_dims", "view.map_split", "view.map_neighbors", "view.map_min_dist",
        "view.map_perplexity")


def compute_map() -> None:
    """on_click of Compute map: the form's settings become the map on screen."""
    store(*FORM)
    v.map_on, v.selected, v.clusters, v.map_spot = True, (), False, None


with st.form("map_settings"):
    c1, c2, c3 = st.columns([2, 1, 1])
    if cfg.latent_dim <= 3:
        c1.info(f"The latent space is {cfg.latent_dim}-D: it is plotted as it is, no projection.")
    else:
        c1.radio("Projection", ["pca", "umap", "tsne"], horizontal=True, **form_widget("view.map_method"),
                 format_func={"pca": "PCA (instant)", "umap": "UMAP", "tsne": "t-SNE"}.get)
        c2.radio("Map", [2, 3], horizontal=True, format_func=lambda d: f"{d}-D", **form_widget("view.map_dims"))
    c3.radio("Data", ["test", "train"], horizontal=True, help="which split to encode", **form_widget("view.map_split"))
    p1, p2, p3 = st.columns(3)
    p1.slider("UMAP neighbours", 2, 100, help="larger: more global structure", **form_widget("view.map_neighbors"))
    p2.slider("UMAP min_dist", 0.0, 0.99, help="smaller: tighter clusters", **form_widget("view.map_min_dist"))
    p3.slider("t-SNE perplexity", 5.0, 100.0, help="roughly the number of neighbours kept",
              **form_widget("view.map_perplexity"))
    st.form_submit_button("Compute map", type="primary", on_click=compute_map)

if not v.map_on and cfg.latent_dim > 3:
    st.info("Choose a projection and press **Compute map**. PCA is instant; UMAP and t-SNE take seconds "
            "the first time and are cached afterwards.")
    st.stop()
split = handle.map_split(v)
method, dims = ("pca", max(2, cfg.latent_dim)) if cfg.latent_dim <= 3 else (v.map_method, v.map_dims)
found = handle.latent_map(v)  # draws the projection's progress while it runs
if found is None:  # it failed, and said why: the form stays, to try again
    st.stop()
coords, z, labels = found


def select_typed() -> None:
    v.selected = (v.sample,)


colour_options = handle.colour_options()
if v.map_colour not in colour_options:  # a link's factor this dataset does not have
    v.map_colour = "label"
st.selectbox("Colour by", list(colour_options), format_func=colour_options.get, **widget("view.map_colour"),
             help="reconstruction error and KL come from each image's posterior mean; factors are the "
                  "settings the data was generated with")
values = handle.colour_values(v.map_colour, split)

selected = [i for i in v.selected if i < len(z)]
marks = [("selected", coords[selected], "#FFD700", "markers")] if selected else []
spot = v.map_spot if dims == 2 and v.map_spot is not None else None
if spot is not None:
    marks.append(("decoded here", np.array([spot]), "#FF4B4B", "markers"))
thumbnails = None
if dims == 2 and st.toggle("Show images on the map", **widget("view.map_thumbnails"),
                           help="Plotly's hover cannot show pictures, so a random sample of points carries "
                                "its image on the map instead"):
    shown = np.random.default_rng(0).choice(len(z), min(150, len(z)), replace=False)
    thumbnails = (shown, data_uris(handle.images(shown, split)))
figure = map_figure(coords, labels, handle.label_names, marks, thumbnails=thumbnails, values=values)
revision = f"{handle.token}/{split}/{method}/{dims}/{v.map_neighbors}/{v.map_min_dist}/{v.map_perplexity}"
action = clickable_map(figure, 520, key="map_chart", revision=revision)
st.caption("Click a point to select it; drag to turn the map, scroll to zoom." if dims == 3 else
           "Click a point to select it, or an empty spot to decode what the map puts there; lasso and box "
           "select are in the toolbar; drag to pan, scroll to zoom.")
if action is not None and action.spot is not None:
    v.map_spot = tuple(round(c, 4) for c in action.spot)  # as the link writes it: a reopened link decodes the same
    st.rerun()
picked = list(action.points) if action is not None else []
if picked and picked != selected:  # the picked points become the selection, the first one the sample
    v.selected, v.sample = tuple(picked), picked[0]
    st.rerun()

if spot is not None:
    st.subheader("Decoded at the clicked spot")
    found = handle.unproject(v, [spot])
    if found is None:
        st.info("t-SNE has no inverse map: it places the data it was given and nothing between, so an empty "
                "spot of a t-SNE map has no latent to decode. Use UMAP or PCA to decode anywhere, or click a point.")
    else:
        latent, how = found
        # a conditional model decodes the spot as the class of the nearest point on the map
        nearest = int(np.argmin(np.linalg.norm(coords - np.asarray(spot, dtype=np.float32), axis=1)))
        label = int(labels[nearest]) if cfg.conditional else None
        show_images(handle.decode(latent, label), 1,
                    f"the latent at ({spot[0]:.2f}, {spot[1]:.2f}), found by {how}"
                    + (f", decoded as {handle.label_name(label)}" if label is not None else ""), height=128)

left, right = st.columns([3, 2])
with left:
    st.subheader("Selected points")
    st.number_input("…or pick a sample by index", 0, len(z) - 1, **widget("view.sample", select_typed))
    chosen = selected or [v.sample]
    shown = chosen[:12]
    x = handle.images(shown, split)
    recon = handle.reconstruct(x, handle.labels(shown, split))
    st.caption(f"{len(chosen)} selected" + (f", first {len(shown)} shown" if len(chosen) > len(shown) else ""))
    show_images(x, len(shown), "images", height=64)
    show_images(recon, len(shown), "reconstructions", height=64)
    k = 8
    neighbours = nearest_neighbours(z, shown[0], k)
    show_images(handle.images(neighbours, split), k,
                f"the {k} nearest neighbours of #{shown[0]} in latent space ({z.shape[1]}-D, not on the map)",
                height=64)
with right:
    st.subheader("Does the latent space cluster by label?")
    st.write("k-means in latent space (k = number of labels), scored against the true labels: 1 is a perfect "
             "match, 0 is chance.")
    if st.button("Run k-means"):
        v.clusters = True
    if v.clusters:
        scores = _cluster_scores(handle.token, handle.dataset_name, split, z, labels)
        m1, m2 = st.columns(2)
        m1.metric("NMI", f"{scores['nmi']:.3f}", help="normalised mutual information")
        m2.metric("ARI", f"{scores['ari']:.3f}", help="adjusted Rand index")
sync_url()  # the defaults this run chose join the link (app.py does it too, but not on a direct page run)
