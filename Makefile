# Two entry points for a fresh machine:
#   make demo   set up .venv, fetch MNIST once, train ERM and RRR on Decoy-MNIST beside the oracle
#   make test   set up .venv, lint the code (ruff) and run the test suite
# torch is installed first and pinned to 2.13.0: its CPU wheel is what this project is built and
# measured with (an unpinned torch may pull a multi-GB CUDA build).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo lint test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/rightreasons data fetch mnist
	$(BIN)/rightreasons demo

lint: setup
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
