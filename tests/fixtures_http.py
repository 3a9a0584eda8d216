"""Local HTTP peers for what cannot run here: Tavily's REST API, an OTLP/HTTP trace receiver and a vision model.

Each speaks the real protocol at the boundary: the Tavily fixture takes ``POST /search`` with a
Bearer key and answers in Tavily's response shape; the OTLP receiver decodes the protobuf
``ExportTraceServiceRequest`` the OpenTelemetry exporter sends and answers with the protobuf response;
the vision fixture takes OpenAI ``POST .../chat/completions`` (what vLLM serves for Qwen2.5-VL), decodes the
``image_url`` data URLs it is sent and answers a ``chat.completion`` that describes them.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.helpers import free_port

TAVILY_KEY = "tvly-test-0123456789"


class _JSONHandler(BaseHTTPRequestHandler):
    """A fixture's request handler: quiet, answers JSON."""

    def log_message(self, *a):
        pass

    def _send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server:
    def __init__(self, handler):
        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class TavilyFixture(_Server):
    """Answers every query with two web results that mention the query."""

    def __init__(self):
        self.requests: list[dict] = []
        outer = self

        class Handler(_JSONHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("authorization")})
                if self.path != "/search":
                    return self._send(404, {"detail": "not found"})
                if self.headers.get("authorization") != f"Bearer {TAVILY_KEY}":
                    return self._send(401, {"detail": {"error": "Unauthorized: missing or invalid API key."}})
                q = body.get("query", "")
                n = int(body.get("max_results", 5))
                results = [
                    {
                        "title": f"Web result {i + 1} about {q}",
                        "url": f"https://example.org/{i + 1}",
                        "content": f"Web page {i + 1} explains {q}: an overview written for this test fixture.",
                        "score": 0.9 - i * 0.1,
                        "raw_content": None,
                    }
                    for i in range(min(n, 2))
                ]
                self._send(200, {"query": q, "answer": None, "images": [], "results": results, "response_time": 0.01})

        super().__init__(Handler)


class OpenAIVisionFixture(_Server):
    """An OpenAI-compatible vision model (vLLM's chat-completions route shape): every request is kept; an image part
    must be a base64 PNG data URL, and the reply names each image's size read from its PNG header, so a test sees
    that the bytes arrived whole. ``key``: the Bearer token it requires (None: any)."""

    def __init__(self, key: str | None = None, model: str = "qwen2.5-vl-7b"):
        self.requests: list[dict] = []
        outer = self

        class Handler(_JSONHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("authorization")})
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                if key is not None and self.headers.get("authorization") != f"Bearer {key}":
                    return self._send(401, {"error": {"message": "invalid api key", "type": "authentication_error"}})
                if body.get("model") != model:
                    return self._send(404, {"error": {"message": f"model {body.get('model')!r} does not exist"}})
                sizes = []
                for msg in body.get("messages", []):
                    parts = msg.get("content") if isinstance(msg.get("content"), list) else []
                    for part in parts:
                        if part.get("type") != "image_url":
                            continue
                        url = part["image_url"]["url"]
                        if not url.startswith("data:image/png;base64,"):
                            return self._send(400, {"error": {"message": "only PNG data URLs here"}})
                        png = base64.b64decode(url.split(",", 1)[1])
                        if png[:8] != b"\x89PNG\r\n\x1a\n":
                            return self._send(400, {"error": {"message": "not a PNG"}})
                        sizes.append("%dx%d" % struct.unpack(">II", png[16:24]))
                if not sizes:
                    return self._send(400, {"error": {"message": "no image in the request"}})
                text = "A PNG image of " + ", ".join(sizes) + " pixels."
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(outer.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 64, "completion_tokens": 8, "total_tokens": 72},
                    },
                )

        super().__init__(Handler)
