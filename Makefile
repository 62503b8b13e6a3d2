# Every set-up step lives here: a clean clone needs only Python >= 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck unit bench bench-bargein bench-cutoff bench-vad bench-gate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded simulated upstream: no keys, no network.
demo: $(STAMP)
	$(BIN)/bridge demo --out out/demo-heard.wav

## Linter, strict type check, then the whole suite.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict bridge

unit: $(STAMP)
	$(BIN)/pytest

bench: bench-bargein bench-cutoff bench-vad bench-gate

bench-bargein: $(STAMP)
	$(BIN)/python -m bench.bargein --out out/bench-bargein.json

bench-cutoff: $(STAMP)
	$(BIN)/python -m bench.cutoff --out out/bench-cutoff.json

bench-vad: $(STAMP)
	$(BIN)/python -m bench.vad --out out/bench-vad.json

bench-gate: $(STAMP)
	$(BIN)/python -m bench.gate_cost --out out/bench-gate.json

clean:
	rm -rf $(VENV) out .mypy_cache .pytest_cache .ruff_cache
