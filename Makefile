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
# nbdev's and Jupyter's commands, run by the venv's Python: when the venv reuses system site-packages, their
# console scripts are not in .venv/bin. (Called from `python -c`, nbdev's commands take keyword arguments.)
NBDEV_EXPORT := $(PY) -c "from nbdev.doclinks import nbdev_export; nbdev_export()"
NBDEV_CLEAN := $(PY) -c "from nbdev.clean import nbdev_clean; nbdev_clean()"
# nbdev's own notebook runner (what nbdev users and nbdev's CI template run): every notebook in a pool of two
# worker processes, cells flagged with settings.ini's tst_flags skipped, the nbdev_export() cells left out.
NBDEV_TEST := $(PY) -c "from nbdev.test import nbdev_test; nbdev_test(n_workers=2, timing=True)"

.PHONY: train test install install-dev export readme nbs docs system-packages browser clean help

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

test: $(VENV)/.dev system-packages  ## check the package matches the notebooks, run tests/ and every notebook (nbval, then nbdev_test)
	$(PY) tools/check_export.py
	$(PY) tools/nb2readme.py --check
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
		-p no:randomly -q tests nbs
	$(TEST_ENV) $(NBDEV_TEST)

export: $(VENV)/.dev  ## export the notebooks into tiny_transformer/ (nbdev_export)
	$(NBDEV_EXPORT)

readme: $(VENV)/.dev  ## regenerate README.md from nbs/index.ipynb
	$(PY) tools/nb2readme.py

nbs: $(VENV)/.dev  ## run every notebook in place, clean it, export, regenerate the README
	$(TEST_ENV) $(PY) -m jupyter nbconvert --to notebook --execute --inplace $(NOTEBOOKS)
	$(NBDEV_CLEAN)
	$(NBDEV_EXPORT)
	$(PY) tools/nb2readme.py

docs: $(VENV)/.dev  ## build the docs site into _docs/ (nbdev_docs when Quarto is installed; else nbdev's processing + nbconvert)
	$(TEST_ENV) $(PY) tools/build_docs.py

# Programs the tests use that pip does not install: Debian's chromium for the browser tests (never a Playwright
# download) and curl (the server's streaming test calls it as a user would). Installed with apt when missing.
APT := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600
SYSTEM_PACKAGES := /usr/bin/chromium:chromium /usr/bin/curl:curl
system-packages:  ## install the programs the tests use besides Python packages (chromium, curl) with apt, as root, when missing
	@missing=""; for pair in $(SYSTEM_PACKAGES); do [ -x "$${pair%%:*}" ] || missing="$$missing $${pair##*:}"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing$$missing with apt for the tests (chromium: about 100 s)"; \
		$(APT) install -y --no-install-recommends $$missing >/dev/null || \
		{ $(APT) update >/dev/null && $(APT) install -y --no-install-recommends $$missing >/dev/null; }; \
	else echo "WARNING:$$missing missing and apt needs root here: the tests that use them will be skipped"; fi
browser: system-packages  # its former name, which tests/browser.py's skip message still gives

clean:  ## remove build outputs, caches and run directories (keeps .venv)
	rm -rf _docs _proc .cache .pytest_cache build dist *.egg-info runs test-artifacts
	find . -name __pycache__ -not -path './$(VENV)/*' -exec rm -rf {} +
