# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: env demo test lint bench clean

$(STAMP): pyproject.toml
	@echo "installing ageseg and its packages (TensorFlow, ...) into $(VENV): about 2.3 GB, a few minutes ..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

# The tests also cover `rescore --engine ray` and Keras' JAX backend: they get the optional
# `ray` and `jax` extras on top (jax: about 100 MB more); `make demo` stays without them.
$(RAY_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,demo,ray,jax]'
	touch $(RAY_STAMP)

env: $(STAMP)

## Build the embedded demo (SQLite, generated checkout photos) and run the nightly job on it.
demo: $(STAMP)
	$(BIN)/ageseg demo --workdir var/demo

## Set up and run the test suite (lint first: the code must stay ruff clean).
test: $(RAY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(RAY_STAMP)
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/rescore.py

clean:
	rm -rf var .pytest_cache
