"""The students' three questions through AppTest: the Autoencoder-or-VAE page (and every posterior-bound page
opened on the shipped autoencoder), Choosing β, and Few labels."""
from __future__ import annotations

from apptest_support import assert_clean, image_urls, open_link, start, view_of

from vae_core.analysis import SCORES


def test_the_page_sets_the_shipped_pair_side_by_side(checkpoints):
    at = start("pages/ae_vs_vae.py", "mnist-vae")
    assert_clean(at)
    assert [s.value[:2] for s in at.subheader] == ["1 ", "2 ", "3 ", "4 ", "5 "]
    assert at.selectbox(key="view.partner").value == "mnist-ae"
    captions = " ".join(img.caption for element in at.get("image") for img in element.proto.imgs)
    assert "Autoencoder · mnist-ae: test reconstruction" in captions and "VAE · mnist-vae: test reconstruction" in captions
    # the code clouds' numbers: the autoencoder's codes miss the prior's ball, the VAE's fill it
    ae_line, vae_line = [c.value for c in at.caption if "of the test codes lie inside" in c.value]
    assert ae_line.startswith("**0%**") and not vae_line.startswith("**0%**")
    assert len(image_urls(at)) >= 12


def test_opened_on_the_autoencoder_the_pair_is_the_same(checkpoints):
    at = start("pages/ae_vs_vae.py", "mnist-ae")
    assert_clean(at)
    assert at.selectbox(key="view.partner").value == "mnist-vae"
    assert any("Why are the VAE's pictures blurry" in s.value for s in at.subheader)


def test_the_draws_follow_the_seed_and_the_path_its_ends(checkpoints):
    at = start("pages/ae_vs_vae.py", "mnist-vae")
    first = image_urls(at)
    at.number_input(key="view.seed").set_value(5).run()
    seeded = image_urls(at)
    assert seeded[3:5] != first[3:5] and seeded[:3] == first[:3], "draws change, reconstructions do not"
    at.number_input(key="view.contrast_end").set_value(8).run()
    assert image_urls(at)[5:7] != seeded[5:7]
    assert view_of(at).contrast_end == 8


def test_a_link_to_test_images_beyond_the_split_shows_the_last(checkpoints):
    at = open_link("pages/ae_vs_vae.py", model="file:mnist-vae", end="5000", sample="4000")
    assert_clean(at)
    assert any("no test image #5000" in w.value for w in at.warning)
    assert (view_of(at).sample, view_of(at).contrast_end) == (999, 999)


def test_a_link_to_a_partner_the_server_lacks_says_so(checkpoints):
    at = open_link("pages/ae_vs_vae.py", model="file:mnist-vae", partner="mnist-gone")
    assert_clean(at)
    assert any("no mnist-gone" in w.value for w in at.warning)
    assert view_of(at).partner == "mnist-ae"


def test_without_a_model_of_the_other_kind_the_page_says_how_to_get_one(checkpoints):
    (checkpoints / "mnist-ae.safetensors").unlink()
    at = start("pages/ae_vs_vae.py", "mnist-vae")
    assert_clean(at)
    assert any("needs an autoencoder" in i.value and "Train page" in i.value for i in at.info)


def test_pages_that_need_a_posterior_say_why_an_autoencoder_has_none(checkpoints):
    overview = start("pages/overview.py", "mnist-ae")
    assert_clean(overview)
    assert any("plain **autoencoder**" in i.value for i in overview.info)
    metrics = {m.label: m.value for m in overview.metric}
    assert metrics["objective"] == "autoencoder (no KL)" and metrics["reconstruction"].endswith("nats")

    anomalies = start("pages/anomalies.py", "mnist-ae")
    assert_clean(anomalies)
    assert any("no ELBO to score by" in i.value for i in anomalies.info)
    assert list(anomalies.radio(key="view.score").options) == [SCORES["recon_error"]]
    assert view_of(anomalies).score == "recon_error"

    imputation = open_link("pages/imputation.py", model="file:mnist-ae", round_mode="gibbs")
    assert_clean(imputation)
    assert view_of(imputation).round_mode == "mean" and len(imputation.radio(key="view.round_mode").options) == 1

    traversal = start("pages/traversal.py", "mnist-ae")
    assert_clean(traversal)
    assert any("An autoencoder has no KL" in c.value for c in traversal.caption)

    latent_map = open_link("pages/latent_map.py", model="file:mnist-ae", map="on", method="pca", colour="kl")
    assert_clean(latent_map)
    colours = latent_map.selectbox(key="view.map_colour")
    assert "reconstruction error" in colours.options and not any("KL" in o for o in colours.options)
    assert colours.value == "label", "a link's KL colouring falls back on an autoencoder"


def test_an_autoencoder_link_with_a_code_beyond_the_prior_reopens(checkpoints):
    """An autoencoder's codes keep their own scale: a link's z far outside ±4 is its own start, not an error."""
    start_at = start("pages/traversal.py", "mnist-ae")
    z = view_of(start_at).z
    assert max(abs(c) for c in z) > 4, "the shipped autoencoder's codes lie outside N(0, I)'s ±4"
    at = open_link("pages/traversal.py", model="file:mnist-ae", z=",".join(f"{c:.2f}" for c in z))
    assert_clean(at)
    assert view_of(at).z == tuple(round(c, 2) for c in z)
    assert not at.warning


def test_choosing_beta_draws_the_shipped_sweep_and_moves_along_it(checkpoints):
    at = start("pages/choosing_beta.py", "mnist-vae")
    assert_clean(at)
    slider = at.select_slider(key="view.sweep_beta")
    assert list(slider.options) == ["0.1", "0.25", "0.5", "1", "2", "4", "8"] and view_of(at).sweep_beta == 1.0
    curve = at.get("plotly_chart")[0]
    import json
    traces = json.loads(curve.proto.spec)["data"]
    rates = traces[0]["x"]
    assert rates == sorted(rates, reverse=True), "the rate falls as β grows"
    shown = [m.value for m in at.markdown if m.value.startswith("**β = ")]
    assert [s.split("**")[1] for s in shown] == ["β = 0.5", "β = 1", "β = 2"]
    before = image_urls(at)
    slider.set_value(8.0).run()
    assert_clean(at)
    assert view_of(at).sweep_beta == 8.0 and image_urls(at) != before
    assert [m.value.split("**")[1] for m in at.markdown if m.value.startswith("**β = ")] == ["β = 2", "β = 4", "β = 8"]


def test_choosing_beta_link_to_a_beta_the_sweep_lacks_shows_the_nearest(checkpoints):
    at = open_link("pages/choosing_beta.py", model="file:mnist-vae", beta="3")
    assert_clean(at)
    assert any("no β = 3" in w.value for w in at.warning) and view_of(at).sweep_beta in (2.0, 4.0)


def test_choosing_beta_without_a_sweep_says_how_to_make_one(checkpoints):
    at = start("pages/choosing_beta.py", "digits-vae")
    assert_clean(at)
    assert any("no β sweep" in i.value for i in at.info)


def test_few_labels_measures_the_codes_against_pixels_and_pca(checkpoints):
    at = start("pages/few_labels.py", "digits-vae")
    assert_clean(at)
    table = at.table[0].value
    assert list(table.index) == ["latent μ", "PCA", "pixels"]
    assert list(table.columns) == ["1 per class", "5 per class", "10 per class", "50 per class", "100 per class"]
    assert all("% ± " in cell for cell in table.to_numpy().ravel())
    verdict = next(m.value for m in at.markdown if m.value.startswith("Measured on this model"))
    assert "with 1 label per class" in verdict and "with 100 labels per class" in verdict
    conditional = start("pages/few_labels.py", "mnist-cvae")
    assert_clean(conditional)
    assert any("conditional" in i.value for i in conditional.info)


def test_a_link_z_beyond_the_sliders_is_brought_within_them(checkpoints):
    at = open_link("pages/traversal.py", model="file:mnist-vae", z=",".join(["9"] + ["0"] * 15))
    assert_clean(at)
    assert any("beyond this model's sliders" in w.value for w in at.warning)
    z = view_of(at).z
    assert z[0] == max(abs(c) for c in z) and 4 <= z[0] < 9


def test_a_conditional_model_or_one_of_another_latent_size_has_no_partner(checkpoints):
    for model in ("mnist-cvae", "mnist-vae-2d"):
        at = start("pages/ae_vs_vae.py", model)
        assert_clean(at)
        assert at.info and not at.get("image"), model


def test_a_partner_in_a_subfolder_survives_the_link(checkpoints):
    at = open_link("pages/ae_vs_vae.py", model="file:mnist-ae", partner="beta-sweep/mnist-beta-2")
    assert_clean(at)
    assert view_of(at).partner == "beta-sweep/mnist-beta-2" and not at.warning


def test_an_autoencoder_without_a_class_scores_it_by_reconstruction_alone(checkpoints):
    from vae_core.recipe import Recipe
    from vae_core.trainer import Trainer

    recipe = Recipe(objective="ae", hidden_sizes=(32,), latent_dim=3, epochs=2, holdout_class=3)
    data = recipe.load_data()
    Trainer(recipe.build_model(data), data, recipe.train_config(device="cpu"),
            checkpoint_path=checkpoints / "ae-no3.safetensors").fit()
    at = start("pages/anomalies.py", "ae-no3")
    assert_clean(at)
    assert [m.label for m in at.metric if m.label.startswith("ROC AUC")] == [f"ROC AUC · {SCORES['recon_error']}"]
