# Two entry points (see README): `make demo` sets up and runs the demo, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_HOME := gallery-home

$(BIN)/gallery: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the CPU wheel: any looser spec pulls several GB of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

.PHONY: setup demo test bench
setup: $(BIN)/gallery

demo: setup
	rm -rf $(DEMO_HOME)
	$(BIN)/gallery --home $(DEMO_HOME) enroll "Barack Obama" data/obama.jpg
	$(BIN)/gallery --home $(DEMO_HOME) enroll "Joe Biden" data/biden.jpg
	$(BIN)/gallery --home $(DEMO_HOME) identify data/obama2.jpg
	$(BIN)/gallery --home $(DEMO_HOME) identify data/two_people.jpg
	$(BIN)/gallery --home $(DEMO_HOME) identify data/grace_hopper.jpg || \
		echo "exit code $$?: nobody recognised, as expected for Grace Hopper, who was never enrolled"
	$(BIN)/gallery --home $(DEMO_HOME) list

# Lint, format and types first (seconds), then the tests: CI fails on any of them.
test: setup
	$(BIN)/ruff check gallery tests scripts benchmarks migrations
	$(BIN)/ruff format --check gallery tests scripts benchmarks migrations
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/bench_pipeline.py
