"""The app's pages, in one list: app.py registers them, every page's sidebar links to them.

Streamlit's own navigation menu stays hidden. With a pages/ folder, a fresh server runs its first
session in Streamlit's legacy multipage mode, whose menu lists raw file names; drawing the links
ourselves gives every session the same menu, and a page's URL is its file name in both modes.
"""
import streamlit as st

PAGES = [
    # (script, title, icon)
    ("pages/overview.py", "Overview", ":material/dashboard:"),
    ("pages/latent_map.py", "Latent map", ":material/scatter_plot:"),
    ("pages/traversal.py", "Traversal", ":material/tune:"),
    ("pages/interpolation.py", "Interpolation", ":material/timeline:"),
    ("pages/arithmetic.py", "Arithmetic", ":material/calculate:"),
    ("pages/conditional.py", "Conditional", ":material/category:"),
    ("pages/anomalies.py", "Anomalies", ":material/crisis_alert:"),
    ("pages/imputation.py", "Imputation", ":material/healing:"),
    ("pages/disentanglement.py", "Disentanglement", ":material/grid_view:"),
    ("pages/train.py", "Train", ":material/model_training:"),
]


def registered_pages() -> list:
    return [st.Page(script, title=title, icon=icon, default=i == 0) for i, (script, title, icon) in enumerate(PAGES)]


def page_links() -> None:
    for script, title, icon in PAGES:
        st.page_link(script, label=title, icon=icon)
