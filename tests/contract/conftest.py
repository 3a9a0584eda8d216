"""The contract tier's own fixtures."""

from __future__ import annotations

import pytest

from pipelines.settings import load_settings


@pytest.fixture(scope="package")
def kube_cluster(tmp_path_factory, base_settings):
    """The real local control plane (etcd, kube-apiserver, controller manager, scheduler, kwok, Karpenter-kwok,
    KubeRay) on loopback ports, once for the contract tier (every test that uses it is here); stopped and wiped
    after the tier's last test, so it does not idle beside the rest of the suite."""
    from infra.local.kube.cluster import missing_binaries
    from pipelines.services import local_cluster

    missing = missing_binaries(base_settings.cache)
    if missing:
        pytest.fail(f"the local control plane is not built ({missing}): `make cluster` (or `make test`) builds it")
    home = tmp_path_factory.mktemp("kube-home")
    cluster = local_cluster(load_settings({"AGENTIC_HOME": str(home), "AGENTIC_CACHE": str(base_settings.cache)}))
    info = cluster.up()
    cluster.info = info
    yield cluster
    cluster.down(wipe=True)
