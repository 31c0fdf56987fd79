# mlops-operator — the interface everyone relies on. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
PYTEST      := $(VENV)/bin/pytest
LOCAL_ENV   := .local/env
# Every target that talks to the cluster runs with the cluster's environment (KUBECONFIG, S3, Prometheus).
WITH_ENV    := set -a; [ -f $(LOCAL_ENV) ] && . ./$(LOCAL_ENV); set +a;
NAMESPACE   ?= mlops-system
RUNTIME_IMAGE  ?= localhost/mlops-runtime:dev
OPERATOR_IMAGE ?= localhost/mlops-operator:dev
BATTERIES_IMAGE ?= localhost/mlops-batteries:dev
PYTEST_ARGS ?=
# helm (and kubectl) the chart tier and `make lint` use: built once by tests/infra/build-binaries.sh, cached here.
TOOLS_BIN   := $(or $(MLOPS_CACHE_DIR),$(HOME)/.cache/mlops-operator)/tools/bin

.PHONY: help venv test test-unit test-chart chart-tools test-integration test-e2e faults cluster-up cluster-down cluster-status \
        images install uninstall crds check-crds demo bench lint clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@echo "==> python venv in $(VENV) with pinned dependencies"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## Create the Python environment (pinned deps, editable install)

test: venv lint cluster-up chart-tools images ## Everything CI runs: lint, then unit + chart + integration + e2e on the real local cluster
	@$(WITH_ENV) $(PYTEST) -m "unit or chart or integration or e2e" --durations=40 $(PYTEST_ARGS) tests

test-unit: venv ## Unit tests only (nothing but Python: no cluster, no helm; seconds)
	@$(PYTEST) -m unit $(PYTEST_ARGS) tests/unit

test-chart: venv chart-tools ## The chart tier: helm template/lint and kubectl kustomize renders (no cluster)
	@$(PYTEST) -m chart $(PYTEST_ARGS) tests/chart

chart-tools: ## Build helm and kubectl for the chart tier (Go module proxy; cached, seconds when warm)
	@bash tests/infra/build-binaries.sh chart

test-integration: venv ## Integration tests on the running local cluster
	@$(WITH_ENV) $(PYTEST) -m integration $(PYTEST_ARGS) tests/integration

test-e2e: venv ## End-to-end flows (chart installed, examples applied)
	@$(WITH_ENV) $(PYTEST) -m e2e $(PYTEST_ARGS) tests/e2e

faults: venv cluster-up images ## Every fault scenario on the local cluster, then a table (scenario, result, time to recover)
	@$(WITH_ENV) $(PYTEST) -m faults -p tests.fault_table $(PYTEST_ARGS) tests/integration tests/e2e

cluster-up: ## Start the local cluster (+ MinIO, Redis, Prometheus, Alertmanager); writes .local/env
	@bash tests/infra/cluster-up.sh

cluster-down: ## Stop the local cluster (WIPE=1 deletes its state)
	@bash tests/infra/cluster-down.sh

cluster-status: ## Show the local cluster's components
	@bash tests/infra/cluster-status.sh

images: ## Build the runtime, operator and batteries images (Docker if present, else buildah offline) and load them
	@$(WITH_ENV) RUNTIME_IMAGE=$(RUNTIME_IMAGE) OPERATOR_IMAGE=$(OPERATOR_IMAGE) BATTERIES_IMAGE=$(BATTERIES_IMAGE) bash tests/infra/build-images.sh

install: venv ## Install the Helm chart into the current cluster (S3 secret from .local/env)
	@$(WITH_ENV) NAMESPACE=$(NAMESPACE) RUNTIME_IMAGE=$(RUNTIME_IMAGE) OPERATOR_IMAGE=$(OPERATOR_IMAGE) bash tests/infra/install.sh

uninstall: ## Remove the Helm release (CRDs and custom resources stay)
	@$(WITH_ENV) helm uninstall mlops-operator -n $(NAMESPACE) || true

crds: venv ## Regenerate crds/, the chart's CRDs, rules and Argo CD health checks, docs/api-reference.md and the kustomize base
	@bash tests/infra/generate.sh

check-crds: venv ## Fail when crds/, the chart's CRDs/rules/Argo CD health checks, docs/api-reference.md or the kustomize base are stale
	@bash tests/infra/generate.sh --check

demo: venv ## The main job, from nothing: cluster, images, chart, a model trained and registered
	@bash tests/infra/demo.sh

bench: venv ## Benchmarks (ratios against peers in the same run); writes tests/bench/results/
	@$(WITH_ENV) $(PY) -m tests.bench.run

lint: venv ## Import layers (lint-imports, contracts in pyproject.toml) + byte-compile + every test module imports + helm lint
	@$(VENV)/bin/lint-imports --no-cache --no-logo
	@$(PY) -m compileall -q operator tests
	@$(PYTEST) --collect-only -q -p no:cacheprovider tests >/dev/null || { echo "lint: a test module does not import (run: $(PYTEST) --collect-only tests)" >&2; exit 1; }
	@bash tests/infra/build-binaries.sh helm
	@$(TOOLS_BIN)/helm lint charts/mlops-operator

clean: ## Remove caches inside the repo (not the cluster, not ~/.cache)
	rm -rf .pytest_cache build dist operator/*.egg-info
