# The two commands a newcomer runs: `make run` and `make test`. Both bootstrap what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench faults lint typecheck contracts unit integration tools clean help

help:
	@echo "make run    - start the broker, the services and demo data (Ctrl-C stops all)"
	@echo "make test   - lint, type-check, contract drift check and the whole test suite"
	@echo "make bench  - throughput, latency, rebuild, memory and HTTP figures vs targets (BENCH_SCALE=0.1: short)"
	@echo "make faults - kill services and the broker under load, then check nothing was lost (FAULTS_ARGS=--seed N)"
	@echo "make contracts - regenerate contracts/schemas and contracts/asyncapi.yaml"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# The broker of `make run`: noida (no set-up) or kafka (Apache Kafka, needs Java and Maven).
BROKER ?= noida
run: $(STAMP)
	$(BIN)/python -m services.stack --broker $(BROKER)

# Debian tools the tests use: kcat (a third-party Kafka client that reads our topics),
# docker-compose 1.29 (validates docker-compose.yml; no Docker engine runs here),
# prometheus 2.42 (promtool for rule tests, the server for the dashboard query check) and
# postgresql (the server binaries the tests start their own throwaway cluster from; they are
# not on PATH, hence the check for initdb where Debian puts it) and chromium (the browser the
# web console's tests drive through Playwright; never Playwright's own download).
DEBIAN_TOOLS := kcat docker-compose prometheus chromium
tools:
	@missing=""; for tool in $(DEBIAN_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing (Debian packages) ..."; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "missing$$missing: the tests that need them will be skipped (apt-get install$$missing)"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check services contracts tests deploy
	$(BIN)/ruff format --check services contracts tests deploy

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/python -m contracts.export

test: $(STAMP) tools lint typecheck
	$(BIN)/python -m contracts.export --check
	$(BIN)/pytest

# Throughput and memory figures (BENCH_SCALE=0.1 for a short run); never asserted by tests.
bench: $(STAMP)
	$(BIN)/python -m tests.bench

# The long fault run on Apache Kafka: 30,000 readings, 300 objective changes, 8 kills, 2
# broker restarts, a broker crash (SIGKILL) and a wipe of the broker's data (a few minutes);
# `make test` runs a short one. A seed replays.
faults: $(STAMP)
	$(BIN)/python -m tests.faults --readings 30000 --objective-changes 300 --kills 8 \
		--broker-restarts 2 --broker-crashes 1 --wipe $(FAULTS_ARGS)

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
