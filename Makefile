# Latent Explorer. The two commands a newcomer needs: `make run` and `make test`.
# Both set everything up on a fresh machine: a virtual environment with requirements.txt and,
# for the browser tests, Debian's chromium.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
HOST ?= 127.0.0.1
PORT ?= 8501
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
# Streamlit runs every script run in a new thread, and glibc gives threads malloc arenas of their own
# (up to 8 per core) whose freed memory stays scattered: a classroom server grew from class to class.
# Two arenas kept it 250 MiB lower and nearly flat, at the same speed (README, "Memory across classes").
# glibc reads this when a process starts, so it is set here, for everything make starts.
export MALLOC_ARENA_MAX ?= 2

.PHONY: setup run serve test chromium nginx checkpoints bench live-pad clean

setup: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -c "import torch, torchvision, streamlit, safetensors; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '| streamlit', streamlit.__version__)"
	touch $@

# Playwright drives Debian's chromium (no browser download: the machine has no network but the registries).
chromium:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@/usr/bin/chromium --version

run: setup
	$(VENV)/bin/streamlit run app.py --server.address $(HOST) --server.port $(PORT)

# A classroom: WORKERS app processes (default: the cores) behind Debian's nginx on every network
# interface, so students' browsers can reach it, and without the sidebar box that runs a local Python
# file (students must not run code on the server). deploy/serve.py says how.
WORKERS ?= $(shell nproc)
serve: export LATENT_EXPLORER_CLASSROOM = 1
serve: setup $(if $(filter-out 1,$(WORKERS)),nginx)
	$(PY) deploy/serve.py --workers $(WORKERS) --host 0.0.0.0 --port $(PORT)

nginx:
	@test -x /usr/sbin/nginx || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
	@/usr/sbin/nginx -v

test: setup chromium nginx
	$(PY) -m pytest

# The shipped models, rebuilt with the documented commands (see README: Shipped checkpoints). Bernoulli
# p(x|z) throughout, at a constant Adam rate (they were trained before one-cycle became the default). Shipped
# files leave Adam's moments out (--no-optimizer-state) to stay under 5 MB.
SHIP := --lr-schedule constant --no-optimizer-state --quiet --force
MNIST := --dataset mnist-5k --arch conv --hidden 32 64 128 --kl-warmup 10 --epochs 60 --batch-size 64 --lr 1e-3 $(SHIP)
# Burgess et al. (2018) for 64x64: four stride-2 convs of 32-32-64-64 channels, 256 dense units, latent 10.
SHAPES := --dataset shapes --arch conv --hidden 32 32 64 64 --dense 256 --latent-dim 10 --batch-size 64 --lr 1e-3 --epochs 14 $(SHIP)
checkpoints: setup
	$(PY) -m vae_core train $(MNIST) --latent-dim 16 --out checkpoints/mnist-vae.safetensors
	$(PY) -m vae_core train $(MNIST) --latent-dim 16 --objective ae --out checkpoints/mnist-ae.safetensors
	mkdir -p checkpoints/beta-sweep  # mnist-vae's recipe at other β: the Choosing β page's curve
	for b in 0.1 0.25 0.5 2 4 8; do \
	  $(PY) -m vae_core train $(MNIST) --latent-dim 16 --beta $$b --out checkpoints/beta-sweep/mnist-beta-$$b.safetensors || exit 1; \
	done
	$(PY) -m vae_core train $(MNIST) --latent-dim 2 --out checkpoints/mnist-vae-2d.safetensors
	$(PY) -m vae_core train $(MNIST) --latent-dim 4 --conditional --out checkpoints/mnist-cvae.safetensors
	$(PY) -m vae_core train $(MNIST) --latent-dim 16 --holdout-class 3 --out checkpoints/mnist-vae-no3.safetensors
	$(PY) -m vae_core train $(SHAPES) --objective beta-tcvae --beta 6 --epochs 40 --out checkpoints/shapes-tcvae.safetensors
	$(PY) -m vae_core train $(SHAPES) --beta 6 --out checkpoints/shapes-betavae.safetensors
	$(PY) -m vae_core train $(SHAPES) --beta 1 --out checkpoints/shapes-vae.safetensors
	$(PY) -m vae_core train --dataset digits --latent-dim 8 --kl-warmup 30 --epochs 200 --batch-size 32 --lr 1e-3 $(SHIP) \
	    --out checkpoints/digits-vae.safetensors

# The live pad's frontend, rebuilt from source (needs Node and npm); the build is committed, so
# `make run` needs neither.
live-pad:
	cd pages/ui/live_pad/frontend && npm ci && npm run build

bench: setup
	$(PY) bench/train_bench.py

clean:
	rm -rf $(VENV) .cache .pytest_cache tests/artifacts
