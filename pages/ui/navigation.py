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
    ("pages/ae_vs_vae.py", "Autoencoder or VAE?"),
    ("pages/choosing_beta.py", "Choosing β"),
    ("pages/traversal.py", "Traversal"),
    ("pages/interpolation.py", "Interpolation"),
    ("pages/arithmetic.py", "Arithmetic"),
    ("pages/conditional.py", "Conditional"),
    ("pages/anomalies.py", "Anomalies"),
    ("pages/imputation.py", "Imputation"),
    ("pages/few_labels.py", "Few labels"),
    ("pages/disentanglement.py", "Disentanglement"),
    ("pages/train.py", "Train"),
]


def page_id(script: str) -> str:
    """A page's id (its file's stem): its URL path, and the name View's link fields use."""
    return script.removeprefix("pages/").removesuffix(".py")


def registered_pages() -> list:
    """Every page at /<its id>, the first also at the root. A page's link is the same in both of
    Streamlit's modes: /overview?model=… opens the Overview, not "Page not found". The hidden
    alias comes first, so st.page_link names /overview."""
    (first, title), rest = PAGES[0], PAGES[1:]
    return [st.Page(first, title=title, url_path=page_id(first), visibility="hidden"),
            st.Page(first, title=title, url_path="home", default=True),
            *(st.Page(script, title=title) for script, title in rest)]


def page_links() -> None:
    for script, title in PAGES:
        st.page_link(script, label=title)
