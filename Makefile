# The two commands of the quick start: `make demo` and `make test`. Both set up first:
# `make demo` installs only the package and its runtime dependencies, `make test` (and
# `make setup`, the development environment) add the test extras to the same venv.
# Another Python: `make test PYTHON=python3.9 VENV=.venv-3.9`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP := $(VENV)/.installed-test
PYTEST_ARGS ?=

.PHONY: setup setup-runtime demo test bench clean

setup: $(TEST_STAMP)

setup-runtime: $(RUNTIME_STAMP)

# pip >= 25: Python 3.9's venv comes with pip 23.0, whose resolver backtracked for over
# 25 minutes on the test extras (selenium's trio beside schemathesis 3) where pip 26
# resolves them in 20 s; (pip >= 21.3 is what installs a pyproject-only project in
# editable mode). A newer pip is only fetched when the venv's own is older. --no-compile: byte-compiling every module of
# scipy and scikit-learn took two thirds of the install's time; Python compiles the
# modules a program imports when it first imports them.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --no-compile

$(RUNTIME_STAMP): setup.cfg setup.py pyproject.toml mlwatcher_exporter/_kernel.c
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) 'pip>=25'
	$(PIP_INSTALL) -e .
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP)
	$(PIP_INSTALL) -e '.[test]'
	touch $@

demo: $(RUNTIME_STAMP)
	$(BIN)/mlwatcher-exporter demo $(DEMO_ARGS)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# run.py rewrites the generated section of docs/benchmarks.md; the drift and id store
# figures print beside it (docs/drift.md, "Cost"; docs/benchmarks.md, "Late labels").
bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/drift_cost.py
	$(BIN)/python benchmarks/idstore_memory.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
