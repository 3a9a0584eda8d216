"""JSON schema -> llama.cpp GBNF grammar that admits only compact JSON (no whitespace between tokens).

llama.cpp's own conversion of a ``response_format`` schema lets the model put newlines and indentation between
fields, and small models pretty-print: on the answer object that was about a fifth of the generated tokens, paid
at ~8 tokens/s on 2 cores. vLLM has the same switch built in (``disable_any_whitespace``); llama-server needs the
grammar. Only the subset the answer and rewrite schemas use is supported: objects whose properties are all written
in order, arrays with item bounds, strings with length bounds, integer ranges, string and integer enums; anything else raises.
"""

from __future__ import annotations

import json
from typing import Any

# a JSON string character: anything but a quote, a backslash or a control character, or an escape
_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_MAX_ENUMERATED_INTS = 64


def _lit(text: str) -> str:
    return json.dumps(text)  # a GBNF literal uses the same escapes as a JSON string


class _Converter:
    def __init__(self) -> None:
        self.rules: dict[str, str] = {"char": _CHAR}

    def add(self, name: str, body: str) -> str:
        base, i = name, 1
        while name in self.rules and self.rules[name] != body:
            i += 1
            name = f"{base}{i}"
        self.rules[name] = body
        return name

    def visit(self, schema: dict[str, Any], name: str) -> str:
        kind = schema.get("type")
        if "enum" in schema:
            values = schema["enum"]
            if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                return self.add(name, " | ".join(_lit(str(v)) for v in values))  # e.g. the sources an answer may cite
            if not values or not all(isinstance(v, str) for v in values):
                raise ValueError(f"{name}: only non-empty string or integer enums are supported")
            return self.add(name, " | ".join(_lit(json.dumps(v)) for v in values))
        if kind == "object":
            props = schema.get("properties") or {}
            required = set(schema.get("required") or [])
            if set(props) != required:
                raise ValueError(f"{name}: every property must be required (compact output writes all, in order)")
            parts = []
            for i, (key, sub) in enumerate(props.items()):
                rule = self.visit(sub, f"{name}-{key}")
                parts.append(f"{_lit(('' if i == 0 else ',') + json.dumps(key) + ':')} {rule}")
            return self.add(name, " ".join(['"{"', *parts, '"}"']))
        if kind == "array":
            item = self.visit(schema.get("items") or {}, f"{name}-item")
            lo, hi = int(schema.get("minItems", 0)), schema.get("maxItems")
            if hi is not None and int(hi) < lo:
                raise ValueError(f"{name}: maxItems < minItems")
            more = f"{max(lo - 1, 0)},{'' if hi is None else int(hi) - 1}"
            # exactly one item: no repetition group ("{0,0}" is legal GBNF but pointless work for the sampler)
            body = item if hi is not None and int(hi) == 1 else f'{item} ("," {item}){{{more}}}'
            return self.add(name, f'"[" {body} "]"' if lo >= 1 else f'"[" ({body})? "]"')
        if kind == "string":
            lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
            return self.add(name, f'"\\"" char{{{lo},{"" if hi is None else int(hi)}}} "\\""')
        if kind == "integer":
            lo, hi = schema.get("minimum"), schema.get("maximum")
            if lo is None or hi is None or hi - lo + 1 > _MAX_ENUMERATED_INTS:
                raise ValueError(f"{name}: integers need a small minimum..maximum range")
            return self.add(name, " | ".join(_lit(str(v)) for v in range(int(lo), int(hi) + 1)))
        raise ValueError(f"{name}: unsupported schema {json.dumps(schema)[:80]}")


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """The GBNF grammar (root rule ``root``) for ``schema`` written as compact JSON."""
    conv = _Converter()
    top = conv.visit(schema, "root")
    rules = dict(conv.rules)
    if top != "root":
        rules["root"] = top
    return "\n".join(f"{name} ::= {body}" for name, body in rules.items()) + "\n"
