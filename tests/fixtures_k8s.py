"""A local HTTP server speaking the part of the Kubernetes API the platform's KubernetesResource uses.

There is no kube-apiserver here (no cluster, no etcd), so the apply/plan/prune/wait logic is tested at the protocol
boundary, through the real ``kubernetes`` client: discovery (/api, /apis, resource lists), GET, LIST with label
selectors, server-side apply (PATCH application/apply-patch+yaml with fieldManager and force) and DELETE.
A tiny "controller" marks workloads ready unless a kind is listed in ``never_ready``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import yaml

KINDS = {  # (group, version) -> [(plural, kind, namespaced)]
    ("", "v1"): [
        ("namespaces", "Namespace", False),
        ("serviceaccounts", "ServiceAccount", True),
        ("configmaps", "ConfigMap", True),
        ("services", "Service", True),
        ("secrets", "Secret", True),
    ],
    ("apps", "v1"): [("deployments", "Deployment", True), ("daemonsets", "DaemonSet", True)],
    ("networking.k8s.io", "v1"): [("ingresses", "Ingress", True)],
    ("karpenter.sh", "v1"): [("nodepools", "NodePool", False)],
    ("karpenter.k8s.aws", "v1"): [("ec2nodeclasses", "EC2NodeClass", False)],
    ("ray.io", "v1"): [
        ("rayservices", "RayService", True),
        ("rayclusters", "RayCluster", True),
        ("rayjobs", "RayJob", True),
    ],
    ("monitoring.coreos.com", "v1"): [("servicemonitors", "ServiceMonitor", True)],
}
PLURAL = {(g, v, p): (k, ns) for (g, v), items in KINDS.items() for p, k, ns in items}


class FakeKubeAPI:
    def __init__(self):
        self.objects: dict[tuple[str, str, str, str], dict] = {}  # (apiVersion, kind, ns, name) -> object
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, query)
        self.never_ready: set[str] = set()
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                api.handle(self, "GET")

            def do_PATCH(self):
                api.handle(self, "PATCH")

            def do_DELETE(self):
                api.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()

    # ---------------------------------------------------------------- routing
    def _parse(self, path: str):
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"]:
            group, version, rest = "", parts[1] if len(parts) > 1 else None, parts[2:]
        else:
            group = parts[1] if len(parts) > 1 else None
            version = parts[2] if len(parts) > 2 else None
            rest = parts[3:]
        ns = None
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        plural = rest[0] if rest else None
        name = rest[1] if len(rest) > 1 else None
        return group, version, ns, plural, name

    def _with_status(self, obj: dict) -> dict:
        obj = json.loads(json.dumps(obj))
        kind = obj["kind"]
        ready = kind not in self.never_ready
        if kind == "Deployment":
            obj["status"] = {"availableReplicas": obj["spec"].get("replicas", 1) if ready else 0}
        elif kind == "DaemonSet":
            obj["status"] = {"desiredNumberScheduled": 2, "numberReady": 2 if ready else 0}
        elif kind == "RayService":
            obj["status"] = {"serviceStatus": "Running" if ready else "WaitForServeDeploymentReady"}
        elif kind == "RayCluster":
            obj["status"] = {"state": "ready" if ready else "suspended"}
        return obj

    def handle(self, h, method: str):
        url = urlparse(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.requests.append((method, url.path, query))
        if url.path == "/version":
            return h._send(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake"})
        if url.path == "/api":
            return h._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if url.path == "/apis":
            groups = sorted({g for g, _ in KINDS if g})
            return h._send(
                200,
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        {
                            "name": g,
                            "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                            "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
                        }
                        for g in groups
                    ],
                },
            )
        group, version, ns, plural, name = self._parse(url.path)
        if plural is None:
            items = KINDS.get((group, version))
            if items is None:
                return h._send(404, {"kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound"})
            gv = f"{group}/{version}" if group else version
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            return h._send(
                200,
                {
                    "kind": "APIResourceList",
                    "groupVersion": gv,
                    "resources": [
                        {"name": p, "singularName": k.lower(), "namespaced": n, "kind": k, "verbs": verbs}
                        for p, k, n in items
                    ],
                },
            )
        # a namespace object itself: /api/v1/namespaces/<name>
        if url.path.startswith("/api/v1/namespaces/") and url.path.count("/") == 4:
            plural, name, ns = "namespaces", url.path.rsplit("/", 1)[1], None
        kind, namespaced = PLURAL.get((group, version, plural), (None, None))
        if kind is None:
            return h._send(404, {"kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound"})
        api_version = f"{group}/{version}" if group else version
        key = (api_version, kind, ns or "", name or "")
        if method == "GET" and name:
            obj = self.objects.get(key)
            if obj is None:
                return h._send(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "code": 404,
                        "reason": "NotFound",
                        "message": f'{plural} "{name}" not found',
                    },
                )
            return h._send(200, self._with_status(obj))
        if method == "GET":
            selector = dict(s.split("=", 1) for s in query.get("labelSelector", "").split(",") if "=" in s)
            items = [
                self._with_status(o)
                for (av, k, n, _), o in sorted(self.objects.items())
                if av == api_version
                and k == kind
                and (ns is None or n == ns)
                and all(o["metadata"].get("labels", {}).get(a) == b for a, b in selector.items())
            ]
            return h._send(200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": {}, "items": items})
        if method == "PATCH":
            ctype = h.headers.get("Content-Type", "")
            body = yaml.safe_load(h.rfile.read(int(h.headers.get("Content-Length", 0))))
            if ctype != "application/apply-patch+yaml" or not query.get("fieldManager"):
                return h._send(
                    415,
                    {
                        "kind": "Status",
                        "status": "Failure",
                        "code": 415,
                        "message": f"want server-side apply, got {ctype}",
                    },
                )
            existing = self.objects.get(key, {})
            obj = {
                **body,
                "metadata": {
                    **body["metadata"],
                    "uid": existing.get("metadata", {}).get("uid", f"uid-{len(self.objects)}"),
                    "managedFields": [{"manager": query["fieldManager"], "operation": "Apply"}],
                },
            }
            if namespaced:
                obj["metadata"]["namespace"] = ns
            self.objects[key] = obj
            return h._send(200 if existing else 201, self._with_status(obj))
        if method == "DELETE":
            if self.objects.pop(key, None) is None:
                return h._send(404, {"kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound"})
            return h._send(200, {"kind": "Status", "status": "Success"})
        return h._send(405, {"kind": "Status", "status": "Failure", "code": 405})
