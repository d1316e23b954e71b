"""Traversal: move one latent dimension at a time and watch the decoded image change."""
import numpy as np
import streamlit as st
import torch

from pages.ui import frame, in_fragment_rerun, map_figure, show_images, slider_widget, sync_url, view, widget
from pages.ui.live_pad import live_pad, unsupported_reason
from pages.ui.view import MAX_SEED
from vae_core.images import gif_bytes, upscale_factor
from vae_core.latent import traversal_grid, traverse

handle = frame("traversal")
cfg = handle.config
v = view()
st.title("Traversal")
st.caption("Start from a point in latent space, then move one dimension at a time. "
           + ("Dimensions are ordered by how much information they carry (KL); inactive ones barely change anything."
              if cfg.probabilistic else "An autoencoder has no KL: dimensions are ordered by the spread σ of "
              "their codes, and its codes need not lie where N(0, I) puts its draws."))

order, kl = handle.kl_order()
z_test, y_test = handle.encodings("test")
dead = set(np.flatnonzero(~handle.active_dims()).tolist())

c1, c2, c3 = st.columns([2, 1, 1])
c1.radio("Start from", ["sample", "prior", "zero"], horizontal=True, **widget("view.base"),
         format_func={"sample": "a test image's μ", "prior": "a random prior draw", "zero": "the origin"}.get)
if v.base == "sample":
    c2.number_input("Test image #", 0, len(z_test) - 1, **widget("view.sample"))
    base = torch.as_tensor(z_test[v.sample])
elif v.base == "prior":
    c2.number_input("Seed", 0, MAX_SEED, **widget("view.seed"))
    base = handle.prior(1, v.seed)[0]
else:
    base = torch.zeros(cfg.latent_dim)
label = None
if cfg.conditional:
    default = int(y_test[v.sample]) if v.base == "sample" else 0
    label = c3.selectbox("Class", range(cfg.num_classes), index=default, format_func=handle.label_name)

# A new start point (or model) puts z there; otherwise z keeps the student's moves, and a link's z.
if v.z is None or v.z_origin != v.traversal_origin():
    v.z, v.z_origin = tuple(float(b) for b in base), v.traversal_origin()
if max(abs(c) for c in v.z) > handle.z_range:
    st.warning(f"The link's z reaches beyond this model's sliders (±{handle.z_range:g}): it was brought within "
               "them.", icon="🔗")
    v.z = tuple(min(handle.z_range, max(-handle.z_range, c)) for c in v.z)
v.normalise()  # z as the link writes it: a reopened link decodes the same z

show_map = handle.latent_map(v) is not None
if not show_map and cfg.latent_dim > 3:
    st.caption("Compute a map on the Latent map page to see the current point on it here.")


def z_on_map(z, height: int = 300) -> None:
    """The map with z on it: one element (a slot's whole content)."""
    coords, _, labels = handle.latent_map(v)
    here = handle.place_on_map(v, [z])
    st.plotly_chart(map_figure(coords, labels, handle.label_names, [("current z", here, "#FF4B4B", "markers")],
                               height=height), key="traversal_map")


def placed_by_caption(where=st) -> None:
    where.caption(f"The current z is placed by {handle.placed_by(v)}.")


def show_on_map(z, height: int = 300) -> None:
    if show_map:
        z_on_map(z, height)
        placed_by_caption()


def grid_section() -> None:
    """The traversal grid around z, with its controls: in the fragment that redraws it."""
    st.subheader("Traversal grid")
    g1, g2, g3 = st.columns([3, 1, 1])
    if v.grid_rows is None:
        v.grid_rows = tuple([d for d in order if d not in dead][:8] or order[:8])
    rows = g1.multiselect("Dimensions (rows)", order, format_func=lambda d: f"z{d}", **widget("view.grid_rows"))
    unit = "σ" if cfg.probabilistic else ""  # the prior's σ; an autoencoder's codes have their own scale
    span = g2.slider(f"Span ±k{unit}", 0.5, 4.0, step=0.5, **slider_widget("view.grid_span"))
    steps = g3.slider("Columns", 3, 15, step=2, **slider_widget("view.grid_steps"))
    if rows:
        start = torch.tensor(v.z, dtype=torch.float32)
        grid_images = handle.decode(traversal_grid(start, rows, span, steps), label)
        grid_png = show_images(grid_images, steps, f"rows: {', '.join(f'z{d}' for d in rows)}; columns: −{span}{unit} … +{span}{unit}",
                               height=64)
        e1, e2, e3 = st.columns(3)
        if v.gif_dim not in rows:
            v.gif_dim = rows[0]
        gif_dim = e2.selectbox("Animate dimension", rows, format_func=lambda d: f"z{d}", **widget("view.gif_dim"))

        def traversal_gif() -> bytes:  # built on click only: most runs of this page are never downloaded
            frames = handle.decode(traverse(start, gif_dim, torch.linspace(-span, span, 24)), label)
            return gif_bytes(frames, upscale_factor(cfg.input_shape[1], 128))

        # Downloads are deferred (a callable) and do not rerun the page (on_click="ignore"): under load,
        # files made ahead were deleted by the session's next run before the browser fetched them.
        e1.download_button("Download grid (PNG)", lambda: grid_png, "traversal-grid.png", "image/png", on_click="ignore")
        e3.download_button("Download animation (GIF)", traversal_gif, f"traversal-z{gif_dim}.gif", "image/gif",
                           on_click="ignore")


def z_slider(d: int) -> None:
    """The slider of latent dimension d, bound to the view's z."""
    status = " · inactive" if d in dead else ""
    st.slider(f"z{d} · {handle.order_by} {kl[d]:.2f}{status}", -handle.z_range, handle.z_range, step=0.05,
              **slider_widget(f"view.z.{d}"))


def show_decoded_z() -> None:
    show_images(handle.decode(v.z, label), 1, "decode(z)", height=220)


@st.fragment
def slider_panel():
    """Server-side sliders whose grid follows every move: a move reruns this panel, sliders, picture and grid."""
    *slider_columns, picture = st.columns([3, 3, 4])  # one row of three: each block is a message on every move
    for i, d in enumerate(order):
        with slider_columns[i % 2]:
            z_slider(d)
    with picture:
        show_decoded_z()
        show_on_map(v.z)
    grid_section()
    sync_url()  # a fragment's run ends here, not in app.py


def show_in_slots(picture_slot, map_slot) -> None:
    """decode(z) and, when there is a map, z on it, each one element in its slot."""
    with picture_slot:
        show_decoded_z()
    if show_map:
        with map_slot:
            z_on_map(v.z)


@st.fragment
def slider_alone(d: int, picture_slot, map_slot, draws: bool) -> None:
    """One latent slider as a fragment of its own (the grid waits for its button): a move reruns this
    slider only and redraws the picture and the map in their slots, beside it in the row. A move is 9
    messages, not the 27 of a panel that redraws all 16 sliders; py-spy put the 16 at 22% of the
    server's Python time under a class's moves.

    On a whole-page run each slider reserves its place in the slots (Streamlit wraps a fragment's
    writes there in a block of its own) and the last one draws. Only sliders write the slots, one
    element each. Drawn by the page, with the map's caption in a container, the page went blank in
    Chromium ("Bad delta path index 1"): the server's queue, merging writes to one path, sent the
    container's second child before the container (tests/apptest_support.py assert_browser_accepts).
    A map the page drew alone in its slot stayed on screen beside the next one a slider drew."""
    z_slider(d)
    if draws or in_fragment_rerun():
        show_in_slots(picture_slot, map_slot)
    else:
        picture_slot.empty()
        if show_map:
            map_slot.empty()
    if in_fragment_rerun():
        sync_url()  # a fragment's run ends here, not in app.py


def sliders_alone() -> None:
    *slider_columns, picture = st.columns([3, 3, 4])
    picture_slot, map_slot = picture.empty(), picture.empty()  # one element each: the last drawn replaces the rest
    if show_map:
        placed_by_caption(picture)  # it does not move with z
    for i, d in enumerate(order):
        with slider_columns[i % 2]:
            slider_alone(d, picture_slot, map_slot, draws=d == order[-1])


@st.fragment
def grid_panel():
    """The grid on its own, when it does not follow the sliders: its own controls and button redraw it."""
    grid_section()
    st.button("Redraw the grid at the current z", key="grid_redraw", icon=":material/refresh:")


def server_sliders():
    st.toggle("Grid follows every move", **widget("view.grid_follows"),
              help="On: each slider move redraws the traversal grid too. Off: the grid stays until you redraw it, "
                   "and a move redraws only its slider and the picture (the default on a classroom server)")
    if v.grid_follows:
        slider_panel()
    else:
        sliders_alone()
        grid_panel()


@st.fragment
def live_panel(onnx_model: bytes):
    """The live pad: the browser decodes on every input event; Python hears the vector on release."""
    sections = ("sliders", "pad") if cfg.latent_dim >= 2 else ("sliders",)
    axes = (0, 1) if cfg.latent_dim == 2 else None  # a 2-D latent is its own map: the pad lies as the map does
    report = live_pad(onnx_model, handle.token, cfg, v.z, order=order, kl=kl, kl_name=handle.order_by, dead=sorted(dead), label=label,
                      sections=sections, pad_axes=axes, reset_token=repr((handle.token, v.z_origin)), value_range=handle.z_range,
                      key="traversal_live_pad")
    if report:
        v.z = tuple(float(x) for x in report["z"])
        v.normalise()
    show_on_map(v.z, height=320)
    grid_section()
    sync_url()  # a fragment's run ends here, not in app.py


onnx_model, export_problem = handle.browser_decoder()
if onnx_model is None:
    st.caption(f"The sliders run on the server: {export_problem}.")
    server_sliders()
elif unsupported_reason():
    st.info(f"This browser cannot run the live pad ({unsupported_reason()}), so the sliders run on the "
            "server: each move is sent there and the picture comes back.")
    server_sliders()
elif st.toggle("Decode in this browser", **widget("view.live_pad"),
               help="On: the picture follows a dragged slider at the screen's frame rate (the decoder runs in "
                    "your browser). Off: each move goes to the server and the picture comes back."):
    live_panel(onnx_model)
else:
    server_sliders()

sync_url()  # the defaults this run chose join the link (app.py does it too, but not on a direct page run)
