# The two commands of the README: `make demo` and `make test`. Both create the
# virtualenv and install the pinned dependencies first (requirements.lock).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test ui bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/rollout-pipeline demo

test: install
	scripts/ensure-postgres-binaries
	$(BIN)/pytest

bench: install
	scripts/ensure-postgres-binaries
	$(BIN)/python benchmarks/bench_bulk_write.py

clean:
	rm -rf $(VENV) .state
