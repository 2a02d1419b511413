# tidescale — one-command set-up. `make demo` and `make test` install everything they need, once,
# into .venv/ and into the cache directory below, and reuse it when present.

# Every downloaded or built artefact lives here (pip wheels, the Maven repository, jars, Debian packages,
# the Go module and build caches and the binaries built from them).
CACHE ?= $(HOME)/.cache/tidescale
export TIDESCALE_CACHE := $(abspath $(CACHE))

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup bytecode jars prometheus kubernetes chromium demo test check lint unit integration bench clean-env help
help:
	@echo "make demo   — set up, then run the end-to-end demo on the embedded default"
	@echo "make test   — set up, then lint, type-check, check layers and run every test"
	@echo "make check  — lint, types, layers and the unit tests (no set-up beyond the venv; ~2 min)"
	@echo "make setup  — only the set-up (venv, Python packages, jars, Prometheus, Chromium) into $(TIDESCALE_CACHE)"

setup: $(VENV)/.installed bytecode jars prometheus kubernetes chromium

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	PIP_CACHE_DIR=$(TIDESCALE_CACHE)/pip $(PY) -m pip install -q --upgrade pip
	PIP_CACHE_DIR=$(TIDESCALE_CACHE)/pip $(PY) -m pip install -q --no-compile -e '.[engines,dev]'
	touch $@

# The venv byte-compiled once, on every core, rather than by pip one file at a time: Python only reads a .pyc
# where PYTHONDONTWRITEBYTECODE is set (as on CI), so without this every process — each Flink or Spark Python
# worker, each CLI call of the tests — compiled pandas, Beam and PyFlink again (2 CPU-s a start). The
# project's own modules are compiled where they changed (well under a second when nothing did).
bytecode: $(VENV)/.compiled
	$(PY) -m compileall -q -j 0 autoscaler exporter jobs kernel streaming tidescale

$(VENV)/.compiled: $(VENV)/.installed
	$(PY) -m compileall -q -j 0 $(VENV)/lib
	touch $@

# Jars from Maven Central, resolved with mvn from the pinned poms under deps/maven/ (skipped when cached).
jars:
	deps/fetch-jars.sh kafka flink spark

# kube-apiserver, kube-controller-manager, kube-scheduler, etcd, KWOK and helm, built from the Go module proxy
# (deps/go/); each is reused when present with the pinned version.
kubernetes:
	deps/build-kubernetes.sh

# Prometheus from Debian's package, unpacked into the cache (no system service is installed or started).
prometheus:
	deps/fetch-prometheus.sh

# Headless Chromium and its driver from Debian's packages, installed with apt-get (the console's browser tests).
chromium:
	deps/fetch-chromium.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

check: lint unit

unit: bytecode
	$(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

integration: setup
	$(VENV)/bin/pytest -m integration $(PYTEST_ARGS)

# Modules that bring up environments of their own run beside the rest (tests/lanes.sh): the streaming fault
# tests and the demo, which work the CPU, in one lane; the README's commands, the controller benchmark and the
# local restarts, which mostly wait (scale-down windows, restarts), in another.
SECOND_LANE := tests/tidescale/test_demo.py tests/streaming/test_flink_restart.py \
	tests/streaming/test_spark_faults.py tests/tidescale/test_bench_streaming.py
THIRD_LANE := tests/tidescale/test_readme_controller.py tests/tidescale/test_bench_controller.py \
	tests/tidescale/test_local_restart.py tests/tidescale/test_local_errors.py
test: setup lint
	tests/lanes.sh $(VENV)/bin/pytest $(PYTEST_ARGS) -- $(SECOND_LANE) -- $(THIRD_LANE)

demo: setup
	$(VENV)/bin/tidescale demo

bench: setup
	$(VENV)/bin/tidescale bench scheduler --json

clean-env:
	rm -rf $(VENV)
