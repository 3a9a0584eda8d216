"""Each home's Ray token (resources/ray_cluster.py): created once, private, and what every local Ray process uses."""

from __future__ import annotations

import os

from resources.ray_cluster import ensure_token_file, use_ray_token


def test_a_home_token_is_created_once_private_and_its_own(tmp_path):
    a = ensure_token_file(tmp_path / "a" / "secrets" / "ray.token")
    first = a.read_text()
    assert len(first) == 64 and oct(a.stat().st_mode & 0o777) == "0o600"
    assert ensure_token_file(a).read_text() == first  # the same one ever after
    assert ensure_token_file(tmp_path / "b" / "secrets" / "ray.token").read_text() != first


def test_token_mode_with_the_homes_token_unless_the_environment_names_one(tmp_path, monkeypatch):
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "")  # a leftover, emptied setting is replaced, not kept
    use_ray_token(tmp_path / "home" / "ray.token")
    assert os.environ["RAY_AUTH_MODE"] == "token"
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "home" / "ray.token")
    use_ray_token(tmp_path / "other" / "ray.token")  # a process that already has a token keeps it (a test session's)
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "home" / "ray.token")
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-a-secret")  # eks: the Secret's token, no file written
    use_ray_token(tmp_path / "third" / "ray.token")
    assert "RAY_AUTH_TOKEN_PATH" not in os.environ and not (tmp_path / "third").exists()


def test_the_suite_sets_its_token_before_any_test_module_imports_ray():
    # Ray reads its auth mode once, when first imported: set later, the session could not start its token-protected
    # head (a unit test importing Serve's app made every Ray test of its worker fail with InvalidAuthToken)
    import sys

    assert "tests.conftest" in sys.modules  # pytest's own import: the one below executes nothing again
    from tests.conftest import RAY_TOKEN

    assert os.environ["RAY_AUTH_MODE"] == "token" and os.environ["RAY_AUTH_TOKEN_PATH"] == str(RAY_TOKEN)
    assert len(RAY_TOKEN.read_text()) == 64 and oct(RAY_TOKEN.stat().st_mode & 0o777) == "0o600"
