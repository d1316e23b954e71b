"""Command line: python -m vae_core {train, eval, sample, export-onnx, map, datasets}. Errors print one line, exit 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import LR_SCHEDULES, OBJECTIVES
from .projection import METHODS, ProjectionParams
from .external import DECODER_OUTPUTS, INPUT_RANGES
from .recipe import ARCHITECTURES, DEFAULT_HIDDEN, DEFAULT_OPTIMISATION, Recipe

EXAMPLES = """\
examples:
  python -m vae_core train --dataset digits --latent-dim 8 --epochs 50 --out checkpoints/x.safetensors
  python -m vae_core train --dataset mnist-5k --arch conv --hidden 32 64 128 --latent-dim 16 --out checkpoints/x.safetensors
  python -m vae_core train --dataset mnist-5k --arch conv --latent-dim 4 --conditional --out checkpoints/my-cvae.safetensors
  python -m vae_core train --dataset shapes --arch conv --hidden 32 32 64 64 --dense 256 --latent-dim 10 --beta 6 --out my-betavae.safetensors
  python -m vae_core train --dataset shapes --arch conv --objective beta-tcvae --beta 6 --out my-tcvae.safetensors
  python -m vae_core train --dataset mnist-5k --arch conv --beta 0.5 1 2 4 --out checkpoints/sweep/mnist.safetensors
  torchrun --nproc-per-node=2 -m vae_core train --dataset digits --out checkpoints/x.safetensors
  python -m vae_core eval checkpoints/mnist-vae.safetensors --iwae-k 100
  python -m vae_core eval my_pythae_run/final_model --dataset mnist-5k
  python -m vae_core eval --model vanilla_vae.py:VanillaVAE --model-kwargs '{"in_channels": 1, "latent_dim": 4}' --weights last.ckpt --decoder-outputs tanh --input-range=-1,1 --dataset digits
  python -m vae_core sample checkpoints/mnist-cvae.safetensors --n 40 --out grid.png
  python -m vae_core export-onnx checkpoints/mnist-cvae.safetensors --out mnist-cvae-onnx/
  python -m vae_core export-onnx checkpoints/mnist-cvae.safetensors --out decoder.onnx
  python -m vae_core map checkpoints/mnist-vae.safetensors --method umap --split train --out mnist-umap.npz
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Option defaults shown, description and examples printed as written."""


def _examples(command: str) -> str:
    """The lines of EXAMPLES that run `command`, as a subcommand's epilog."""
    return "\n".join(["examples:"] + [line for line in EXAMPLES.splitlines() if f" vae_core {command} " in line])


def _model_arguments(p: argparse.ArgumentParser) -> None:
    """The model a command works on: a path, or the user's own class (one entry point, _open_model)."""
    p.add_argument("checkpoint", nargs="?", help="a .safetensors checkpoint, a pythae folder, an ONNX folder "
                   "(export-onnx writes one), or a zip of either folder")
    p.add_argument("--dataset", help="the data its images come from (default: what the model says; a pythae "
                   "folder: the dataset of its image shape)")
    p.add_argument("--data-root", help="where torchvision datasets live")
    own = p.add_argument_group("your own model class, instead of CHECKPOINT (the file runs: name only code you trust)")
    own.add_argument("--model", help="path/to/file.py:ClassName, with encode(x) and decode(z)")
    own.add_argument("--model-kwargs", default="", help="its constructor's keyword arguments, a JSON object")
    own.add_argument("--weights", help="its weights: .safetensors, a .pt state_dict or a Lightning .ckpt")
    own.add_argument("--decoder-outputs", choices=DECODER_OUTPUTS, default="logits",
                     help="what decode(z) returns: logits, probabilities in [0, 1], or tanh in [-1, 1]")
    own.add_argument("--input-range", choices=list(INPUT_RANGES), default="0,1",
                     help="the range encode(x) expects its pixels in (write --input-range=-1,1)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vae_core",
        description="Train, evaluate and sample Variational Autoencoders for Latent Explorer.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a VAE and save it as a .safetensors checkpoint",
                       description="Train a (beta-, conditional) VAE. The checkpoint is written atomically after\n"
                                   "every epoch, so an interrupted or diverging run keeps its last good epoch.",
                       epilog=_examples("train"), formatter_class=_HelpFormatter)
    t.add_argument("--dataset", default=Recipe.dataset, help="mnist-5k | digits | shapes | mnist | fashion-mnist | kmnist | "
                   "cifar10 | folder:PATH | npz:PATH (see `datasets`)")
    t.add_argument("--data-root", help="where torchvision datasets live (default: $LATENT_EXPLORER_DATA "
                   "or ~/.cache/latent-explorer/data)")
    t.add_argument("--download", action="store_true", help="let torchvision download missing files (needs network)")
    t.add_argument("--image-size", type=int, help="resize folder datasets / render shapes at this size")
    t.add_argument("--holdout-class", type=int, help="leave this class out of training (anomaly experiments)")
    t.add_argument("--latent-dim", type=int, default=Recipe.latent_dim, help="size of z")
    t.add_argument("--arch", choices=ARCHITECTURES, default=Recipe.architecture, help="encoder/decoder body")
    t.add_argument("--hidden", type=int, nargs="+", help="hidden widths (mlp) or channels per conv layer (default: "
                   + ", ".join(f"{' '.join(map(str, v))} for {k}" for k, v in DEFAULT_HIDDEN.items()) + ")")
    t.add_argument("--dense", type=int, nargs="+", default=list(Recipe.dense_sizes), help="dense layers between the "
                   "body and z (Burgess et al. 2018 for 64x64: --arch conv --hidden 32 32 64 64 --dense 256)")
    t.add_argument("--likelihood", choices=["bernoulli", "gaussian"], default=Recipe.likelihood, help="p(x|z)")
    t.add_argument("--obs-sigma", type=float, default=Recipe.obs_sigma, help="std of the gaussian likelihood "
                   "(smaller: sharper, more information in z)")
    t.add_argument("--beta", type=float, nargs="+", default=[Recipe.beta], help="KL weight (vae) or total-"
                   "correlation weight (beta-tcvae); > 1 trades reconstruction for disentanglement. Several values "
                   "train a β sweep in one run, one checkpoint each: --out NAME.safetensors writes NAME-beta-B.safetensors")
    t.add_argument("--objective", choices=OBJECTIVES, default=Recipe.objective,
                   help="vae: recon + beta KL; beta-tcvae: recon + KL + (beta - 1) total correlation (Chen et al. 2018); "
                        "ae: a plain autoencoder to compare with (reconstruction only, no KL, no posterior)")
    t.add_argument("--conditional", action="store_true", help="condition encoder and decoder on the label (CVAE)")
    t.add_argument("--epochs", type=int, default=Recipe.epochs)
    # SUPPRESS: the defaults depend on --arch (Recipe fills them in), and --help shows them per architecture
    t.add_argument("--batch-size", type=int, default=argparse.SUPPRESS,
                   help=f"images per step (default: {_per_architecture('batch_size')})")
    t.add_argument("--lr", type=float, default=argparse.SUPPRESS,
                   help=f"Adam's learning rate, one-cycle's peak (default: {_per_architecture('lr')})")
    t.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=argparse.SUPPRESS,
                   help="constant, or one-cycle: up to --lr over the first 30%% of the steps, then down (Smith & "
                        f"Topin, 2019) (default: {_per_architecture('lr_schedule')})")
    t.add_argument("--compile", action="store_true", help="torch.compile the forward pass and loss; the first "
                   "step pays the compile (on a 2-core CPU it did not pay back: see the README)")
    t.add_argument("--kl-warmup", type=int, default=Recipe.kl_warmup,
                   help="epochs over which the KL weight ramps up from 0")
    t.add_argument("--seed", type=int, default=Recipe.seed)
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    t.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    t.add_argument("--resume", action="store_true", help="continue the run saved at --out up to --epochs")
    t.add_argument("--force", action="store_true", help="overwrite an existing --out without --resume")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--no-optimizer-state", action="store_true", help="leave Adam's moments out of the checkpoint "
                   "(a third of the size; --resume then restarts Adam)")

    e = sub.add_parser("eval", help="test-set ELBO, reconstruction, KL, IWAE bound and active units",
                       description="Score a checkpoint on its dataset's test split (nats per image).",
                       epilog=_examples("eval"), formatter_class=_HelpFormatter)
    _model_arguments(e)
    e.add_argument("--iwae-k", type=int, default=50, help="importance samples for the IWAE bound (0 to skip)")
    e.add_argument("--limit", type=int, help="score only the first N test samples")

    s = sub.add_parser("sample", help="decode draws from the prior into a PNG grid",
                       description="Decode draws from the prior N(0, temperature^2 I) into a PNG grid.",
                       epilog=_examples("sample"), formatter_class=_HelpFormatter)
    _model_arguments(s)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--temperature", type=float, default=1.0, help="scale of the prior draw (<1: safer, blander)")
    s.add_argument("--label", type=int, help="class to sample from (conditional models; default: all classes)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="samples.png")

    x = sub.add_parser("export-onnx", help="write the model as an ONNX pair that runs no Python",
                       description="Write a folder with encoder.onnx (x -> mu, logvar), decoder.onnx (z -> image in "
                                   "[0, 1], shape (N, C, H, W)) and model.json (input shape, latent size, labels, "
                                   "likelihood): a model the app opens with ONNX Runtime alone. A conditional model's "
                                   "graphs also take y (N, num_classes), one-hot float32. With --out FILE.onnx, only "
                                   "the decoder: the graph the app's live pad runs in the browser. Graphs are written "
                                   "only if ONNX Runtime computes what PyTorch computes (max abs difference <= 1e-4).",
                       epilog=_examples("export-onnx"), formatter_class=_HelpFormatter)
    _model_arguments(x)
    x.add_argument("--out", default="onnx-model/", help="a folder for the pair, or FILE.onnx for the decoder alone")

    m = sub.add_parser("map", help="precompute a latent map into the app's cache, and an .npz",
                       description="Encode a split, project the posterior means (PCA, UMAP or t-SNE) and store the map "
                                   "in the app's cache ($LATENT_EXPLORER_CACHE/maps), where the Latent map page finds it "
                                   "at once for the same weights, dataset, split and parameters. With --out, also write "
                                   "the .npz: coords (N, dims), labels (N,) and the key (JSON); np.load(allow_pickle="
                                   "False) reads it.",
                       epilog=_examples("map"), formatter_class=_HelpFormatter)
    _model_arguments(m)
    m.add_argument("--method", choices=METHODS, default="umap")
    m.add_argument("--split", choices=["test", "train"], default="test")
    m.add_argument("--dims", type=int, choices=[2, 3], default=ProjectionParams.dims)
    m.add_argument("--neighbors", type=int, default=ProjectionParams.n_neighbors, help="UMAP's n_neighbors")
    m.add_argument("--min-dist", type=float, default=ProjectionParams.min_dist, help="UMAP's min_dist")
    m.add_argument("--perplexity", type=float, default=ProjectionParams.perplexity, help="t-SNE's perplexity")
    m.add_argument("--out", help="also write the map to this .npz")

    d = sub.add_parser("datasets", help="list the dataset names, or fetch a torchvision one",
                       description="List the dataset names. With --download NAME, fetch a torchvision dataset "
                                   "(mnist, fashion-mnist, kmnist, cifar10) into the data root once, while online; "
                                   "afterwards it trains and maps offline.",
                       epilog="examples:\n  python -m vae_core datasets --download mnist", formatter_class=_HelpFormatter)
    d.add_argument("--download", metavar="NAME", help="fetch this torchvision dataset's files")
    d.add_argument("--data-root", help="where to put them (default: $LATENT_EXPLORER_DATA or ~/.cache/latent-explorer/data)")
    return p


def _train(args) -> int:
    from tqdm import tqdm

    from .checkpoint import load_checkpoint
    from .trainer import Callback, Trainer, TrainingDiverged

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UsageError(f"--out must end in .safetensors, got {out.name}")
    betas = sorted(set(args.beta))
    if len(betas) > 1:
        return _train_sweep(args, out, betas)
    if out.exists() and not (args.resume or args.force):
        raise UsageError(f"{out} exists: pass --resume to continue it or --force to overwrite")
    resume = load_checkpoint(out) if args.resume and out.exists() else None
    if resume:
        _resume_settings(args, resume)
    recipe = _recipe(args, betas[0])
    data = recipe.load_data(root=args.data_root, download=args.download, image_size=args.image_size)
    train_config = recipe.train_config(device=args.device, save_optimizer=not args.no_optimizer_state,
                                       compile=args.compile)
    model = resume.model if resume else recipe.build_model(data)

    class Progress(Callback):
        def __init__(self, bar):
            self.bar, self.scores = bar, {}

        def on_epoch_end(self, trainer, record):
            self.bar.update(1)
            # The test scores of the last evaluated epoch stay on the bar until the next evaluation.
            found = {"test_elbo": record.get("test_elbo"), "kl": record.get("kl"),
                     "test_recon": None if "kl" in record else record.get("test_recon")}
            self.scores |= {k: f"{v:.2f}" for k, v in found.items() if v is not None}
            self.bar.set_postfix(loss=f"{record['loss']:.2f}", **self.scores)

    trainer = Trainer(model, data, train_config, checkpoint_path=out, resume=resume)
    if trainer.start_epoch >= args.epochs:
        print(f"{out} already has {trainer.start_epoch} epochs; raise --epochs to train more")
        return 0
    quiet = args.quiet or not trainer.is_main
    with tqdm(total=args.epochs, initial=trainer.start_epoch, desc=f"training on {data.name}", unit="epoch",
              disable=quiet) as bar:
        trainer.callbacks.append(Progress(bar))
        try:
            history = trainer.fit()
        except TrainingDiverged as exc:
            raise UsageError(str(exc)) from None
    if trainer.is_main:
        _report_compile(trainer)
        last = history[-1]
        scores = (f"test ELBO {last.get('test_elbo', float('nan')):.2f} nats, KL {last['kl']:.2f}" if "kl" in last
                  else f"an autoencoder: test reconstruction {last.get('test_recon', float('nan')):.2f} nats, no ELBO")
        print(f"saved {out}: {scores}, active units {last.get('active_units', '?')}/{model.config.latent_dim}")
    return 0


def _report_compile(trainer) -> None:
    """A Trainer's or SweepTrainer's notes, and what the compile took."""
    for note in trainer.notes:
        print(f"note: {note}", file=sys.stderr)
    if trainer.compile_seconds is not None and not trainer.notes:
        print(f"torch.compile: the first step took {trainer.compile_seconds:.1f} s, compiling", file=sys.stderr)


def _resume_settings(args, resume) -> None:
    """A resumed run goes on as it started unless told otherwise: the batch, rate and schedule it saved (a
    run saved before schedules existed trained at a constant rate), not today's defaults for --arch."""
    saved = resume.trained_with
    for name in ("batch_size", "lr", "lr_schedule"):
        if not hasattr(args, name) and saved.get(name) is not None:
            setattr(args, name, saved[name])
    if getattr(args, "lr_schedule", None) == "one-cycle" and saved.get("epochs", args.epochs) != args.epochs \
            and not args.quiet:
        print(f"note: one-cycle spans the whole run; this one was planned for {saved['epochs']} epochs and now for "
              f"{args.epochs}, so the rate follows the new cycle from here", file=sys.stderr)


def _per_architecture(field: str) -> str:
    """A default of recipe.DEFAULT_OPTIMISATION for --help: "0.01 for mlp, 0.005 for conv", or the one value
    when every architecture has it ("one-cycle")."""
    values = {arch: getattr(o, field) for arch, o in DEFAULT_OPTIMISATION.items()}
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{value:g} for {arch}" for arch, value in values.items())


def _recipe(args, beta: float) -> Recipe:
    try:
        return Recipe(dataset=args.dataset, holdout_class=args.holdout_class, architecture=args.arch,
                      latent_dim=args.latent_dim, hidden_sizes=args.hidden, dense_sizes=tuple(args.dense),
                      likelihood=args.likelihood, obs_sigma=args.obs_sigma, beta=beta, objective=args.objective,
                      conditional=args.conditional, epochs=args.epochs,
                      batch_size=getattr(args, "batch_size", None), lr=getattr(args, "lr", None),
                      lr_schedule=getattr(args, "lr_schedule", None), kl_warmup=args.kl_warmup, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _train_sweep(args, out: Path, betas: list[float]) -> int:
    """One run trains every β of one recipe (sweep_trainer.SweepTrainer): NAME-beta-B.safetensors each."""
    import os
    from dataclasses import replace

    from tqdm import tqdm

    from .sweep_trainer import SweepCallback, SweepTrainer

    if args.resume:
        raise UsageError("--resume continues one run: pass one --beta and that β's checkpoint as --out")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("a β sweep trains in one process: run it without torchrun")
    recipe = _recipe(args, betas[0])
    if recipe.objective == "ae":
        raise UsageError("an autoencoder (--objective ae) has no KL term, so no β to sweep: pass one --beta")
    outs = [out.with_name(f"{out.stem}-beta-{beta:g}{out.suffix}") for beta in betas]
    if len(set(outs)) < len(outs):
        raise UsageError("two of the βs print alike (to 6 digits) and would share a file name: pass distinct βs")
    existing = [str(path) for path in outs if path.exists()]
    if existing and not args.force:
        raise UsageError(f"{', '.join(existing)} exist{'s' if len(existing) == 1 else ''}: pass --force to overwrite")
    data = recipe.load_data(root=args.data_root, download=args.download, image_size=args.image_size)
    models = [replace(recipe, beta=beta).build_model(data) for beta in betas]
    train_config = recipe.train_config(device=args.device, save_optimizer=not args.no_optimizer_state,
                                       compile=args.compile)

    class Progress(SweepCallback):
        def __init__(self, bar):
            self.bar, self.scores = bar, {}

        def on_epoch_end(self, sweep, records):
            self.bar.update(1)
            self.scores |= {beta: r["test_elbo"] for beta, r in records.items() if "test_elbo" in r}
            self.bar.set_postfix_str("test ELBO " + ", ".join(f"β={b:g}: {v:.2f}" for b, v in self.scores.items()))

    sweep = SweepTrainer(models, data, train_config, checkpoint_paths=outs)
    with tqdm(total=args.epochs, desc=f"training {len(betas)} βs on {data.name} ({sweep.engine_name})", unit="epoch",
              disable=args.quiet) as bar:
        sweep.callbacks.append(Progress(bar))
        members = sweep.fit()
    _report_compile(sweep)
    for member in members:
        last = member.history[-1] if member.history else {}
        if member.error:
            print(f"error: {member.error}", file=sys.stderr)
        elif "test_elbo" in last:
            print(f"saved {member.checkpoint_path}: β = {member.beta:g}, test ELBO {last['test_elbo']:.2f} nats, "
                  f"KL {last['kl']:.2f}, active units {last.get('active_units', '?')}/{recipe.latent_dim}")
    return 2 if any(member.error for member in members) else 0


def _open_model(args):
    """(checkpoint, its name) of the model the command names: CHECKPOINT, or --model with --weights."""
    from .datasets import load_dataset
    from .external import OwnModel, load_external

    if args.model or args.weights:
        if not (args.model and args.weights) or args.checkpoint:
            raise UsageError("your own model takes --model and --weights (and no CHECKPOINT)")
        dataset = args.dataset or "digits"
        data = load_dataset(dataset, root=args.data_root)
        source = OwnModel(args.model, args.weights, args.model_kwargs, args.decoder_outputs, args.input_range, dataset)
        return load_external(source, data.image_shape, data.label_names), source.label
    if not args.checkpoint:
        raise UsageError("name a model: CHECKPOINT, or --model file.py:Class --weights FILE")
    from .catalog import open_model_path

    ckpt = open_model_path(args.checkpoint, args.dataset)
    if not ckpt.dataset.get("name"):
        ckpt.dataset["name"] = "digits"  # checkpoints older than the dataset field were all digits
    return ckpt, Path(args.checkpoint).name


def _model_data(ckpt, args, seed: int = 0):
    """The model's dataset (or --dataset's), checked to have the images the model takes."""
    from .datasets import load_dataset

    data = load_dataset(ckpt.dataset["name"], root=args.data_root, seed=seed)
    if data.image_shape != tuple(ckpt.config.input_shape):
        raise UsageError(f"{ckpt.dataset['name']} images are {data.image_shape}, the model takes "
                         f"{tuple(ckpt.config.input_shape)}: choose another --dataset")
    return data


def _eval(args) -> int:
    from .external import reconstruction_warning
    from .metrics import evaluate

    if (args.limit is not None and args.limit < 1) or args.iwae_k < 0:
        raise UsageError("--limit must be at least 1 and --iwae-k at least 0")
    ckpt, name = _open_model(args)
    data = _model_data(ckpt, args, seed=ckpt.train_state.get("train_config", {}).get("seed", 0))
    x, y = data.x_test[: args.limit], data.y_test[: args.limit]
    result = evaluate(ckpt.model, x, y, iwae_k=args.iwae_k if ckpt.config.probabilistic else 0)
    print(f"{name} on {ckpt.dataset['name']} test ({len(x)} samples), nats per image:")
    meaning = "a log-density" if ckpt.config.likelihood == "gaussian" else "a log-probability, <= 0"
    if "elbo" in result:
        print(f"  ELBO          {result['elbo']:10.3f}   ({ckpt.config.likelihood} p(x|z): {meaning})")
    print(f"  reconstruction{result['recon']:10.3f}   (cost, -log p(x|z))")
    if "kl" in result:
        print(f"  KL            {result['kl']:10.3f}")
    else:
        print("  (an autoencoder: no posterior, so no ELBO, KL or IWAE bound)")
    if "iwae" in result:
        print(f"  IWAE (k={args.iwae_k:<3}) {result['iwae']:10.3f}   (tighter bound on log p(x))")
    print(f"  active units  {result['active_units']:>6} / {ckpt.config.latent_dim}")
    warning = reconstruction_warning(ckpt.model, x, y)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _sample(args) -> int:
    import torch

    from .images import make_grid, png_bytes, upscale_factor

    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    ckpt, _ = _open_model(args)
    model, cfg = ckpt.model, ckpt.config
    generator = torch.Generator().manual_seed(args.seed)
    labels = None
    if cfg.conditional:
        labels = (torch.full((args.n,), args.label) if args.label is not None
                  else torch.arange(args.n) % cfg.num_classes)
    with torch.inference_mode():
        images = model.sample(args.n, labels, temperature=args.temperature, generator=generator)
    ncols = cfg.num_classes if cfg.conditional and args.label is None else int(args.n ** 0.5 + 0.999)
    Path(args.out).write_bytes(png_bytes(make_grid(images, ncols), upscale_factor(cfg.input_shape[1], 48)))
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def _export_onnx(args) -> int:
    from .checkpoint import write_atomic
    from .onnx_decoder import DecoderExportError, export_decoder, input_names, max_difference
    from .onnx_pair import export_pair

    ckpt, name = _open_model(args)
    model, out = ckpt.model.eval(), Path(args.out)
    try:
        if out.suffix != ".onnx":
            export_pair(model, ckpt.dataset, out, ckpt.metrics)
            print(f"wrote {out}/: encoder.onnx, decoder.onnx and model.json of {name} ({ckpt.dataset['name']}, "
                  f"latent {model.config.latent_dim}). Score it with `python -m vae_core eval {out}`, open it "
                  f"with `streamlit run app.py -- --checkpoint {out}` or upload a zip of it")
            return 0
        data = export_decoder(model)
    except DecoderExportError as exc:
        raise UsageError(str(exc)) from None
    write_atomic(out, data)
    print(f"wrote {out} ({len(data) / 1e3:.0f} kB): inputs {', '.join(input_names(model))} -> image "
          f"(N, {', '.join(map(str, model.config.input_shape))}); ONNX Runtime vs PyTorch max abs difference "
          f"{max_difference(model, data):.1e}")
    return 0


PROGRESS_EVERY_S = 2.0


def _map(args) -> int:
    from .checkpoint import write_atomic
    from .map_cache import MapJob, MapKey, map_bytes
    from .metrics import encode_all
    from .threads import compute_threads

    if args.out and not args.out.endswith(".npz"):
        raise UsageError(f"--out must end in .npz, got {args.out}")
    ckpt, name = _open_model(args)
    params = ProjectionParams(args.method, args.dims, args.neighbors, args.min_dist, args.perplexity)
    dataset = ckpt.dataset["name"]
    data = _model_data(ckpt, args)  # seed 0: split as the app splits it
    x, y = (data.x_test, data.y_test) if args.split == "test" else (data.x_train, data.y_train)
    print(f"encoding {len(x):,} {args.split} images of {dataset} with {name} …", flush=True)
    mu, _ = encode_all(ckpt.model, x, y if ckpt.config.conditional else None)
    key = MapKey(ckpt.model.weights_digest(), dataset, args.split, params)
    job = MapJob(key, mu.numpy(), y.numpy(), threads=compute_threads(spare_core=False))  # it serves no pages
    while not job.wait(PROGRESS_EVERY_S):  # the same words as the app's progress bar
        print(job.status(), flush=True)
    coords, _ = job.result()
    print("\n".join(job.lines), flush=True)
    if args.out:
        write_atomic(Path(args.out), map_bytes(key, coords, y.numpy()))
        print(f"wrote {args.out}: coords {coords.shape}, labels, key")
    return 0


def _datasets(args) -> int:
    from .datasets import DATASETS, TORCHVISION_DATASETS, default_data_root, load_dataset

    if not args.download:
        for name, about in DATASETS.items():
            print(f"  {name:14} {about}")
        return 0
    if args.download not in TORCHVISION_DATASETS:
        raise UsageError(f"--download takes one of {', '.join(TORCHVISION_DATASETS)}, got {args.download!r}")
    root = args.data_root or default_data_root()
    data = load_dataset(args.download, root=root, download=True)
    print(f"{args.download} is under {root}: {len(data.x_train):,} training and {len(data.x_test):,} test images")
    return 0


class UsageError(Exception):
    """A problem the user can fix; printed as one line."""


def main(argv=None) -> int:
    from .checkpoint import CheckpointError
    from .datasets import DatasetError

    args = _parser().parse_args(argv)
    try:
        if args.command == "datasets":
            return _datasets(args)
        return {"train": _train, "eval": _eval, "sample": _sample, "export-onnx": _export_onnx,
                "map": _map}[args.command](args)
    except (UsageError, CheckpointError, DatasetError, ValueError, OSError) as exc:  # OSError: unwritable --out, ...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last completed epoch's checkpoint is intact", file=sys.stderr)
        return 130
