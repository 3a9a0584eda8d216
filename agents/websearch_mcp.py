"""Web search MCP server backed by Tavily (``TAVILY_API_KEY``), over stdio or streamable HTTP.

    python -m agents.websearch_mcp                      # stdio (an agent starts it as a subprocess)
    python -m agents.websearch_mcp --transport http --port 8765

Without a key the tool answers ``{"available": false, "error": "..."}`` instead of failing, so the
agent can say that web search is off and answer from the knowledge base. ``TAVILY_BASE_URL``
points it elsewhere (the test suite runs a local HTTP fixture that speaks Tavily's REST API).
The key is read here because this is its own process (as MCP servers are); it is never logged.
"""

from __future__ import annotations

import argparse
import os

import httpx
from mcp.server.mcpserver import MCPServer

TAVILY_URL = "https://api.tavily.com"

server = MCPServer("agentic-web-search")


def tavily_search(
    query: str, max_results: int = 5, api_key: str | None = None, base_url: str | None = None, timeout_s: float = 20
) -> dict:
    api_key = api_key if api_key is not None else os.environ.get("TAVILY_API_KEY", "")
    if not api_key:
        return {
            "available": False,
            "query": query,
            "results": [],
            "error": "web search is not configured: TAVILY_API_KEY is not set",
        }
    if not query.strip():
        return {"available": True, "query": query, "results": [], "error": "empty query"}
    url = (base_url or os.environ.get("TAVILY_BASE_URL") or TAVILY_URL).rstrip("/") + "/search"
    try:
        r = httpx.post(
            url,
            json={
                "query": query,
                "max_results": max(1, min(int(max_results), 10)),
                "search_depth": "basic",
                "include_answer": False,
            },
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
        )
    except httpx.HTTPError as exc:
        return {"available": True, "query": query, "results": [], "error": f"web search failed: {type(exc).__name__}"}
    if r.status_code in (401, 403):
        return {
            "available": False,
            "query": query,
            "results": [],
            "error": "web search rejected the API key (HTTP %d)" % r.status_code,
        }
    if r.status_code == 429:
        return {"available": True, "query": query, "results": [], "error": "web search rate limit reached (HTTP 429)"}
    if r.status_code != 200:
        return {"available": True, "query": query, "results": [], "error": f"web search failed (HTTP {r.status_code})"}
    body = r.json()
    results = [
        {
            "title": x.get("title", ""),
            "url": x.get("url", ""),
            "content": (x.get("content") or "")[:1500],
            "score": x.get("score"),
        }
        for x in body.get("results", [])
    ]
    return {"available": True, "query": query, "results": results}


@server.tool()
def web_search(query: str, max_results: int = 5) -> dict:
    """Search the web (Tavily). Returns results with title, url and content, or an error saying why not."""
    return tavily_search(query, max_results)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args(argv)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
