"""The arithmetic and conditional pages through AppTest: they render with every shipped checkpoint,
their controls change what is drawn, and the conditional page explains itself to plain VAEs."""
from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from apptest_support import assert_clean, session_of, view_of
from apptest_support import start as start_app
from streamlit.testing.v1 import AppTest

from vae_core.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (ROOT / "checkpoints").glob("*.safetensors"))
CONDITIONAL = [m for m in SHIPPED if load_checkpoint(ROOT / "checkpoints" / f"{m}.safetensors").config.conditional]


def start(page: str, model: str) -> AppTest:
    at = start_app(page, model=f"file:{model}")
    assert_clean(at)
    return at



def images(at: AppTest) -> dict[str, str]:
    """caption -> URL (the PNG as a data: URI, or a media URL named by a hash of its bytes)."""
    return {img.caption: img.url for element in at.get("image") for img in element.proto.imgs}


def image_with(at: AppTest, words: str) -> str:
    """The URL of the one picture whose caption starts with (or, failing that, contains) `words`."""
    found = [url for caption, url in images(at).items() if caption.startswith(words)] or \
            [url for caption, url in images(at).items() if words in caption]
    assert len(found) == 1, (words, list(images(at)))
    return found[0]


def image_with_caption(at: AppTest, prefix: str) -> str:
    return next(c for c in images(at) if c.startswith(prefix))


def test_conditional_checkpoint_is_shipped():
    assert CONDITIONAL and set(CONDITIONAL) < set(SHIPPED)


# -- arithmetic ------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", SHIPPED)
def test_arithmetic_renders_with_every_shipped_checkpoint(model):
    at = start("pages/arithmetic.py", model)
    assert at.title[0].value == "Latent arithmetic"
    assert "analogy" in at.caption[0].value
    captions = list(images(at))
    for operand in ("a:", "b:", "c:", "result:"):
        assert any(c.startswith(operand) for c in captions), (operand, captions)
    if model.startswith("shapes"):  # 4 factor attributes + 3 × 2 ordered class pairs
        assert len(at.selectbox(key="view.a.attribute").options) == 10


def test_scale_slider_changes_the_result_and_nothing_else():
    at = start("pages/arithmetic.py", "digits-vae")
    before = images(at)
    at.slider(key="view.scale").set_value(2.0).run()
    assert_clean(at)
    after = images(at)
    assert image_with(at, "result:") != next(u for c, u in before.items() if c.startswith("result:"))
    assert "result: decode(c + 2·(a − b))" in after
    for operand in ("a:", "b:", "c:"):
        assert next(u for c, u in before.items() if c.startswith(operand)) == \
               next(u for c, u in after.items() if c.startswith(operand))
    assert view_of(at).scale == 2.0, "mirrored, so it survives a page switch"


def test_at_scale_zero_the_result_is_c_whatever_a_is():
    at = start("pages/arithmetic.py", "digits-vae")
    a_class = at.selectbox(key="view.a.label")
    other = (a_class.value + 3) % 10
    before = image_with(at, "result:")
    a_class.set_value(other).run()
    assert image_with(at, "result:") != before, "at s = 1, a matters"
    at.slider(key="view.scale").set_value(0.0).run()
    at_zero = image_with(at, "result:")
    at.selectbox(key="view.a.label").set_value((other + 1) % 10).run()
    assert_clean(at)
    assert image_with(at, "result:") == at_zero, "c + 0·(a − b) = c"


def test_shapes_start_from_the_bigger_attribute_and_operands_can_change():
    at = start("pages/arithmetic.py", "shapes-betavae")
    assert at.selectbox(key="view.a.kind").value == "attribute"
    attribute = at.selectbox(key="view.a.attribute")
    assert attribute.value == "bigger"
    assert attribute.options[:4] == ["bigger", "moved right", "moved up", "rotated"]
    before = image_with(at, "result:")
    attribute.set_value("moved right").run()
    assert_clean(at)
    assert image_with(at, "result:") != before
    assert "moved right, shown on test #" in image_with_caption(at, "a:")
    at.selectbox(key="view.b.kind").set_value("class").run()
    assert_clean(at)
    assert image_with_caption(at, "b:").startswith("b: mean code of class")


def test_arithmetic_on_a_cvae_decodes_the_chosen_class():
    at = start("pages/arithmetic.py", "mnist-cvae")
    label = next(box for box in at.selectbox if box.label == "Decode as class")
    before = image_with(at, "result:")
    label.set_value((label.value + 1) % 10).run()
    assert_clean(at)
    assert image_with(at, "result:") != before


# -- conditional ------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", SHIPPED)
def test_conditional_renders_with_every_shipped_checkpoint(model):
    at = start("pages/conditional.py", model)
    assert at.title[0].value == "Conditional generation"
    buttons = [b.label for b in at.get("download_button")]
    assert len(buttons) == 1, "the export is offered to every model"
    if model in CONDITIONAL:
        assert image_with(at, "each column is one z")
        assert image_with(at, "the same style across all classes")
        assert buttons[0] == "Download 1,000 samples (npz)", "100 per class"
        assert not at.info or all("p(x | z, y)" not in i.value for i in at.info)
    else:
        assert not images(at)
        assert buttons[0] == "Download 100 samples (npz)"
        assert "p(x | z, y)" in at.info[0].value and "conditional" in at.info[0].value
        dataset = load_checkpoint(ROOT / "checkpoints" / f"{model}.safetensors").dataset["name"]
        assert at.button[0].label == f"Train a conditional model on {dataset}"
        assert "-1" in " ".join(c.value for c in at.caption), "the unlabelled label is documented"


def test_temperature_seed_and_classes_change_the_grid():
    at = start("pages/conditional.py", "mnist-cvae")
    grid = lambda: image_with(at, "each column is one z")  # noqa: E731
    seen = [grid()]
    at.slider(key="view.temperature").set_value(0.3).run()
    seen.append(grid())
    at.number_input(key="view.seed").set_value(7).run()
    seen.append(grid())
    assert view_of(at).seed == 7, "the seed is the shared one (it goes into the URL)"
    at.multiselect(key="view.classes").set_value([3, 5]).run()
    seen.append(grid())
    assert_clean(at)
    assert len(set(seen)) == 4, "each control changed the grid"
    assert image_with_caption(at, "rows: 3, 5")


def test_style_transfer_follows_the_chosen_image_and_label():
    at = start("pages/conditional.py", "mnist-cvae")
    strip = lambda: image_with(at, "the same style across all classes")  # noqa: E731
    first = strip()
    at.number_input(key="view.sample").set_value(5).run()
    assert_clean(at)
    second = strip()
    assert second != first
    next(box for box in at.selectbox if box.label == "Encode it as class").set_value("read").run()
    assert_clean(at)
    assert any(c.value.startswith("Read as") for c in at.caption)


def test_upload_choice_waits_for_a_file():
    at = start("pages/conditional.py", "mnist-cvae")
    at.radio(key="view.style").set_value("upload").run()
    assert_clean(at)
    assert any("Upload a picture" in i.value for i in at.info)
    assert not [c for c in images(at) if "same style" in c], "no strip before a picture"


@pytest.mark.parametrize("model, dataset", [("digits-vae", "digits"), ("shapes-vae", "shapes")])
def test_unconditional_model_offers_to_train_a_conditional_one(model, dataset, monkeypatch):
    switched = []

    def switch_page(page, **_):
        switched.append(page)
        st.stop()

    monkeypatch.setattr(st, "switch_page", switch_page)
    at = start("pages/conditional.py", model)
    at.button[0].click().run()
    assert not at.exception
    assert session_of(at).train.preset == {"conditional": True, "dataset": dataset}
    assert switched == ["pages/train.py"]


def test_train_button_lands_on_the_train_page():
    at = start("pages/conditional.py", "digits-vae")
    at.button[0].click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title[0].value != "Conditional generation"
