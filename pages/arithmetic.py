"""Latent arithmetic: z = c + s·(a − b), with samples, class means or attribute vectors as operands."""
import streamlit as st
import torch

from pages.ui import frame, persistent, show_images, store
from vae_core.generate import attribute_vectors
from vae_core.images import make_grid, png_bytes, upscale_factor
from vae_core.latent import arithmetic, class_means

active = frame()
cfg = active.config
state = st.session_state
model = active.model
names = active.label_names
st.title("Latent arithmetic")
st.caption("**z = c + s·(a − b).** The difference a − b is a direction in latent space: what turns b into a. "
           "Adding it to c answers the analogy *b is to a as c is to ?* — c changed the way b would change to "
           "become a; the scale s says how far to go.")

z_test, y_test = active.encodings("test")
z_all = torch.as_tensor(z_test)
labels_all = torch.as_tensor(y_test)
k = max(len(names), int(labels_all.max()) + 1)
means = class_means(z_all, labels_all, k)
present = [i for i in range(k) if not torch.isnan(means[i]).any()]
data = active.data
attributes = attribute_vectors(z_test, y_test, names, data.factors_test, data.factor_names)
name_of = lambda i: names[i] if i < len(names) else str(i)  # noqa: E731

KINDS = {"sample": "a test image's μ", "class": "a class mean", "attribute": "an attribute vector",
         "zero": "zero (the origin)"}
OPERANDS = ("a", "b", "c")


def kept(key: str, default=None) -> dict:
    """Widget arguments that keep its value across page switches (see pages.ui.persistent)."""
    return dict(key=persistent(key, default), on_change=store, args=(key,))


# A new model or data set: start from an analogy that makes sense for it.
signature = (active.token, active.dataset_name)
if state.get("arith_signature") != signature:
    state.arith_signature = signature
    c_index = min(state.get("sample", 0), len(z_test) - 1)
    c_class = int(y_test[c_index])
    other = next((i for i in present if i != c_class), c_class)
    if "bigger" in attributes:  # data with ground-truth factors: "this shape, bigger"
        kinds = {"a": "attribute", "b": "zero", "c": "sample"}
    else:  # "this 3, turned towards a 4": a = mean of another class, b = mean of c's own class
        kinds = {"a": "class", "b": "class", "c": "sample"}
        other = present[(present.index(c_class) + 1) % len(present)] if c_class in present else other
    for o in OPERANDS:
        state[f"arith_{o}_kind"] = kinds[o]
        state[f"arith_{o}_sample"] = c_index
        state[f"arith_{o}_attribute"] = "bigger" if "bigger" in attributes else next(iter(attributes), None)
    state.arith_a_class, state.arith_b_class, state.arith_c_class = other, c_class, c_class


def decode(z: torch.Tensor, label: int | None) -> torch.Tensor:
    """decode() of a batch of codes; a conditional model decodes them all as `label`."""
    z = z.reshape(-1, cfg.latent_dim).float()
    with torch.inference_mode():
        return model.decode(z, torch.full((len(z),), int(label)) if cfg.conditional else None)


def operand(o: str, column):
    """Draw one operand's controls; return (its code, the images that show it, their caption, its class)."""
    kind = column.selectbox(f"**{o}** is", list(KINDS), format_func=KINDS.get, **kept(f"arith_{o}_kind"))
    if kind == "sample":
        i = int(column.number_input("Test image #", 0, len(z_test) - 1, **kept(f"arith_{o}_sample")))
        label = int(y_test[i])
        z = z_all[i]
        return z, torch.cat([active.images([i]), decode(z, label)]), f"test #{i} (class {name_of(label)}): image, decode(μ)", label
    if kind == "class":
        c = column.selectbox("Class", present, format_func=name_of, **kept(f"arith_{o}_class"))
        return means[c], decode(means[c], c), f"mean code of class {name_of(c)}", c
    if kind == "attribute":
        if not attributes:
            column.info("These data offer no attribute vector.")
            return torch.zeros(cfg.latent_dim), decode(torch.zeros(cfg.latent_dim), 0), "—", None
        name = column.selectbox("Attribute", list(attributes), **kept(f"arith_{o}_attribute"),
                                help="Mean code of the points with the attribute minus the mean of those without")
        attr = attributes[name]
        column.caption(attr.description)
        if attr.source == "labels":  # the two class means it is the difference of
            a_class, b_class = attr.labels
            pictures = torch.cat([decode(attr.without_mean, b_class), decode(attr.with_mean, a_class)])
            return attr.vector, pictures, f"{name}: decode(mean of {name_of(b_class)}) → decode(mean of {name_of(a_class)})", a_class
        # A factor's group means average over every other factor and decode to faint blobs: show the
        # vector's effect on a typical image without the attribute instead.
        i = attr.example
        label = int(y_test[i])
        pictures = torch.cat([decode(z_all[i], label), decode(z_all[i] + attr.vector, label)])
        return attr.vector, pictures, f"{name}, shown on test #{i}: decode(μ) → decode(μ + vector)", None
    return torch.zeros(cfg.latent_dim), decode(torch.zeros(cfg.latent_dim), 0), "decode(0), the origin", None


columns = st.columns(3)
operands = {o: operand(o, column) for o, column in zip(OPERANDS, columns)}

s1, s2 = st.columns([3, 1])
scale = s1.slider("Scale s of the added vector (a − b)", -2.0, 3.0, step=0.1, **kept("arithmetic_scale", 1.0),
                  help="0 gives c back; 1 the plain analogy; more exaggerates it; negative goes the other way")
label = None
if cfg.conditional:
    default = next((operands[o][3] for o in ("c", "a") if operands[o][3] is not None), 0)
    label = s2.selectbox("Decode as class", range(cfg.num_classes), index=int(default), format_func=name_of,
                         help="A CVAE is told the class; z only holds the style")
    st.caption("This model is conditional: the class is an input to the decoder, so z holds the style and "
               "class means in z differ much less than in a plain VAE.")
else:
    label = 0

(a, a_img, a_cap, _), (b, b_img, b_cap, _), (c, c_img, c_cap, _) = (operands[o] for o in OPERANDS)
result = arithmetic(a, b, c, scale)
path = torch.stack([arithmetic(a, b, c, t) for t in torch.linspace(0, scale, 8).tolist()])
result_image = decode(result, label)

st.subheader("The analogy")
row = st.columns([2, 0.3, 2, 0.3, 2, 0.3, 2], vertical_alignment="center")
for column, images, caption in ((row[0], a_img, f"a: {a_cap}"), (row[2], b_img, f"b: {b_cap}"),
                                (row[4], c_img, f"c: {c_cap}")):
    with column:
        show_images(images, len(images), caption, height=96 if len(images) == 1 else 72)
for column, sign in ((row[1], "−"), (row[3], "+"), (row[5], "=")):
    column.markdown(f"<div style='font-size:2.5rem;text-align:center'>{sign}</div>", unsafe_allow_html=True)
with row[6]:
    show_images(result_image, 1, f"result: decode(c + {scale:g}·(a − b))", height=128)

st.subheader("On the way there")
strip = decode(path, label)
show_images(strip, len(strip), f"decode(c + t·(a − b)) for t from 0 to {scale:g}: c on the left, the result on the right",
            height=72)
st.download_button("Download the path (PNG)",
                   lambda: png_bytes(make_grid(strip, len(strip)), upscale_factor(cfg.input_shape[1], 64)),
                   "arithmetic-path.png", "image/png", on_click="ignore")
with st.expander("Why class means and attribute vectors work"):
    st.markdown("A VAE's encoder places similar images near each other, and the KL term keeps the codes "
                "spread smoothly around the origin. Averaging the codes of many images cancels what varies "
                "between them (their style) and keeps what they share (their class, or their attribute). "
                "The difference of two such means is therefore a direction that changes *only* the shared "
                "part — if the model has learned it as a direction at all. Where it has not, the result blurs "
                "or turns into something else: that, too, says what the model has learned.")
