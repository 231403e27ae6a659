# energy-pipeline — `make help` lists the targets.

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The local broker's port (make kafka-up, make topics, make run).
KAFKA_PORT ?= 9092
export KAFKA_PORT
# The local control plane's ports (make apiserver-up).
APISERVER_PORT ?= 6443
ETCD_PORT ?= 2379
export APISERVER_PORT ETCD_PORT
# make run DURATION=N stops by itself after N seconds (0: until Ctrl-C).
DURATION ?= 0
# Extra pytest arguments, e.g. make test PYTEST_ARGS="-k producer".
PYTEST_ARGS ?=

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} \
	/^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv and install the project (editable, with test extras).

.PHONY: lint
lint: install ## Run ruff and mypy.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

.PHONY: test
test: install ## Run every test tier (starts its own Kafka broker on free ports).
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: bench
bench: install ## Run the benchmarks; results in build/bench/results.json.
	$(PY) bench/run.py

##@ Local pipeline

.PHONY: run
run: install ## Run the pipeline locally: broker, topics, producer, transformer, live view.
	$(PY) -m energy_pipeline.local run --duration $(DURATION)

.PHONY: kafka-up
kafka-up: install ## Start the local Kafka broker on 127.0.0.1:KAFKA_PORT (default 9092).
	$(PY) -m energy_pipeline.local kafka-up

.PHONY: kafka-down
kafka-down: install ## Stop the local Kafka broker.
	$(PY) -m energy_pipeline.local kafka-down

.PHONY: topics
topics: install ## Create the pipeline's topics on the local broker.
	$(PY) -m energy_pipeline.local topics

##@ Kubernetes (local control plane)

.PHONY: k8s-tools
k8s-tools: install ## Build kube-apiserver, etcd and helm once from Go modules (minutes the first time).
	$(PY) -m energy_pipeline.local.controlplane_cli build

.PHONY: apiserver-up
apiserver-up: install ## Start etcd and kube-apiserver on 127.0.0.1:APISERVER_PORT (6443); kubeconfig in build/kubeconfig.
	$(PY) -m energy_pipeline.local.controlplane_cli apiserver-up

.PHONY: apiserver-down
apiserver-down: install ## Stop the local etcd and kube-apiserver.
	$(PY) -m energy_pipeline.local.controlplane_cli apiserver-down

##@ Housekeeping

.PHONY: clean
clean: ## Remove build outputs (not the caches under ~/.cache/energy-pipeline).
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
