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

# The transformer's compiled hot path (Rust, services/fastpath) is built into a wheel
# with maturin and installed before the project, which depends on it; cargo keeps its
# build under the cache, so a rebuild after a change takes seconds.
MATURIN_VERSION := 1.16.0
FASTPATH_SOURCES := $(wildcard services/fastpath/src/*.rs) services/fastpath/Cargo.toml \
	services/fastpath/Cargo.lock services/fastpath/pyproject.toml \
	services/fastpath/energy_fastpath.pyi
CARGO_TARGET_DIR ?= $(HOME)/.cache/energy-pipeline/cargo-target
export CARGO_TARGET_DIR

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip 'maturin==$(MATURIN_VERSION)'
	touch $@

$(VENV)/.fastpath: $(VENV)/.created $(FASTPATH_SOURCES)
	@command -v cargo >/dev/null || { echo "make: cargo (Rust) is needed to build services/fastpath; see README.md"; exit 1; }
	@echo "building the transformer's fast path (Rust, services/fastpath; the first build takes a minute) ..."
	rm -f build/wheels/energy_fastpath-*.whl
	$(VENV)/bin/maturin build --release --quiet --interpreter $(PY) \
		--manifest-path services/fastpath/Cargo.toml --out build/wheels
	$(VENV)/bin/pip install --quiet --force-reinstall --no-deps build/wheels/energy_fastpath-*.whl
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.fastpath
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv, build the Rust fast path, install the project (editable, with test extras).

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

.PHONY: report
report: install ## Draw one simulated weekday (per-area load, high readings) into build/report/simulated-day.png.
	$(PY) -m energy_pipeline.local.report

.PHONY: dashboards
dashboards: install ## Regenerate the Grafana dashboards' JSON from deploy/observability/dashboards.py.
	$(PY) deploy/observability/dashboards.py

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

##@ Kubernetes (kind)

# The kind cluster, the images' names and tag, and where the chart goes.
KIND_CLUSTER ?= energy-pipeline
IMG_PREFIX ?= energy-pipeline
IMG_TAG ?= 0.1.0
NAMESPACE ?= energy
HELM_RELEASE ?= energy-pipeline
CHART := deploy/helm/energy-pipeline
# helm --wait: Kafka, ksqlDB and the first settings take minutes on a laptop.
DEPLOY_TIMEOUT ?= 15m
KUBE_CONTEXT = kind-$(KIND_CLUSTER)
# The prerequisites' charts: their repositories' URLs, as their docs give them.
STRIMZI_CHART_REPO ?=
STRIMZI_VERSION ?= 0.49.1
STRIMZI_NAMESPACE ?= strimzi
PROMETHEUS_CHART_REPO ?=
# Empty: the newest release; pin one for reproducible clusters.
KUBE_PROMETHEUS_STACK_VERSION ?=
MONITORING_NAMESPACE ?= monitoring
IMAGES := producer transformer operator
IMAGE_SETS = $(foreach c,$(IMAGES),--set $(c).image.repository=$(IMG_PREFIX)/energy-$(c) --set $(c).image.tag=$(IMG_TAG))

# $(call need,TOOLS): stop, naming every tool that is missing (and a Docker daemon that
# does not answer).
define need
	@missing=""; \
	for tool in $(1); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "missing:$$missing. Install them first: docker (Docker Engine), kind, kubectl, helm (v3)." >&2; \
	  exit 1; \
	fi; \
	case " $(1) " in *" docker "*) docker info >/dev/null 2>&1 || \
	  { echo "docker is installed but no Docker daemon answers: start it (or check your permissions)." >&2; exit 1; };; esac
endef

.PHONY: kind-up
kind-up: ## Create the kind cluster KIND_CLUSTER (only if it is missing), ports on 127.0.0.1.
	$(call need,docker kind kubectl)
	@if kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  echo "kind cluster $(KIND_CLUSTER) exists"; \
	else \
	  kind create cluster --name '$(KIND_CLUSTER)' --config kind-config.yaml --wait 120s; \
	fi

.PHONY: images
images: ## Build the producer, transformer and operator images (tag IMG_TAG).
	$(call need,docker)
	for c in $(IMAGES); do \
	  docker build --target $$c --tag '$(IMG_PREFIX)'/energy-$$c:'$(IMG_TAG)' . ; \
	done

.PHONY: kind-load
kind-load: ## Load the images into the kind cluster (imagePullPolicy IfNotPresent uses them).
	$(call need,docker kind)
	kind load docker-image --name '$(KIND_CLUSTER)' \
	  $(foreach c,$(IMAGES),'$(IMG_PREFIX)/energy-$(c):$(IMG_TAG)')

.PHONY: strimzi
strimzi: ## Install the Strimzi operator (chart STRIMZI_VERSION from STRIMZI_CHART_REPO).
	$(call need,kubectl helm)
	@test -n '$(STRIMZI_CHART_REPO)' || { echo "set STRIMZI_CHART_REPO to the Strimzi Helm chart repository (Strimzi's docs, 'Deploying the Cluster Operator using Helm')" >&2; exit 1; }
	helm upgrade --install strimzi-cluster-operator strimzi-kafka-operator \
	  --repo '$(STRIMZI_CHART_REPO)' --version '$(STRIMZI_VERSION)' \
	  --kube-context '$(KUBE_CONTEXT)' --namespace '$(STRIMZI_NAMESPACE)' --create-namespace \
	  --values deploy/kind/strimzi-values.yaml --wait --timeout 10m

.PHONY: monitoring
monitoring: ## Install kube-prometheus-stack (Grafana on 127.0.0.1:3000, Prometheus on :9090).
	$(call need,kubectl helm)
	@test -n '$(PROMETHEUS_CHART_REPO)' || { echo "set PROMETHEUS_CHART_REPO to the prometheus-community Helm chart repository (its README gives the URL)" >&2; exit 1; }
	helm upgrade --install kube-prometheus-stack kube-prometheus-stack \
	  --repo '$(PROMETHEUS_CHART_REPO)' $(if $(KUBE_PROMETHEUS_STACK_VERSION),--version '$(KUBE_PROMETHEUS_STACK_VERSION)') \
	  --kube-context '$(KUBE_CONTEXT)' --namespace '$(MONITORING_NAMESPACE)' --create-namespace \
	  --values deploy/kind/kube-prometheus-stack-values.yaml --wait --timeout 10m

.PHONY: deploy
deploy: ## Install or upgrade the chart in NAMESPACE and wait until every pod is ready.
	$(call need,kubectl helm)
	helm upgrade --install '$(HELM_RELEASE)' $(CHART) \
	  --kube-context '$(KUBE_CONTEXT)' --namespace '$(NAMESPACE)' --create-namespace \
	  --values deploy/kind/energy-pipeline-values.yaml $(IMAGE_SETS) \
	  --wait --timeout '$(DEPLOY_TIMEOUT)'
	kubectl --context '$(KUBE_CONTEXT)' -n '$(NAMESPACE)' get energypipelines,pods

.PHONY: demo
demo: ## Add a second building (examples/building-b-admin.yaml) and print how to look at it.
	$(call need,kubectl helm)
	kubectl --context '$(KUBE_CONTEXT)' -n '$(NAMESPACE)' apply -f examples/building-b-admin.yaml
	helm upgrade --install building-b $(CHART) \
	  --kube-context '$(KUBE_CONTEXT)' --namespace '$(NAMESPACE)' \
	  --values deploy/kind/building-b-values.yaml $(IMAGE_SETS) \
	  --wait --timeout '$(DEPLOY_TIMEOUT)'
	kubectl --context '$(KUBE_CONTEXT)' -n '$(NAMESPACE)' get energypipelines
	@echo
	@echo "Grafana:    http://127.0.0.1:3000  (admin / energy)"
	@echo "Prometheus: http://127.0.0.1:9090"
	@echo "ksqlDB, per-area tables of building B (a simulated hour passes every minute):"
	@echo "  $(VENV)/bin/energy-ksql query -f examples/building-b-admin.yaml --url http://127.0.0.1:8088 --area offices"
	@echo "  $(VENV)/bin/energy-ksql query -f examples/building-b-admin.yaml --url http://127.0.0.1:8088 --area offices --windowed"
	@echo "and of the chart's own pipeline:"
	@echo "  kubectl --context $(KUBE_CONTEXT) -n $(NAMESPACE) get energypipeline $(HELM_RELEASE) -o yaml > pipeline.yaml"
	@echo "  $(VENV)/bin/energy-ksql query -f pipeline.yaml --url http://127.0.0.1:8088 --area lobby"

.PHONY: undeploy
undeploy: ## Uninstall the demo and the chart (the CRD and the prerequisites stay).
	$(call need,kubectl helm)
	helm uninstall building-b --kube-context '$(KUBE_CONTEXT)' --namespace '$(NAMESPACE)' --ignore-not-found --wait
	kubectl --context '$(KUBE_CONTEXT)' -n '$(NAMESPACE)' delete -f examples/building-b-admin.yaml --ignore-not-found --wait
	helm uninstall '$(HELM_RELEASE)' --kube-context '$(KUBE_CONTEXT)' --namespace '$(NAMESPACE)' --ignore-not-found --wait

.PHONY: kind-down
kind-down: ## Delete the kind cluster KIND_CLUSTER (if it exists).
	$(call need,docker kind)
	@if kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  kind delete cluster --name '$(KIND_CLUSTER)'; \
	else \
	  echo "no kind cluster $(KIND_CLUSTER)"; \
	fi

.PHONY: kind-all
kind-all: ## The whole path: kind-up images kind-load strimzi monitoring deploy demo.
	$(call need,docker kind kubectl helm)
	$(MAKE) kind-up
	$(MAKE) images
	$(MAKE) kind-load
	$(MAKE) strimzi
	$(MAKE) monitoring
	$(MAKE) deploy
	$(MAKE) demo

.PHONY: helm-lint
helm-lint: install ## helm lint the chart with its defaults and every ci/*-values.yaml (helm from Go modules).
	$(PY) -m energy_pipeline.local.controlplane_cli helm -- lint --strict $(CHART)
	for values in $(CHART)/ci/*-values.yaml; do \
	  $(PY) -m energy_pipeline.local.controlplane_cli helm -- lint --strict $(CHART) --values $$values; \
	done

.PHONY: chart-test
chart-test: install ## The chart, image and wheel tests (helm, kube-apiserver, kubernetes-validate).
	$(PY) -m pytest -m chart $(PYTEST_ARGS)

##@ Housekeeping

.PHONY: clean
clean: ## Remove build outputs (not the caches under ~/.cache/energy-pipeline).
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
