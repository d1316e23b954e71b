"""Latent Explorer: see and steer what a Variational Autoencoder has learned.

A thin frame: page config, the sidebar's model picker (shared by every page), navigation.
Run with `make run`, or `streamlit run app.py [-- --model my_vae.py:VAE --weights w.pt]`.
"""
import streamlit as st

st.set_page_config(page_title="Latent Explorer", page_icon="🧭", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/latent_map.py", title="Latent map", icon=":material/scatter_plot:", url_path="map"),
    st.Page("pages/traversal.py", title="Traversal", icon=":material/tune:", url_path="traversal"),
    st.Page("pages/interpolation.py", title="Interpolation", icon=":material/timeline:", url_path="interpolation"),
]

# st.navigation comes before the heavy imports: until some session reaches it, Streamlit treats the
# pages/ folder as a legacy multipage app.
navigation = st.navigation(PAGES)

import torch  # noqa: E402

from pages._ui import sidebar  # noqa: E402

# Decoding a small VAE takes far below a millisecond; extra threads only contend when a classroom
# of sessions decode at once, so each decode runs on one thread.
torch.set_num_threads(1)
st.session_state.active = sidebar()
navigation.run()
