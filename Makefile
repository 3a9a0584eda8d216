.PHONY: setup run test bench ui opensearch clean-state

export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_AUTH_MODE ?= disabled

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/agentic run

test: setup
	.venv/bin/python -m pytest

bench: setup
	.venv/bin/python benchmarks/run_all.py

opensearch: setup
	.venv/bin/agentic opensearch run

ui: setup
	.venv/bin/agentic ui

clean-state:
	rm -rf .agentic
