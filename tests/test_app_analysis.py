"""The Anomalies, Imputation and Disentanglement pages through Streamlit's AppTest: each renders with
every shipped checkpoint it fits, and its main controls change what it shows."""
from __future__ import annotations

import pytest

from apptest_support import SHIPPED, assert_clean, image_urls, session_of, start

FACTOR_MODELS = [m for m in SHIPPED if m.startswith("shapes")]
def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_held_out_and_factor_models_are_shipped():
    assert "mnist-vae-no3" in SHIPPED
    assert {"shapes-vae", "shapes-betavae", "shapes-tcvae"} <= set(FACTOR_MODELS)


@pytest.mark.parametrize("model", SHIPPED)
def test_anomalies_renders_with_every_shipped_checkpoint(checkpoints, model):
    at = start("pages/anomalies.py", model)
    assert_clean(at)
    assert at.title[0].value == "Anomalies"
    assert len(image_urls(at)) == 2, "the top-k images and their reconstructions"
    flagged, total = metrics(at)["Images above the threshold"].split(" of ")
    assert 0 < int(flagged) < int(total), "the default threshold (95th percentile) flags a few"
    aucs = {k: float(v) for k, v in metrics(at).items() if k.startswith("ROC AUC")}
    if model == "mnist-vae-no3":
        assert len(aucs) == 2 and all(v > 0.8 for v in aucs.values()), aucs
    else:
        assert not aucs, "only a model trained with a class held out gets the held-out demo"


def test_anomaly_threshold_changes_the_count(checkpoints):
    at = start("pages/anomalies.py")
    slider = at.slider(key="view.threshold")
    before = metrics(at)["Images above the threshold"]
    slider.set_value(slider.min).run()
    assert_clean(at)
    after = metrics(at)["Images above the threshold"]
    assert after != before and int(after.split(" of ")[0]) > int(before.split(" of ")[0])
    at.slider(key="view.threshold").set_value(at.slider(key="view.threshold").max).run()
    assert metrics(at)["Images above the threshold"].startswith("0 of ")


def test_anomaly_score_choice_and_top_k_change_the_output(checkpoints):
    at = start("pages/anomalies.py", "mnist-vae-no3")
    before = image_urls(at)
    at.radio(key="view.score").set_value("recon_error").run()
    assert_clean(at)
    assert at.slider(key="view.threshold").max < 1.0, "the threshold moves to the new score's range"
    at.slider(key="view.top_k").set_value(16).run()
    assert_clean(at)
    assert image_urls(at) != before


def test_anomaly_scores_go_on_the_latent_map_when_there_is_one(checkpoints):
    at = start("pages/anomalies.py", "digits-vae")
    assert not [c for c in at.get("plotly_chart") if "anomaly_map" in str(c.proto.id)]
    assert any("Latent map page" in c.value for c in at.caption)
    at = start("pages/anomalies.py", "mnist-vae-2d")  # a 2-D latent is its own map
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 2, "the histogram and the map coloured by score"


@pytest.mark.parametrize("model", SHIPPED)
def test_imputation_renders_with_every_shipped_checkpoint(checkpoints, model):
    at = start("pages/imputation.py", model)
    assert_clean(at)
    assert at.title[0].value == "Imputation"
    assert len(image_urls(at)) == 4, "original, masked, filled and the iterations strip"
    values = {k: float(v) for k, v in metrics(at).items()}
    filled = next(v for k, v in values.items() if k.startswith("VAE fill"))
    assert len(values) == 3 and all(v >= 0 for v in values.values())
    if model.startswith(("digits", "mnist")):  # test digit #0 under the centre square: the fill beats black
        assert filled < values["masked image, hidden = 0"]


def test_mask_size_changes_the_masked_image(checkpoints):
    at = start("pages/imputation.py", "digits-vae")
    original, masked, *_ = image_urls(at)
    at.slider(key="view.box.3").set_value(8).run()
    assert_clean(at)
    urls = image_urls(at)
    assert urls[0] == original, "the original does not depend on the mask"
    assert urls[1] != masked
    assert any(c.value.startswith("24 of 64 pixels hidden") for c in at.caption), "4 rows × the 6 columns left of 8"


def test_random_mask_iterations_and_fill_change_the_result(checkpoints):
    at = start("pages/imputation.py")
    at.radio(key="view.mask").set_value("random").run()
    assert_clean(at)
    masked = image_urls(at)[1]
    at.slider(key="view.fraction").set_value(0.8).run()
    assert image_urls(at)[1] != masked
    filled = image_urls(at)[2]
    at.slider(key="view.rounds").set_value(1).run()
    assert_clean(at)
    assert image_urls(at)[2] != filled
    at.radio(key="view.fill").set_value("mean").run()
    at.radio(key="view.round_mode").set_value("gibbs").run()
    assert_clean(at)


@pytest.mark.parametrize("model", SHIPPED)
def test_disentanglement_renders_or_explains(checkpoints, model):
    at = start("pages/disentanglement.py", model)
    assert_clean(at)
    assert at.title[0].value == "Disentanglement"
    if model in FACTOR_MODELS:
        migs = [float(m.value) for m in at.metric if m.label == "MIG"]
        assert len(migs) == 3, "this model and, by default, the two other shapes models beside it"
        assert all(0.0 <= v <= 1.0 for v in migs)
        assert len(image_urls(at)) == 30, "one traversal row per latent dimension, for all three models"
        assert len(at.get("plotly_chart")) == 3, "the heat maps"
        assert {c.value for c in at.caption} >= {"VAE", "β-VAE (β = 6)", "β-TCVAE (β = 6)"}, "the objectives named"
    else:
        assert any("no ground-truth factors" in i.value for i in at.info)
        assert not at.metric and not image_urls(at)


def test_the_comparison_can_be_narrowed(checkpoints):
    at = start("pages/disentanglement.py", "shapes-vae")
    box = at.multiselect(key="view.compare")
    assert box.value == ["shapes-betavae", "shapes-tcvae"] and "shapes-vae" not in box.options
    assert not any(o.startswith(("digits", "mnist")) for o in box.options), "only models of data with factors"
    all_three = image_urls(at)
    at.multiselect(key="view.compare").unselect("shapes-betavae").run()
    assert_clean(at)
    assert len([m for m in at.metric if m.label == "MIG"]) == 2
    assert image_urls(at) == all_three[:10] + all_three[20:], "the β-VAE panel is gone, the others unchanged"
    at.multiselect(key="view.compare").unselect("shapes-tcvae").run()
    assert [m.value for m in at.metric if m.label == "β"] == ["1"], "this model only"
    at = start("pages/disentanglement.py", "shapes-tcvae")
    assert at.multiselect(key="view.compare").value == ["shapes-betavae", "shapes-vae"]
    assert [m.value for m in at.metric if m.label == "β"] == ["6", "6", "1"]


def test_a_beta_sweep_of_the_open_models_recipe_is_one_click_from_training(checkpoints):
    at = start("pages/disentanglement.py", "shapes-tcvae")
    button = at.button(key="train_beta_sweep")
    assert button.label == "Train this recipe at β = 1, 2, 4, 8"
    button.click().run()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Train"]
    form = session_of(at).train.form
    assert (form.dataset, form.architecture, form.hidden, form.dense, form.latent_dim) == \
        ("shapes", "conv", "32, 32, 64, 64", "256", 10), "the network of the open model"
    assert (form.objective, form.beta, tuple(form.sweep), form.epochs, form.kl_warmup) == \
        ("beta-tcvae", 1.0, (2.0, 4.0, 8.0), 40, 0), "its objective, epochs and KL warm-up, at β = 1, 2, 4, 8"
    assert (form.lr, form.lr_schedule, form.batch_size, form.holdout) == (1e-3, "constant", 64, -1), \
        "how it trained (the shipped models: a constant rate), on every class"
    assert at.text_input(key="train.form.dense").value == "256"
    start_button = at.button(key="train_start")
    assert start_button.label.startswith("Start") and not start_button.disabled, "the four runs fit the server's limits"


def test_disentanglement_controls_change_the_traversals(checkpoints):
    at = start("pages/disentanglement.py", "shapes-vae")
    before = image_urls(at)
    at.slider(key="view.mig_span").set_value(1.0).run()
    assert_clean(at)
    after = image_urls(at)
    assert after != before
    at.radio(key="view.mig_base").set_value("sample").run()
    assert_clean(at)
    assert image_urls(at) != after
    at.select_slider(key="view.mig_bins").set_value(50).run()
    assert_clean(at)


def test_an_uploaded_picture_is_marked_on_the_map_by_the_maps_own_transform(checkpoints):
    """Your picture's μ goes on the map where PCA itself puts it (not at its neighbours' average)."""
    import base64
    import json

    import numpy as np
    import torch

    from apptest_support import open_link
    from vae_core.checkpoint import load_checkpoint
    from vae_core.datasets import load_dataset
    from vae_core.images import png_bytes, to_uint8
    from vae_core.projection import ProjectionParams, fit_pca, neighbour_average

    data = load_dataset("digits")
    picture = (data.x_test[5:6] + data.x_test[9:10]) / 2  # a blend: a μ between the data, where methods differ
    at = open_link("pages/anomalies.py", model="file:digits-vae", map="on", method="pca")
    at.file_uploader(key="anomaly_upload").upload("five.png", png_bytes(to_uint8(picture)[0]), "image/png").run()
    assert_clean(at)
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "anomaly_map" in str(c.proto.id))
    mark = next(trace for trace in spec["data"] if trace.get("name") == "your picture")
    model = load_checkpoint(checkpoints / "digits-vae.safetensors").model
    with torch.inference_mode():
        z_test, z_new = model.embed(data.x_test).numpy(), model.embed(picture).numpy()
    expected = fit_pca(z_test, ProjectionParams("pca", 2))[1].transform(z_new)[0]
    def values(x):  # plotly sends arrays as base64 typed arrays
        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]) if isinstance(x, dict) else np.asarray(x)

    shown = [values(mark["x"])[0], values(mark["y"])[0]]
    np.testing.assert_allclose(shown, expected, atol=0.02)  # the PNG rounds pixels to 1/255
    neighbours = neighbour_average(z_new, z_test, fit_pca(z_test, ProjectionParams("pca", 2))[0])[0]
    assert np.linalg.norm(neighbours - expected) > 0.1, "the two placements differ here, so the test tells them apart"
