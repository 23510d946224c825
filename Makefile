# Fresh machine: `make demo` or `make test` creates .venv, installs avaffect with its dependencies, runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.avaffect-installed
DEMO_OUT ?= demo_out

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/avaffect demo --out $(DEMO_OUT)

# No OMP_WAIT_POLICY here: training picks its own thread count (training.cpu_threads: auto, 1 on 2 cores), and
# PASSIVE waiting made a demo-size step 3.5x slower on an idle machine (docs/benchmarks/threads.md)
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -ra --durations=15

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
