"""LiteLLM's key check for this platform (``general_settings.custom_auth``), loaded by the proxy from beside its
config: one key, the master key from ``LITELLM_MASTER_KEY``; a missing or wrong key is a 401.

Without it LiteLLM 1.106 answers a wrong key with 400 "No connected db" when it runs without a database (it looks
for virtual keys there), and clients and checks cannot tell a bad key from a bad request. Runs in the gateway's own
environment (``.venv-gateway`` locally, the LiteLLM image on eks, mounted from its ConfigMap), never in the project's.
"""

import hashlib
import os
import secrets

from fastapi import HTTPException, Request
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    expected = os.environ.get("LITELLM_MASTER_KEY", "")
    given = (api_key or "").removeprefix("Bearer ").strip()
    if expected and secrets.compare_digest(given.encode(), expected.encode()):
        # LiteLLM copies api_key into request metadata and so into trace spans: hand it the hash, as it does for
        # its own keys, never the key itself
        token = hashlib.sha256(given.encode()).hexdigest()
        return UserAPIKeyAuth(api_key=token, user_role=LitellmUserRoles.PROXY_ADMIN)
    raise HTTPException(status_code=401, detail="invalid or missing gateway key")
