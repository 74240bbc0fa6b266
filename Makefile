# tileserver — `make serve` and `make test` work from a fresh clone (Python 3.11).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test install lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	$(BIN)/python -m tileserver.web.assets install
	$(BIN)/python -m tileserver.core.processes.specs install
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/tileserver serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/pip install ruff mypy
	$(BIN)/ruff check tileserver tests bench
	$(BIN)/mypy tileserver

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache
