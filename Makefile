# Every set-up step lives here: a clean clone needs only Python >= 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint layers typecheck unit fuzz bench bench-bargein bench-cutoff bench-vad bench-gate bench-reconnect bench-tools chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded simulated upstream: no keys, no network.
demo: $(STAMP)
	$(BIN)/bridge demo --out out/demo-heard.wav

## Linter, layer contracts, strict type check, then the whole suite.
test: lint layers typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench

# The import contracts in pyproject.toml ([tool.importlinter]); bench/ is not installed.
layers: $(STAMP)
	PYTHONPATH=. $(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy --strict bridge bench

# One worker per core (pytest-xdist): each test runs its own Trio run on loopback ports;
# loadgroup keeps a module marked with xdist_group (the surface fuzz) on one worker.
unit: $(STAMP)
	$(BIN)/pytest -n auto --dist loadgroup

## The fuzz suite of the outside surface at full size (`make test` runs it at a quick size).
fuzz: $(STAMP)
	BRIDGE_FUZZ=full $(BIN)/pytest tests/fuzz_surface.py tests/fuzz_upstream.py \
		--hypothesis-show-statistics
	cat out/fuzz-surface.json

bench: bench-bargein bench-turn bench-cutoff bench-vad bench-gate bench-reconnect bench-tools bench-notes

# Each benchmark writes JSON to out/ and its printed table to out/<name>.txt.
bench-bargein: $(STAMP)
	mkdir -p out
	$(BIN)/python -m bench.bargein --out out/bench-bargein.json | tee out/bench-bargein.txt
	$(BIN)/python -m bench.bargein --scenario none --concurrency-sweep 10,20,30,40 \
		--out out/bench-bargein-sweep.json | tee out/bench-bargein-sweep.txt

# One call at a time and 10, 20, 40 concurrent calls, each with the gate on and off.
.PHONY: bench-turn
bench-turn: $(STAMP)
	mkdir -p out
	$(BIN)/python -m bench.turn --out out/bench-turn.json | tee out/bench-turn.txt

bench-cutoff: $(STAMP)
	mkdir -p out
	$(BIN)/python -m bench.cutoff --out out/bench-cutoff.json | tee out/bench-cutoff.txt

bench-vad: $(STAMP)
	mkdir -p out
	$(BIN)/python -m bench.vad --out out/bench-vad.json | tee out/bench-vad.txt

bench-gate: $(STAMP)
	mkdir -p out
	$(BIN)/python -m bench.gate_cost --out out/bench-gate.json | tee out/bench-gate.txt

# 1000 concurrent notes against a live call: answers, /healthz latency, audio gaps.
.PHONY: bench-notes
bench-notes: $(STAMP)
	mkdir -p out
	$(BIN)/python -m bench.notes_burst --out out/bench-notes.json | tee out/bench-notes.txt

# Upstream closes and stalls in real time (20 each), then a two-hour call in virtual time.
bench-reconnect: $(STAMP)
	mkdir -p out
	$(BIN)/python -m bench.reconnect --out out/bench-reconnect.json | tee out/bench-reconnect.txt

# 10,000 seeded fault schedules on every core (`make test` runs 200 of them).
chaos: $(STAMP)
	mkdir -p out
	$(BIN)/python -m bench.chaos --schedules 10000 --out out/bench-chaos.json | tee out/bench-chaos.txt

bench-tools: $(STAMP)
	mkdir -p out
	$(BIN)/python -m bench.tools --out out/bench-tools.json | tee out/bench-tools.txt

clean:
	rm -rf $(VENV) out .mypy_cache .pytest_cache .ruff_cache
