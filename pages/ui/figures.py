"""Pictures and plots every page draws the same way: image grids and the latent map."""
from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from vae_core.images import make_grid, png_bytes, png_data_uri, upscale_factor

# Ten colours that stay apart (Plotly's qualitative "Plotly" set), one per label.
# Tableau 10: categorical colours chosen to stay apart (Plotly's default puts a blue beside a violet
# and a cyan: on the shapes map two classes looked alike).
LABEL_COLOURS = ("#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1", "#FF9DA7", "#9C755F",
                 "#BAB0AC")
INLINE_PICTURE_BYTES = 256 * 1024  # every picture the app draws is far smaller; bigger ones go to the media store


def show_images(images: torch.Tensor, ncols: int | None = None, caption: str | None = None, height: int = 96,
                width: str | int = "content") -> bytes:
    """Show a (N, C, H, W) batch as one crisp grid; returns the PNG so pages can offer it for download."""
    ncols = ncols or len(images)
    png = png_bytes(make_grid(images, ncols), upscale_factor(images.shape[-2], height))  # PNG: crisp pixels
    # Small pictures travel inside the page's own message as data: URIs. Through Streamlit's media
    # store, each is a second request for a file that the session's next run deletes: with a class
    # of 30 on one server, browsers asked for pictures already gone (bench/classroom.py, 404s).
    st.image(png_data_uri(png) if len(png) <= INLINE_PICTURE_BYTES else png, caption=caption, width=width)
    return png


def map_figure(coords: np.ndarray, labels: np.ndarray, label_names: list[str], marks=(), height: int = 520,
               thumbnails: tuple[np.ndarray, list[str]] | None = None, values: tuple[str, np.ndarray] | None = None):
    """Scatter (WebGL in 2-D) coloured by label; each point's customdata is its dataset index.

    marks: (name, coords (M, d), colour, mode) drawn on top — a current point or a path.
    thumbnails: (indices, data URIs) of images drawn at their points (2-D maps only).
    values: (title, one number per point) colour the points on a continuous scale instead of by label."""
    import plotly.graph_objects as go

    figure = go.Figure()
    three_d = coords.shape[1] == 3
    present = sorted(set(labels.tolist()))
    names = {label: label_names[label] if label < len(label_names) else str(label) for label in present}
    # One trace in a shuffled order, so that no class is drawn over all the others (the last trace
    # drawn hid the rest: "the data is all hearts"); the legend is a key of empty traces.
    order = np.random.default_rng(0).permutation(len(coords))
    # Colours travel as one small integer per point through a stepped colour scale (plotly sends
    # numeric arrays as compact binary; 60,000 colour strings would be 10x the bytes). Set here:
    # the 3-D component has no theme to lend one.
    n = len(LABEL_COLOURS)
    steps = [[edge, colour] for i, colour in enumerate(LABEL_COLOURS) for edge in (i / n, (i + 1) / n)]
    colour = dict(color=(labels[order] % n).astype(np.int8), colorscale=steps, cmin=-0.5, cmax=n - 0.5)
    if values is not None:
        title, shown = values[0], np.asarray(values[1], dtype=np.float32)[order]
        low, high = np.percentile(shown, [1, 99])  # a few extreme points would wash the scale out
        colour = dict(color=shown, colorscale="Viridis", cmin=float(low), cmax=float(max(high, low + 1e-6)),
                      colorbar=dict(title=dict(text=title), thickness=12))
    shown_value = "" if values is None else f" · {values[0]} %{{marker.color:.3g}}"
    # customdata: int32, half the bytes of numpy's default int64 in the page's message
    common = dict(mode="markers", customdata=order.astype(np.int32), text=[names[label] for label in labels[order].tolist()],
                  hovertemplate=f"#%{{customdata}} · %{{text}}{shown_value}<extra></extra>", showlegend=False,
                  name="points")
    if three_d:
        figure.add_trace(go.Scatter3d(x=coords[order, 0], y=coords[order, 1], z=coords[order, 2],
                                      marker=dict(size=2.5, **colour), **common))
    else:
        figure.add_trace(go.Scattergl(x=coords[order, 0], y=coords[order, 1],
                                      marker=dict(size=5, opacity=0.75, **colour), **common))
    key = go.Scatter3d if three_d else go.Scattergl
    for label in present if values is None else ():
        empty = dict(x=[None], y=[None], z=[None]) if three_d else dict(x=[None], y=[None])
        figure.add_trace(key(mode="markers", name=names[label], hoverinfo="skip",
                             marker=dict(size=8, color=LABEL_COLOURS[label % len(LABEL_COLOURS)]), **empty))
    for name, points, colour, mode in marks:
        points = np.atleast_2d(points)
        style = dict(name=name, mode=mode, marker=dict(size=12 if mode == "markers" else 6, color=colour,
                                                       line=dict(width=1.5, color="black")),
                     line=dict(color=colour, width=3), hoverinfo="name")
        # WebGL like the points: plotly draws its WebGL canvas over SVG traces, which would hide a mark
        # in a dense cloud; traces on one canvas are drawn in order, so marks come out on top.
        figure.add_trace(key(x=points[:, 0], y=points[:, 1], **({"z": points[:, 2]} if three_d else {}), **style))
    if thumbnails is not None and not three_d:
        indices, uris = thumbnails
        size = 0.03 * float(np.ptp(coords[:, :2], axis=0).max() or 1.0)
        figure.update_layout(images=[dict(source=uri, xref="x", yref="y", x=coords[i, 0], y=coords[i, 1], sizex=size,
                                          sizey=size, xanchor="center", yanchor="middle", layer="above")
                                     for i, uri in zip(indices, uris)])
    # Pan, not lasso, in 2-D: Streamlit turns plotly's click-to-select on only outside the select and
    # lasso drag modes, and a click should select the point under it (lasso and box stay in the modebar).
    figure.update_layout(height=height, margin=dict(l=0, r=0, t=10, b=0),
                         legend=dict(itemsizing="constant", itemclick=False, itemdoubleclick=False),
                         dragmode="pan" if not three_d else "orbit")
    return figure
