"""Strands model provider for OpenAI-compatible endpoints with or without native tool calling.

``tool_mode="native"`` is Strands' own OpenAI provider (vLLM with a tool parser in production).
``tool_mode="json_action"`` (the local llama.cpp models) turns the tool specs into a JSON-schema
constrained action (see ``agents.actions``) and maps the reply back to Strands tool-use events,
so the agent loop, hooks, tracing and tool execution are Strands' own in both cases.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, AsyncGenerator

from strands.models.openai import OpenAIModel

from agents.actions import FINAL, action_schema, parse_action, render_history, tools_prompt


class ActionModel(OpenAIModel):
    def __init__(self, *, tool_mode: str = "json_action", tool_first: bool = False, action_filter=None, **kwargs: Any):
        """``tool_first``: the first turn must be a tool call (the final answer is not offered until a tool ran).

        ``action_filter()`` -> ``(allowed tool names, final answer allowed)``: the caller's routing state decides
        what the model may do next, so a routing rule holds whatever the model would prefer.
        """
        if tool_mode not in ("json_action", "native"):
            raise ValueError("tool_mode must be 'json_action' or 'native'")
        self.tool_mode = tool_mode
        self.tool_first = tool_first
        self.action_filter = action_filter
        super().__init__(**kwargs)

    def _resolve_client_args(self) -> dict[str, Any]:
        # a fresh traced HTTP client per request (Strands closes the OpenAI client after each), so the gateway's
        # spans join the agent's trace
        from resources.gateway import traced_http_client

        return {**super()._resolve_client_args(), "http_client": traced_http_client(asynchronous=True)}

    def _allowed(self, tool_specs, first_turn: bool):
        allow_final = not (self.tool_first and first_turn)
        if self.action_filter is not None and tool_specs:
            names, final_ok = self.action_filter()
            tool_specs = [s for s in tool_specs if s["name"] in names]
            allow_final = final_ok or not tool_specs
        return tool_specs, allow_final

    async def stream(self, messages, tool_specs=None, system_prompt=None, **kwargs: Any) -> AsyncGenerator[Any, None]:
        first_turn = not any("toolResult" in block for m in messages for block in m.get("content", []))
        offered = tool_specs
        tool_specs, allow_final = self._allowed(tool_specs, first_turn)
        if self.tool_mode == "native" or not offered:
            if tool_specs and not allow_final:
                kwargs["tool_choice"] = {"any": {}}
            async for event in super().stream(messages, tool_specs or None, system_prompt, **kwargs):
                yield event
            return
        chat = [{"role": "system", "content": ((system_prompt or "") + "\n\n" + tools_prompt(tool_specs)).strip()}]
        chat += render_history(messages)
        if not tool_specs and chat and chat[-1]["role"] == "user":
            chat[-1]["content"] += (
                "\n\nNow give the final answer to the original question: 2 to 4 sentences, "
                "citing the sources by their numbers, like [2]."
            )
        params = dict(self.config.get("params") or {})
        request = {
            "model": self.config["model_id"],
            "messages": chat,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "action", "schema": action_schema(tool_specs, allow_final=allow_final)},
            },
            **params,
        }
        async with self._get_client() as client:
            response = await client.chat.completions.create(**request)
        text = response.choices[0].message.content or ""
        action = parse_action(text, {s["name"] for s in tool_specs})
        if action["action"] == FINAL and not allow_final and tool_specs:
            raise RuntimeError(
                "the model gave a final answer where a tool call was required (schema not enforced upstream?)"
            )
        yield {"messageStart": {"role": "assistant"}}
        if action["action"] == FINAL:
            yield {"contentBlockStart": {"start": {}}}
            yield {"contentBlockDelta": {"delta": {"text": action["answer"]}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "end_turn"}}
        else:
            tool_use_id = f"call_{uuid.uuid4().hex[:12]}"
            yield {"contentBlockStart": {"start": {"toolUse": {"name": action["action"], "toolUseId": tool_use_id}}}}
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": json.dumps(action["arguments"])}}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "tool_use"}}
        if usage := getattr(response, "usage", None):
            yield {
                "metadata": {
                    "usage": {
                        "inputTokens": usage.prompt_tokens,
                        "outputTokens": usage.completion_tokens,
                        "totalTokens": usage.total_tokens,
                    },
                    "metrics": {"latencyMs": 0},
                }
            }
