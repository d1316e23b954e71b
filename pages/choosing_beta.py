"""Choosing β: one recipe trained at several β, read as a rate-distortion curve, each point's pictures beside its
neighbours'."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from pages.ui import frame, other_checkpoints, show_images, sync_url, view, widget
from vae_core.beta_sweep import MIN_POINTS, beta_sweep, neighbours

handle = frame("choosing_beta")
cfg = handle.config
v = view()
st.title("Choosing β")
st.caption("“Start with 1 and adjust while watching the balance between reconstruction quality and latent-space "
           "regularisation.” Here is that balance, measured. The ELBO's two terms are a **rate**, the KL in nats "
           "that each code carries about its image, and a **distortion**, the nats of −log p(x|z) the decoder "
           "still misses. Training with β minimises distortion + β × rate (Alemi et al., 2018): each β is one "
           "point on the curve below.")

others = other_checkpoints(handle, lambda other: other.config.objective == "vae")
handles = {**others, handle.name: handle}
points = beta_sweep((handle.name, handle.ckpt), {name: model.ckpt for name, model in others.items()})
if len(points) < MIN_POINTS:
    st.info("This model has no β sweep beside it: the models folder needs the same recipe (data, architecture, "
            "latent size, epochs, seed) trained at other β. The shipped **mnist-vae** has one (beta-sweep/"
            "mnist-beta-0.1 … mnist-beta-8). For your own, train the same settings again with other values of β "
            "(the Train page's β sweep, or all in one run: `python -m vae_core train … --beta 0.5 1 2 4 --out NAME.safetensors`).")
    st.stop()
betas = [p.beta for p in points]
if v.sweep_beta is not None and v.sweep_beta not in betas:
    nearest = min(betas, key=lambda b: abs(b - v.sweep_beta))
    if abs(nearest - v.sweep_beta) > 1e-4 * max(1.0, nearest):  # more than the link's rounding
        st.warning(f"This sweep has no β = {v.sweep_beta:g}: the nearest, β = {nearest:g}, is shown.", icon="🔗")
    v.sweep_beta = nearest
if v.sweep_beta is None:
    v.sweep_beta = cfg.beta if cfg.beta in betas else betas[0]  # a model without test scores is no point
st.select_slider("β", betas, format_func=lambda b: f"{b:g}", **widget("view.sweep_beta"),
                 help="Move along the curve: the chosen model, and its neighbours, below")
chosen = next(p for p in points if p.beta == v.sweep_beta)

figure = go.Figure()
figure.add_trace(go.Scatter(x=[p.rate for p in points], y=[p.distortion for p in points], mode="lines+markers+text",
                            text=[f"β = {p.beta:g}" for p in points], textposition="top right", name="the sweep",
                            marker=dict(size=9, color="#4C78A8")))
best = min(points, key=lambda p: p.neg_elbo)
span = np.array([min(p.rate for p in points), max(p.rate for p in points)])
figure.add_trace(go.Scatter(x=span, y=best.neg_elbo - span, mode="lines", line=dict(dash="dot", color="#999"),
                            name=f"rate + distortion = {best.neg_elbo:.1f} (the sweep's best −ELBO, β = {best.beta:g})"))
figure.add_trace(go.Scatter(x=[chosen.rate], y=[chosen.distortion], mode="markers", name=f"β = {chosen.beta:g}",
                            marker=dict(size=18, color="#FF4B4B", symbol="circle-open", line=dict(width=3))))
figure.update_layout(height=440, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=-0.2),
                     xaxis_title="rate: KL(q(z|x) ‖ p(z)), nats", yaxis_title="distortion: −log p(x|z), nats")
st.plotly_chart(figure, width="stretch", key="choosing_beta_curve")
st.caption("Down and to the left is better; every point on the dotted line has the same ELBO. Small β: sharp "
           "copies, and codes that carry many nats the prior does not cover. Large β: the rate is squeezed until "
           "dimensions switch off (active units fall) and the pictures blur.")

st.table({f"β = {p.beta:g}": {"model": p.name, "rate (nats)": f"{p.rate:.1f}",
                              "distortion (nats)": f"{p.distortion:.1f}", "−ELBO (nats)": f"{p.neg_elbo:.1f}",
                              "active units": f"{p.active_units} / {cfg.latent_dim}"} for p in points})

st.subheader(f"β = {chosen.beta:g} beside its neighbours")
n = 8
x, y = handle.data.x_test[:n], handle.data.y_test[:n]
z = handle.prior(n, v.seed)
for column, point in zip(st.columns(3), neighbours(points, chosen.beta)):
    model = handles[point.name]
    with column:
        st.markdown(f"**β = {point.beta:g}**" + (" (chosen)" if point is chosen else "") + f" · {point.name}")
        st.caption(f"rate {point.rate:.1f} · distortion {point.distortion:.1f} · "
                   f"{point.active_units} of {cfg.latent_dim} dimensions active")
        show_images(x, n // 2, "originals", height=48)
        show_images(model.reconstruct(x, y), n // 2, "reconstructions", height=48)
        show_images(model.decode(z), n // 2, "decoded draws from N(0, I)", height=48)
sync_url()
