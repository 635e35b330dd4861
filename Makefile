# mcp-router — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
UV ?= uv
PORT ?= 8000
HOST ?= 127.0.0.1
IMAGE ?= mcp-router:latest
PYTEST_WORKERS ?= 2

.PHONY: help install install-npm dev run run-stdio run-dev check test test-fast test-cov lint format bench build run-container clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

install: ## Install Python deps from uv.lock (installs uv with pip if missing)
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet uv
	$(UV) sync --frozen

install-npm: ## Install the npm test servers (server-everything) from package-lock.json
	@if [ -f package-lock.json ] && { [ ! -x node_modules/.bin/mcp-server-everything ] || [ ! -f node_modules/conformance-2026/dist/index.js ] || [ ! -x node_modules/.bin/claude ] || [ package-lock.json -nt node_modules/.package-lock.json ]; }; then npm ci --no-audit --no-fund; fi

dev: install-npm ## Install with the dev dependencies (pytest, ruff, test servers, npm clients)
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet uv
	$(UV) sync --frozen --dev

run: install ## Run the router over streamable HTTP on http://$(HOST):$(PORT)/mcp
	$(UV) run mcp-router --transport http --host $(HOST) --port $(PORT)

run-stdio: install ## Run the router over stdio (as Claude Code / Claude Desktop launch it)
	$(UV) run mcp-router

run-dev: install ## Run the router over HTTP, restarted when a file under src/ changes (watchfiles)
	$(UV) run watchfiles --filter python '$(UV) run mcp-router --transport http --host $(HOST) --port $(PORT)' src

check: install ## Validate the config, connect to every backend, print the catalog
	$(UV) run mcp-router check

test: install install-npm ## Run the whole test suite
	$(UV) run pytest -n $(PYTEST_WORKERS) --dist loadgroup -q

test-cov: install install-npm ## Run the whole test suite with a coverage report (terminal + htmlcov/)
	$(UV) run pytest -n $(PYTEST_WORKERS) --dist loadgroup -q --cov=mcp_router --cov-report=term-missing:skip-covered --cov-report=html

lint: ## ruff check + format check
	$(UV) run ruff check src tests bench
	$(UV) run ruff format --check src tests bench

format: ## ruff format + autofix
	$(UV) run ruff format src tests bench
	$(UV) run ruff check --fix src tests bench

bench: install ## Benchmarks against a direct connection; writes bench/RESULTS.md
	$(UV) run python -m bench

build: ## Build the container image with podman
	podman build --format docker -t $(IMAGE) -f Containerfile .

run-container: ## Run the container image (config from ./config mounted at /app/config)
	podman run --rm -p 127.0.0.1:$(PORT):8000 -v $(CURDIR)/config:/app/config:Z -e MCP_AUTH_TOKENS -e MCP_ALLOWED_HOSTS $(IMAGE)

clean: ## Remove caches and build output
	rm -rf .pytest_cache .ruff_cache dist build bench/out htmlcov .coverage .coverage.*
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
