"""The packages' layering, checked on the source: core < infra < resources < agents < assets < pipelines. A module
imports only from its own layer or a lower one, and no two modules import each other (directly or round a loop), so
the index's fields, a parser's types and the like each live in one place below their users."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("core", "infra", "resources", "agents", "assets", "pipelines")


def _imports() -> dict[str, set[str]]:
    """module -> the project modules it imports (at any depth of the file; `python -m` self-imports left out)."""
    out: dict[str, set[str]] = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module)
                elif isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
            out[module] = {m for m in found if m.split(".")[0] in LAYERS and m != module}
    return out


def test_no_module_imports_from_a_higher_layer():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [
        (module, target)
        for module, targets in _imports().items()
        for target in targets
        if rank[target.split(".")[0]] > rank[module.split(".")[0]]
    ]
    assert upward == []


def test_no_import_cycle_between_modules():
    graph = _imports()
    graph = {m: {t for t in ts if t in graph} for m, ts in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("dimension", [384, 1024])
def test_the_stores_and_the_domain_derive_one_index_schema(dimension):
    from core.index_schema import FIELDS, FILTER_FIELDS, HIT_FIELDS, LIST_FIELDS, chunk_schema, index_body
    from infra.platform.aws import index_template
    from resources.vector_store import SearchHit

    names = [f.name for f in FIELDS] + ["vector"]
    assert chunk_schema(dimension).names == names  # LanceDB's table
    body = index_body(dimension)
    assert list(body["mappings"]["properties"]) == names and body["mappings"]["dynamic"] == "strict"  # OpenSearch
    assert index_template("agentic", dimension, "lucene")["template"]["mappings"] == body["mappings"]  # the domain
    assert set(HIT_FIELDS) <= set(SearchHit.__dataclass_fields__)  # every field read back has a place in a hit
    assert set(FILTER_FIELDS) <= set(names) and set(LIST_FIELDS.values()) <= set(names)
