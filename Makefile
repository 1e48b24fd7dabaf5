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

# pip >= 21.3 installs a pyproject-only project in editable mode; a newer pip is only
# fetched when the venv's own is older.
$(RUNTIME_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'pip>=21.3'
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(RUNTIME_STAMP)
	$(BIN)/mlwatcher-exporter demo $(DEMO_ARGS)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
