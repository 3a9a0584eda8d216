"""Web search, one interface and three implementations: the web search MCP server (``agents.websearch_mcp``) through
Strands' MCP client over streamable HTTP (``HttpWebSearch``) or as a subprocess (``StdioWebSearch``), or none
(``NoWebSearch``). ``web_search_for`` picks one from a deployment's setting."""

from __future__ import annotations

import json
import threading
import uuid


class WebSearch:
    """``search(query)`` -> {"available", "results": [{"title", "url", "content"}], "error"?}."""

    def search(self, query: str, max_results: int = 5) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NoWebSearch(WebSearch):
    """A deployment without web search: every search says so, and nothing leaves the process."""

    def search(self, query: str, max_results: int = 5) -> dict:
        return {"available": False, "results": [], "error": "web search is turned off in this deployment"}


class _McpWebSearch(WebSearch):
    """The web search MCP server's ``web_search`` tool; the client starts on first use, once."""

    def __init__(self):
        self._client = None
        self._lock = threading.Lock()

    def _connect(self):
        raise NotImplementedError

    def _ensure(self):
        with self._lock:
            if self._client is None:
                client = self._connect()
                client.start()
                self._client = client
            return self._client

    def search(self, query: str, max_results: int = 5) -> dict:
        result = self._ensure().call_tool_sync(
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


class HttpWebSearch(_McpWebSearch):
    """The MCP server over streamable HTTP (a Deployment on eks, a process of the session's in tests)."""

    def __init__(self, url: str):
        super().__init__()
        if not url:
            raise ValueError("HttpWebSearch needs the MCP server's URL (AGENTIC_WEB_SEARCH_URL)")
        self.url = url

    def _connect(self):
        from strands.tools.mcp import MCPClient

        return MCPClient(url=self.url)


class StdioWebSearch(_McpWebSearch):
    """The MCP server as this process's subprocess, with ``env`` as its environment (None: this one's)."""

    def __init__(self, env: dict[str, str] | None = None):
        super().__init__()
        self.env = env

    def _connect(self):
        import sys

        from mcp import StdioServerParameters, stdio_client
        from strands.tools.mcp import MCPClient

        params = StdioServerParameters(command=sys.executable, args=["-m", "agents.websearch_mcp"], env=self.env)
        return MCPClient(lambda: stdio_client(params))


def web_search_for(mode: str, url: str = "") -> WebSearch:
    """The implementation a deployment's AGENTIC_WEB_SEARCH names: ``stdio``, ``http`` (with ``url``) or ``off``."""
    if mode == "http":
        return HttpWebSearch(url)
    if mode == "stdio":
        return StdioWebSearch()
    if mode == "off":
        return NoWebSearch()
    raise ValueError(f"unknown web search {mode!r}: one of stdio, http, off")
