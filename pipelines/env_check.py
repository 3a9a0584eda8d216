"""The environment a profile's resources read (every ``dg.EnvVar``), what each variable is for, and one line that
says which one is missing, before a command builds anything with it."""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

# What each variable a profile reads is for, and where it comes from on eks (the Dagster user deployment's env and
# Secrets, rendered by `agentic platform render`). A variable without an entry fails the unit test that reads this.
ENV_PURPOSE = {
    "AGENTIC_DOCUMENT_BUCKET": "the S3 bucket of incoming documents (AGENTIC_DOCUMENT_PREFIX, incoming/) and pipeline state (state/); "
    "the platform's Terraform/`agentic platform apply --target eks` creates it, the Dagster deployment's env names it",
    "AGENTIC_RAY_ADDRESS": "the KubeRay data cluster's address (ray://agentic-data-head-svc.<namespace>:10001)",
    "AGENTIC_RAY_JOBS_ADDRESS": "the KubeRay data cluster's Jobs API (http://agentic-data-head-svc.<namespace>:8265)",
    "AGENTIC_OPENSEARCH_ENDPOINT": "the Amazon OpenSearch domain's https endpoint (the platform's opensearch output)",
    "AGENTIC_EMBED_MODEL_PATH": "the embedding model's ONNX file inside the image (e.g. /models/arctic-embed-s.onnx)",
    "AGENTIC_EMBED_TOKENIZER_PATH": "the embedding model's tokenizer.json inside the image",
    "AGENTIC_API_KEY": "the API's admin bearer key (Secret agentic-secrets; on local, secrets/ of the home)",
    "AGENTIC_GATEWAY_KEY": "the LiteLLM gateway's master key (Secret agentic-secrets; on local, secrets/ of the home)",
    "AWS_REGION": "the AWS region of the cluster, the bucket and OpenSearch (e.g. us-east-1)",
    "LANGFUSE_PUBLIC_KEY": "the trace store's public key (Secret langfuse-keys)",
    "LANGFUSE_SECRET_KEY": "the trace store's secret key (Secret langfuse-keys)",
}


class MissingSetting(ValueError):
    """A variable the chosen profile needs is unset or empty; the message is one line a person can act on."""


def _env_vars(value, seen: set[int]) -> set[str]:
    if isinstance(value, dg.EnvVar):
        return {value.env_var_name}
    if not isinstance(value, dg.ConfigurableResource) or id(value) in seen:
        return set()
    seen.add(id(value))
    names: set[str] = set()
    for field in type(value).model_fields:
        names |= _env_vars(getattr(value, field, None), seen)
    return names


def required_env(resources: Mapping[str, object]) -> set[str]:
    """Every environment variable the resources read through ``dg.EnvVar`` (nested resources included)."""
    seen: set[int] = set()
    return set().union(*(_env_vars(r, seen) for r in resources.values()))


def check_env(resources: Mapping[str, object], profile: str, environ: Mapping[str, str] | None = None) -> None:
    env = os.environ if environ is None else environ
    for name in sorted(required_env(resources)):
        if not (env.get(name) or "").strip():
            purpose = ENV_PURPOSE.get(name, "read by a resource of this profile")
            raise MissingSetting(
                f"{name} is not set; the {profile} profile needs it: {purpose}. Set it in the environment "
                f"(export {name}=...) and run the command again"
            )
