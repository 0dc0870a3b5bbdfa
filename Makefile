# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: env demo test test-fast lint bench clean

# `make demo` installs only what scoring needs: the core install (the age model on LiteRT,
# no TensorFlow: about 0.7 GB) and the demo extra's second public-domain face.
$(STAMP): pyproject.toml
	@echo "installing ageseg and what scoring needs into $(VENV): about 0.7 GB, a minute ..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $(STAMP)

# The tests cover everything: training and the Keras runtime (the `train` extra:
# TensorFlow, Keras, mtcnn), lint (`dev`), `rescore --engine ray` and Keras' JAX backend.
$(RAY_STAMP): $(STAMP)
	@echo "installing the train, dev, ray and jax extras into $(VENV): about 2.2 GB more ..."
	$(BIN)/pip install --quiet -e '.[dev,demo,train,ray,jax]'
	touch $(RAY_STAMP)

env: $(STAMP)

## Build the embedded demo (SQLite, generated checkout photos) and run the nightly job on it.
demo: $(STAMP)
	$(BIN)/ageseg demo --workdir var/demo

## Set up and run the test suite (lint first: the code must stay ruff clean).
test: $(RAY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=15

## The quick loop: everything but the slow tests and PostgreSQL, on both cores.
test-fast: $(RAY_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not slow and not postgres"

lint: $(RAY_STAMP)
	$(BIN)/ruff check .

bench: $(RAY_STAMP)
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/rescore.py

clean:
	rm -rf var .pytest_cache
