"""Secrets: from the environment (a Kubernetes Secret / AWS Secrets Manager on EKS), never from code.

On the local profile a newcomer has set none, and "open by default" is not an option, so the
keys the local services need are generated once into ``AGENTIC_HOME/secrets`` (mode 0600, git
ignored) and exported to this process's environment, where ``dg.EnvVar`` and the services read
them. Their values are never printed or logged; ``agentic keys`` prints where they are.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pipelines.settings import Settings

LOCAL_SECRETS = {
    "AGENTIC_API_KEY": "api.key",  # bearer token of the agentic API
    "AGENTIC_GATEWAY_KEY": "gateway.key",  # LiteLLM master key
}


def ensure_local_secrets(settings: Settings, environ: dict | None = None) -> dict[str, Path]:
    """Fill missing local secrets from (or into) the secret files; returns the files used."""
    env = os.environ if environ is None else environ
    used: dict[str, Path] = {}
    from pipelines.profiles import deployment

    if not deployment(settings).secrets_in_home:  # eks: the environment only (a Kubernetes Secret), never files
        return used
    for var, name in LOCAL_SECRETS.items():
        if env.get(var):
            continue
        path = settings.secrets_dir / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        env[var] = path.read_text().strip()
        used[var] = path
    return used
