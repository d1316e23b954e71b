"""The shipped checkpoints: each loads, is small, scores on its own test split what its metadata says,
and the shapes models show what the Disentanglement page teaches (β-VAE and β-TCVAE above β = 1)."""
from __future__ import annotations

import pytest
import torch

from apptest_support import ROOT, SHIPPED
from vae_core import analysis as A
from vae_core.catalog import DEFAULT_MODEL
from vae_core.checkpoint import load_checkpoint
from vae_core.datasets import load_dataset
from vae_core.metrics import encode_all, evaluate
from vae_core.trainer import EVAL_LIMIT

CHECKPOINTS = ROOT / "checkpoints"
SHAPES_MODELS = ("shapes-vae", "shapes-betavae", "shapes-tcvae")
SWEEP = sorted(p.relative_to(CHECKPOINTS).with_suffix("").as_posix()
               for p in (CHECKPOINTS / "beta-sweep").glob("*.safetensors"))  # mnist-vae's recipe at other β


def test_the_shipped_set():
    assert {DEFAULT_MODEL, "mnist-ae", "mnist-vae-2d", "mnist-cvae", "mnist-vae-no3", *SHAPES_MODELS,
            "digits-vae"} == set(SHIPPED)
    default = load_checkpoint(CHECKPOINTS / f"{DEFAULT_MODEL}.safetensors")
    assert DEFAULT_MODEL == "mnist-vae" and default.config.architecture == "conv" and default.config.latent_dim == 16
    assert default.dataset["name"] == "mnist-5k"


@pytest.mark.parametrize("name", SHIPPED + SWEEP)
def test_shipped_checkpoint_matches_its_metadata(name):
    path = CHECKPOINTS / f"{name}.safetensors"
    assert path.stat().st_size <= 5 * 1024 * 1024, "each shipped file stays under 5 MB"
    ckpt = load_checkpoint(path)
    cfg = ckpt.config
    assert cfg.likelihood == "bernoulli", "Bernoulli p(x|z): the ELBO is a log-probability, <= 0"
    data = load_dataset(ckpt.dataset["name"], seed=ckpt.train_state["train_config"]["seed"])
    assert tuple(cfg.input_shape) == data.image_shape
    torch.set_num_threads(1)
    x, y = data.x_test[:EVAL_LIMIT], data.y_test[:EVAL_LIMIT]
    result = evaluate(ckpt.model.eval(), x, y, seed=0)  # what the trainer scored after the last epoch
    assert result["recon"] > 0 and result["active_units"] == ckpt.metrics["active_units"]
    if cfg.probabilistic:
        assert result["elbo"] < 0 and result["elbo"] == pytest.approx(ckpt.metrics["test_elbo"], abs=0.05)
    else:  # the autoencoder: its reconstruction is its score
        assert "elbo" not in result and "test_elbo" not in ckpt.metrics
        assert result["recon"] == pytest.approx(ckpt.metrics["test_recon"], abs=0.05)


def test_the_shipped_beta_sweep_trades_rate_for_distortion():
    """mnist-vae and beta-sweep/: one recipe at β from 0.1 to 8; the rate falls and the distortion rises with β,
    and β = 1 has the best ELBO (what the Choosing β page draws)."""
    from vae_core.beta_sweep import beta_sweep

    assert len(SWEEP) == 6
    sweep = {name: load_checkpoint(CHECKPOINTS / f"{name}.safetensors") for name in SWEEP}
    points = beta_sweep((DEFAULT_MODEL, load_checkpoint(CHECKPOINTS / f"{DEFAULT_MODEL}.safetensors")), sweep)
    assert [p.beta for p in points] == [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    rates, distortions = [p.rate for p in points], [p.distortion for p in points]
    assert rates == sorted(rates, reverse=True) and distortions == sorted(distortions)
    assert min(points, key=lambda p: p.neg_elbo).beta == 1.0


def test_the_autoencoder_is_the_default_vae_without_its_kl_term():
    """mnist-ae and mnist-vae: the same architecture, data and seed; the autoencoder reconstructs better."""
    ae, vae = (load_checkpoint(CHECKPOINTS / f"{name}.safetensors") for name in ("mnist-ae", DEFAULT_MODEL))
    assert (ae.config.objective, vae.config.objective) == ("ae", "vae")
    same = ("input_shape", "latent_dim", "architecture", "hidden_sizes", "dense_sizes", "likelihood")
    assert all(getattr(ae.config, f) == getattr(vae.config, f) for f in same)
    assert ae.train_state["train_config"] == vae.train_state["train_config"]
    assert ae.dataset == vae.dataset
    assert ae.metrics["test_recon"] < vae.metrics["test_recon"]


@pytest.mark.slow
def test_beta_vae_and_beta_tcvae_disentangle_more_than_the_plain_vae():
    """MIG on the whole shapes test split (14,746 images): the ordering the Disentanglement page shows,
    and the β-TCVAE (40 epochs) at the MIG >= 0.25 the app promises (README, bench/analysis_report.py)."""
    data = load_dataset("shapes", seed=0)
    torch.set_num_threads(1)
    factors = data.factors_test.numpy()
    mig = {name: A.mutual_information_gap(encode_all(load_checkpoint(CHECKPOINTS / f"{name}.safetensors").model,
                                                     data.x_test)[0].numpy(), factors).mig
           for name in SHAPES_MODELS}
    assert mig["shapes-betavae"] > mig["shapes-vae"] and mig["shapes-tcvae"] > mig["shapes-vae"], mig
    assert mig["shapes-tcvae"] >= 0.25 and mig["shapes-tcvae"] > 3 * mig["shapes-vae"], mig


def test_a_square_stays_square_in_the_reconstruction():
    """shapes-vae (β = 1, the sharpest) on unrotated scale-1 squares and ellipses of the test split: the
    reconstruction's ink box is as wide as it is tall and filled like a square, the ellipse's is not."""
    data = load_dataset("shapes", seed=0)
    model = load_checkpoint(CHECKPOINTS / "shapes-vae.safetensors").model.eval()
    f = data.factors_test
    fills = {}
    for shape in (0, 1):
        pick = (f[:, 0] == shape) & (f[:, 1] == 1.0) & (f[:, 2] == 0)
        with torch.inference_mode():
            recon = model.reconstruct(data.x_test[pick][:20])[:, 0] > 0.5
        ratios = []
        for image in recon:
            rows, cols = image.any(1).nonzero().flatten(), image.any(0).nonzero().flatten()
            height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
            if shape == 0:
                assert abs(int(height) - int(width)) <= 2, "as tall as it is wide"
            ratios.append(float(image.sum() / (height * width)))
        fills[shape] = sum(ratios) / len(ratios)
    assert fills[0] > 0.9 and fills[1] < 0.85, fills
