# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# These machines carry a CPU build of torch on disk; asking for it exactly avoids a multi-GB CUDA download.
LOCAL_TORCH := torch==2.13.0

.PHONY: demo test bench lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(LOCAL_TORCH) || echo "local CPU torch not found; pyproject's range decides"
	$(PIP) install -q -e ".[dev]"
	touch $@

$(VENV)/.bench: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,bench]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/kutta train spiral --out runs/spiral

test: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

bench: $(VENV)/.bench
	$(PY) benchmarks/run_all.py

lint: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

format: $(VENV)/.installed
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
