# The two commands of the README: `make demo` and `make test`. Both create the
# virtualenv and install the pinned dependencies first (requirements.lock).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp

.PHONY: install demo test ui bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	$(BIN)/pip check
	touch $(STAMP)

# The tests also cover the Parquet/Spark log source and the deployment's run launcher: the
# `spark` and `deploy` extras (pyspark is a 456 MB source archive, built once into pip's cache).
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,spark,deploy]'
	$(BIN)/pip check
	touch $(TEST_STAMP)

install: $(STAMP)

demo: install
	$(BIN)/rollout-pipeline demo

# On both cores (pytest-xdist): two worker processes, each with its own session fixtures (its own template
# database, and its own Spark session or throwaway cluster when its tests need one). Not --dist loadgroup:
# with pytest 9.2 xdist 3.8 no longer groups by xdist_group (pytest-dev/pytest-xdist#1386).
test: $(TEST_STAMP)
	scripts/ensure-postgres-binaries
	scripts/ensure-browser
	scripts/ensure-java
	$(BIN)/pytest -n 2

# The Dagster UI on the demo's state, bound to localhost only (`make ui PORT=3417` for another port): the
# webserver with the reports served at /reports, and the daemon. It prints its URL first; Dagster's dev-mode
# warnings show only with `VERBOSE=1`.
PORT ?= 3000
ui: install
	@DAGSTER_HOME=$(CURDIR)/.state/demo/dagster ROLLOUT_STATE_DIR=$(CURDIR)/.state/demo \
	ROLLOUT_DATABASE_URL=sqlite:///$(CURDIR)/.state/demo/rollout.db \
	$(BIN)/rollout-pipeline $(if $(VERBOSE),--verbose) ui --host 127.0.0.1 --port $(PORT)

bench: install
	scripts/ensure-postgres-binaries
	$(BIN)/python benchmarks/bench_bulk_write.py

# A day's analysis at 2M and 10M rows against one aggregate scan and pandas (issue #7; ~10 min).
.PHONY: bench-analysis bench-nightly bench-judge bench-fleet bench-spark bench-small-day
bench-analysis: install
	scripts/ensure-postgres-binaries
	$(BIN)/python benchmarks/bench_analysis.py

# Where a nightly run's time goes, for 1 and 20 models (imports, executor, steps).
bench-nightly: install
	scripts/ensure-postgres-binaries
	$(BIN)/python benchmarks/bench_nightly.py

# A night of 200 models through the nightly schedule's path against the same analysis without Dagster (issue #16).
bench-fleet: install
	scripts/ensure-postgres-binaries
	$(BIN)/python benchmarks/bench_fleet.py

# The same 2M/10M-row days as Parquet through the Spark path (local[2]) against Spark's floor and PostgreSQL (issue #16).
bench-spark: $(TEST_STAMP)
	scripts/ensure-postgres-binaries
	scripts/ensure-java
	$(BIN)/python benchmarks/bench_spark.py

# A small day's decide --dry-run (4,000 requests, SQLite) against --help, and where its seconds go (issue #23; ~2 min).
bench-small-day: install
	$(BIN)/python benchmarks/bench_small_day.py

# The judge's classify_metric from 1k to 1M values per side (target: 100k per side well under 1 s).
bench-judge: install
	$(BIN)/python benchmarks/bench_judge.py

clean:
	rm -rf $(VENV) .state
