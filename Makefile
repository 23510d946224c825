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

# OpenMP threads that wait passively: with the default spin-wait, 2 torch threads on a busy 2-core machine
# ran a training step many times slower (issue "Where the time goes today"); passive waiting costs nothing idle
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BIN)/python -m pytest -q -ra --durations=15

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
