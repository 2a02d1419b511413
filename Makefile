# tidescale — one-command set-up. `make demo` and `make test` install everything they need, once,
# into .venv/ and into the cache directory below, and reuse it when present.

# Every downloaded or built artefact lives here (pip wheels, the Maven repository, jars, Debian packages,
# the Go module and build caches and the binaries built from them).
CACHE ?= $(HOME)/.cache/tidescale
export TIDESCALE_CACHE := $(abspath $(CACHE))

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MVN := mvn -q -B -Dmaven.repo.local=$(TIDESCALE_CACHE)/m2
PYTEST_ARGS ?=

PROMETHEUS := $(TIDESCALE_CACHE)/deb/prometheus/usr/bin/prometheus

.PHONY: setup compiled jars kubernetes demo test lint unit integration bench clean-env help
help:
	@echo "make demo   — set up, then run the end-to-end demo on the embedded default"
	@echo "make test   — set up, then lint, type-check, check layers and run every test"
	@echo "make setup  — only the set-up (venv, Python packages, jars, Prometheus) into $(TIDESCALE_CACHE)"

setup: $(VENV)/.installed compiled jars $(PROMETHEUS) kubernetes

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	PIP_CACHE_DIR=$(TIDESCALE_CACHE)/pip $(PY) -m pip install -q --upgrade pip
	PIP_CACHE_DIR=$(TIDESCALE_CACHE)/pip $(PY) -m pip install -q -e '.[engines,dev]'
	touch $@

# The decision core compiled with mypyc into $(TIDESCALE_CACHE)/compiled/<key of the sources>/ (~40 s; reused
# while the sources, Python and mypy are unchanged). The `tidescale` command uses it; TIDESCALE_COMPILED=0 not.
compiled: $(VENV)/.installed
	$(PY) -m tidescale.compiled build

# Jars from Maven Central, resolved with mvn from the pinned poms under deps/maven/ (skipped when cached).
jars:
	deps/fetch-jars.sh kafka flink spark

# kube-apiserver, kube-controller-manager, kube-scheduler, etcd, KWOK and helm, built from the Go module proxy
# (deps/go/); each is reused when present with the pinned version.
kubernetes:
	deps/build-kubernetes.sh

# Prometheus from Debian's package, unpacked into the cache (no system service is installed or started).
$(PROMETHEUS):
	mkdir -p $(TIDESCALE_CACHE)/deb
	cd $(TIDESCALE_CACHE)/deb && (apt-get download prometheus 2>/dev/null || (apt-get update -qq && apt-get download prometheus))
	rm -rf $(TIDESCALE_CACHE)/deb/prometheus
	dpkg -x $$(ls -t $(TIDESCALE_CACHE)/deb/prometheus_*.deb | head -1) $(TIDESCALE_CACHE)/deb/prometheus
	test -x $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: $(VENV)/.installed
	$(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

integration: setup
	$(VENV)/bin/pytest -m integration $(PYTEST_ARGS)

test: setup lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/tidescale demo

bench: setup
	$(VENV)/bin/tidescale bench scheduler --json

clean-env:
	rm -rf $(VENV)
