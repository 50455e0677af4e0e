# Every step CI runs has a target here, so anyone can run any step alone.
# `make test` is what CI runs (see .ci/run); `make up` runs the shop locally.

SHELL := bash
CARGO ?= cargo
TOOLS := $(CURDIR)/.tools
export PATH := $(TOOLS)/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help tools build up reset test lint fmt fmt-check clippy test-rust

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

tools: ## Install the pinned third-party tools (grpcurl, ...) into .tools/
	./tools/install-tools.sh $(TOOLS)

build: ## Build every binary (debug)
	$(CARGO) build --workspace --bins --locked

up: build ## Run the whole shop on this machine (Ctrl-C stops it; data kept in .local/)
	./target/debug/shopctl up

reset: ## Forget the local shop's data, keys and tokens
	rm -rf .local

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check: ## Check formatting
	$(CARGO) fmt --all -- --check

clippy: ## Lint with clippy, warnings are errors
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

lint: fmt-check clippy ## fmt check + clippy

test-rust: ## Every Rust test: unit, integration, real PostgreSQL, real grpcurl
	$(CARGO) test --workspace --locked

test: tools lint test-rust ## Everything CI runs: tools, lint, all tests
