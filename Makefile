# Every target sets itself up: a virtual environment in $(VENV), polyhead and its
# pinned dependencies installed once per pyproject.toml version.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: setup demo test bench defaults clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

## make demo: train the forecaster on the embedded CO2 series, compare with seasonal naive
demo: setup
	$(BIN)/polyhead train configs/forecasting/patchtst_co2.py

## make test: the whole test suite
test: setup
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

## make bench: measured ratios, written to benchmarks/results/*.json
bench: setup
	$(BIN)/python -m benchmarks.forecasting
	$(BIN)/python -m benchmarks.onnx
	$(BIN)/python -m benchmarks.distributed

## make defaults: re-train the embedded default models with polyhead itself
defaults: setup
	$(BIN)/python scripts/make_defaults.py

clean:
	rm -rf runs build dist *.egg-info .pytest_cache
