# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both create the virtual environment and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= runs/demo
# Test-only: TensorFlow + tf_keras rebuild the authors' Keras model as a reference for
# import-keras. A separate environment (the product never imports TensorFlow); when it cannot
# be installed, those tests skip with the reason.
KERAS_VENV ?= .venv-keras
KERAS_STAMP := $(KERAS_VENV)/.installed-stamp
KERAS_REQS := 'tensorflow-cpu>=2.16' 'tf_keras>=2.16'

# The serving environment: NVIDIA PyTriton (a real Triton server binary with its Python
# backend) pins numpy < 2, so `cli.py serve` runs Triton from its own venv, as production runs
# Triton in its own container. Debian's python3 first: the backend stub links the system's
# libpython (serve.triton_server also puts another interpreter's own libpython first).
SERVE_VENV ?= .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed-stamp
SERVE_PYTHON ?= $(shell [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv' 2>/dev/null && echo /usr/bin/python3 || echo $(PYTHON))
SERVE_REQS := 'nvidia-pytriton>=0.5' 'onnxruntime>=1.20' 'onnx>=1.15' 'pillow>=10.0' 'pyyaml>=5.4'

FIGURES ?= runs/figures

.PHONY: install install-jetson demo figures test lint clean keras-reference serve-env

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# On a Jetson (JetPack 6: Python 3.10; JetPack 7: 3.12), with JetPack's system Python: a venv
# that sees JetPack's TensorRT and OpenCV, the runtime under JetPack's pins; --check: detect only.
install-jetson:
	$(PYTHON) -m densedepth.util.install_jetson --venv $(VENV) $(JETSON_ARGS)

keras-reference:
	@if [ ! -f $(KERAS_STAMP) ]; then \
	  ($(PYTHON) -m venv $(KERAS_VENV) && $(KERAS_VENV)/bin/python -m pip install --quiet $(KERAS_REQS) \
	   && touch $(KERAS_STAMP)) || echo "TensorFlow reference not installed: its tests will skip"; fi

serve-env:
	@if [ ! -f $(SERVE_STAMP) ]; then \
	  ($(SERVE_PYTHON) -m venv $(SERVE_VENV) && $(SERVE_VENV)/bin/python -m pip install --quiet $(SERVE_REQS) \
	   && touch $(SERVE_STAMP)) || echo "serving environment not installed: the Triton server tests will skip"; fi

demo: $(STAMP)
	$(PY) cli.py demo --out $(OUT) --overwrite

# The measured CPU figures: every format of the demo's checkpoints at two input sizes, against
# this machine's GEMM peaks, spliced between docs/benchmarks.md's figures markers (`make demo` first).
figures: $(STAMP)
	$(PY) cli.py bench $(OUT)/densenet169/best.pt $(OUT)/densenet121/best.pt --build all \
	  --input-size 288x384 --input-size 480x640 --peak --threads 2 --calib synthetic \
	  --calib-images 64 --limit 8 --iters 10 --min-time 3 --out $(FIGURES) --overwrite
	$(PY) -m bench.readme $(FIGURES)/bench.json docs/benchmarks.md

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint keras-reference serve-env
	NYU_SAMPLES_DIR=$${NYU_SAMPLES_DIR:-$(abspath $(wildcard ../shared/nyu-samples))} \
	KERAS_PYTHON=$${KERAS_PYTHON:-$$([ -f $(KERAS_STAMP) ] && echo $(abspath $(KERAS_VENV))/bin/python)} \
	DENSEDEPTH_SERVE_PYTHON=$${DENSEDEPTH_SERVE_PYTHON:-$$([ -f $(SERVE_STAMP) ] && echo $(abspath $(SERVE_VENV))/bin/python)} \
	$(PY) -m pytest

clean:
	rm -rf $(VENV) $(KERAS_VENV) $(SERVE_VENV) runs .pytest_cache .ruff_cache *.egg-info
