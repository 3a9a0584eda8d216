"""The LiteLLM gateway's config, rendered from the deployments' endpoints (local Ray Serve or the RayServices)."""

from __future__ import annotations

from pathlib import Path

# LiteLLM loads the key check from beside its config file: the module travels with the config (a file locally, a
# second key of the same ConfigMap on eks)
AUTH_MODULE = Path(__file__).resolve().parents[1] / "gateway" / "agentic_auth.py"
CUSTOM_AUTH = f"{AUTH_MODULE.stem}.user_api_key_auth"


def render_litellm_config(
    llm_name: str,
    llm_api_base: str,
    embed_name: str,
    embed_api_base: str,
    timeout_s: int = 300,
    retries: int = 2,
    llm_aliases: tuple[str, ...] = ("chat",),
    judge_name: str = "",
    judge_backend: str = "",
    aws_region: str = "us-east-1",
    vision_name: str = "",
    vision_api_base: str = "",
    vision_aliases: tuple[str, ...] = ("vision",),
    callbacks: tuple[str, ...] = ("prometheus",),
) -> dict:
    """LiteLLM proxy config: model names -> OpenAI-compatible endpoints, retries, timeouts, key by reference.

    The evaluation judge is ``judge_name``: with no ``judge_backend`` it is one more alias of the deployed LLM
    (local); with one (e.g. ``bedrock/anthropic.claude-3-5-haiku-20241022-v1:0``) LiteLLM calls that provider,
    authenticated by the pod's IAM role (no key in the config).

    With ``vision_name`` and ``vision_api_base`` (eks: the vision RayService), the vision-language model is routed under
    its name and ``vision_aliases``: an OpenAI chat completion whose content carries ``image_url`` parts is passed
    through to vLLM as it is. Without them (local: no vision model) there is no such route.

    ``callbacks``: ``prometheus`` serves ``/metrics/`` (requests, failures, latency, tokens by model); ``otel`` exports
    a span per call over OTLP to where ``OTEL_EXPORTER_OTLP_ENDPOINT`` points, joined to the caller's trace by the
    ``traceparent`` header the agents send."""
    models = []
    if judge_name and not judge_backend:
        llm_aliases = (*llm_aliases, judge_name)
    for name in (llm_name, *llm_aliases):
        models.append(
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{llm_name}",
                    "api_base": llm_api_base,
                    "api_key": "os.environ/AGENTIC_UPSTREAM_KEY",
                    "timeout": timeout_s,
                    "max_retries": 0,
                },
                "model_info": {"mode": "chat"},
            }
        )
    models.append(
        {
            "model_name": embed_name,
            "litellm_params": {
                "model": f"openai/{embed_name}",
                "api_base": embed_api_base,
                "api_key": "os.environ/AGENTIC_UPSTREAM_KEY",
                "timeout": 60,
                "max_retries": 0,
            },
            "model_info": {"mode": "embedding"},
        }
    )
    if vision_name and vision_api_base:
        for name in (vision_name, *vision_aliases):
            models.append(
                {
                    "model_name": name,
                    "litellm_params": {
                        "model": f"openai/{vision_name}",
                        "api_base": vision_api_base,
                        "api_key": "os.environ/AGENTIC_UPSTREAM_KEY",
                        "timeout": timeout_s,
                        "max_retries": 0,
                    },
                    "model_info": {"mode": "chat", "supports_vision": True},
                }
            )
    if judge_name and judge_backend:
        models.append(
            {
                "model_name": judge_name,
                "litellm_params": {
                    "model": judge_backend,
                    "aws_region_name": aws_region,
                    "timeout": timeout_s,
                    "max_retries": 0,
                },
                "model_info": {"mode": "chat"},
            }
        )
    return {
        "model_list": models,
        "litellm_settings": {
            "num_retries": retries,
            "request_timeout": timeout_s,
            "drop_params": True,
            "telemetry": False,
            "callbacks": list(callbacks),
        },
        "router_settings": {"num_retries": retries, "retry_after": 1, "timeout": timeout_s},
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY", "custom_auth": CUSTOM_AUTH},
    }
