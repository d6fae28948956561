# The course's two commands:   make lab   (set up, open JupyterLab)   and   make test   (set up, run every test)
# Both create .venv on first use and reinstall when pyproject.toml or the Jupyter settings change.

PYTHON ?= python3
VENV   ?= .venv
# A tested torch release, installed before the rest (see README, "Which torch").
TORCH  ?= torch==2.13.0
# Extra pip arguments for torch only, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
# Extra JupyterLab options, e.g. make lab LAB_ARGS="--port 8890 --no-browser"
LAB_ARGS ?=
# Extra pytest options, e.g. make test PYTEST_ARGS="-x -k chapter"
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.fmlearn-installed
# JupyterLab refuses to start as root unless told; containers and cloud notebooks often run as root.
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
# Busy-waiting OpenMP threads slow torch ~100x when anything else runs on a small machine (README, "Threads").
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup lab test test-fast notebooks book book-quick clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(wildcard .jupyter/etc/*/*.json) .jupyter/lab/settings/overrides.json
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fmlearn needs Python >= 3.11; run make with PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet --quiet -e ".[dev]"
	mkdir -p $(VENV)/etc && cp -R .jupyter/etc/. $(VENV)/etc/
	mkdir -p $(VENV)/share/jupyter/lab/settings && cp .jupyter/lab/settings/overrides.json $(VENV)/share/jupyter/lab/settings/
	touch $@

lab: setup
	$(BIN)/jupyter lab --notebook-dir=. $(ROOT_FLAG) $(LAB_ARGS) chapters/01_gaussian_mixture_cfm.ipynb

# Every test: unit tests, every notebook executed under nbval, the web book built and read in a browser, all in
# quick mode, on TEST_WORKERS processes (pytest-xdist; each notebook's cells stay on one worker; in the order
# tests/conftest.py sets: the chapters first, then the book (tests/test_book.py), built from nbval's executions of
# the chapters, so each notebook is executed once (tests/_executed.py), then the rest).
# fmlearn is compiled to bytecode first (its __pycache__, which git ignores): where PYTHONDONTWRITEBYTECODE is set,
# or where a process cannot write there (a grading sandbox runs as another uid, read-only), each Python of the run
# that imports fmlearn (kernels, graders, every sandbox) would otherwise compile its ~16,000 lines again (about
# 0.2 s of CPU each). Python checks each .pyc against its source's time and size, so an edited file is recompiled.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m compileall -q fmlearn
	FMLEARN_QUICK=1 FMLEARN_PROGRESS=0 $(BIN)/python -m pytest --nbval-lax --nbval-current-env -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder -v --durations=15 $(PYTEST_ARGS)

# Unit tests only (no notebooks), for a fast edit loop.
test-fast: setup
	FMLEARN_QUICK=1 $(BIN)/python -m pytest tests -q $(PYTEST_ARGS)

# The web book (book/conf.py): every chapter and exercise executed at the default budget, into build/book/html
# (open build/book/html/book/index.html). Outputs are cached per notebook in build/book/.jupyter_cache: a rebuild
# re-executes only the notebooks whose code changed. book-quick: the same in quick mode, into build/book-quick.
SPHINX_ARGS ?=
book: setup
	FMLEARN_PROGRESS=0 $(BIN)/python -m sphinx -b html -c book -q $(SPHINX_ARGS) . build/book/html
	@echo "The book: build/book/html/book/index.html"

book-quick: setup
	FMLEARN_QUICK=1 FMLEARN_PROGRESS=0 $(BIN)/python -m sphinx -b html -c book -q $(SPHINX_ARGS) . build/book-quick/html
	@echo "The book (quick mode): build/book-quick/html/book/index.html"

# Rewrite every .ipynb from its reviewed .py source (outputs never stored; cell ids kept).
notebooks: setup
	for py in chapters/*.py solutions/*.py; do $(BIN)/jupytext --quiet --update --to ipynb "$$py"; done
	$(BIN)/python -m fmlearn.exercises build

clean:
	rm -rf $(VENV) build
