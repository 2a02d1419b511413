# tidescale — one-command set-up. `make demo` and `make test` install everything they need, once,
# into .venv/ and into the cache directory below, and reuse it when present.

# Every downloaded or built artefact lives here (pip wheels, the Maven repository, jars, Debian packages).
CACHE ?= $(HOME)/.cache/tidescale
export TIDESCALE_CACHE := $(abspath $(CACHE))

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MVN := mvn -q -B -Dmaven.repo.local=$(TIDESCALE_CACHE)/m2
PYTEST_ARGS ?=

JARS := $(TIDESCALE_CACHE)/jars/kafka/.done $(TIDESCALE_CACHE)/jars/flink/.done $(TIDESCALE_CACHE)/jars/spark/.done
PROMETHEUS := $(TIDESCALE_CACHE)/deb/prometheus/usr/bin/prometheus

.PHONY: setup demo test lint check-layers unit integration bench clean-env help
help:
	@echo "make demo   — set up, then run the end-to-end demo on the embedded default"
	@echo "make test   — set up, then lint, type-check, check layers and run every test"
	@echo "make setup  — only the set-up (venv, Python packages, jars, Prometheus) into $(TIDESCALE_CACHE)"

setup: $(VENV)/.installed $(JARS) $(PROMETHEUS)

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	PIP_CACHE_DIR=$(TIDESCALE_CACHE)/pip $(PY) -m pip install -q --upgrade pip
	PIP_CACHE_DIR=$(TIDESCALE_CACHE)/pip $(PY) -m pip install -q -e '.[engines,dev]'
	touch $@

# Jars from Maven Central, resolved with mvn from the pinned poms under deps/maven/.
$(TIDESCALE_CACHE)/jars/%/.done: deps/maven/%/pom.xml
	rm -rf $(TIDESCALE_CACHE)/jars/$*.tmp
	$(MVN) -f deps/maven/$*/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	  -DoutputDirectory=$(TIDESCALE_CACHE)/jars/$*.tmp $(MVN_ARGS_$*)
	rm -rf $(TIDESCALE_CACHE)/jars/$* && mv $(TIDESCALE_CACHE)/jars/$*.tmp $(TIDESCALE_CACHE)/jars/$*
	touch $@
# pyspark already ships Scala, Hadoop and SLF4J: copy only what its Kafka connector adds.
MVN_ARGS_spark := -DexcludeGroupIds=org.apache.hadoop,org.scala-lang,org.scala-lang.modules,org.lz4,org.xerial.snappy,org.slf4j,com.google.code.findbugs -DexcludeArtifactIds=spark-tags_2.13

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
