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
	$(PY) -m pip install --quiet -e '.[fast,redis,metrics,bench,test]'
	touch $(STAMP)

## run: the KV server on its embedded store, persisted under ./data (port 9000)
run: $(STAMP)
	$(VENV)/bin/sockworks serve kv --data-dir $(DATA) $(ARGS)

## test: the whole test suite
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## lint: ruff (style, docstrings), mypy --strict (src and tests), lint-imports (layers)
# Every check runs even when an earlier one fails, so one run shows everything.
lint: $(STAMP)
	@status=0; \
	echo "ruff check src tests"; $(PY) -m ruff check src tests || status=1; \
	echo "mypy"; $(PY) -m mypy || status=1; \
	echo "lint-imports"; $(VENV)/bin/lint-imports || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
