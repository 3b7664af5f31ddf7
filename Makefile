# The README's two commands are `make train` and `make test`. Everything else here supports them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU wheel of this version is what the tests run on; a torch already in the venv (a CUDA build,
# say) is kept as it is.
TORCH_VERSION ?= 2.13.0
# Idle OpenMP threads spin on a shared machine and can slow torch down many times over.
export OMP_WAIT_POLICY ?= PASSIVE
# Keep Jupyter, IPython, matplotlib and wandb from writing into the home directory during tests.
CACHE := $(CURDIR)/.cache
TEST_ENV := OMP_NUM_THREADS=1 JUPYTER_CONFIG_DIR=$(CACHE)/jupyter JUPYTER_DATA_DIR=$(CACHE)/jupyter-data \
	IPYTHONDIR=$(CACHE)/ipython MPLCONFIGDIR=$(CACHE)/mpl WANDB_DIR=$(CACHE)/wandb WANDB_DATA_DIR=$(CACHE)/wandb \
	WANDB_CACHE_DIR=$(CACHE)/wandb WANDB_CONFIG_DIR=$(CACHE)/wandb WANDB_MODE=offline WANDB_SILENT=true
NOTEBOOKS := $(sort $(wildcard nbs/*.ipynb))

.PHONY: train test install install-dev export readme nbs docs browser clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "torch==$(TORCH_VERSION)"
	touch $@

$(VENV)/.core: setup.py settings.ini $(VENV)/.torch
	$(PIP) install --quiet -e .
	touch $@

# make train: the core plus TensorBoard and wandb (offline), so the run's logs open in a tracker.
$(VENV)/.tracking: setup.py settings.ini $(VENV)/.torch
	$(PIP) install --quiet -e ".[tracking]"
	touch $@ $(VENV)/.core

$(VENV)/.dev: setup.py settings.ini $(VENV)/.torch
	$(PIP) install --quiet -e ".[dev]"
	touch $@ $(VENV)/.core $(VENV)/.tracking

install: $(VENV)/.core  ## install the package and its core dependencies into .venv
install-dev: $(VENV)/.dev  ## install everything the notebooks and tests use

train: $(VENV)/.tracking  ## train the tiny preset and print a sample (each run gets its own folder in runs/)
	$(VENV)/bin/tt-train --preset tiny name=tiny-$$(date +%Y%m%d-%H%M%S)

test: $(VENV)/.dev browser  ## check the package matches the notebooks, then run tests/ and every notebook
	$(PY) tools/check_export.py
	$(PY) tools/nb2readme.py --check
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
		-p no:randomly -q tests nbs

export: $(VENV)/.dev  ## export the notebooks into tiny_transformer/ (nbdev_export)
	$(VENV)/bin/nbdev_export

readme: $(VENV)/.dev  ## regenerate README.md from nbs/index.ipynb
	$(PY) tools/nb2readme.py

nbs: $(VENV)/.dev  ## run every notebook in place, clean it, export, regenerate the README
	$(TEST_ENV) $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace $(NOTEBOOKS)
	$(VENV)/bin/nbdev_clean
	$(VENV)/bin/nbdev_export
	$(PY) tools/nb2readme.py

docs: $(VENV)/.dev  ## build the docs site into _docs/ (nbdev_docs when Quarto is installed; else nbdev's processing + nbconvert)
	$(TEST_ENV) $(PY) tools/build_docs.py

# The browser tests drive Debian's chromium (never a Playwright download); install it when it is missing.
APT := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600
browser:  ## install headless chromium for the browser tests with apt (as root) when /usr/bin/chromium is missing
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing chromium with apt for the browser tests (about 100 s)"; \
		$(APT) install -y --no-install-recommends chromium >/dev/null || \
		{ $(APT) update >/dev/null && $(APT) install -y --no-install-recommends chromium >/dev/null; }; \
	else echo "WARNING: /usr/bin/chromium is missing and apt needs root here: the browser tests will be skipped"; fi

clean:  ## remove build outputs, caches and run directories (keeps .venv)
	rm -rf _docs _proc .cache .pytest_cache build dist *.egg-info runs test-artifacts
	find . -name __pycache__ -not -path './$(VENV)/*' -exec rm -rf {} +
