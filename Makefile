# Two commands matter: `make demo` (the main job on the local stack) and `make test` (the test suite).
# Both install what they need first, idempotently: Debian packages, a venv keyed by pyproject.toml,
# Maven jars into lib/, and a MinIO binary; the second run only checks stamps.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3.11
TELEMETRY_CACHE ?= $(HOME)/.cache/ai-telemetry
# The venv is keyed by the dependency pins alone, so editing other parts of pyproject.toml keeps it.
DEPS_LIST := $(PYTHON_BOOT) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
  print('\n'.join(p['dependencies'] + p['optional-dependencies']['dev']))"
DEPS_HASH := $(shell $(DEPS_LIST) | sha256sum | cut -c1-12)
VENV := $(TELEMETRY_CACHE)/venv-$(DEPS_HASH)
PY := $(VENV)/bin/python
POM_HASH := $(shell sha256sum pom.xml | cut -c1-12)
JARS_STAMP := lib/.stamp-$(POM_HASH)
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_BIN := $(TELEMETRY_CACHE)/bin/minio-$(MINIO_VERSION)
COMPOSE_VERSION := v5.6.0
COMPOSE_BIN := $(TELEMETRY_CACHE)/bin/docker-compose-$(COMPOSE_VERSION)
PYTEST_ARGS ?=
WEB := services/api/web

export PYTHONPATH := $(CURDIR)
export TELEMETRY_CACHE
export MINIO_BIN
export COMPOSE_BIN

.PHONY: help deps system-deps venv jars minio stack-up stack-down stack-status migrate demo test bench-simulator schemas clean-state

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

deps: system-deps venv jars minio compose web ## install everything the project needs (idempotent)

system-deps: ## Debian packages: Java 17, Maven, Prometheus (promtool), PostgreSQL 15, Go for MinIO and Docker Compose, npm for the web page, Chromium (report PDF, and with its driver the web page's browser test) and poppler (PDF to PNG in the report test)
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jdk-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v go >/dev/null || missing="$$missing golang-go"; \
	test -x /usr/lib/postgresql/15/bin/postgres || missing="$$missing postgresql"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	if [ -n "$$missing" ]; then \
	  echo "==> apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed ## Python venv with the pinned packages (outside the repo, shared by clones)

$(VENV)/.installed:
	@echo "==> creating $(VENV) (first time: several minutes, ~1.5 GB)"
	$(PYTHON_BOOT) -m venv $(VENV)
	$(DEPS_LIST) > $(VENV)/requirements.txt
	$(VENV)/bin/pip install -q -r $(VENV)/requirements.txt
	touch $@

.PHONY: web
web: $(WEB)/dist/index.html ## the web page per role: npm ci, then esbuild bundles services/api/web/src into its dist/

# node_modules/.package-lock.json is npm's own record of an install: newer than the lock file once `npm ci` ran.
# Install scripts stay off: esbuild finds its platform binary (@esbuild/linux-x64) without its postinstall.
$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	@echo "==> npm ci in $(WEB)"
	cd $(WEB) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

$(WEB)/dist/index.html: $(WEB)/node_modules/.package-lock.json $(WEB)/build.mjs $(wildcard $(WEB)/src/*)
	cd $(WEB) && npm run --silent build

jars: $(JARS_STAMP) ## Maven: Kafka connector, Parquet writer, S3 plugin, Kafka broker into lib/

$(JARS_STAMP): pom.xml
	@echo "==> resolving Java dependencies with Maven into lib/"
	rm -rf lib && mkdir -p lib
	mvn -q -B -P flink-job dependency:copy-dependencies -DoutputDirectory=lib/flink -DincludeScope=runtime
	mvn -q -B -P flink-s3-plugin dependency:copy-dependencies -DoutputDirectory=lib/plugins/s3-fs-hadoop -DincludeScope=runtime
	mvn -q -B -P kafka-broker dependency:copy-dependencies -DoutputDirectory=lib/kafka -DincludeScope=runtime
	mvn -q -B -P k8s-operator-crd dependency:copy-dependencies -DoutputDirectory=lib/k8s-operator -DexcludeTransitive=true -DincludeScope=runtime
	touch $@

minio: $(MINIO_BIN) ## MinIO server built from the Go module proxy (cached)

$(MINIO_BIN):
	@echo "==> building MinIO $(MINIO_VERSION) (first time: a few minutes)"
	mkdir -p $(TELEMETRY_CACHE)/bin
	GOBIN=$(TELEMETRY_CACHE)/bin/tmp go install github.com/minio/minio@$(MINIO_VERSION)
	mv $(TELEMETRY_CACHE)/bin/tmp/minio $@ && rmdir $(TELEMETRY_CACHE)/bin/tmp

.PHONY: compose
compose: $(COMPOSE_BIN) ## Docker Compose CLI built from the Go module proxy (cached); tests run its `config`

# `go install` refuses github.com/docker/compose/v5 (exclude directives in its go.mod), building inside the
# downloaded module works; v5.7.x needs a newer Go than 1.26.8.
$(COMPOSE_BIN):
	@echo "==> building Docker Compose $(COMPOSE_VERSION) (first time: a few minutes)"
	mkdir -p $(TELEMETRY_CACHE)/bin
	dir=$$(go mod download -json github.com/docker/compose/v5@$(COMPOSE_VERSION) | \
	  $(PYTHON_BOOT) -c "import json, sys; print(json.load(sys.stdin)['Dir'])") && cd "$$dir" && \
	  go build -trimpath -ldflags "-w -X github.com/docker/compose/v5/internal.Version=$(COMPOSE_VERSION)" -o $@.tmp ./cmd
	mv $@.tmp $@

stack-up: deps ## start Kafka, ClickHouse (dev), PostgreSQL, Prometheus, MinIO, Flink on 127.0.0.1 (idempotent)
	$(PY) -m dev.stack up

stack-down: ## stop every local service
	@if [ -x $(PY) ]; then $(PY) -m dev.stack down; else echo "no venv yet: nothing is running"; fi

stack-status: ## show each local service and its health
	@$(PY) -m dev.stack status

migrate: venv ## apply the migrations of sql/clickhouse/migrations and sql/postgres/migrations
	$(PY) -m telemetry.migrate

.PHONY: prices
prices: migrate ## load the example price catalogue (sql/clickhouse/prices/example.yaml) for the cost views
	$(PY) -m telemetry.prices load sql/clickhouse/prices/example.yaml

schemas: venv ## regenerate the JSON Schemas in schemas/json
	$(PY) -m schemas.generate

demo: stack-up prices ## run the main job on the local stack, print a summary per role, then one API call per role
	$(PY) -m dev.demo

test: deps ## run the test suite (starts the real services it needs)
	$(PY) -m pytest $(PYTEST_ARGS)

bench-simulator: stack-up ## simulator -> local Kafka for 60 s, then a consumer checks the ground truth
	$(PY) benchmarks/bench_simulator.py

clean-state: stack-down ## delete local data and logs (.local/)
	rm -rf .local
