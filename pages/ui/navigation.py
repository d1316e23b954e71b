"""The app's pages, in one list: app.py registers them, every page's sidebar links to them.

Streamlit's own navigation menu stays hidden. With a pages/ folder, a fresh server runs its first
session in Streamlit's legacy multipage mode, whose menu lists raw file names; drawing the links
ourselves gives every session the same menu, and a page's URL is its file name in both modes.
"""
import streamlit as st

PAGES = [
    # (script, title). No icons: Streamlit fetches material icons from Google's servers at run
    # time, and a classroom may be offline.
    ("pages/overview.py", "Overview"),
    ("pages/latent_map.py", "Latent map"),
    ("pages/traversal.py", "Traversal"),
    ("pages/interpolation.py", "Interpolation"),
    ("pages/arithmetic.py", "Arithmetic"),
    ("pages/conditional.py", "Conditional"),
    ("pages/anomalies.py", "Anomalies"),
    ("pages/imputation.py", "Imputation"),
    ("pages/disentanglement.py", "Disentanglement"),
    ("pages/train.py", "Train"),
]


def registered_pages() -> list:
    return [st.Page(script, title=title, default=i == 0) for i, (script, title) in enumerate(PAGES)]


def page_links() -> None:
    for script, title in PAGES:
        st.page_link(script, label=title)
