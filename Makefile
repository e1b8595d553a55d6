# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   - create .venv, install torch (CPU, pinned) then the package, run the demo job
#   make test   - same set-up, then the test suite (PYTEST_ARGS="--reverse" runs it in reverse order)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch requirement would pull several GB of CUDA wheels
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/giblet-store demo

test: $(STAMP)
	# the architecture's layers (pyproject [tool.importlinter]): no import circle, nothing imports upward
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q $(PYTEST_ARGS)

# every bench, one Markdown table in bench/RESULTS.md (bench/report.py; a few minutes on 2 cores);
# e.g. make bench BENCH_ARGS="--runs 3 --encode-seconds 30 120 600"
bench: $(STAMP)
	$(PY) bench/report.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo_store .pytest_cache .hypothesis
