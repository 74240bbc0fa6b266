# tileserver — `make serve` and `make test` work from a fresh clone (Python 3.11).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test fuzz install lint bench clean compliance

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	$(BIN)/python -m tileserver.web.assets install
	$(BIN)/python -m tileserver.graph.specs install
	touch $(STAMP)

# the console script of the editable install (put back if something uninstalled it)
$(BIN)/tileserver: $(STAMP)
	test -x $@ || $(BIN)/pip install -q --no-deps -e .

install: $(BIN)/tileserver

serve: $(BIN)/tileserver
	$(BIN)/tileserver serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Randomised search (before each release): the property tests with many more examples,
# random seeds and the example database in .hypothesis/; schemathesis runs every operation
# of /openapi.json. Whatever it finds goes into the deterministic suite as an @example or an
# entry of tests/support/fuzz.py. FUZZ_SCALE multiplies the example counts.
FUZZ_SCALE ?= 20
FUZZ_TESTS := tests/api/web/test_fuzz.py tests/unit/test_params.py tests/api/ogc/test_wcs.py::test_garbage_parameters_never_give_500
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz TILESERVER_FUZZ_SCALE=$(FUZZ_SCALE) \
	  $(BIN)/python -m pytest -q -p no:cacheprovider $(FUZZ_TESTS) $(PYTEST_ARGS)

# the openEO compliance suite (openeo-test-suite, tests/general) against the 1.2 base
compliance: $(STAMP)
	$(BIN)/python -m tests.support.compliance

lint: $(STAMP)
	$(BIN)/pip install mypy
	$(BIN)/ruff check tileserver tests bench
	$(BIN)/mypy tileserver

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache
