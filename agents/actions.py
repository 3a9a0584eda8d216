"""Tool use for models without native ``tool_calls``: one JSON-schema-constrained "action" per turn.

The local Qwen2.5-Coder models write tool calls as fenced JSON in the text instead of native
``tool_calls``; llama-server does enforce ``response_format: json_schema``. So each turn the model
must produce exactly one object, either ``{"action": "<tool>", "arguments": {...}}`` for one of the
offered tools (arguments validated by that tool's own input schema) or
``{"action": "final_answer", "answer": "..."}``. Pure functions here; the Strands provider is in
``agents.model``.
"""

from __future__ import annotations

import json
import re
from typing import Any

FINAL = "final_answer"
_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S)


def action_schema(tool_specs: list[dict], allow_final: bool = True) -> dict:
    """JSON schema of one action: a call of one of ``tool_specs`` or (if allowed) the final answer."""
    options = []
    for spec in tool_specs:
        params = dict(spec["inputSchema"]["json"])
        params.setdefault("type", "object")
        params.setdefault("properties", {})
        options.append(
            {
                "type": "object",
                "properties": {"action": {"const": spec["name"]}, "arguments": params},
                "required": ["action", "arguments"],
            }
        )
    if allow_final:
        options.append(
            {
                "type": "object",
                "properties": {"action": {"const": FINAL}, "answer": {"type": "string", "minLength": 1}},
                "required": ["action", "answer"],
            }
        )
    return {"anyOf": options}


def tools_prompt(tool_specs: list[dict]) -> str:
    lines = [
        "You act by replying with exactly one JSON object per turn.",
        'To use a tool: {"action": "<tool name>", "arguments": {...}}. '
        f'To finish: {{"action": "{FINAL}", "answer": "<your answer>"}}.',
        "Tools:",
    ]
    for spec in tool_specs:
        props = spec["inputSchema"]["json"].get("properties", {})
        args = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items())
        lines.append(
            f"- {spec['name']}({args}): {spec.get('description', '').strip().splitlines()[0] if spec.get('description') else ''}"
        )
    return "\n".join(lines)


def parse_action(text: str, tool_names: set[str]) -> dict[str, Any]:
    """The action in ``text`` (plain JSON or a fenced block); a reply that is no action is a final answer."""
    candidates = [text.strip()] + _FENCE.findall(text)
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        action = obj.get("action") or obj.get("name") or obj.get("tool")
        if action == FINAL:
            return {"action": FINAL, "answer": str(obj.get("answer", "")).strip()}
        if action in tool_names:
            args = obj.get("arguments", obj.get("parameters", {}))
            return {"action": action, "arguments": args if isinstance(args, dict) else {}}
    return {"action": FINAL, "answer": text.strip()}


def render_history(messages: list[dict]) -> list[dict]:
    """Strands messages (content blocks) -> plain chat messages the action model understands.

    A tool call is shown as the assistant's JSON action; a tool result as a user message that says
    which tool returned what. Images and documents are not part of this platform's agents.
    """
    out: list[dict] = []
    for msg in messages:
        parts: list[str] = []
        for block in msg.get("content", []):
            if "text" in block:
                parts.append(block["text"])
            elif "toolUse" in block:
                tu = block["toolUse"]
                parts.append(json.dumps({"action": tu["name"], "arguments": tu.get("input", {})}))
            elif "toolResult" in block:
                tr = block["toolResult"]
                texts = []
                for c in tr.get("content", []):
                    if "text" in c:
                        texts.append(c["text"])
                    elif "json" in c:
                        texts.append(json.dumps(c["json"]))
                status = tr.get("status", "success")
                parts.append(f"Tool result ({status}) for call {tr.get('toolUseId', '')}:\n" + "\n".join(texts))
        if parts:
            role = (
                "assistant"
                if msg["role"] == "assistant" and not any("toolResult" in b for b in msg["content"])
                else "user"
            )
            if out and out[-1]["role"] == role:
                out[-1]["content"] += "\n\n" + "\n\n".join(parts)
            else:
                out.append({"role": role, "content": "\n\n".join(parts)})
    return out
