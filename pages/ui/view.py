"""What a person is looking at, as one typed object that a link can carry.

`View` holds every choice that shapes a page: the model, the sample, the latent vector, the map,
the operands… Each field that a link carries declares its URL name, the pages whose links carry it
and a codec that parses and checks it, in one place (`link`). `View.from_query` reads a link and
says what it had to correct; `View.to_query(page)` writes the link of what is on a page. Plain
Python, no Streamlit: tests/test_view.py round-trips it.

Model-dependent limits (how many test images, how many latent dimensions) are applied afterwards by
`View.fit`, once the model is open, with the same kind of notices.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields, replace

from vae_core.datasets import DATASETS
from vae_core.projection import METHODS, ProjectionParams

# Page ids: the stem of each page's file (pages/ui/navigation.py lists them).
COMMON = "*"  # carried by every page's link
MAP_PAGES = ("latent_map", "traversal", "interpolation", "anomalies")  # pages that draw the session's map
NAMED_DATASETS = tuple(name for name in DATASETS if ":" not in name)  # not folder:/npz: paths on the server
MAX_SEED = 10_000
# A server for a class (`make serve` sets it): no local code, and the Traversal grid waits to be redrawn.
CLASSROOM = bool(os.environ.get("LATENT_EXPLORER_CLASSROOM"))
Z_RANGE = 4.0  # the traversal sliders' and the live pad's range for a VAE: ±4σ of the prior
Z_LINK_LIMIT = 1000.0  # what a link's z may hold: an autoencoder's codes have no fixed scale (ModelHandle.z_range)


class LinkError(ValueError):
    """A link parameter that cannot be used; its message says why, for the notice."""


# -- codecs: text <-> value, with the checks a link needs ------------------------------------------
@dataclass(frozen=True)
class Int:
    low: int
    high: int
    options: tuple[int, ...] = ()  # if given, the only values allowed

    def parse(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise LinkError(f"{text!r} is not a whole number") from None
        if not self.low <= value <= self.high:
            raise LinkError(f"{value} is outside {self.low}…{self.high}")
        if self.options and value not in self.options:
            raise LinkError(f"{value} is not one of {', '.join(map(str, self.options))}")
        return value

    def format(self, value: int) -> str:
        return str(int(value))


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    digits: int = 2

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise LinkError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise LinkError(f"{text} is outside {self.low:g}…{self.high:g}")
        return value

    def format(self, value: float) -> str:
        return f"{float(value):.{self.digits}f}".rstrip("0").rstrip(".") if self.digits else str(int(value))


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]

    def parse(self, text: str) -> str:
        if text not in self.options:
            raise LinkError(f"{text!r} is not one of {', '.join(self.options)}")
        return text

    def format(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class Floats:
    """Comma-separated numbers, each within ±limit: "0.10,-1.25,3.97" (exactly `count` of them, if given)."""
    limit: float
    digits: int = 2
    count: int | None = None

    def parse(self, text: str) -> tuple[float, ...]:
        values = tuple(Float(-self.limit, self.limit).parse(v) for v in text.split(","))
        if self.count is not None and len(values) != self.count:
            raise LinkError(f"{len(values)} numbers, not {self.count}")
        return values

    def format(self, value) -> str:
        return ",".join(f"{float(v):.{self.digits}f}" for v in value)


@dataclass(frozen=True)
class Indices:
    """Sorted distinct indices, runs written as ranges: "3-7,12" is 3, 4, 5, 6, 7, 12."""
    high: int

    def parse(self, text: str) -> tuple[int, ...]:
        out: set[int] = set()
        for part in text.split(","):
            first, dash, last = part.partition("-")
            low = Int(0, self.high).parse(first)
            high = Int(low, self.high).parse(last) if dash else low
            if len(out) + high - low > self.high:
                raise LinkError("too many indices")
            out.update(range(low, high + 1))
        return tuple(sorted(out))

    def format(self, value) -> str:
        runs: list[list[int]] = []
        for i in sorted(set(int(v) for v in value)):
            if runs and i == runs[-1][1] + 1:
                runs[-1][1] = i
            else:
                runs.append([i, i])
        return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


@dataclass(frozen=True)
class Ints:
    """Comma-separated whole numbers in 0…high, in their order: "4,0,7". `length`: exactly that many."""
    high: int
    length: int | None = None

    def parse(self, text: str) -> tuple[int, ...]:
        values = tuple(Int(0, self.high).parse(v) for v in text.split(","))
        if self.length is not None and len(values) != self.length:
            raise LinkError(f"needs {self.length} numbers, got {len(values)}")
        if self.length is None and len(set(values)) != len(values):
            raise LinkError("a number repeats")
        return values

    def format(self, value) -> str:
        return ",".join(str(int(v)) for v in value)


@dataclass(frozen=True)
class Flag:
    """A switch that is on when the link says `name=on`."""

    def parse(self, text: str) -> bool:
        if text != "on":
            raise LinkError(f"{text!r} is not 'on'")
        return True

    def format(self, value: bool) -> str:
        return "on"


def _is_model_name(text: str) -> bool:
    """A checkpoint's name as the models folder lists it ("mnist-vae", "beta-sweep/mnist-beta-2"): compared
    with that list, never opened as a path."""
    return len(text) <= 200 and ".." not in text and \
        all(re.fullmatch(r"[A-Za-z0-9][\w.-]*", part) for part in text.split("/"))


@dataclass(frozen=True)
class Names:
    """Comma-separated checkpoint names: "shapes-vae,shapes-tcvae"."""

    def parse(self, text: str) -> tuple[str, ...]:
        names = tuple(text.split(","))
        if not all(map(_is_model_name, names)):
            raise LinkError(f"{text!r} is not a list of model names")
        return names

    def format(self, value) -> str:
        return ",".join(value)


@dataclass(frozen=True)
class Name:
    """One checkpoint name: "mnist-ae"."""

    def parse(self, text: str) -> str:
        if not _is_model_name(text):
            raise LinkError(f"{text!r} is not a model name")
        return text

    def format(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class ColourBy:
    """What colours the map's points: a COLOUR_BY key, or "factor:NAME" (a ground-truth factor of the
    data; the page checks the name against the dataset's factors)."""

    def parse(self, text: str) -> str:
        if text not in COLOUR_BY and not re.fullmatch(r"factor:\w{1,40}", text):
            raise LinkError(f"{text!r} is not one of {', '.join(COLOUR_BY)} or factor:NAME")
        return text

    def format(self, value: str) -> str:
        return value


COLOUR_BY = {"label": "label", "recon_error": "reconstruction error", "kl": "KL to the prior (nats)"}
OPERAND_KINDS = ("sample", "class", "attribute", "zero")


@dataclass(frozen=True)
class Operand:
    """One operand of z = c + s·(a − b): a test image's μ, a class mean, an attribute vector or zero."""
    kind: str = "zero"
    sample: int = 0
    label: int = 0
    attribute: str = ""


@dataclass(frozen=True)
class OperandCodec:
    """"sample:7", "class:3", "attribute:bigger" or "zero"."""

    def parse(self, text: str) -> Operand:
        kind, _, arg = text.partition(":")
        kind = Choice(OPERAND_KINDS).parse(kind)
        if kind == "sample":
            return Operand("sample", sample=Int(0, 10**7).parse(arg))
        if kind == "class":
            return Operand("class", label=Int(0, 10**4).parse(arg))
        if kind == "attribute":
            if not re.fullmatch(r"[\w .−-]{1,60}", arg):
                raise LinkError(f"{arg!r} is not an attribute name")
            return Operand("attribute", attribute=arg)
        return Operand("zero")

    def format(self, value: Operand) -> str:
        arg = {"sample": value.sample, "class": value.label, "attribute": value.attribute}.get(value.kind)
        return value.kind if arg is None else f"{value.kind}:{arg}"


@dataclass(frozen=True)
class ModelRef:
    """A model by its picker key: "file:<checkpoint>" or "external:<id>" (a model the server was
    started with). An upload lives in one browser session only: its link says "upload". The name is
    only ever compared with the models the server lists (pages/ui/sidebar.py), never opened as a path,
    so a name the server lacks gets the notice that says so."""

    def parse(self, text: str) -> str:
        if not text or len(text) > 300 or not text.isprintable():
            raise LinkError("it is not a model name")
        return text

    def format(self, value: str) -> str:
        return "upload" if value.startswith("upload:") else value


def _as_linked(codec, value):
    """`value` as `codec` writes it in a link: numbers rounded to its precision, anything else as it is."""
    if isinstance(codec, Floats):
        return codec.parse(codec.format(value))
    return round(float(value), codec.digits) if isinstance(codec, Float) else value


def link(name: str, pages, codec, *, per_model: bool = False, default=None, factory=None):
    """A View field that links carry as `name=…` on `pages` (COMMON: every page).
    per_model: it refers to one model's data (indices, dimensions) and resets when the model changes."""
    meta = {"query": name, "pages": (pages,) if isinstance(pages, str) else tuple(pages), "codec": codec,
            "per_model": per_model}
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


def local(default=None, *, per_model: bool = False, factory=None):
    """A View field that stays in this browser (a preference, or too big for a link)."""
    meta = {"per_model": per_model}
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


SAMPLE = Int(0, 10**7)
SEED = Int(0, MAX_SEED)


@dataclass
class View:
    # every page
    model: str = link("model", COMMON, ModelRef(), default="")  # "" until the sidebar picks the default
    dataset: str = link("dataset", COMMON, Choice(NAMED_DATASETS), per_model=True, default="")  # "": the model's own
    sample: int = link("sample", COMMON, SAMPLE, default=0)  # the test image pages start from
    seed: int = link("seed", COMMON, SEED, default=0)  # prior draws
    # Overview and Conditional
    temperature: float = link("temperature", ("overview", "conditional"), Float(0.0, 2.0, 1), default=1.0)
    # Traversal
    base: str = link("base", "traversal", Choice(("sample", "prior", "zero")), default="sample")
    z: tuple[float, ...] | None = link("z", "traversal", Floats(Z_LINK_LIMIT), per_model=True)  # None: the base itself
    z_origin: tuple | None = local(per_model=True)  # the (base, sample or seed) z was started from
    grid_rows: tuple[int, ...] | None = link("rows", "traversal", Ints(1023), per_model=True)  # None: the active dims
    grid_span: float = link("span", "traversal", Float(0.5, 4.0, 1), default=3.0)
    grid_steps: int = link("columns", "traversal", Int(3, 15), default=9)
    gif_dim: int | None = local(per_model=True)
    live_pad: bool = local(True)  # decode in the browser (a preference of this browser, not of the view)
    # The grid redrawn at every server-side slider move: over half of a move's work (bench/classroom.py), so
    # a classroom server leaves it to a button.
    grid_follows: bool = local(not CLASSROOM)
    # Interpolation
    ends: str = link("ends", "interpolation", Choice(("samples", "prior")), default="samples")
    pair_from: int | None = link("from", "interpolation", SAMPLE, per_model=True)  # None: from the selection
    pair_to: int | None = link("to", "interpolation", SAMPLE, per_model=True)
    seed_from: int = link("seed_from", "interpolation", SEED, default=1)
    seed_to: int = link("seed_to", "interpolation", SEED, default=2)
    steps: int = link("steps", "interpolation", Int(3, 20), default=10)
    scrub_t: float = link("t", "interpolation", Float(0.0, 1.0), default=0.5)
    scrub_path: str = link("path", "interpolation", Choice(("slerp", "lerp")), default="slerp")
    # Latent map: the form's settings, and whether a map of them is on screen
    map_on: bool = link("map", MAP_PAGES, Flag(), per_model=True, default=False)
    map_method: str = link("method", MAP_PAGES, Choice(METHODS), default=ProjectionParams.method)
    map_dims: int = link("dims", MAP_PAGES, Int(2, 3), default=2)
    map_split: str = link("split", MAP_PAGES, Choice(("test", "train")), default="test")
    map_neighbors: int = link("neighbors", MAP_PAGES, Int(2, 100), default=ProjectionParams.n_neighbors)
    map_min_dist: float = link("min_dist", MAP_PAGES, Float(0.0, 0.99), default=ProjectionParams.min_dist)
    map_perplexity: float = link("perplexity", MAP_PAGES, Float(5.0, 100.0, 1), default=ProjectionParams.perplexity)
    map_thumbnails: bool = link("thumbnails", "latent_map", Flag(), default=False)
    map_colour: str = link("colour", "latent_map", ColourBy(), default="label")
    # an empty spot of the map that was clicked, in map coordinates: its decoded picture is on show
    map_spot: tuple[float, ...] | None = link("spot", "latent_map", Floats(1e6, 4, count=2), per_model=True)
    selected: tuple[int, ...] = link("selected", ("latent_map", "interpolation"), Indices(10**7), per_model=True,
                                     default=())
    clusters: bool = local(False, per_model=True)  # k-means scores asked for on this map
    # Arithmetic: None picks an analogy that suits the model
    a: Operand | None = link("a", "arithmetic", OperandCodec(), per_model=True)
    b: Operand | None = link("b", "arithmetic", OperandCodec(), per_model=True)
    c: Operand | None = link("c", "arithmetic", OperandCodec(), per_model=True)
    scale: float = link("scale", "arithmetic", Float(-2.0, 3.0, 1), default=1.0)
    decode_as: int | None = link("decode_as", "arithmetic", Int(0, 10**4), per_model=True)
    # Conditional
    classes: tuple[int, ...] | None = link("classes", "conditional", Indices(10**4), per_model=True)  # None: all
    per_class: int = link("n", "conditional", Int(1, 16), default=8)
    style: str = link("style", "conditional", Choice(("sample", "upload")), default="sample")
    # Anomalies
    score: str = link("score", "anomalies", Choice(("neg_elbo", "recon_error")), default="neg_elbo")
    threshold: float | None = link("threshold", "anomalies", Float(-1e9, 1e9, 4), per_model=True)  # None: 95th pct
    top_k: int = link("top", "anomalies", Int(4, 24), default=8)
    # Imputation
    mask: str = link("mask", "imputation", Choice(("rectangle", "random")), default="rectangle")
    box: tuple[int, ...] | None = link("box", "imputation", Ints(4096, 4), per_model=True)  # top, left, height, width
    fraction: float = link("fraction", "imputation", Float(0.05, 0.95), default=0.5)
    mask_seed: int = link("mask_seed", "imputation", SEED, default=0)
    rounds: int = link("rounds", "imputation", Int(1, 50), default=10)
    fill: str = link("fill", "imputation", Choice(("zero", "mean")), default="zero")
    round_mode: str = link("round_mode", "imputation", Choice(("mean", "gibbs")), default="mean")
    # Autoencoder or VAE?: the model of the other kind beside this one (None: the shipped counterpart), and
    # the second end of the interpolation (the first is `sample`)
    partner: str | None = link("partner", "ae_vs_vae", Name(), per_model=True)
    contrast_end: int = link("end", "ae_vs_vae", SAMPLE, default=1)
    # Choosing β: the point of the sweep on show (None: the open model's β)
    sweep_beta: float | None = link("beta", "choosing_beta", Float(0.0, 1000.0, 4), per_model=True)
    # Disentanglement
    mig_base: str = link("traverse_from", "disentanglement", Choice(("zero", "sample")), default="zero")
    mig_span: float = link("mig_span", "disentanglement", Float(0.5, 4.0, 1), default=2.5)
    mig_steps: int = link("mig_columns", "disentanglement", Int(3, 13), default=7)
    mig_bins: int = link("bins", "disentanglement", Int(10, 50, (10, 20, 30, 50)), default=20)
    compare: tuple[str, ...] | None = link("compare", "disentanglement", Names(), per_model=True)  # None: the others

    # -- links ----------------------------------------------------------------------------------
    @classmethod
    def from_query(cls, params: dict[str, str], page: str, base: "View | None" = None) -> tuple["View", list[str]]:
        """The view a link describes (on top of `base`), and a notice for each parameter it could not use."""
        view, notices = replace(base) if base else cls(), []
        by_name = {f.metadata["query"]: f for f in fields(cls) if "query" in f.metadata}
        for name, text in params.items():
            spec = by_name.get(name)
            if spec is None or not _carried(spec, page):
                notices.append(f"The link parameter “{name}” means nothing on this page and was left out.")
                continue
            try:
                value = spec.metadata["codec"].parse(text)
            except LinkError as exc:
                notices.append(f"The link's {name} could not be used ({exc}) and was reset.")
                continue
            setattr(view, spec.name, value)
        if view.z is not None:  # a linked vector belongs to the start point the link names
            view.z_origin = view.traversal_origin()
        return view, notices

    def to_query(self, page: str) -> dict[str, str]:
        """The link parameters of `page`: its own fields and the common ones, defaults left out."""
        out = {}
        for spec in fields(self):
            if "query" not in spec.metadata or not _carried(spec, page):
                continue
            value = getattr(self, spec.name)
            if value is None or value is False or (value == spec.default and spec.name != "model") or value == "":
                continue
            out[spec.metadata["query"]] = spec.metadata["codec"].format(value)
        if page in MAP_PAGES and not self.map_on:  # the form's settings mean nothing without the map
            for name in ("method", "dims", "split", "neighbors", "min_dist", "perplexity"):
                out.pop(name, None)
        return out

    def normalise(self) -> None:
        """Round every number to the precision its link writes, so that a reopened link shows exactly
        what this view shows (a slider's 0.35000000000000003 is 0.35)."""
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is not None:
                setattr(self, spec.name, _as_linked(spec.metadata.get("codec"), value))

    @classmethod
    def as_linked(cls, name: str, value):
        """The value of field `name` as its link writes it: numbers rounded to the link's precision."""
        return _as_linked(next(spec.metadata.get("codec") for spec in fields(cls) if spec.name == name), value)

    # -- derived values ----------------------------------------------------------------------------
    def traversal_origin(self) -> tuple:
        """What the traversal's start point depends on: a change of it restarts z there."""
        return (self.base, self.sample if self.base == "sample" else self.seed if self.base == "prior" else None)

    def switch_model(self, model: str) -> None:
        """Open another model: everything that referred to the previous one's data resets."""
        for spec in fields(self):
            if spec.metadata.get("per_model"):
                setattr(self, spec.name, _default(spec))
        self.model = model

    def fit(self, n_test: int, latent_dim: int, num_classes: int, image_size: tuple[int, int]) -> list[str]:
        """Bring the view within a model's limits (n_test test images, num_classes label classes in its
        data); a notice for each value that had to change."""
        notices: list[str] = []
        last = n_test - 1

        def index(value: int | None) -> int | None:
            if value is not None and value > last:
                notices.append(f"There is no test image #{value} ({n_test} test images): showing #{last}.")
                return last
            return value

        self.sample = index(self.sample)
        self.pair_from, self.pair_to = index(self.pair_from), index(self.pair_to)
        self.contrast_end = index(self.contrast_end)
        if any(i > last for i in self.selected):
            notices.append(f"The selection named images beyond the {n_test} test images: those were left out.")
            self.selected = tuple(i for i in self.selected if i <= last)
        for name in "abc":
            operand = getattr(self, name)
            if operand is None:
                continue
            if operand.kind == "sample" and operand.sample > last:
                notices.append(f"Operand {name}: there is no test image #{operand.sample}; showing #{last}.")
                setattr(self, name, replace(operand, sample=last))
            elif operand.kind == "class" and operand.label >= num_classes:
                notices.append(f"Operand {name}: there is no class {operand.label}; it was reset.")
                setattr(self, name, None)
        if self.z is not None and len(self.z) != latent_dim:
            notices.append(f"The link's z has {len(self.z)} numbers but this model has {latent_dim} latent "
                           "dimensions: z starts from the chosen point instead.")
            self.z, self.z_origin = None, None
        if self.grid_rows is not None and any(d >= latent_dim for d in self.grid_rows):
            notices.append(f"The traversal rows named dimensions beyond z{latent_dim - 1}: those were left out.")
            self.grid_rows = tuple(d for d in self.grid_rows if d < latent_dim)
        if self.classes is not None and any(c >= num_classes for c in self.classes):
            notices.append(f"The link named classes this model does not have ({num_classes} classes): "
                           "those were left out.")
            self.classes = tuple(c for c in self.classes if c < num_classes)
        if self.decode_as is not None and self.decode_as >= num_classes:
            notices.append(f"There is no class {self.decode_as} to decode as: it was reset.")
            self.decode_as = None
        if self.box is not None:
            height, width = image_size
            top, left, box_h, box_w = self.box
            if not (top < height and left < width and 1 <= box_h <= height and 1 <= box_w <= width):
                notices.append(f"The mask rectangle does not fit a {height}×{width} image: it was reset.")
                self.box = None
        return notices


def _carried(spec, page: str) -> bool:
    pages = spec.metadata["pages"]
    return COMMON in pages or page in pages


def _default(spec):
    return spec.default_factory() if callable(spec.default_factory) else spec.default
