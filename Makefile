# The course's two commands:   make lab   (set up, open JupyterLab)   and   make test   (set up, run every test)
# Both create .venv on first use and reinstall when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
# A tested torch release, installed before the rest (see README, "Which torch").
TORCH  ?= torch==2.13.0
# Extra pip arguments for torch only, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.fmlearn-installed

.PHONY: setup lab test test-fast notebooks clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fmlearn needs Python >= 3.11; run make with PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

lab: setup
	$(BIN)/jupyter lab --notebook-dir=. chapters/01_gaussian_mixture_cfm.ipynb

# Every test: unit tests, then every notebook executed under nbval, in quick mode.
test: setup
	FMLEARN_QUICK=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env -v --durations=15

# Unit tests only (no notebooks), for a fast edit loop.
test-fast: setup
	FMLEARN_QUICK=1 $(BIN)/python -m pytest tests -q

# Rewrite every .ipynb from its reviewed .py source (outputs never stored).
notebooks: setup
	$(BIN)/jupytext --to ipynb chapters/*.py

clean:
	rm -rf $(VENV)
