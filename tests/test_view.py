"""The view a link carries (pages/ui/view.py), without Streamlit: every field round-trips through
its link exactly, every bad value is refused with a notice, model limits are applied with one."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from pages.ui.navigation import PAGES, page_id
from pages.ui.view import COMMON, Indices, Operand, View

PAGE_IDS = [page_id(script) for script, _ in PAGES]
LINKED = [f for f in fields(View) if "query" in f.metadata]


def pages_of(spec) -> list[str]:
    pages = spec.metadata["pages"]
    return PAGE_IDS if COMMON in pages else list(pages)


def a_non_default_view() -> View:
    """A value other than the default in every field a link carries."""
    return View(model="file:shapes-tcvae", dataset="shapes", sample=123, seed=77, temperature=0.3, base="prior",
                z=(0.34, -1.25, 3.97, 0.0), grid_rows=(3, 0, 2), grid_span=1.5, grid_steps=5, ends="prior",
                pair_from=4, pair_to=917, seed_from=11, seed_to=12, steps=7, scrub_t=0.25, scrub_path="lerp",
                map_on=True, map_method="umap", map_dims=3, map_split="train", map_neighbors=30, map_min_dist=0.5,
                map_perplexity=12.5, map_thumbnails=True, map_colour="factor:scale", map_spot=(1.25, -0.5),
                selected=(1, 2, 3, 9, 40, 41),
                a=Operand("attribute", attribute="moved right"), b=Operand("class", label=3),
                c=Operand("sample", sample=42), scale=-1.5, decode_as=2, classes=(1, 4), per_class=3,
                style="upload", score="recon_error", threshold=0.0123, top_k=12, mask="random", box=(1, 2, 3, 4),
                fraction=0.35, mask_seed=9, rounds=3, fill="mean", round_mode="gibbs", partner="mnist-ae",
                contrast_end=31, sweep_beta=0.25, mig_base="sample",
                mig_span=1.0, mig_steps=5, mig_bins=50, compare=("shapes-vae", "shapes-betavae"))


def test_every_linked_field_is_set_in_the_example():
    example, default = a_non_default_view(), View()
    assert [f.name for f in LINKED if getattr(example, f.name) == getattr(default, f.name)] == []


@pytest.mark.parametrize("page", PAGE_IDS)
def test_a_link_reopens_exactly_the_view_of_its_page(page):
    view = a_non_default_view()
    query = view.to_query(page)
    again, notices = View.from_query(query, page)
    assert notices == []
    assert again.to_query(page) == query
    for spec in LINKED:
        if page in pages_of(spec):
            assert getattr(again, spec.name) == getattr(view, spec.name), spec.name
        else:
            assert spec.metadata["query"] not in query, f"{spec.name} is not on the {page} page's link"


def test_the_link_leaves_defaults_out_but_always_names_the_model():
    assert View(model="file:mnist-vae").to_query("traversal") == {"model": "file:mnist-vae"}
    assert View(model="upload:0123abcd").to_query("overview") == {"model": "upload"}, "an upload cannot be linked"


def test_the_map_settings_are_in_the_link_only_with_a_map_on_screen():
    view = View(model="file:mnist-vae", map_method="tsne")
    assert "method" not in view.to_query("latent_map")
    view.map_on = True
    assert view.to_query("latent_map")["method"] == "tsne"
    assert view.to_query("traversal")["method"] == "tsne", "the Traversal page draws the same map"


BAD = {  # per URL name: values that must be refused
    "model": ["", "x" * 301, "file:a\nb"],
    "dataset": ["folder:/etc", "npz:x", "MNIST"],
    "sample": ["-1", "x", "1.5", "99999999", ""],
    "seed": ["10001", "-3", "1e3"],
    "temperature": ["nan", "inf", "2.5", "-0.1", "warm"],
    "base": ["random", ""],
    "z": ["0.1,x", "1e4,0", "nan,1", "inf", "", ",,"],
    "rows": ["1,1", "a", "-1", "2000"],
    "span": ["0", "5", "x"],
    "columns": ["2", "16", "x"],
    "ends": ["both"],
    "from": ["-1", "x"],
    "to": ["1.5"],
    "seed_from": ["x"],
    "seed_to": ["99999"],
    "steps": ["2", "21"],
    "t": ["1.5", "-0.5", "nan"],
    "path": ["curve"],
    "map": ["1", "yes", "off"],
    "method": ["mds"],
    "dims": ["1", "4"],
    "split": ["val"],
    "neighbors": ["1", "101"],
    "min_dist": ["1", "-0.1"],
    "perplexity": ["4", "101"],
    "thumbnails": ["true"],
    "colour": ["factor:", "factor:../x", "labels", "kl;drop"],
    "spot": ["1", "1,2,3", "nan,1", "1e7,0", "x,y"],
    "selected": ["5-2", "x", "1-99999999", "-3"],
    "a": ["sample:x", "class:-1", "attribute:<script>", "bogus", "attribute:../x"],
    "b": ["class"],
    "c": ["sample:"],
    "scale": ["3.5", "-2.5"],
    "decode_as": ["-1", "x"],
    "classes": ["1,x", "3-1"],
    "n": ["0", "17"],
    "style": ["camera"],
    "score": ["iwae"],
    "threshold": ["nan", "inf", "1e12"],
    "top": ["3", "25"],
    "mask": ["circle"],
    "box": ["1,2,3", "1,2,3,4,5", "a,b,c,d"],
    "fraction": ["0", "1"],
    "mask_seed": ["x"],
    "rounds": ["0", "51"],
    "fill": ["noise"],
    "round_mode": ["mode"],
    "traverse_from": ["prior"],
    "mig_span": ["9"],
    "mig_columns": ["14"],
    "bins": ["15", "x"],
    "compare": ["../x", "a,,b", "a//b", "a,/b"],
    "partner": ["../x", "a,b", "a//b", "/a", ".hidden", "a/.b"],
    "end": ["-1", "x", "1e9"],
    "beta": ["-1", "x", "1e9", "nan"],
}


def test_every_linked_parameter_has_bad_values_to_try():
    assert set(BAD) == {f.metadata["query"] for f in LINKED}


@pytest.mark.parametrize("spec", LINKED, ids=lambda f: f.metadata["query"])
def test_a_bad_value_in_any_parameter_is_refused_with_a_notice(spec):
    name = spec.metadata["query"]
    page = pages_of(spec)[0]
    for bad in BAD[name]:
        view, notices = View.from_query({name: bad}, page)
        assert getattr(view, spec.name) == getattr(View(), spec.name), (name, bad)
        assert len(notices) == 1 and f"link's {name}" in notices[0] and "reset" in notices[0], (name, bad, notices)


def test_a_parameter_of_another_page_or_an_unknown_one_is_left_out_with_a_notice():
    view, notices = View.from_query({"z": "1,2", "utm_source": "mail", "sample": "3"}, "overview")
    assert view.z is None and view.sample == 3
    assert len(notices) == 2 and all("means nothing on this page" in n for n in notices)


def test_a_linked_z_belongs_to_the_start_point_the_link_names():
    view, _ = View.from_query({"sample": "7", "z": "0.34,3.97"}, "traversal")
    assert view.z == (0.34, 3.97) and view.z_origin == view.traversal_origin() == ("sample", 7)
    view, _ = View.from_query({"base": "prior", "seed": "5", "z": "1,2"}, "traversal")
    assert view.z_origin == ("prior", 5)


def test_fit_brings_the_view_within_the_model_and_says_so():
    view, _ = View.from_query({"sample": "5000", "z": "1,2,3", "from": "10", "to": "2000", "selected": "1,999-1005",
                               "a": "class:12", "c": "sample:4000", "rows": "0,7", "box": "30,0,5,5"}, "traversal")
    view.a, view.c, view.selected = Operand("class", label=12), Operand("sample", sample=4000), (1, 999, 1000, 1005)
    view.pair_from, view.pair_to, view.box, view.contrast_end = 10, 2000, (30, 0, 5, 5), 3000
    notices = view.fit(n_test=1000, latent_dim=2, num_classes=10, image_size=(28, 28))
    assert view.sample == 999 and view.pair_from == 10 and view.pair_to == 999 and view.contrast_end == 999
    assert view.selected == (1, 999) and view.a is None and view.c.sample == 999
    assert view.z is None and view.z_origin is None, "a z of the wrong length starts again from the base"
    assert view.grid_rows == (0,) and view.box is None
    assert len(notices) == 9, notices
    assert all(n[0].isupper() and n.endswith(".") for n in notices)
    assert view.fit(n_test=1000, latent_dim=2, num_classes=10, image_size=(28, 28)) == [], "nothing left to fix"


def test_switching_model_resets_what_referred_to_the_old_one_and_keeps_the_rest():
    view = a_non_default_view()
    view.switch_model("file:mnist-vae")
    assert view.model == "file:mnist-vae"
    assert view.z is None and view.selected == () and view.a is None and not view.map_on and view.dataset == ""
    assert view.sample == 123 and view.seed == 77 and view.map_method == "umap", "choices that fit any model stay"


def test_normalise_rounds_numbers_to_what_the_link_writes():
    view = View(z=(0.35000000000000003, -1.0049), scale=0.30000000000000004, threshold=1.234567)
    view.normalise()
    assert view.z == (0.35, -1.0) and view.scale == 0.3 and view.threshold == 1.2346


@pytest.mark.parametrize("indices, text", [((3, 4, 5, 6, 7, 12), "3-7,12"), ((0,), "0"), ((1, 3, 5), "1,3,5"),
                                           ((), "")])
def test_indices_are_written_as_ranges(indices, text):
    assert Indices(10**7).format(indices) == text
    if text:
        assert Indices(10**7).parse(text) == indices


def test_a_classroom_server_leaves_the_traversal_grid_to_its_button():
    """make serve sets LATENT_EXPLORER_CLASSROOM: a slider move there redraws the picture only."""
    root = Path(__file__).resolve().parent.parent
    code = "from pages.ui.view import View; print(View().grid_follows)"
    env = {k: v for k, v in os.environ.items() if k != "LATENT_EXPLORER_CLASSROOM"}
    alone = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True)
    hall = subprocess.run([sys.executable, "-c", code], cwd=root, env={**env, "LATENT_EXPLORER_CLASSROOM": "1"},
                          capture_output=True, text=True, check=True)
    assert (alone.stdout.strip(), hall.stdout.strip()) == ("True", "False")
