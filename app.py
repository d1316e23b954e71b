"""Latent Explorer: see and steer what a Variational Autoencoder has learned.

A thin frame: the navigation. Each page draws the shared sidebar (model picker) itself, and the
URL paths are the file names (/latent_map, /traversal, …): with a pages/ folder, Streamlit serves a
fresh server's first session in its legacy multipage mode, which finds pages by file name.
Run with `make run`, or `streamlit run app.py [-- --model my_vae.py:VAE --weights w.pt]`.
"""
import streamlit as st

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/latent_map.py", title="Latent map", icon=":material/scatter_plot:"),
    st.Page("pages/traversal.py", title="Traversal", icon=":material/tune:"),
    st.Page("pages/interpolation.py", title="Interpolation", icon=":material/timeline:"),
]

st.navigation(PAGES).run()
