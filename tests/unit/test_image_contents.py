"""What the code reads from its own tree at run time is in the image: every data path rooted at a module's own file
(``Path(__file__)``) in the packages the image runs is copied by infra/Dockerfile, or named here as local-only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = ("pipelines", "assets", "resources", "core", "agents", "infra/platform", "infra/capacity")
# files whose Path(__file__) names something that exists only on a developer's machine, never read on eks
LOCAL_ONLY = {
    "resources/gateway.py": "the local LiteLLM venv (.venv-gateway); on eks LiteLLM is its own Deployment",
    "pipelines/cli/serving.py": "`agentic ui` runs `dagster dev` on a checkout",
    "resources/load_test.py": "the local AIPerf venv (.venv-aiperf); the eks profile names no tool path",
}


def _copied() -> list[str]:
    sources = []
    for line in (REPO / "infra" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    return [s.rstrip("/") for s in sources]


def _in_image(rel: str, copied: list[str]) -> bool:
    return any(rel == c or rel.startswith(c + "/") for c in copied)


def _runtime_paths() -> list[Path]:
    from assets.cost import MEASURED_FILES, RESULTS
    from assets.evaluation.golden_hard import HARD_SET_FILE
    from assets.observability.monitoring import RUNBOOK_FILE
    from assets.serving.capacity import EVAL_DATA
    from core.answerability import FIT_PATH
    from core.cost import PRICE_FILE
    from core.verdict import FIT_PATH as VERDICT_FIT
    from infra.capacity import SOURCES
    from infra.platform.config import DEFAULT_FILE
    from infra.platform.gateway import AUTH_MODULE

    return [
        *(RESULTS / f for f in MEASURED_FILES),
        HARD_SET_FILE,
        FIT_PATH,
        VERDICT_FIT,
        PRICE_FILE,
        DEFAULT_FILE,
        AUTH_MODULE,
        RUNBOOK_FILE,
        SOURCES,
        *(EVAL_DATA / name for name in ("covered.jsonl", "conversations.jsonl")),
    ]


@pytest.mark.unit
def test_every_path_read_at_run_time_is_copied_into_the_image():
    copied = _copied()
    for path in _runtime_paths():
        rel = str(path.relative_to(REPO))
        assert path.exists(), rel
        assert _in_image(rel, copied), f"{rel} is read at run time but infra/Dockerfile does not copy it"


@pytest.mark.unit
def test_no_module_reads_its_tree_without_being_listed():
    """A new Path(__file__) in the run-time packages fails here until its path joins _runtime_paths or LOCAL_ONLY."""
    known = {
        "assets/cost/state.py",
        "assets/evaluation/golden_hard.py",
        "assets/observability/monitoring.py",
        "assets/serving/capacity.py",
        "infra/capacity/__init__.py",
        "core/answerability.py",
        "core/cost.py",
        "core/verdict.py",
        "infra/platform/config.py",
        "infra/platform/gateway.py",
        *LOCAL_ONLY,
    }
    found = {
        str(f.relative_to(REPO))
        for pkg in RUNTIME
        for f in (REPO / pkg).rglob("*.py")
        if re.search(r"Path\(__file__\)", f.read_text())
    }
    assert found <= known, found - known
