"""Every page through Streamlit's AppTest: renders with each shipped checkpoint, reacts to its
controls, and survives bad input with a message instead of a traceback."""
from __future__ import annotations

import pytest
from apptest_support import (SHIPPED, assert_clean, image_urls, map_spec, open_link, plotly_values, query, start,
                             view_of)

PAGES = ["pages/overview.py", "pages/latent_map.py", "pages/traversal.py", "pages/interpolation.py"]


def test_there_are_shipped_checkpoints():
    assert {"mnist-vae", "mnist-vae-2d", "mnist-cvae", "shapes-betavae", "digits-vae"} <= set(SHIPPED)


@pytest.mark.parametrize("model", SHIPPED)
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_every_shipped_checkpoint(checkpoints, page, model):
    at = start(page, model)
    assert_clean(at)
    assert at.title, "each page has a title"
    if page != "pages/latent_map.py":
        assert image_urls(at), f"{page} shows decoded images"


def test_default_model_is_mnist_vae(checkpoints):
    at = start()
    assert at.sidebar.selectbox(key="view.model").value == "file:mnist-vae"
    assert "mnist-vae" in at.caption[0].value
    assert any("Bernoulli p(x|z): the ELBO is a log-probability" in c.value for c in at.caption), \
        "the units of the numbers on the page, in one line"


def test_traversal_slider_changes_the_decoded_image(checkpoints):
    at = start("pages/traversal.py")
    at.toggle(key="view.live_pad").set_value(False).run()  # the sliders that run on the server
    before = image_urls(at)[0]
    slider = at.slider(key="view.z.0")
    slider.set_value(min(4.0, slider.value + 1.5)).run()
    assert_clean(at)
    assert image_urls(at)[0] != before
    assert list(view_of(at).z)[0] == pytest.approx(slider.value)
    assert query(at, "z").startswith(f"{slider.value:.2f},")


def test_traversal_with_the_grid_waiting_builds_a_page_the_browser_accepts(checkpoints):
    """The classroom's layout: each latent slider a fragment that also writes the picture's and the map's
    slots. conftest builds every run's page as the browser would, from the server's coalesced queue: a
    slot holding a container (the map and its caption) blanked the page in one run out of a few."""
    at = start("pages/traversal.py", model="file:mnist-vae-2d", sample=4)
    at.toggle(key="view.live_pad").set_value(False).run()
    at.toggle(key="view.grid_follows").set_value(False).run()
    for sample in (4, 9):
        at.number_input(key="view.sample").set_value(sample).run()
        assert_clean(at)
        assert [i.caption for e in at.get("image") for i in e.proto.imgs].count("decode(z)") == 1
        assert len(at.get("plotly_chart")) == 1
        assert any(c.value.startswith("The current z is placed by") for c in at.caption)


def test_traversal_base_choices_give_different_starts(checkpoints):
    at = start("pages/traversal.py")
    from_sample = list(list(view_of(at).z))
    at.radio(key="view.base").set_value("zero").run()
    assert_clean(at)
    assert list(view_of(at).z) == [0.0] * len(from_sample)
    assert list(view_of(at).z) != from_sample


def test_overview_temperature_changes_the_samples(checkpoints):
    at = start()
    before = image_urls(at)
    at.slider(key="view.temperature").set_value(0.0).run()
    assert_clean(at)
    after = image_urls(at)
    assert before[:2] == after[:2], "originals and reconstructions do not depend on the temperature"
    assert before[2] != after[2], "the prior samples do"


def test_overview_warns_about_collapsed_dimensions_only_when_there_are_some(checkpoints):
    at = start()
    text = " ".join(m.value for m in at.markdown)
    active, total = [int(t) for t in text.split("**")[1].split(" of ")]
    assert (len(at.warning) > 0) == (active < total)


def test_latent_map_computes_pca_and_selects_a_sample(checkpoints):
    at = start("pages/latent_map.py")
    assert_clean(at)
    assert map_spec(at) is None, "nothing heavy runs before it is asked for"
    at.button[0].click().run()  # the form's "Compute map"
    assert_clean(at)
    assert map_spec(at), "the map is drawn"
    at.number_input[0].set_value(7).run()
    assert_clean(at)
    assert view_of(at).sample == 7 and view_of(at).selected == (7,)


def test_a_click_on_the_3d_map_selects_that_point(checkpoints):
    at = start("pages/latent_map.py")
    at.radio(key="view.map_dims").set_value(3)
    at.button[0].click().run()  # the form's "Compute map"
    assert_clean(at)
    assert not at.get("plotly_chart") and map_spec(at)["data"][0]["type"] == "scatter3d", "the clickable component"
    at.session_state["map_chart"] = {"points": [42], "id": "click-1"}  # what the component sends on a click
    at.run()
    assert_clean(at)
    assert view_of(at).selected == (42,) and view_of(at).sample == 42
    assert query(at, "selected") == "42" and query(at, "dims") == "3"
    at.number_input[0].set_value(7).run()
    assert view_of(at).selected == (7,), "an old click is not applied again"


def test_a_click_on_an_empty_spot_decodes_the_latent_the_map_puts_there(checkpoints):
    """Decode anywhere: the component reports a spot in map coordinates; the page marks it, decodes the
    latent PCA's inverse puts there, and the link carries the spot, so a new session sees the same."""
    at = start("pages/latent_map.py")
    at.button[0].click().run()  # PCA, 2-D
    at.session_state["map_chart"] = {"spot": [0.25, -0.500004], "id": "click-1"}
    at.run()
    assert_clean(at)
    assert view_of(at).map_spot == (0.25, -0.5) and query(at, "spot") == "0.2500,-0.5000"
    captions = [img.caption for element in at.get("image") for img in element.proto.imgs]
    assert any("found by PCA's inverse_transform" in c for c in captions), captions
    mark = next(t for t in map_spec(at)["data"] if t.get("name") == "decoded here")
    assert (plotly_values(mark["x"]).tolist(), plotly_values(mark["y"]).tolist()) == ([0.25], [-0.5])
    decoded = image_urls(at)
    again = open_link("pages/latent_map.py", model="file:mnist-vae", map="on", spot="0.25,-0.5")
    assert_clean(again)
    assert set(image_urls(again)) == set(decoded), "the same pictures, the decoded spot among them"
    at.button[0].click().run()  # a new map forgets the spot
    assert view_of(at).map_spot is None


def test_an_empty_spot_of_a_tsne_map_says_there_is_no_inverse(checkpoints):
    at = open_link("pages/latent_map.py", model="file:mnist-vae", map="on", method="tsne", spot="1,2")
    assert_clean(at)
    assert any("t-SNE has no inverse map" in i.value for i in at.info)


def test_the_map_is_coloured_by_what_the_menu_names(checkpoints):
    """Label (a key of classes), a per-image score (a continuous scale), a ground-truth factor."""
    import numpy as np

    from vae_core.analysis import anomaly_scores
    from vae_core.checkpoint import load_checkpoint
    from vae_core.datasets import load_dataset

    at = open_link("pages/latent_map.py", model="file:digits-vae", map="on")
    assert_clean(at)
    assert len(map_spec(at)["data"]) == 1 + 10, "the points, and a key of 10 classes"
    at.selectbox(key="view.map_colour").set_value("kl").run()
    assert_clean(at) and query(at, "colour") == "kl"
    points, *rest = map_spec(at)["data"]
    assert not rest and points["marker"]["colorscale"] and "KL" in points["marker"]["colorbar"]["title"]["text"]
    data = load_dataset("digits")
    kl = anomaly_scores(load_checkpoint(checkpoints / "digits-vae.safetensors").model, data.x_test)["kl"]
    order = plotly_values(points["customdata"]).astype(int)
    np.testing.assert_allclose(plotly_values(points["marker"]["color"]), kl[order], rtol=1e-4)
    shapes = open_link("pages/latent_map.py", model="file:shapes-vae", map="on", colour="factor:rotation")
    assert_clean(shapes)
    assert "rotation" in map_spec(shapes)["data"][0]["marker"]["colorbar"]["title"]["text"]
    other = open_link("pages/latent_map.py", model="file:digits-vae", map="on", colour="factor:rotation")
    assert_clean(other)
    assert view_of(other).map_colour == "label", "digits have no rotation factor: coloured by label"


def test_without_a_writable_cache_the_map_is_still_drawn(checkpoints, monkeypatch):
    import pages.ui.map_view

    monkeypatch.setattr(pages.ui.map_view, "_component", None)
    at = start("pages/latent_map.py")
    at.radio(key="view.map_dims").set_value(3)
    at.button[0].click().run()
    assert_clean(at)
    assert at.get("plotly_chart"), "the plain 3-D chart, without click-to-select"
    at.radio(key="view.map_dims").set_value(2)
    at.button[0].click().run()
    assert_clean(at)
    (chart,) = at.get("plotly_chart")
    assert list(chart.proto.selection_mode), "in 2-D Streamlit's chart still selects points, box and lasso"


def test_two_d_latent_is_mapped_without_projection(checkpoints):
    at = start("pages/latent_map.py", "mnist-vae-2d")
    assert_clean(at)
    assert any("plotted as it is" in i.value for i in at.info)
    assert map_spec(at)


def test_latent_map_kmeans_scores_are_shown(checkpoints):
    at = start("pages/latent_map.py", "mnist-vae-2d")
    next(b for b in at.button if b.label == "Run k-means").click().run()
    assert_clean(at)
    values = {m.label: float(m.value) for m in at.metric}
    assert 0.0 <= values["NMI"] <= 1.0 and -1.0 <= values["ARI"] <= 1.0


def test_interpolation_steps_slider_changes_the_strips(checkpoints):
    at = start("pages/interpolation.py")
    before = image_urls(at)
    at.slider[0].set_value(5).run()
    assert_clean(at)
    assert image_urls(at)[:2] != before[:2]


def test_interpolation_prior_endpoints(checkpoints):
    at = start("pages/interpolation.py")
    at.radio[0].set_value("prior").run()
    assert_clean(at)
    assert len(image_urls(at)) >= 2


@pytest.mark.parametrize("ends, expected", [({"to": 5}, (0, 5)), ({"from": 7}, (7, 8)), ({"from": 3, "to": 9}, (3, 9))])
def test_an_interpolation_link_with_one_end_keeps_it(checkpoints, ends, expected):
    at = open_link("pages/interpolation.py", **ends)
    assert_clean(at)
    assert (view_of(at).pair_from, view_of(at).pair_to) == expected, "the missing end is filled, the given one kept"
    assert (query(at, "from"), query(at, "to")) == tuple(map(str, expected))


def test_shared_link_reopens_the_same_view(checkpoints):
    at = start("pages/traversal.py", model="file:mnist-vae-2d", sample=5, seed=3)
    assert_clean(at)
    assert view_of(at).model == "file:mnist-vae-2d"
    assert view_of(at).sample == 5 and view_of(at).seed == 3
    assert query(at, "sample") == "5"


def test_broken_checkpoint_gives_a_message_and_keeps_the_previous_model(checkpoints):
    (checkpoints / "broken.safetensors").write_bytes(b"\x00" * 100)
    at = start()
    at.sidebar.selectbox(key="view.model").set_value("file:broken").run()
    assert not at.exception
    assert any("broken" in e.value for e in at.sidebar.error)
    assert view_of(at).model == "file:mnist-vae"
    assert image_urls(at), "the page still shows the previous model's pictures"


@pytest.mark.parametrize("model", ["file:../../etc/passwd", "file:no-such-model", "external:0123456789ab", "upload"])
def test_a_link_to_a_model_this_server_lacks_says_so_and_names_what_is_shown(checkpoints, model):
    at = open_link("pages/overview.py", model=model, sample=3)
    assert not at.exception and not at.error
    assert view_of(at).model == "file:mnist-vae"
    assert len(at.warning) == 1 and "mnist-vae instead" in at.warning[0].value
    assert ("cannot carry" in at.warning[0].value) == (model == "upload")
    assert query(at, "model") == "file:mnist-vae", "the URL names the model on screen"
    assert view_of(at).sample == 3, "the rest of the link still applies"


def test_a_hand_typed_link_may_name_a_checkpoint_without_its_prefix(checkpoints):
    """`?model=mnist-ae` means the checkpoint the picker lists as file:mnist-ae; it once opened the
    default with a notice that the server had no such model."""
    at = open_link("pages/overview.py", model="mnist-ae", sample=3)
    assert not at.exception and not at.error and not at.warning
    assert view_of(at).model == "file:mnist-ae" and view_of(at).sample == 3
    assert query(at, "model") == "file:mnist-ae", "the URL names the model as links spell it"


def test_bad_values_in_a_link_are_corrected_with_a_notice(checkpoints):
    at = open_link("pages/traversal.py", sample="99999", seed="x", z="1,2", base="nowhere", span="nan", rows="0,99",
               columns="100", utm_source="mail")
    assert not at.exception and not at.error
    notices = " ".join(w.value for w in at.warning)
    for expected in ("seed", "base", "span", "columns", "utm_source", "no test image #99999", "z has 2 numbers"):
        assert expected in notices, expected
    assert view_of(at).sample == 999 and len(view_of(at).z) == 16
    assert query(at, "sample") == "999" and "seed" not in at.query_params and "utm_source" not in at.query_params
    at.run()
    assert not at.warning, "each notice is shown once"


def test_an_upload_link_says_it_cannot_be_shared(checkpoints):
    from vae_core.checkpoint import load_checkpoint

    at = start()
    data = (checkpoints / "mnist-vae-2d.safetensors").read_bytes()
    session = at.session_state["latent_explorer"]
    session.uploads["upload:feedfacecafe0001"] = load_checkpoint(checkpoints / "mnist-vae-2d.safetensors")
    session.view.switch_model("upload:feedfacecafe0001")
    at.run()
    assert_clean(at)
    assert query(at, "model") == "upload", f"never the previous model's name ({len(data)} bytes uploaded)"
    assert any("lives in this browser only" in c.value for c in at.sidebar.caption)


BYOM_SOURCE = '''
import torch
from torch import nn


class TinyVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(64, 4)
        self.dec = nn.Linear(2, 64)

    def encode(self, x):
        h = self.enc(x.flatten(1))
        return h[:, :2], h[:, 2:]

    def decode(self, z):
        return self.dec(z)
'''


@pytest.fixture
def own_model(tmp_path):
    import importlib.util

    import torch

    source = tmp_path / "tiny_vae.py"
    source.write_text(BYOM_SOURCE)
    spec = importlib.util.spec_from_file_location("tiny_vae_for_test", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    torch.save(module.TinyVAE().state_dict(), weights)
    return f"{source}:TinyVAE", str(weights)


def test_own_model_from_local_files_opens_on_every_page(checkpoints, own_model):
    spec, weights = own_model
    at = start()
    assert [e for e in at.sidebar.expander if "local files" in e.label]
    at.sidebar.text_input(key="own_model.spec").input(spec)
    at.sidebar.text_input(key="own_model.weights").input(weights)
    next(b for b in at.sidebar.button if b.label == "Open my model").click().run()
    assert_clean(at)
    assert view_of(at).model.startswith("external:")
    assert any("architecture** external" in c.value for c in at.sidebar.caption), "the card describes it"
    for page in PAGES[1:]:
        at.switch_page(page).run()
        assert_clean(at)
        assert view_of(at).model.startswith("external:")


def test_own_model_that_fails_to_load_gives_a_message_and_keeps_the_previous_model(checkpoints, tmp_path):
    broken = tmp_path / "broken_vae.py"
    broken.write_text("raise RuntimeError('this file is broken')\n")
    at = start()
    at.sidebar.text_input(key="own_model.spec").input(f"{broken}:VAE")
    at.sidebar.text_input(key="own_model.weights").input(str(tmp_path / "w.pt"))
    next(b for b in at.sidebar.button if b.label == "Open my model").click().run()
    assert not at.exception
    assert any("this file is broken" in e.value for e in at.sidebar.error)
    assert view_of(at).model == "file:mnist-vae"
    assert not any(k.startswith("external:") for k in at.sidebar.selectbox(key="view.model").options)


def test_classroom_mode_hides_the_local_code_box(checkpoints, monkeypatch):
    import pages.ui.sidebar

    monkeypatch.setattr(pages.ui.sidebar, "LOCAL_CODE_ALLOWED", False)
    at = start()
    assert_clean(at)
    assert not [e for e in at.sidebar.expander if "local files" in e.label]


def test_an_empty_checkpoints_folder_still_lets_you_train(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_EXPLORER_CHECKPOINTS", str(tmp_path))
    at = start()
    assert not at.exception
    assert any("No models" in w.value for w in at.sidebar.warning)
    assert any("Choose a model" in i.value for i in at.info)
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert any(b.label.startswith("Start") for b in at.button), "the Train page is usable"


def test_shared_models_are_read_only(checkpoints):
    from pages.ui import file_checkpoint

    path = checkpoints / "digits-vae.safetensors"
    model = file_checkpoint(str(path), path.stat().st_mtime).model
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters()), "no session can build a graph on it"


def test_the_default_model_maps_all_10000_mnist_test_images_from_idx_files(tmp_path, monkeypatch):
    """After `--download` (here: IDX files the test writes, real digits from mnist-5k cycled to 10,000),
    the default model encodes torchvision's MNIST test split and the map holds every one of its images."""
    import base64

    import numpy as np
    import torch

    from conftest import write_mnist_like
    from vae_core.datasets import load_dataset

    digits = load_dataset("mnist-5k")
    real = (torch.cat([digits.x_train, digits.x_test])[:, 0] * 255).round().to(torch.uint8).numpy()
    write_mnist_like(tmp_path, "MNIST", n_train=100, n_test=10_000, images=real)
    monkeypatch.setenv("LATENT_EXPLORER_DATA", str(tmp_path))
    at = start("pages/latent_map.py")
    dataset_box = at.sidebar.selectbox(key="view.dataset")
    assert dataset_box.value == "" and dataset_box.options[0] == "mnist-5k", "the model's own dataset first"
    assert "mnist" in dataset_box.options
    dataset_box.set_value("mnist").run()
    assert_clean(at)
    next(b for b in at.button if b.label == "Compute map").click().run()
    assert_clean(at)
    figure = map_spec(at)

    def points(x) -> int:  # plotly sends long arrays as base64 typed arrays
        return len(base64.b64decode(x["bdata"])) // np.dtype(x["dtype"]).itemsize if isinstance(x, dict) else len(x)

    drawn = [trace for trace in figure["data"] if trace.get("name") == "points"]
    assert len(drawn) == 1 and points(drawn[0]["x"]) == 10_000, "all 10,000 test images, in one trace"
    legend = [trace for trace in figure["data"] if trace.get("name") != "points"]
    assert len(legend) == 10 and len({trace["marker"]["color"] for trace in legend}) == 10, "a key of 10 colours"


def test_map_points_are_drawn_shuffled_in_distinct_colours():
    """Classes drawn one after another hid each other ("the data is all hearts"): one shuffled trace."""
    import numpy as np

    from pages.ui.figures import LABEL_COLOURS, map_figure

    labels = np.repeat(np.arange(3), 200)  # sorted by class, as datasets often are
    coords = np.random.default_rng(1).normal(size=(600, 2))
    figure = map_figure(coords, labels, ["square", "ellipse", "heart"])
    drawn = figure.data[0]
    order = np.asarray(drawn.customdata)
    assert sorted(order.tolist()) == list(range(600)), "every point once, its dataset index as customdata"
    np.testing.assert_allclose(np.column_stack([drawn.x, drawn.y]), coords[order])
    assert set(labels[order[-100:]].tolist()) == {0, 1, 2}, "the last points drawn are of every class"
    scale, low, high = drawn.marker.colorscale, drawn.marker.cmin, drawn.marker.cmax
    for label in (0, 1, 2):  # each class's value falls inside its own band of the stepped scale
        value = drawn.marker.color[list(labels[order]).index(label)]
        position = (value - low) / (high - low)
        band = [colour for (start, colour), (end, _) in zip(scale[::2], scale[1::2]) if start < position < end]
        assert band == [LABEL_COLOURS[label]], (label, band)
    assert [trace.name for trace in figure.data[1:]] == ["square", "ellipse", "heart"]
    assert len(set(LABEL_COLOURS)) == len(LABEL_COLOURS) == 10


def test_a_map_the_cli_precomputed_opens_without_projecting(checkpoints, tmp_path, monkeypatch, capsys):
    """A teacher's maps, prepared with `python -m vae_core map`, open in a fresh server at once."""
    import base64

    import numpy as np
    import streamlit as st

    import vae_core.map_cache
    from pages.ui.models import _latent_map
    from vae_core.cli import main

    monkeypatch.setenv("LATENT_EXPLORER_CACHE", str(tmp_path))
    out = tmp_path / "prepared.npz"
    assert main(["map", str(checkpoints / "mnist-vae.safetensors"), "--method", "pca", "--split", "train",
                 "--out", str(out)]) == 0
    st.cache_data.clear()  # as in a new process: nothing in memory
    _latent_map.clear()
    monkeypatch.setattr(vae_core.map_cache, "project_fitted", lambda *a: pytest.fail("the map was projected again"))
    at = open_link("pages/latent_map.py", model="file:mnist-vae", map="on", method="pca", split="train")
    assert_clean(at)
    drawn = next(t for t in map_spec(at)["data"] if t.get("name") == "points")

    def values(x):  # plotly sends arrays as base64 typed arrays
        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]) if isinstance(x, dict) else np.asarray(x)

    shown = np.zeros((len(values(drawn["x"])), 2))
    shown[values(drawn["customdata"]).astype(int)] = np.column_stack([values(drawn["x"]), values(drawn["y"])])
    with np.load(out, allow_pickle=False) as prepared:
        np.testing.assert_allclose(shown, prepared["coords"], atol=1e-5)  # the very map the CLI wrote


def test_a_map_that_fails_says_why_and_is_not_started_again(checkpoints, monkeypatch):
    """A projection that fails is a message, not a traceback, on the Latent map and on the pages that
    draw the map; the map is switched off, so no rerun (a slider's move) starts it again."""
    import vae_core.map_cache
    from pages.ui.models import _latent_map

    tries = []

    def failing(z, params, progress=None, threads=None):
        tries.append(params.method)
        raise MemoryError("no room for the neighbour graph")

    _latent_map.clear()
    monkeypatch.setattr(vae_core.map_cache, "project_fitted", failing)
    monkeypatch.setenv("LATENT_EXPLORER_CACHE", str(checkpoints.parent / "cache"))
    at = open_link("pages/traversal.py", model="file:mnist-vae", map="on", method="umap")
    assert not at.exception
    assert any("could not be computed (no room for the neighbour graph)" in w.value for w in at.warning)
    assert view_of(at).map_on is False and "map" not in at.query_params
    at.run()
    assert tries == ["umap"], "the failed map is not tried again on the next run"
    again = open_link("pages/latent_map.py", model="file:mnist-vae", map="on", method="umap")
    assert not again.exception and any("could not be computed" in w.value for w in again.warning)
    assert tries == ["umap", "umap"], "forgotten: a new request computes it again"


def test_the_umap_warm_up_starts_once_after_the_first_page(checkpoints, monkeypatch):
    """app.py starts the warm-up when a page has been drawn, once per server; LATENT_EXPLORER_WARM_UP=0
    (the tests' setting) keeps it off."""
    import threading

    import pages.ui.warm_up

    ran = threading.Event()
    monkeypatch.setattr(pages.ui.warm_up, "warm_up_umap", ran.set)
    pages.ui.warm_up.start_umap_warm_up.clear()
    start()
    assert not ran.wait(1), "off when LATENT_EXPLORER_WARM_UP=0"
    pages.ui.warm_up.start_umap_warm_up.clear()
    monkeypatch.setenv("LATENT_EXPLORER_WARM_UP", "1")
    at = start()
    assert ran.wait(10), "started"
    assert at.title[0].value == "Overview", "after the page was drawn"
    thread = pages.ui.warm_up.start_umap_warm_up()
    ran.clear()
    at.run()
    assert pages.ui.warm_up.start_umap_warm_up() is thread and not ran.wait(0.5), "once per server"
    pages.ui.warm_up.start_umap_warm_up.clear()


def test_the_server_trims_its_heap_in_one_thread_from_its_first_page(checkpoints):
    """app.py starts vae_core.heap's trimming with the first page drawn, once per server process."""
    import pages.ui.warm_up

    pages.ui.warm_up.start_heap_trimming.clear()
    at = start()
    assert not at.exception
    thread = pages.ui.warm_up.start_heap_trimming()
    assert thread.name == "heap-trim" and thread.daemon and thread.is_alive()
    at.run()
    assert pages.ui.warm_up.start_heap_trimming() is thread, "once per server"


@pytest.mark.parametrize("name", ["mnist-vae", "shapes-vae"])
def test_a_shared_conv_model_decodes_channels_last_and_gives_the_same_bits(name):
    import torch
    from apptest_support import ROOT
    from pages.ui.models import file_checkpoint
    from torch import nn
    from vae_core.checkpoint import load_checkpoint

    path = ROOT / "checkpoints" / f"{name}.safetensors"
    shared = file_checkpoint(str(path), path.stat().st_mtime).model
    fresh = load_checkpoint(path).model.eval()
    convs = [m for m in shared.decoder_body.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    z = torch.randn(72, shared.config.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(shared.decode(z), fresh.decode(z)), "oneDNN's channels-last kernels, the same pictures"
    assert shared.weights_digest() == fresh.weights_digest(), "caches keyed by the digest still match"
