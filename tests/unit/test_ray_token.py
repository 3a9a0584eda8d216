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
