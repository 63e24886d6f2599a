# callqa developer commands. Everything installs from uv.lock (hashes pinned).
SHELL := /bin/bash
UV := $(shell ./scripts/ensure-uv.sh)
# Trust the OS certificate store (corporate proxies and custom CAs work out of the box).
export UV_SYSTEM_CERTS ?= 1
# litellm otherwise fetches its price map over the network on every import.
export LITELLM_LOCAL_MODEL_COST_MAP := True
export CALLQA_DATA_DIR ?= $(CURDIR)/.callqa
export DAGSTER_HOME ?= $(CALLQA_DATA_DIR)/dagster_home

.PHONY: install demo test ui lint schemas samples clean

install:
	$(UV) sync --frozen

demo: install  ## process the bundled calls through Dagster and print the results
	$(UV) run --frozen callqa demo

test: install  ## the whole test suite (SQLite + PostgreSQL + real faster-whisper)
	$(UV) run --frozen pytest

ui: install  ## the Dagster UI with this code location, on the demo's instance
	mkdir -p "$(DAGSTER_HOME)"
	$(UV) run --frozen dagster dev -w workspace.yaml

lint: install  ## ruff lint and format check
	$(UV) run --frozen ruff check callqa tests scripts
	$(UV) run --frozen ruff format --check callqa tests scripts

schemas: install  ## regenerate the published JSON schemas from the models
	$(UV) run --frozen callqa schema --write

samples:  ## regenerate the demo recordings (needs espeak-ng and sox)
	python3 scripts/make_sample_calls.py

clean:
	rm -rf .callqa
