"""The web search client: the web search MCP server (``agents.websearch_mcp``) through Strands' MCP client, as a
subprocess (stdio) or over streamable HTTP; or off."""

from __future__ import annotations

import json
import threading
import uuid


class WebSearch:
    """The web search MCP server, through Strands' MCP client (stdio subprocess or streamable HTTP)."""

    def __init__(self, mode: str, url: str = "", env: dict[str, str] | None = None):
        self.mode, self.url, self.env = mode, url, env
        self._client = None
        self._lock = threading.Lock()

    def _ensure(self):
        if self._client is not None:
            return self._client
        from strands.tools.mcp import MCPClient

        if self.mode == "http":
            client = MCPClient(url=self.url)
        else:
            import sys

            from mcp import StdioServerParameters, stdio_client

            params = StdioServerParameters(command=sys.executable, args=["-m", "agents.websearch_mcp"], env=self.env)
            client = MCPClient(lambda: stdio_client(params))
        client.start()
        self._client = client
        return client

    def search(self, query: str, max_results: int = 5) -> dict:
        if self.mode == "off":
            return {"available": False, "results": [], "error": "web search is turned off in this deployment"}
        with self._lock:
            client = self._ensure()
        result = client.call_tool_sync(
            f"ws-{uuid.uuid4().hex[:8]}", "web_search", {"query": query, "max_results": max_results}
        )
        structured = result.get("structuredContent")
        if isinstance(structured, dict):
            return structured.get("result", structured) if "results" not in structured else structured
        for c in result.get("content", []):
            if "text" in c:
                try:
                    return json.loads(c["text"])
                except ValueError:
                    return {"available": True, "results": [], "error": c["text"][:300]}
        return {"available": True, "results": [], "error": "empty web search result"}

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.stop(None, None, None)
            except Exception:
                pass
            self._client = None
