.PHONY: setup run test lint bench ui opensearch cluster up down serve clean-state

export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_AUTH_MODE ?= disabled

setup:
	@bash scripts/setup.sh

run:
	@bash scripts/setup.sh 1.5b
	.venv/bin/agentic run
	.venv/bin/agentic up
	.venv/bin/agentic ask "What are the risk factors for type 2 diabetes?"
	.venv/bin/agentic ask "How is hypertension treated in older adults?"

test:
	@bash scripts/setup.sh 0.5b
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

bench: setup
	.venv/bin/python benchmarks/run_all.py

opensearch: setup
	.venv/bin/agentic opensearch run

cluster: setup
	.venv/bin/agentic cluster up

ui: setup
	.venv/bin/agentic ui

up: setup
	.venv/bin/agentic up

down:
	.venv/bin/agentic down

serve: setup
	.venv/bin/agentic serve

clean-state:
	rm -rf .agentic
