# Every step CI runs has a target here, so anyone can run any step alone.
# `make test` is what CI runs (see .ci/run); `make up` runs the shop locally.

SHELL := bash
CARGO ?= cargo
TOOLS := $(CURDIR)/.tools
export PATH := $(TOOLS)/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help tools build up reset bench profile chaos test lint fmt fmt-check clippy test-rust \
        chart-lint chart-test chart-config-test kube-play-test deploy-test \
        manifests manifests-check images images-local observability-check

# Delivery (docker/, helm/, k8s/, deploy/): pinned tools from .tools, see tools/install-tools.sh.
HELM := $(TOOLS)/bin/helm
KUBECTL := $(TOOLS)/bin/kubectl-1.34
TOOLS_PY := $(TOOLS)/venv/bin/python
CHECKOV := $(TOOLS)/bin/checkov
CHECK_ENV := HELM=$(HELM) KUBECTL=$(KUBECTL) PY=$(TOOLS_PY) CHECKOV=$(CHECKOV)
# Services the binary checks run (all three unless told otherwise).
SERVICES ?= productinfo order storefront
# `make images`: docker if its daemon answers, else podman.
CONTAINER_ENGINE ?= $(shell docker info >/dev/null 2>&1 && echo docker || (command -v podman >/dev/null && echo podman))
IMAGE_REGISTRY ?= ghcr.io/grpc-shop
IMAGE_TAG ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

tools: ## Install the pinned third-party tools (grpcurl, ...) into .tools/
	./tools/install-tools.sh $(TOOLS)

build: ## Build every binary (debug)
	$(CARGO) build --workspace --bins --locked

up: build ## Run the whole shop on this machine, mutual TLS (ARGS=--plaintext: without; Ctrl-C stops it; data kept in .local/)
	./target/debug/shopctl up $(ARGS)

reset: ## Forget the local shop's data, keys and tokens
	rm -rf .local

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check: ## Check formatting
	$(CARGO) fmt --all -- --check

clippy: ## Lint with clippy, warnings are errors
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

lint: fmt-check clippy ## fmt check + clippy

test-rust: build ## Every Rust test: unit, integration, real PostgreSQL, real grpcurl
	$(CARGO) test --workspace --locked

chart-lint: ## helm lint --strict of helm/shop with the defaults and every test values file
	@for v in "" deploy/checks/values/native-probes.yaml deploy/checks/values/external-db.yaml \
	          deploy/checks/values/hpa-ingress.yaml deploy/checks/values/supplied-secrets.yaml \
	          deploy/checks/values/mixed-secrets.yaml deploy/checks/values/cert-manager.yaml \
	          deploy/checks/values/cert-manager-issuer.yaml deploy/checks/values/no-tls.yaml deploy/checks/values/faults.yaml \
	          deploy/checks/values/cloudnativepg.yaml deploy/checks/values/mixed-db.yaml \
	          deploy/checks/values/external-db-read-url.yaml deploy/checks/values/external-db-read-secret.yaml k8s/chart-values.yaml; do \
	  $(HELM) lint --strict helm/shop $${v:+-f $$v} | grep -v '^$$' || exit 1; done

chart-test: ## Chart checks needing no Rust build: lint, render, schema, API validation, checkov, policy, secrets Job, k8s/ in sync
	$(CHECK_ENV) deploy/checks/chart-test.sh

chart-config-test: build ## The real binaries accept every rendered command, env and mounted key file
	$(CHECK_ENV) SERVICES="$(SERVICES)" deploy/checks/chart-config-test.sh

kube-play-test: build ## podman kube play of the chart: PostgreSQL, migrations, probes, smoke test
	$(CHECK_ENV) SERVICES="$(SERVICES)" deploy/checks/kube-play-test.sh

images-local: build ## Local test images for kube-play-test (podman, debug binaries, no registry)
	SERVICES="$(SERVICES)" deploy/checks/podman-images.sh

observability-check: ## Validate deploy/observability offline: collector, Prometheus rules, dashboards, manifests
	$(CHECK_ENV) ./deploy/observability/check.sh

deploy-test: chart-test chart-config-test kube-play-test observability-check ## Every Kubernetes delivery check

manifests: ## Regenerate the plain manifests k8s/shop.yaml from the chart
	HELM=$(HELM) deploy/render-manifests.sh

manifests-check: ## Fail if k8s/shop.yaml is not what the chart renders now
	@HELM=$(HELM) deploy/render-manifests.sh $(CURDIR)/target/shop.yaml.check
	@diff -u k8s/shop.yaml target/shop.yaml.check && echo "k8s/shop.yaml is in sync with helm/shop" \
	  || { echo "k8s/shop.yaml is stale: run 'make manifests'"; exit 1; }

images: ## Build the service images with docker or podman (IMAGE_REGISTRY, IMAGE_TAG)
	@[ -n "$(CONTAINER_ENGINE)" ] || { echo "neither a docker daemon nor podman is available"; exit 1; }
	for s in productinfo order storefront; do \
	  $(CONTAINER_ENGINE) build -f docker/Dockerfile --target $$s \
	    --build-arg VERSION=$(IMAGE_TAG) \
	    --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	    --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
	    -t $(IMAGE_REGISTRY)/$$s:$(IMAGE_TAG) . || exit 1; \
	done

bench: ## Benchmark (release builds): report in target/bench/report.{md,json}
	$(CARGO) build --release --locked -p productinfo -p order -p storefront -p shopctl
	target/release/shopctl bench --bin-dir target/release --out target/bench

chaos: ## Kill replicas, restart PostgreSQL, drain every service under load; check nothing was lost (release builds)
	$(CARGO) build --release --locked -p productinfo -p order -p storefront -p shopctl
	target/release/shopctl chaos --bin-dir target/release --out target/chaos

profile: ## make bench, with a perf profile of the throughput runs: target/profile/profile-*.txt
	$(CARGO) build --release --locked -p productinfo -p order -p storefront -p shopctl
	target/release/shopctl bench --bin-dir target/release --out target/profile --profile

test: tools lint test-rust deploy-test ## Everything CI runs: tools, lint, all tests, deployment checks
