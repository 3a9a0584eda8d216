"""Kubernetes: plan, server-side apply, readiness and pruning of what the platform declares.

- ``plan(manifests)`` (the default everywhere): for each declared object, create / update (with the changed field
  paths) / unchanged, plus the objects carrying the platform's label that are no longer declared (prune).
- ``apply(manifests)`` must be asked for: server-side apply (field manager ``agentic-platform``, conflicts forced so
  the platform owns its fields), then deletion of undeclared objects it owns, then a wait for readiness with a timeout.

Ownership is by label: ``app.kubernetes.io/managed-by=agentic-platform`` and ``app.kubernetes.io/part-of=<cluster>``;
objects without it are never touched. Uses the official ``kubernetes`` Python client's dynamic client.
"""

from __future__ import annotations

import json
import time
from typing import Any

import dagster as dg

from infra.platform.config import MANAGED_BY

FIELD_MANAGER = "agentic-platform"


class KubernetesApplyError(RuntimeError):
    """The API server refused an object (schema, CEL rule, enum, unknown field, admission): its own message."""


def server_message(exc) -> str:
    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(getattr(exc, "reason", exc))


def _diff(want: Any, have: Any, path: str = "") -> list[str]:
    """Paths where the declared value differs from the live one (only fields the manifest declares)."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [path or "<root>"]
        out = []
        for k, v in want.items():
            out += _diff(v, have.get(k), f"{path}.{k}" if path else k)
        return out
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return [path]
        out = []
        for i, (w, h) in enumerate(zip(want, have)):
            out += _diff(w, h, f"{path}[{i}]")
        return out
    return [] if want == have or str(want) == str(have) else [path]


def _ident(obj: dict) -> tuple[str, str, str, str]:
    m = obj["metadata"]
    return obj["apiVersion"], obj["kind"], m.get("namespace", ""), m["name"]


def is_ready(obj: dict) -> tuple[bool, str]:
    kind, status, spec = obj.get("kind"), obj.get("status") or {}, obj.get("spec") or {}
    if kind == "Deployment":
        want = spec.get("replicas", 1)
        return status.get("availableReplicas", 0) >= want, f"{status.get('availableReplicas', 0)}/{want} available"
    if kind == "DaemonSet":
        return (
            status.get("numberReady", 0) >= status.get("desiredNumberScheduled", 0),
            f"{status.get('numberReady', 0)}/{status.get('desiredNumberScheduled', 0)} ready",
        )
    if kind == "RayService":
        return status.get("serviceStatus") == "Running", f"serviceStatus={status.get('serviceStatus')}"
    if kind == "RayCluster":
        return status.get("state") == "ready", f"state={status.get('state')}"
    return True, "exists"


class KubernetesResource(dg.ConfigurableResource):
    """Where the cluster's API is: a kubeconfig (operators; the local control plane's), in-cluster config (Dagster
    pods), or a host. EKS and the local control plane go through this same code."""

    host: str = ""  # e.g. from the EKS endpoint; empty -> kubeconfig / in-cluster
    kubeconfig: str = ""  # a kubeconfig file (the local control plane's); empty -> in-cluster, then ~/.kube/config
    context: str = ""
    token: str = ""  # dg.EnvVar in production (short-lived EKS token); empty -> kubeconfig's auth
    cluster: str = "agentic-rag"  # value of app.kubernetes.io/part-of on owned objects
    ready_timeout_s: float = 900.0
    poll_s: float = 5.0
    # kinds whose readiness is not awaited: on the local control plane a RayService polls the Ray dashboard through
    # cluster DNS, which kwok's pods do not serve, so it never reports Running (its RayCluster does get ready)
    ready_kinds_ignored: list[str] = []

    def _client(self):
        from kubernetes import client, config, dynamic

        if self.host:
            cfg = client.Configuration()
            cfg.host = self.host
            if self.token:
                cfg.api_key = {"authorization": f"Bearer {self.token}"}
            api = client.ApiClient(cfg)
        elif self.kubeconfig:
            api = config.new_client_from_config(config_file=self.kubeconfig, context=self.context or None)
        else:
            try:
                config.load_incluster_config()
                api = client.ApiClient()
            except config.ConfigException:
                api = config.new_client_from_config(context=self.context or None)
        return dynamic.DynamicClient(api)

    def selector(self) -> str:
        return f"app.kubernetes.io/managed-by={MANAGED_BY},app.kubernetes.io/part-of={self.cluster}"

    def _owned(self, dyn, kinds: set[tuple[str, str]]) -> list[dict]:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        out = []
        for api_version, kind in sorted(kinds):
            try:
                res = dyn.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:  # a kind this cluster does not serve (EC2NodeClass off AWS): nothing to prune
                continue
            for item in res.get(label_selector=self.selector()).to_dict().get("items", []):
                if item["metadata"].get("ownerReferences"):
                    # made by a controller from a declared object (KubeRay copies a RayService's labels onto the
                    # RayCluster it creates): the owner's lifecycle governs it, prune never does
                    continue
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                out.append(item)
        return out

    def plan(self, manifests: list[dict], prune_kinds: set[tuple[str, str]] | None = None) -> list[dict]:
        from kubernetes.dynamic.exceptions import NotFoundError

        dyn = self._client()
        declared = {_ident(m) for m in manifests}
        out = []
        for m in manifests:
            api_version, kind, ns, name = _ident(m)
            res = dyn.resources.get(api_version=api_version, kind=kind)
            try:
                live = res.get(name=name, namespace=ns or None).to_dict()
            except NotFoundError:
                out.append(
                    {
                        "action": "create",
                        "apiVersion": api_version,
                        "kind": kind,
                        "namespace": ns,
                        "name": name,
                        "changes": [],
                    }
                )
                continue
            body = {k: v for k, v in m.items() if k not in ("apiVersion", "kind", "status")}
            changes = _diff(body, live)
            out.append(
                {
                    "action": "update" if changes else "unchanged",
                    "apiVersion": api_version,
                    "kind": kind,
                    "namespace": ns,
                    "name": name,
                    "changes": changes,
                }
            )
        kinds = (prune_kinds or set()) | {(m["apiVersion"], m["kind"]) for m in manifests}
        for obj in self._owned(dyn, kinds):
            if _ident(obj) not in declared:
                md = obj["metadata"]
                out.append(
                    {
                        "action": "delete",
                        "apiVersion": obj["apiVersion"],
                        "kind": obj["kind"],
                        "namespace": md.get("namespace", ""),
                        "name": md["name"],
                        "changes": [],
                    }
                )
        return out

    def apply(
        self,
        manifests: list[dict],
        prune: bool = True,
        wait: bool = True,
        prune_kinds: set[tuple[str, str]] | None = None,
        log=print,
    ) -> list[dict]:
        dyn = self._client()
        plan = self.plan(manifests, prune_kinds)
        for m in manifests:
            labels = m["metadata"].get("labels", {})
            if (
                labels.get("app.kubernetes.io/managed-by") != MANAGED_BY
                or labels.get("app.kubernetes.io/part-of") != self.cluster
            ):
                raise ValueError(
                    f"{m['kind']}/{m['metadata']['name']} lacks the platform's ownership labels; refusing to apply it"
                )
        for m in manifests:
            self._server_side_apply(dyn, m)
        if prune:
            for step in plan:
                if step["action"] == "delete":
                    dyn.resources.get(api_version=step["apiVersion"], kind=step["kind"]).delete(
                        name=step["name"], namespace=step["namespace"] or None
                    )
                    log(f"pruned {step['kind']}/{step['name']}")
        if wait:
            self.wait_ready(manifests, dyn)
        return plan

    def _server_side_apply(self, dyn, m: dict) -> dict:
        """Server-side apply with strict field validation (an unknown field is an error, not a silent prune); a
        refusal raises ``KubernetesApplyError`` with the server's message."""
        from kubernetes.client.exceptions import ApiException

        api_version, kind, ns, name = _ident(m)
        res = dyn.resources.get(api_version=api_version, kind=kind)
        try:
            return dyn.request(
                "patch",
                res.path(name=name, namespace=ns or None),
                body=m,
                query_params=[("fieldValidation", "Strict")],
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                content_type="application/apply-patch+yaml",
            )
        except ApiException as exc:
            where = f"{ns}/" if ns else ""
            raise KubernetesApplyError(
                f"{kind} {where}{name}: the API server refused it ({exc.status}): {server_message(exc)}"
            ) from exc

    def wait_ready(self, manifests: list[dict], dyn=None) -> None:
        dyn = dyn or self._client()
        deadline = time.monotonic() + self.ready_timeout_s
        pending = [m for m in manifests if m["kind"] not in self.ready_kinds_ignored]
        while True:
            waiting = []
            for m in pending:
                api_version, kind, ns, name = _ident(m)
                live = (
                    dyn.resources.get(api_version=api_version, kind=kind).get(name=name, namespace=ns or None).to_dict()
                )
                ok, why = is_ready(live)
                if not ok:
                    waiting.append((m, why))
            if not waiting:
                return
            if time.monotonic() > deadline:
                detail = ", ".join(f"{m['kind']}/{m['metadata']['name']} ({why})" for m, why in waiting)
                raise TimeoutError(f"not ready after {self.ready_timeout_s:.0f}s: {detail}")
            pending = [m for m, _ in waiting]
            time.sleep(self.poll_s)
