"""Latent Explorer: see and steer what a Variational Autoencoder has learned.

A thin frame: the navigation. Each page draws the shared sidebar (model picker) itself.
Run with `make run`, or `streamlit run app.py [-- --model my_vae.py:VAE --weights w.pt]`.
"""
import streamlit as st

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/latent_map.py", title="Latent map", icon=":material/scatter_plot:", url_path="map"),
    st.Page("pages/traversal.py", title="Traversal", icon=":material/tune:", url_path="traversal"),
    st.Page("pages/interpolation.py", title="Interpolation", icon=":material/timeline:", url_path="interpolation"),
]

st.navigation(PAGES).run()
