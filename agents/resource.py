"""The answer service as a resource: the deployment's agent settings and the one construction of ``AnswerService``,
used by the API and `agentic ask` (``pipelines.services``), the evaluation asset, the answers benchmark and the tests.
It holds no retriever or gateway of its own: the caller passes the ones it was given, so a deployment that swaps
its retriever cannot leave the answer service on the old one."""

from __future__ import annotations

import dagster as dg

from agents.answers import AgentConfig
from agents.service import AnswerService
from agents.web_search import WebSearch, web_search_for
from core import answerability
from resources.gateway import LLMGatewayResource
from resources.retrieval import RetrieverResource


class AnswerServiceResource(dg.ConfigurableResource):
    """How this deployment's agents answer: web search and the orchestrator's tool calls."""

    web_search: str = "stdio"  # stdio | http | off (``agents.web_search.web_search_for``)
    web_search_url: str = ""
    tool_mode: str = "json_action"  # how the orchestrator's model calls tools: "native" where vLLM parses them

    def config(self, **overrides) -> AgentConfig:
        """The deployment's agent configuration, with ``overrides`` (k, bounds, a candidate generation, ...)."""
        base = {"web_search": self.web_search, "web_search_url": self.web_search_url, "tool_mode": self.tool_mode}
        return AgentConfig(**{**base, **overrides})

    def build(
        self,
        retriever: RetrieverResource,
        gateway: LLMGatewayResource,
        state=None,  # a PipelineStateStore: the index generation's lineage record
        config: AgentConfig | None = None,
        web_search: WebSearch | None = None,
        fit: answerability.Fit | None = None,
    ) -> AnswerService:
        """An answer service over ``retriever`` and ``gateway`` (close it when done). ``config`` defaults to
        ``self.config()``; ``web_search`` to the implementation the config names; ``fit`` to the committed one."""
        config = config or self.config()
        web = web_search or web_search_for(config.web_search, config.web_search_url)
        return AnswerService(retriever, gateway, config, web, state=state, fit=fit)
