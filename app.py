"""Latent Explorer: see and steer what a Variational Autoencoder has learned.

A thin frame: the navigation (pages/ui/navigation.py lists the pages). Each page draws the shared
sidebar, with the page links and the model picker, itself; after it ran, the URL names its view.
Run with `make run`, or `streamlit run app.py [-- --model my_vae.py:VAE --weights w.pt]`.
"""
import streamlit as st

from pages.ui import sync_url
from pages.ui.navigation import registered_pages
from pages.ui.warm_up import start_heap_trimming, start_umap_warm_up

try:
    st.navigation(registered_pages(), position="hidden").run()
finally:  # also after st.stop(): what the page changed while it ran (a selection, a default) joins the link
    sync_url()
    start_umap_warm_up()  # after the first page is drawn, never before it
    start_heap_trimming()
