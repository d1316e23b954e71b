"""Latent arithmetic: z = c + s·(a − b), with samples, class means or attribute vectors as operands."""
import streamlit as st
import torch

from pages.ui import frame, show_images, slider_widget, sync_url, view, widget
from pages.ui.view import Operand
from vae_core.generate import attribute_vectors
from vae_core.images import make_grid, png_bytes, upscale_factor
from vae_core.latent import arithmetic, class_means

handle = frame("arithmetic")
cfg = handle.config
v = view()
name_of = handle.label_name
st.title("Latent arithmetic")
st.caption("**z = c + s·(a − b).** The difference a − b is a direction in latent space: what turns b into a. "
           "Adding it to c answers the analogy *b is to a as c is to ?* — c changed the way b would change to "
           "become a; the scale s says how far to go.")

z_test, y_test = handle.encodings("test")
z_all = torch.as_tensor(z_test)
labels_all = torch.as_tensor(y_test)
k = max(len(handle.label_names), int(labels_all.max()) + 1)
means = class_means(z_all, labels_all, k)
present = [i for i in range(k) if not torch.isnan(means[i]).any()]
data = handle.data
attributes = attribute_vectors(z_test, y_test, handle.label_names, data.factors_test, data.factor_names)
default_attribute = "bigger" if "bigger" in attributes else next(iter(attributes), "")

KINDS = {"sample": "a test image's μ", "class": "a class mean", "attribute": "an attribute vector",
         "zero": "zero (the origin)"}
OPERANDS = ("a", "b", "c")


def analogy() -> dict[str, Operand]:
    """An analogy that makes sense for the model, around the current sample c."""
    c_class = int(y_test[v.sample])
    if "bigger" in attributes:  # data with ground-truth factors: "this shape, bigger"
        return {"a": Operand("attribute", v.sample, c_class, "bigger"), "b": Operand("zero", v.sample, c_class),
                "c": Operand("sample", v.sample, c_class)}
    # "this 3, turned towards a 4": a = mean of another class, b = mean of c's own class
    other = present[(present.index(c_class) + 1) % len(present)] if c_class in present else present[0]
    return {"a": Operand("class", v.sample, other, default_attribute),
            "b": Operand("class", v.sample, c_class, default_attribute), "c": Operand("sample", v.sample, c_class)}


suggested = analogy()
for o in OPERANDS:  # a new model (or a link without operands) starts from the suggested analogy
    if getattr(v, o) is None:
        setattr(v, o, suggested[o])
    operand = getattr(v, o)  # the widgets need every choice valid for this model
    if operand.label not in present or (operand.attribute not in attributes):
        setattr(v, o, Operand(operand.kind, operand.sample, operand.label if operand.label in present else present[0],
                              operand.attribute if operand.attribute in attributes else default_attribute))


def operand(o: str, column):
    """Draw one operand's controls; return (its code, the images that show it, their caption, its class)."""
    kind = column.selectbox(f"**{o}** is", list(KINDS), format_func=KINDS.get, **widget(f"view.{o}.kind"))
    if kind == "sample":
        i = int(column.number_input("Test image #", 0, len(z_test) - 1, **widget(f"view.{o}.sample")))
        label = int(y_test[i])
        z = z_all[i]
        return z, torch.cat([handle.images([i]), handle.decode(z, label)]), f"test #{i} (class {name_of(label)}): image, decode(μ)", label
    if kind == "class":
        c = column.selectbox("Class", present, format_func=name_of, **widget(f"view.{o}.label"))
        return means[c], handle.decode(means[c], c), f"mean code of class {name_of(c)}", c
    if kind == "attribute":
        if not attributes:
            column.info("These data offer no attribute vector.")
            return torch.zeros(cfg.latent_dim), handle.decode(torch.zeros(cfg.latent_dim)), "—", None
        name = column.selectbox("Attribute", list(attributes), **widget(f"view.{o}.attribute"),
                                help="Mean code of the points with the attribute minus the mean of those without")
        attr = attributes[name]
        column.caption(attr.description)
        if attr.source == "labels":  # the two class means it is the difference of
            a_class, b_class = attr.labels
            pictures = torch.cat([handle.decode(attr.without_mean, b_class), handle.decode(attr.with_mean, a_class)])
            return attr.vector, pictures, f"{name}: decode(mean of {name_of(b_class)}) → decode(mean of {name_of(a_class)})", a_class
        # A factor's group means average over every other factor and decode to faint blobs: show the
        # vector's effect on a typical image without the attribute instead.
        i = attr.example
        label = int(y_test[i])
        pictures = torch.cat([handle.decode(z_all[i], label), handle.decode(z_all[i] + attr.vector, label)])
        return attr.vector, pictures, f"{name}, shown on test #{i}: decode(μ) → decode(μ + vector)", None
    return torch.zeros(cfg.latent_dim), handle.decode(torch.zeros(cfg.latent_dim)), "decode(0), the origin", None


columns = st.columns(3)
operands = {o: operand(o, column) for o, column in zip(OPERANDS, columns)}

s1, s2 = st.columns([3, 1])
scale = s1.slider("Scale s of the added vector (a − b)", -2.0, 3.0, step=0.1, **slider_widget("view.scale"),
                  help="0 gives c back; 1 the plain analogy; more exaggerates it; negative goes the other way")
label = None
if cfg.conditional:
    if v.decode_as is None:
        v.decode_as = int(next((operands[o][3] for o in ("c", "a") if operands[o][3] is not None), 0))
    label = s2.selectbox("Decode as class", range(cfg.num_classes), format_func=name_of, **widget("view.decode_as"),
                         help="A CVAE is told the class; z only holds the style")
    st.caption("This model is conditional: the class is an input to the decoder, so z holds the style and "
               "class means in z differ much less than in a plain VAE.")
else:
    label = 0

(a, a_img, a_cap, _), (b, b_img, b_cap, _), (c, c_img, c_cap, _) = (operands[o] for o in OPERANDS)
result = arithmetic(a, b, c, scale)
path = torch.stack([arithmetic(a, b, c, t) for t in torch.linspace(0, scale, 8).tolist()])
result_image = handle.decode(result, label)

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
strip = handle.decode(path, label)
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
sync_url()  # the defaults this run chose join the link (app.py does it too, but not on a direct page run)
