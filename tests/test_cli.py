"""The command line as a user runs it: `python -m vae_core ...` in subprocesses for the main paths
(train, eval, sample, resume, a help page, errors through the real entry point), and through
`cli.main(argv)` in this process for the many small cases, which would otherwise each pay seconds
for importing torch. The subprocesses that do not depend on each other are started together.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from vae_core.checkpoint import load_checkpoint
from vae_core.cli import main
from vae_core.datasets import DATASETS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
SMALL = ["--dataset", "digits", "--hidden", "32", "16", "--latent-dim", "3", "--batch-size", "128", "--quiet"]


def run_all(commands: dict[str, list[str]], timeout: float = 240) -> dict[str, subprocess.CompletedProcess]:
    """Run `python -m vae_core ARGS` for every entry at once; results by the same keys."""
    procs = {key: subprocess.Popen([sys.executable, "-m", "vae_core", *map(str, args)], cwd=ROOT, env=ENV,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for key, args in commands.items()}
    results = {}
    try:
        for key, proc in procs.items():
            out, err = proc.communicate(timeout=timeout)
            results[key] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout}\n{result.stderr}"


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2 and a single 'error: ...' line on stderr, no traceback; returns the line."""
    assert result.returncode == 2, f"{result.args}: status {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).model.state_dict()


def cli(capsys, *args) -> subprocess.CompletedProcess:
    """`python -m vae_core ARGS` in this process: status, stdout, stderr (argparse's exits included)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["vae_core", *map(str, args)], code, out, err)


# -- subprocesses: one round of training and what reads it -------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli")
    (path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + bytes(64))
    return path


@pytest.fixture(scope="module")
def trained(work) -> Path:
    """A 2-epoch run, in this process: the subprocesses below read it."""
    path = work / "a.safetensors"
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def runs(work, trained) -> dict:
    """All the subprocesses, started together."""
    shutil.copy(trained, work / "resume.safetensors")
    return run_all({
        "train": ["train", *SMALL, "--epochs", 2, "--out", work / "sub.safetensors"],
        "eval": ["eval", trained, "--iwae-k", 20],
        "sample": ["sample", trained, "--n", 16, "--out", work / "s0.png"],
        "resume": ["train", *SMALL, "--epochs", 3, "--resume", "--out", work / "resume.safetensors"],
        "help": ["--help"],
        "eval_corrupt": ["eval", work / "corrupt.safetensors"],
        # no --quiet: the progress bar is on stderr too
        "diverge": ["train", "--dataset", "digits", "--hidden", "32", "--latent-dim", "2", "--epochs", 3,
                    "--lr", "1e8", "--out", work / "d.safetensors"],
    })


def test_train_writes_a_checkpoint_with_its_history(work, runs):
    result = runs["train"]
    assert_ok(result)
    assert "saved" in result.stdout and "test ELBO" in result.stdout
    ckpt = load_checkpoint(work / "sub.safetensors")
    assert [r["epoch"] for r in ckpt.history] == [1, 2]
    assert ckpt.config.latent_dim == 3 and ckpt.config.hidden_sizes == (32, 16)
    assert ckpt.dataset["name"] == "digits" and ckpt.train_state["epoch"] == 2
    assert ckpt.optimizer_state is not None  # resumable
    reported = float(re.search(r"test ELBO (-?[\d.]+)", result.stdout)[1])
    assert reported == pytest.approx(ckpt.metrics["test_elbo"], abs=0.01)


def test_train_with_the_same_seed_is_reproducible(work, trained, runs, capsys):
    """The same command in another process (other RNG history) gives the same weights; another seed does not."""
    a, b = weights_of(trained), weights_of(work / "sub.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert_ok(cli(capsys, "train", *SMALL, "--epochs", 2, "--seed", 1, "--out", work / "seed1.safetensors"))
    c = weights_of(work / "seed1.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_train_a_beta_tcvae_with_dense_layers_and_no_optimizer_state(work, capsys):
    """The Burgess-style options and the beta-TCVAE objective reach the checkpoint; without Adam's
    moments the file is smaller and --resume restarts Adam."""
    out = work / "tc.safetensors"
    args = ["train", "--dataset", "digits", "--arch", "conv", "--hidden", "16", "16", "--dense", "32", "--latent-dim",
            "4", "--objective", "beta-tcvae", "--beta", "6", "--epochs", "1", "--quiet", "--out", out]
    assert_ok(cli(capsys, *args, "--no-optimizer-state"))
    ckpt = load_checkpoint(out)
    assert (ckpt.config.objective, ckpt.config.beta, ckpt.config.dense_sizes) == ("beta-tcvae", 6.0, (32,))
    assert ckpt.optimizer_state is None and ckpt.train_state["train_config"]["save_optimizer"] is False
    lean = out.stat().st_size
    assert_ok(cli(capsys, *args, "--force"))
    assert load_checkpoint(out).optimizer_state is not None and out.stat().st_size > 2.5 * lean
    bad = cli(capsys, "train", "--dataset", "digits", "--objective", "wae", "--out", work / "w.safetensors")
    assert bad.returncode == 2 and "beta-tcvae" in bad.stderr


def test_eval_reports_elbo_iwae_and_active_units(trained, runs):
    result = runs["eval"]
    assert_ok(result)
    out = result.stdout
    assert "ELBO" in out and "IWAE" in out and "active units" in out and "359 samples" in out
    elbo = float(re.search(r"ELBO\s+(-?[\d.]+)", out)[1])
    iwae = float(re.search(r"IWAE \(k=20\s*\)\s+(-?[\d.]+)", out)[1])
    active = re.search(r"active units\s+(\d+) / 3", out)
    assert active and 0 <= int(active[1]) <= 3
    # eval rebuilds the same test split from the checkpoint's seed: the same number as training logged
    assert elbo == pytest.approx(load_checkpoint(trained).metrics["test_elbo"], abs=2e-3)
    assert iwae > elbo  # the importance-weighted bound is the tighter one


def test_eval_limit_and_skipping_iwae(trained, capsys):
    result = cli(capsys, "eval", trained, "--iwae-k", 0, "--limit", 50)
    assert_ok(result)
    assert "50 samples" in result.stdout and "IWAE" not in result.stdout


def test_a_held_out_class_run_evaluates_on_the_full_test_split(work, capsys):
    path = work / "held.safetensors"
    assert_ok(cli(capsys, "train", *SMALL, "--epochs", 1, "--holdout-class", 3, "--out", path))
    assert load_checkpoint(path).dataset["name"] == "digits-without-3"
    result = cli(capsys, "eval", path, "--iwae-k", 0)
    assert_ok(result)
    assert "359 samples" in result.stdout


def test_sample_writes_a_png_grid(work, trained, runs, capsys):
    assert_ok(runs["sample"])
    assert "wrote 16 samples" in runs["sample"].stdout
    data = (work / "s0.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "L"  # one channel, like the digits
    # 16 samples: a 4 x 4 grid of 8 px tiles with 1 px gaps, enlarged to about 48 px per tile
    tile = 8 + 1
    assert image.size == ((4 * tile + 1) * 6, (4 * tile + 1) * 6)
    ckpt = trained  # the in-process run: identical weights
    assert_ok(cli(capsys, "sample", ckpt, "--n", 16, "--out", work / "s0_again.png"))
    assert_ok(cli(capsys, "sample", ckpt, "--n", 16, "--seed", 1, "--out", work / "s1.png"))
    assert (work / "s0_again.png").read_bytes() == data  # same seed, same picture
    assert (work / "s1.png").read_bytes() != data
    assert_ok(cli(capsys, "sample", ckpt, "--n", 5, "--temperature", 0.5, "--out", work / "odd.png"))
    assert Image.open(work / "odd.png").size == ((3 * tile + 1) * 6, (2 * tile + 1) * 6)  # 3 columns, 2 rows


def test_export_onnx_writes_the_decoder_the_browser_runs(work, trained, capsys):
    import numpy as np

    from vae_core.checkpoint import load_checkpoint
    from vae_core.onnx_decoder import run_decoder

    out = work / "decoder.onnx"
    result = cli(capsys, "export-onnx", trained, "--out", out)
    assert_ok(result)
    assert f"wrote {out}" in result.stdout and "inputs z -> image (N, 1, 8, 8)" in result.stdout
    model = load_checkpoint(trained).model.eval()
    z = np.random.default_rng(0).normal(size=(4, model.config.latent_dim)).astype(np.float32)
    with torch.inference_mode():
        expected = model.decode(torch.from_numpy(z)).numpy()
    assert np.abs(run_decoder(out.read_bytes(), z) - expected).max() <= 1e-4
    assert not list(work.glob(".decoder.onnx*")), "no temporary file left behind"


# -- resume ------------------------------------------------------------------------------------------

def test_resume_trains_more_epochs(work, trained, runs):
    assert_ok(runs["resume"])
    before, resumed = load_checkpoint(trained), load_checkpoint(work / "resume.safetensors")
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == before.history
    w0, w1 = before.model.state_dict(), resumed.model.state_dict()
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)


def test_resume_of_a_finished_run_says_so(work, trained, capsys):
    path = work / "done.safetensors"
    shutil.copy(trained, path)
    result = cli(capsys, "train", *SMALL, "--epochs", 2, "--resume", "--out", path)
    assert_ok(result)
    assert "already has 2 epochs" in result.stdout
    assert path.read_bytes() == trained.read_bytes()


# -- help --------------------------------------------------------------------------------------------

def test_help_in_a_subprocess(runs):
    assert_ok(runs["help"])
    for text in ("train", "eval", "sample", "datasets", "examples:", "torchrun"):
        assert text in runs["help"].stdout


@pytest.mark.parametrize("command,expected", [
    ("train", ["--dataset", "--epochs", "--out", "--resume", "--force", "--kl-warmup", "--lr-schedule", "0.005 for conv", "32 for conv"]),
    ("eval", ["--iwae-k", "--limit"]),
    ("sample", ["--n", "--temperature", "--label", "--out"]),
    ("export-onnx", ["--out", "one-hot", "1e-4"]),
])
def test_subcommand_help_shows_options_and_examples(capsys, command, expected):
    result = cli(capsys, command, "--help")
    assert_ok(result)
    assert f"usage: python -m vae_core {command}" in result.stdout
    examples = result.stdout.split("examples:", 1)[1]
    assert f"python -m vae_core {command} " in examples
    assert all(f" {command} " in line for line in examples.strip().splitlines())  # only its own examples
    for text in expected:
        assert text in result.stdout


def test_datasets_lists_the_names(capsys):
    result = cli(capsys, "datasets")
    assert_ok(result)
    listed = [line.split()[0] for line in result.stdout.strip().splitlines()]
    assert listed == list(DATASETS)


# -- errors: one line, status 2, no traceback --------------------------------------------------------

def test_errors_through_the_real_entry_point(work, runs):
    assert_one_line_error(runs["eval_corrupt"], "corrupt.safetensors")
    # with the progress bar on, the error is still the last line, and there is no traceback
    diverge = runs["diverge"]
    assert diverge.returncode == 2 and "Traceback" not in diverge.stderr
    assert diverge.stderr.strip().splitlines()[-1].startswith("error: training diverged at epoch 1")
    assert not (work / "d.safetensors").exists()


def test_existing_out_needs_force_or_resume(work, capsys):
    taken = work / "taken.safetensors"
    taken.write_bytes(b"someone else's file")
    assert_one_line_error(cli(capsys, "train", *SMALL, "--epochs", 1, "--out", taken),
                          "taken.safetensors exists", "--resume", "--force")
    assert taken.read_bytes() == b"someone else's file"


def test_out_must_be_safetensors(work, capsys):
    assert_one_line_error(cli(capsys, "train", *SMALL, "--epochs", 1, "--out", work / "model.pt"),
                          ".safetensors", "model.pt")
    assert not (work / "model.pt").exists()


def test_datasets_download_puts_mnist_where_training_finds_it(tmp_path, capsys):
    """Offline here, so the files are already in place (IDX files the test writes): torchvision checks
    them and fetches nothing; the command reports what training will see."""
    from conftest import write_mnist_like

    write_mnist_like(tmp_path, "MNIST", n_train=30, n_test=12)
    result = cli(capsys, "datasets", "--download", "mnist", "--data-root", tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"mnist is under {tmp_path}: 30 training and 12 test images" in result.stdout
    bad = cli(capsys, "datasets", "--download", "imagenet")
    assert bad.returncode == 2 and "mnist, fashion-mnist, kmnist, cifar10" in bad.stderr


def test_unknown_dataset(work, capsys):
    assert_one_line_error(cli(capsys, "train", "--dataset", "imagenet", "--out", work / "u.safetensors"),
                          "imagenet", "digits", "npz:PATH")


def test_invalid_settings(work, trained, capsys):
    assert_one_line_error(cli(capsys, "train", *SMALL, "--epochs", 0, "--out", work / "e.safetensors"), "epochs")
    assert_one_line_error(cli(capsys, "sample", trained, "--n", 0), "--n")
    assert_one_line_error(cli(capsys, "eval", trained, "--limit", 0), "--limit")


def test_diverging_run(work, capsys):
    result = cli(capsys, "train", *SMALL, "--epochs", 3, "--lr", "1e8", "--out", work / "d_quiet.safetensors")
    assert_one_line_error(result, "diverged at epoch 1", "learning rate")
    assert not (work / "d_quiet.safetensors").exists()


def test_diverging_resumed_run_keeps_the_good_checkpoint(work, trained, capsys):
    path = work / "diverge.safetensors"
    shutil.copy(trained, path)
    result = cli(capsys, "train", *SMALL, "--epochs", 4, "--lr", "1e8", "--resume", "--out", path)
    assert_one_line_error(result, "diverged at epoch 3", "checkpoint from epoch 2 was kept")
    assert len(load_checkpoint(path).history) == 2
    assert path.read_bytes() == trained.read_bytes()


def test_corrupt_and_missing_checkpoints(work, trained, capsys):
    corrupt = work / "corrupt.safetensors"
    assert_one_line_error(cli(capsys, "sample", corrupt, "--out", work / "never.png"), "corrupt.safetensors")
    assert not (work / "never.png").exists()
    assert_one_line_error(cli(capsys, "eval", work / "missing.safetensors"), "missing.safetensors", "no such file")


def test_unwritable_sample_output(work, trained, capsys):
    result = cli(capsys, "sample", trained, "--n", 4, "--out", work / "no" / "such" / "dir.png")
    assert_one_line_error(result, "dir.png")


# -- one entry point: ONNX pairs, pythae folders, a user's class -------------------------------------

def _elbo(stdout: str) -> float:
    return float(re.search(r"ELBO\s+(-?[0-9.]+)", stdout)[1])


def test_export_onnx_pair_evaluates_like_the_checkpoint(work, trained, capsys):
    out = work / "pair"
    result = cli(capsys, "export-onnx", trained, "--out", out)
    assert_ok(result)
    assert {p.name for p in out.iterdir()} == {"encoder.onnx", "decoder.onnx", "model.json"}
    assert f"python -m vae_core eval {out}`" in result.stdout and f"--checkpoint {out}`" in result.stdout
    own = cli(capsys, "eval", trained, "--iwae-k", 0)
    pair = cli(capsys, "eval", out, "--iwae-k", 0)
    assert_ok(pair)
    assert abs(_elbo(pair.stdout) - _elbo(own.stdout)) < 0.01, "ONNX Runtime scores the same model the same"
    zipped = shutil.make_archive(str(work / "pair-zip"), "zip", root_dir=work, base_dir="pair")
    assert abs(_elbo(cli(capsys, "eval", zipped, "--iwae-k", 0).stdout) - _elbo(own.stdout)) < 0.01


def test_eval_a_pythae_folder(tmp_path, capsys):
    from pythae.models import VAE as PythaeVAE, VAEConfig as PythaeConfig

    torch.manual_seed(0)
    PythaeVAE(PythaeConfig(input_dim=(1, 8, 8), latent_dim=3)).save(str(tmp_path / "run"))
    result = cli(capsys, "eval", tmp_path / "run", "--iwae-k", 0)
    assert_ok(result)
    assert "run on digits test (359 samples)" in result.stdout, "the dataset follows from its 8x8 input"
    assert "active units" in result.stdout


def test_eval_a_users_class_with_its_arguments_and_ranges(vanilla_vae, capsys):
    code, ckpt = vanilla_vae
    flags = ["--model", f"{code}:VanillaVAE", "--model-kwargs", '{"in_channels": 1, "latent_dim": 4}',
             "--weights", ckpt, "--input-range=-1,1", "--dataset", "digits", "--iwae-k", 0]
    right = cli(capsys, "eval", *flags, "--decoder-outputs", "tanh")
    assert_ok(right)
    assert "vanilla_vae.py:VanillaVAE on digits test" in right.stdout and not right.stderr
    wrong = cli(capsys, "eval", *flags, "--decoder-outputs", "logits")
    assert wrong.returncode == 0 and "warning: " in wrong.stderr and "output range" in wrong.stderr
    assert _elbo(wrong.stdout) < _elbo(right.stdout)


def test_model_problems_are_one_line_errors(work, trained, vanilla_vae, tmp_path, capsys):
    import zipfile

    code, ckpt = vanilla_vae
    own = ["--model", f"{code}:VanillaVAE", "--weights", ckpt]
    assert_one_line_error(cli(capsys, "eval", *own, "--model-kwargs", "{latent_dim: 4}"), "not JSON")
    assert_one_line_error(cli(capsys, "eval", *own, "--model-kwargs", '{"latent_dim": 4}'),
                          "VanillaVAE(**{", "failed", "in_channels")
    assert_one_line_error(cli(capsys, "eval", "--model", f"{code}:VanillaVAE"), "--model and --weights")
    assert_one_line_error(cli(capsys, "eval"), "name a model")
    assert_one_line_error(cli(capsys, "eval", tmp_path / "nothing-here"), "no such file or folder")
    assert_one_line_error(cli(capsys, "eval", ckpt), "not a .safetensors checkpoint", "--model file.py:Class")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../model.json", "{}")
    assert_one_line_error(cli(capsys, "eval", evil), "points outside the zip")
    pair = work / "pair-truncated"
    assert_ok(cli(capsys, "export-onnx", trained, "--out", pair))
    (pair / "encoder.onnx").write_bytes((pair / "encoder.onnx").read_bytes()[:500])
    assert_one_line_error(cli(capsys, "eval", pair), "encoder.onnx: truncated or not an ONNX file")


def test_map_precomputes_into_the_apps_cache_and_an_npz(work, trained, tmp_path, monkeypatch, capsys):
    import numpy as np

    monkeypatch.setenv("LATENT_EXPLORER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "digits-pca.npz"
    first = cli(capsys, "map", trained, "--method", "pca", "--out", out)
    assert_ok(first)
    assert "encoding 359 test images of digits" in first.stdout and "projecting 359 points with pca" in first.stdout
    assert f"cached in {tmp_path / 'cache' / 'maps'}" in first.stdout
    with np.load(out, allow_pickle=False) as data:
        assert data["coords"].shape == (359, 2) and data["labels"].shape == (359,)
        assert '"method": "pca"' in str(data["key"])
    again = cli(capsys, "map", trained, "--method", "pca")
    assert "found in the cache" in again.stdout and "projecting" not in again.stdout
    assert_one_line_error(cli(capsys, "map", trained, "--out", tmp_path / "x.csv"), "--out must end in .npz")


def test_map_prints_the_projections_progress(work, trained, tmp_path, monkeypatch, capsys):
    """A long map says how far it got and how long is left, in the words of the app's progress bar.
    The CLI serves no pages, so its t-SNE takes every core (the app keeps one free)."""
    import re

    import vae_core.cli
    import vae_core.map_cache
    import vae_core.threads

    monkeypatch.setenv("LATENT_EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vae_core.cli, "PROGRESS_EVERY_S", 0.05)
    monkeypatch.setattr(vae_core.threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    threads_asked, project_fitted = [], vae_core.map_cache.project_fitted
    monkeypatch.setattr(vae_core.map_cache, "project_fitted",
                        lambda z, params, progress, threads: threads_asked.append(threads)
                        or project_fitted(z, params, progress, threads))
    result = cli(capsys, "map", trained, "--method", "tsne", "--perplexity", "10")
    assert_ok(result)
    assert threads_asked == [2]
    from vae_core.projection import TSNE_EARLY_ITERATIONS, TSNE_ITERATIONS

    total = f"{TSNE_EARLY_ITERATIONS + TSNE_ITERATIONS:,}"
    steps = [int(n.replace(",", "")) for n in re.findall(rf"t-SNE: iteration ([\d,]+) of {total}", result.stdout)]
    assert len(steps) >= 2 and steps == sorted(steps) and steps[-1] > steps[0], result.stdout
    assert "left" in result.stdout


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_train_takes_its_architectures_optimisation_unless_told(architecture):
    from vae_core.cli import _parser, _recipe
    from vae_core.recipe import DEFAULT_OPTIMISATION
    default = DEFAULT_OPTIMISATION[architecture]
    recipe = _recipe(_parser().parse_args(["train", "--arch", architecture, "--out", "x.safetensors"]), 1.0)
    assert (recipe.lr, recipe.lr_schedule, recipe.batch_size) == (default.lr, default.lr_schedule, default.batch_size)
    told = _recipe(_parser().parse_args(["train", "--arch", architecture, "--lr", "2e-4", "--lr-schedule", "constant",
                                         "--batch-size", "48", "--out", "x.safetensors"]), 1.0)
    assert (told.lr, told.lr_schedule, told.batch_size) == (2e-4, "constant", 48)
    assert told.train_config().lr_schedule == "constant" and told.train_config().batch_size == 48


def test_a_resumed_run_keeps_its_own_batch_rate_and_schedule(work, capsys):
    path = work / "kept.safetensors"
    run = ["train", "--dataset", "digits", "--hidden", "32", "16", "--latent-dim", "3", "--out", path]
    first = cli(capsys, *run, "--epochs", 1, "--lr", "2e-3", "--lr-schedule", "constant", "--batch-size", 64, "--quiet")
    assert_ok(first)
    resumed = cli(capsys, *run, "--epochs", 2, "--resume")
    assert_ok(resumed)
    saved = load_checkpoint(path).train_state["train_config"]
    assert (saved["lr"], saved["lr_schedule"], saved["batch_size"], saved["epochs"]) == (2e-3, "constant", 64, 2)
    assert "one-cycle" not in resumed.stderr
    # A flag given on resume wins; one-cycle over a longer run says that its cycle changes.
    again = cli(capsys, *run, "--epochs", 3, "--lr-schedule", "one-cycle", "--resume")
    assert_ok(again)
    assert "note: one-cycle spans the whole run" in again.stderr
    saved = load_checkpoint(path).train_state["train_config"]
    assert (saved["lr"], saved["lr_schedule"], saved["batch_size"]) == (2e-3, "one-cycle", 64)
