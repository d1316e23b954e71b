"""A 3-D latent map whose points can be clicked.

st.plotly_chart reports selections from 2-D plots only: plotly emits no selection event in a 3-D
scene, and Streamlit's click handler takes only sunburst-style points. This small component draws
the same plotly figure and answers the clicked point's dataset index (its customdata). plotly.js
comes from the installed plotly package, copied once beside the component's page (in .cache/, or
$LATENT_EXPLORER_CACHE): nothing is fetched from outside the app.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import plotly
import streamlit as st
import streamlit.components.v1 as components

from vae_core import cache_root

from ..state import session

FRONTEND = Path(__file__).parent / "frontend"


def _served() -> Path:
    """The folder the component is served from: its page and the package's plotly.min.js."""
    folder = cache_root() / "map3d"
    folder.mkdir(parents=True, exist_ok=True)
    sources = {"index.html": FRONTEND / "index.html",
               "plotly.min.js": Path(plotly.__file__).parent / "package_data" / "plotly.min.js"}
    for name, source in sources.items():
        target = folder / name
        if not target.exists() or target.stat().st_size != source.stat().st_size \
                or target.stat().st_mtime < source.stat().st_mtime:
            temporary = folder / f".{name}.partial"
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)  # atomic: a concurrent server never serves half a file
    return folder


try:
    _component = components.declare_component("map3d", path=str(_served()))
except OSError:  # no writable cache folder: the 3-D map is still drawn (st.plotly_chart), a click just cannot select
    _component = None


def clickable_map_3d(figure, height: int, key: str) -> int | None:
    """Draw a 3-D plotly figure; the dataset index of a point just clicked (once per click), else None."""
    if _component is None:
        st.plotly_chart(figure, key=key, width="stretch")
        return None
    value = _component(figure=figure.to_json(), height=height, key=key, default=None)
    seen = session().component_reports_seen  # component reports already handled, by key
    if not value or value.get("id") == seen.get(key):
        return None
    seen[key] = value["id"]
    return int(value["index"])
