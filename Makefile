# The two commands of the README. Each one creates or updates .venv by itself.
#   make demo   run the main job end to end on the embedded default (local files, SQLite)
#   make test   run the whole test suite
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where the data comes from: a local folder laid out like ../shared/data when there is one,
# otherwise the official sources (needs the internet, once).
DATA_FROM ?= $(firstword $(wildcard ../shared/data))

.PHONY: demo test
demo: $(STAMP)
	$(BIN)/qamrec demo $(if $(DATA_FROM),--from $(DATA_FROM))

test: $(STAMP)
	QAMREC_SHARED_DATA=$(DATA_FROM) $(BIN)/python -m pytest -q

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $(STAMP)
