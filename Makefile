# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# These machines carry a CPU build of torch on disk; asking for it exactly avoids a multi-GB
# CUDA download. Elsewhere the install falls back to pyproject's torch range.
LOCAL_TORCH := torch==2.13.0

.PHONY: demo test bench lint format clean

# kutta itself, for the demo.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(LOCAL_TORCH) || echo "local CPU torch not found; pyproject's range decides"
	$(PIP) install -q -e .
	touch $@

# Test tools plus the peers the compatibility tests and benchmark smoke tests compare against.
$(VENV)/.test: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,bench]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/kutta train spiral --out runs/spiral

test: $(VENV)/.test
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

bench: $(VENV)/.test
	$(PIP) install -q -e ".[bench,bench-pde]"
	$(PY) benchmarks/run_all.py

lint: $(VENV)/.test
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

format: $(VENV)/.test
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
