"""Autoencoder or VAE?: the same networks with and without the KL term, side by side; and why a VAE blurs."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from pages.ui import ModelHandle, frame, other_checkpoints, show_images, sync_url, view, widget
from pages.ui.view import MAX_SEED
from vae_core.ae_vs_vae import code_cloud, posterior_spread
from vae_core.latent import lerp

# The shipped pair: one architecture, data and seed; mnist-ae has no KL term.
SHIPPED_PARTNER = {"mnist-vae": "mnist-ae", "mnist-ae": "mnist-vae"}

handle = frame("ae_vs_vae")
cfg = handle.config
v = view()
st.title("Autoencoder or VAE?")
st.caption("An autoencoder learns to compress and restore. A VAE learns the same, plus a distribution it can draw "
           "new images from. The difference is one term of the loss: the VAE's ELBO adds KL(q(z|x) ‖ N(0, I)), "
           "which pulls every code towards the prior and makes each one a small cloud instead of a point.")

if cfg.conditional:
    st.info("This model is conditional: its decoder also takes a label, which an autoencoder does not. Open an "
            "unconditional model (mnist-vae beside mnist-ae, say).")
    st.stop()
partners = other_checkpoints(handle, lambda other: other.config.probabilistic != cfg.probabilistic
                             and other.config.latent_dim == cfg.latent_dim and not other.config.conditional)
wanted = "a VAE" if not cfg.probabilistic else "an autoencoder (objective ae)"
if not partners:
    st.info(f"To compare, the models folder needs {wanted} with a {cfg.latent_dim}-dimensional latent that takes "
            "these images: train one on the Train page (objective “autoencoder”) with this model's settings.")
    st.stop()
if v.partner is not None and v.partner not in partners:
    st.warning(f"There is no {v.partner} to compare with here: another model was chosen.", icon="🔗")
    v.partner = None
if v.partner is None:
    shipped = SHIPPED_PARTNER.get(handle.name)
    v.partner = shipped if shipped in partners else next(iter(partners))
st.selectbox("Compare with", list(partners), **widget("view.partner"),
             help=f"{wanted.capitalize()} from the models folder that takes these images")
partner = partners[v.partner]
ae, vae = (partner, handle) if cfg.probabilistic else (handle, partner)
pair = ((f"Autoencoder · {ae.name}", ae), (f"VAE · {vae.name}", vae))
data = handle.data


def score_line(model: ModelHandle) -> str:
    recon = model.ckpt.metrics.get("test_recon")
    return f"test reconstruction {recon:.1f} nats" if recon is not None else "no stored test score"


st.subheader("1 · Reconstructions")
n = 10
x, y = data.x_test[:n], data.y_test[:n]
show_images(x, n, "originals (test set)", height=56)
for title, model in pair:
    show_images(model.reconstruct(x, y), n, f"{title}: {score_line(model)}", height=56)
st.caption("The autoencoder spends all its effort on the reconstruction term, so its copies are sharper. The VAE "
           "pays for the KL term with a code that is a cloud, and decodes the average of that cloud: softer.")

st.subheader("2 · Decoded draws from N(0, I)")
st.number_input("Seed", 0, MAX_SEED, **widget("view.seed"))
z = handle.prior(n, v.seed)  # the same draws for both
for title, model in pair:
    show_images(model.decode(z), n, title, height=56)
st.caption("Only the VAE was trained so that codes look like N(0, I): its draws land where training codes were and "
           "decode to digits. Nothing tied the autoencoder's codes to N(0, I), so its draws mostly fall where it "
           "never learned anything, and it cannot generate.")

st.subheader("3 · Interpolation between the same two test images")
c1, c2 = st.columns(2)
c1.number_input("From test image #", 0, len(data.x_test) - 1, **widget("view.sample"))
c2.number_input("To test image #", 0, len(data.x_test) - 1, **widget("view.contrast_end"))
ends = data.x_test[[v.sample, v.contrast_end]]
end_labels = data.y_test[[v.sample, v.contrast_end]]
for title, model in pair:
    a, b = model.embed(ends, end_labels)
    show_images(model.decode(lerp(torch.as_tensor(a), torch.as_tensor(b), n)), n, title, height=56)
st.caption("A straight line between two codes. A path between two images stays close to the data for both models: "
           "on mnist-5k a digit classifier is about as sure of the autoencoder's midpoints as of the VAE's (README, "
           "bench/three_questions.py). What the KL term buys shows when you leave the codes altogether, as panel 2 does.")


@st.cache_data(max_entries=16, show_spinner="Measuring where the codes sit…")
def _cloud(model_token: str, dataset_name: str, _z: np.ndarray):
    return code_cloud(_z, draws=1000, seed=0)


st.subheader("4 · Where the codes sit, against the prior N(0, I)")
clouds = [(title, model, _cloud(model.token, model.dataset_name, model.encodings("test")[0])) for title, model in pair]
for column, (title, model, cloud) in zip(st.columns(2), clouds):
    labels = model.encodings("test")[1]
    reach = max(3.0, float(np.abs(cloud.codes).max()) * 1.05)  # each at its own scale: the circles give it
    figure = go.Figure()
    figure.add_trace(go.Scattergl(x=cloud.prior[:, 0], y=cloud.prior[:, 1], mode="markers", name="N(0, I) draws",
                                  marker=dict(size=3, color="#444", opacity=0.6, symbol="x")))
    figure.add_trace(go.Scattergl(x=cloud.codes[:, 0], y=cloud.codes[:, 1], mode="markers", name="test codes",
                                  marker=dict(size=3, opacity=0.5, color=labels, colorscale="Turbo")))
    for r in (1, 2):
        figure.add_shape(type="circle", x0=-r, y0=-r, x1=r, y1=r, line=dict(color="#999", dash="dot"))
    figure.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10), title=title, legend=dict(orientation="h"),
                         xaxis=dict(range=[-reach, reach]), yaxis=dict(range=[-reach, reach], scaleanchor="x"))
    with column:
        st.plotly_chart(figure, width="stretch", key=f"ae_vs_vae_cloud_{model.name}")
        st.caption(f"**{cloud.in_prior:.0%}** of the test codes lie inside the ball that holds 99% of N(0, I)'s "
                   f"draws · **{cloud.draws_near_codes:.0%}** of N(0, I)'s draws land among the codes (as close to "
                   f"one as 95% of the codes are to their nearest neighbour) · the codes' radius is "
                   f"**{cloud.radius:.1f}** (N(0, I)'s: {np.sqrt(model.config.latent_dim):.1f})")
st.caption("Each panel shows the test codes on their own two main axes, drawn through the origin at their true "
           f"scale, with N(0, I) draws (×) and the prior's 1σ and 2σ circles. The axes show "
           f"{clouds[0][2].explained:.0%} and {clouds[1][2].explained:.0%} of the codes' spread. The KL term fills "
           "the prior's ball; without it the codes keep their own scale, the prior's draws fall between them, and "
           "what they decode to was never trained.")

st.subheader("5 · Why are the VAE's pictures blurry?")
spread = posterior_spread(vae.model, data.x_test[v.sample], int(data.y_test[v.sample]), draws=8, seed=v.seed)
left, right = st.columns([3, 1])
with left:
    show_images(torch.cat([data.x_test[v.sample][None], spread.mean_image[None]]), 2,
                f"test image #{v.sample} and decode(μ), the VAE's reconstruction", height=96)
    show_images(spread.decoded_draws, len(spread.decoded_draws), "decode(z) for 8 draws z ~ q(z|x)", height=56)
    show_images(spread.sweep, len(spread.sweep_steps), "decode(μ + t·σ) along the least certain dimensions "
                f"({', '.join(f'z{d}' for d in spread.sweep_dims)}, one per row), t = "
                f"{', '.join(f'{t:g}' for t in spread.sweep_steps)}", height=56)
    show_images(spread.pixel_draws, len(spread.pixel_draws),
                f"images drawn from p(x|z) itself ({vae.config.likelihood.capitalize()} pixels)", height=56)
with right:
    variance = spread.pixel_variance / spread.pixel_variance.max().clamp_min(1e-12)
    show_images(variance[None, None], 1, "where the 8 decodes disagree: variance per pixel, brightest = "
                f"{spread.pixel_variance.max():.3f}", height=160)
st.caption("Two averages blur the picture. The decoder's output is the *mean* of p(x|z): each pixel's probability, "
           "where the pictures drawn from p(x|z) (last row) are noisy, so the smooth mean is already an average "
           "over them. And the encoder gives not one code but a cloud N(μ, σ²): each code in it decodes a little "
           "differently, mostly at the edges (bright on the right), and training rewards the expected "
           "reconstruction over the cloud, so the edges the draws disagree on wash out. The average of the "
           "plausible outputs is what you see. An autoencoder has no cloud, hence sharper copies (panel 1), and "
           "no way to sample.")
sync_url()
