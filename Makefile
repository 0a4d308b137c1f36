# Everything runs from a private virtualenv that `make` creates on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   ?= ./data

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[fast,redis,bench,test]'
	touch $(STAMP)

## run: the KV server on its embedded store, persisted under ./data (port 9000)
run: $(STAMP)
	$(VENV)/bin/sockworks serve kv --data-dir $(DATA) $(ARGS)

## test: the whole test suite
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src tests examples
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
