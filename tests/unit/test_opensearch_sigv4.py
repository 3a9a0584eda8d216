"""SigV4 toward Amazon OpenSearch, checked at the protocol boundary: a local HTTP server records what the client sends.

(Amazon OpenSearch itself cannot be reached from here; the signing is real botocore code.)
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from resources.opensearch_store import OpenSearchVectorStore


def test_requests_are_signed_with_sigv4_for_es(monkeypatch):
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(dict(self.headers))
            body = json.dumps({"cluster_name": "x", "version": {"number": "2.19.1"}}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Credentials come from the environment (the pod identity on EKS); these are throwaway test values.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLETESTONLY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-not-real")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    try:
        store = OpenSearchVectorStore(
            hosts=f"http://127.0.0.1:{server.server_port}", use_sigv4=True, aws_region="eu-west-1"
        )
        assert store.client().info()["version"]["number"] == "2.19.1"
    finally:
        server.shutdown()
    auth = seen[-1]["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLETESTONLY/")
    assert "/eu-west-1/es/aws4_request" in auth
    assert "SignedHeaders=" in auth and "Signature=" in auth
    assert "X-Amz-Date" in seen[-1] or "x-amz-date" in {k.lower() for k in seen[-1]}
    assert "test-secret-not-real" not in json.dumps(seen)
