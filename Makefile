# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both create the virtual environment and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= runs/demo

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) cli.py demo --out $(OUT) --overwrite

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	NYU_SAMPLES_DIR=$${NYU_SAMPLES_DIR:-$(abspath $(wildcard ../shared/nyu-samples))} $(PY) -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
