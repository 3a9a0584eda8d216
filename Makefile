.PHONY: setup run test test-unit check lint bench ui opensearch cluster up down serve clean-state

export RAY_USAGE_STATS_ENABLED ?= 0

setup:
	@bash scripts/setup.sh

# One after the other: run beside the llama-server build, the main job's embedding took 7 min 26 s instead of 2 min 16
# (a cold run, 5 Dec), and the two together ended later than in turn.
run:
	@bash scripts/setup.sh core llm:1.5b
	.venv/bin/agentic run
	.venv/bin/agentic up
	.venv/bin/agentic ask "Does a ketogenic diet reduce fat mass in physically active people?"
	.venv/bin/agentic ask "How is hypertension treated in older adults?"

test:
	@bash scripts/setup.sh all llm:0.5b llm:1.5b
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/python -m pytest -n 2 --lanes  # two lanes, "stack" and "side" (tests/conftest.py)

# the inner loop: lint and the unit tier (pure logic, no process started; a few minutes). Other tiers by marker or
# folder: `.venv/bin/python -m pytest -m contract` or `tests/integration`, ... (README: Tests)
test-unit:
	@bash scripts/setup.sh venv data llm:0.5b
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/python -m pytest -m unit

check: test-unit

lint:
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

bench: setup
	.venv/bin/python benchmarks/run_all.py

opensearch:
	@bash scripts/setup.sh opensearch
	.venv/bin/agentic opensearch run

cluster:
	@bash scripts/setup.sh kube
	.venv/bin/agentic cluster up

ui:
	@bash scripts/setup.sh core llm:1.5b
	.venv/bin/agentic ui

up:
	@bash scripts/setup.sh core llm:1.5b
	.venv/bin/agentic up

down:
	.venv/bin/agentic down

serve:
	@bash scripts/setup.sh core llm:1.5b
	.venv/bin/agentic serve

clean-state:
	rm -rf .agentic
