"""llama-server's environment (infra.local.llama_server.server_env): its OpenMP threads sleep while they wait, since
spinning burns the CPU of everything else on a small shared machine; the serving test checks the running process."""

from __future__ import annotations

from infra.local.llama_server import server_env


def test_llama_server_waits_passively_unless_told_otherwise():
    assert server_env({"PATH": "/bin"}) == {"OMP_WAIT_POLICY": "PASSIVE", "PATH": "/bin"}
    assert server_env({"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"  # an operator's choice wins
