"""Overview: the model card, reconstructions, prior samples, training curves, KL per dimension."""
import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st
import torch

from pages.ui import frame, show_images, slider_widget, widget
from pages.ui.view import MAX_SEED
from vae_core.catalog import model_card, units_note
from vae_core.metrics import ACTIVE_UNIT_THRESHOLD

handle = frame("overview")
cfg = handle.config
st.title("Overview")
st.caption(f"{handle.ckpt.path.name if handle.ckpt.path else handle.key} — what this "
           f"{'VAE' if cfg.probabilistic else 'autoencoder'} has learned at a glance.")
if not cfg.probabilistic:
    st.info("This is a plain **autoencoder**: the same networks as a VAE, trained on reconstruction alone, with no "
            "KL term. Its encoder gives one code per image rather than a distribution, so it has no ELBO and no KL; "
            "its numbers are reconstruction errors. See **Autoencoder or VAE?** for what that changes.")

card = model_card(handle.ckpt)
score = "test ELBO" if cfg.probabilistic or "reconstruction" not in card else "reconstruction"
headline = ("dataset", "architecture", "latent size", "objective", score)
for col, name in zip(st.columns(len(headline)), headline):
    col.metric(name, card[name])
st.caption(" · ".join(f"{k}: **{v}**" for k, v in card.items() if k not in headline))
st.caption(units_note(cfg.likelihood, cfg.obs_sigma))

left, right = st.columns(2)
with left:
    st.subheader("Originals and reconstructions")
    n = 12
    x = handle.data.x_test[:n]
    recon = handle.reconstruct(x, handle.data.y_test[:n])
    show_images(x, n, "originals (test set)", height=56)
    show_images(recon, n, "reconstructions: decode(μ(x)) — smoother, blurrier", height=56)
with right:
    st.subheader("Samples from the prior")
    c1, c2 = st.columns(2)
    temperature = c1.slider("Temperature", 0.0, 2.0, step=0.1, **slider_widget("view.temperature"),
                            help="z ~ N(0, t²I): below 1 is safer and blander, above 1 stranger")
    seed = c2.number_input("Seed", 0, MAX_SEED, **widget("view.seed"))
    samples = handle.decode(handle.prior(24, seed, temperature), torch.arange(24) % cfg.num_classes if cfg.conditional else None)
    show_images(samples, 12, "decoded prior draws" + (" (one class per column)" if cfg.conditional else ""),
                height=56)

left, right = st.columns(2)
with left:
    st.subheader("Training history")
    history = handle.ckpt.history
    if history:
        table = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, list)} for r in history])
        names = {"elbo": "ELBO", "test_elbo": "test ELBO", "recon": "reconstruction −log p(x|z)", "kl": "KL"}
        table = table.rename(columns=names)
        curves = [n for n in names.values() if n in table]
        figure = px.line(table, x="epoch", y=curves, labels={"value": "nats per image", "variable": ""})
        figure.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10))
        figure.update_traces(connectgaps=True)  # newer runs score the test set on some epochs only
        st.plotly_chart(figure, width="stretch")
    else:
        st.info("This model carries no training history.")
with right:
    measure_name = "KL (nats)" if cfg.probabilistic else "spread σ of the codes"
    st.subheader("KL per latent dimension" if cfg.probabilistic else "Spread of the codes per dimension")
    _, kl = handle.kl_order()
    active_mask = handle.active_dims()
    table = pd.DataFrame({"dimension": [f"z{i}" for i in range(len(kl))], measure_name: kl,
                          "status": np.where(active_mask, "active", "inactive (collapsed)")})
    figure = px.bar(table, x="dimension", y=measure_name, color="status",
                    color_discrete_map={"active": "#4C78A8", "inactive (collapsed)": "#BBBBBB"})
    figure.update_layout(height=280, margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(figure, width="stretch")
    st.write(f"**{int(active_mask.sum())} of {len(kl)}** dimensions are active "
             f"(Var over the data of μ > {ACTIVE_UNIT_THRESHOLD}).")
    if not cfg.probabilistic:
        st.caption("No KL here: nothing pulls an autoencoder's codes towards N(0, I), so each dimension keeps "
                   "whatever scale training left it (compare these σ with the prior's 1).")
    elif active_mask.sum() < len(kl):
        st.warning(f"{len(kl) - int(active_mask.sum())} dimension(s) collapsed to the prior: the decoder ignores "
                   "them and they carry no information (posterior collapse). A smaller β, KL warm-up or a "
                   "smaller latent helps.")

st.subheader("How a VAE works")
with st.expander("The ELBO: what the model is trained to maximise"):
    st.markdown(r"""
A VAE cannot compute how likely an image is, $\log p(x)$, directly. It maximises a lower bound instead,
the **evidence lower bound**:

$$\text{ELBO}(x) = \underbrace{\mathbb{E}_{q(z|x)}[\log p(x|z)]}_{\text{reconstruction}} - \underbrace{\mathrm{KL}(q(z|x)\,\|\,p(z))}_{\text{regulariser}} \le \log p(x)$$

The first term rewards decoding the image back well; the second keeps each code close to the prior
$\mathcal{N}(0, I)$, so the whole latent space stays filled and smooth. The curves on the left are the ELBO
per image, in nats. The **IWAE bound** (`python -m vae_core eval`) uses several samples of $z$ and is tighter.
Reconstructions are blurry because the decoder predicts the *average* image for a region of latent space.
""")
with st.expander("KL divergence and β: the price of information"):
    st.markdown(r"""
For a Gaussian posterior $q(z|x)=\mathcal{N}(\mu, \sigma^2)$ the KL to the prior has a closed form, per dimension:
$\tfrac12(\mu^2 + \sigma^2 - 1 - \log\sigma^2)$. A dimension whose KL is near zero says the same thing for every
image: it is **inactive**, and moving it changes nothing (try it on the Traversal page).
A **β-VAE** multiplies the KL by β > 1: fewer nats get through, and the ones that do tend to line up
with separate factors of variation (disentanglement), at the cost of blurrier reconstructions.
""")
with st.expander("The reparameterisation trick: how gradients get through sampling"):
    st.markdown(r"""
Sampling $z \sim \mathcal{N}(\mu, \sigma^2)$ is random, and you cannot backpropagate through a random draw.
The trick writes the same draw as $z = \mu + \sigma \odot \varepsilon$ with $\varepsilon \sim \mathcal{N}(0, I)$:
the randomness moves into $\varepsilon$, and $z$ becomes a smooth function of $\mu$ and $\sigma$, so the
encoder learns from the decoder's error (Kingma & Welling, 2014).
""")
