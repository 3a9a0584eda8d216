"""The answer service as a resource: the one construction of ``AnswerService`` from a deployment's retriever, gateway
and state store, used by the API and `agentic ask` (``pipelines.services``), the evaluation assets, the answers
benchmark and the tests."""

from __future__ import annotations

import dagster as dg

from agents.answers import AgentConfig
from agents.service import AnswerService
from agents.web_search import WebSearch, web_search_for
from core import answerability
from resources.gateway import LLMGatewayResource
from resources.retrieval import RetrieverResource
from resources.state_store import PipelineStateStore


class AnswerServiceResource(dg.ConfigurableResource):
    """The fast path and the orchestrator over this deployment's index and models."""

    retriever: RetrieverResource
    gateway: LLMGatewayResource
    pipeline_state: PipelineStateStore
    web_search: str = "stdio"  # stdio | http | off (``agents.web_search.web_search_for``)
    web_search_url: str = ""
    tool_mode: str = "json_action"  # how the orchestrator's model calls tools: "native" where vLLM parses them

    def config(self, **overrides) -> AgentConfig:
        """The deployment's agent configuration, with ``overrides`` (k, bounds, a candidate generation, ...)."""
        base = {"web_search": self.web_search, "web_search_url": self.web_search_url, "tool_mode": self.tool_mode}
        return AgentConfig(**{**base, **overrides})

    def build(
        self,
        config: AgentConfig | None = None,
        web_search: WebSearch | None = None,
        fit: answerability.Fit | None = None,
    ) -> AnswerService:
        """An answer service (close it when done). ``config`` defaults to ``self.config()``; ``web_search`` to the
        implementation the config names; ``fit`` to the committed answerability fit."""
        config = config or self.config()
        web = web_search or web_search_for(config.web_search, config.web_search_url)
        return AnswerService(self.retriever, self.gateway, config, web, state=self.pipeline_state, fit=fit)
