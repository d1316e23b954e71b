"""The latent map as a component that hears clicks: on a point, on an empty spot, and lasso or box
selections.

st.plotly_chart reports selections of points only: plotly emits no selection event in a 3-D scene,
and a click on an empty spot of a 2-D map (where "decode anywhere" decodes) reaches no event at
all. This small component draws the same plotly figure and answers what was clicked, in the map's
own coordinates. plotly.js comes from the installed plotly package, copied once beside the
component's page (in .cache/, or $LATENT_EXPLORER_CACHE): nothing is fetched from outside the app.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import plotly
import streamlit as st
import streamlit.components.v1 as components

from vae_core import cache_root

from ..state import session

FRONTEND = Path(__file__).parent / "frontend"


@dataclass(frozen=True)
class MapClick:
    """What the reader did on the map: picked points (a click on one, or a lasso / box selection:
    their dataset indices), or clicked an empty spot (its map coordinates)."""
    points: tuple[int, ...] = ()
    spot: tuple[float, float] | None = None


def _served() -> Path:
    """The folder the component is served from: its page and the package's plotly.min.js."""
    folder = cache_root() / "map_view"
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
    _component = components.declare_component("map_view", path=str(_served()))
except OSError:  # no writable cache folder: the map is still drawn (st.plotly_chart), clicks just cannot reach it
    _component = None


def clickable_map(figure, height: int, key: str, revision: str) -> MapClick | None:
    """Draw a plotly map; what was just done on it (once per action), else None. `revision` names
    the map: while it stays the same, the reader's zoom and pan survive reruns."""
    if _component is None:  # Streamlit's own chart: points and selections in 2-D, nothing in 3-D
        if any(trace.type == "scatter3d" for trace in figure.data):
            st.plotly_chart(figure, key=key, width="stretch")
            return None
        event = st.plotly_chart(figure, key=key, width="stretch", on_select="rerun",
                                selection_mode=("points", "box", "lasso"))
        points = tuple(sorted({int(p["customdata"]) for p in event.selection.points
                               if isinstance(p.get("customdata"), int)}))
        return MapClick(points=points) if points else None
    value = _component(figure=figure.to_json(), height=height, revision=revision, key=key, default=None)
    seen = session().component_reports_seen  # component reports already handled, by key
    if not value or value.get("id") == seen.get(key):
        return None
    seen[key] = value["id"]
    if value.get("spot") is not None:
        x, y = value["spot"]
        return MapClick(spot=(float(x), float(y)))
    return MapClick(points=tuple(int(i) for i in value.get("points", ())))
