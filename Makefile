# Everything runs from a private virtualenv that `make` creates on first use.
# Two install stamps: `make run` installs only what serving needs (.[fast]:
# uvloop, and hiredis for the RESP port); `make test`, `make lint` and the
# benchmarks install the developer extras on top (redis-py, matplotlib, lupa,
# pytest, mypy, ruff, import-linter).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
STAMP  := $(VENV)/.installed
DATA   ?= ./data

.PHONY: run test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# setup.py and the .pyx: the optional compiled hot path is rebuilt when they change.
BUILD_INPUTS := pyproject.toml setup.py src/sockworks/services/_fastpath.pyx \
	src/sockworks/storage/_clock.pyx src/sockworks/protocols/_crc64.pyx

$(RUN_STAMP): $(BUILD_INPUTS) | $(PY)
	$(PY) -m pip install --quiet -e '.[fast]'
	touch $(RUN_STAMP)

# The developer extras include .[fast], so this satisfies `make run` too.
$(STAMP): $(BUILD_INPUTS) | $(PY)
	$(PY) -m pip install --quiet -e '.[fast,redis,metrics,lua,bench,test]'
	touch $(RUN_STAMP) $(STAMP)

## run: the KV server on its embedded store, persisted under ./data (port 9000)
run: $(RUN_STAMP)
	$(VENV)/bin/sockworks serve kv --data-dir $(DATA) $(ARGS)

## test: the whole test suite (SOCKWORKS_NO_EXTENSIONS=1 make test: on the pure-Python path)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## lint: ruff (style, docstrings), mypy --strict (src and tests), lint-imports (layers)
# Every check runs even when an earlier one fails, so one run shows everything.
lint: $(STAMP)
	@status=0; \
	echo "ruff check src tests examples"; $(PY) -m ruff check src tests examples || status=1; \
	echo "mypy"; $(PY) -m mypy || status=1; \
	echo "lint-imports"; $(VENV)/bin/lint-imports || status=1; \
	exit $$status

## bench: the ratios benchmark (benchmarks/README.md); BENCH_ARGS passes flags
bench: $(STAMP)
	$(PY) benchmarks/ratios.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
