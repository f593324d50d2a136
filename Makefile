# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# the test suite runs every API test on SQLite and on this PostgreSQL database
FKJ_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
export FKJ_TEST_DATABASE_URL

.PHONY: demo test install lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/fkj demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/fkj bench store

clean:
	rm -rf $(VENV) fkj-data
