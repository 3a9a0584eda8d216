"""The contract tier's own fixtures."""

from __future__ import annotations

import pytest

from pipelines.settings import load_settings

_UP: list = []  # the control plane while it runs
_LAST_USER: list[str] = []  # the node id of the last test that uses it


def pytest_collection_modifyitems(config, items):
    """The modules that use the control plane run first in the tier, so it can stop right after the last of them
    instead of loading the 2 cores beside the tier's other modules."""
    uses = {i.module.__name__ for i in items if "kube_cluster" in getattr(i, "fixturenames", ())}
    here = [
        i for i in items if getattr(i, "module", None) is not None and i.module.__name__.startswith("tests.contract")
    ]
    if not uses or not here:
        return
    start = items.index(here[0])
    ordered = [i for i in here if i.module.__name__ in uses] + [i for i in here if i.module.__name__ not in uses]
    items[start : start + len(here)] = ordered
    # the last test of the last module that uses it, not the last test that names it: a module fixture built on the
    # cluster (test_cluster_security's ``secured``) is torn down after its module's last test, and needs it then
    last_module = [i for i in ordered if "kube_cluster" in i.fixturenames][-1].module.__name__
    _LAST_USER[:] = [[i for i in ordered if i.module.__name__ == last_module][-1].nodeid]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    if _LAST_USER and item.nodeid == _LAST_USER[0]:  # after the module fixtures that used it are torn down
        _stop()


def _stop() -> None:
    while _UP:
        _UP.pop().down(wipe=True)


@pytest.fixture(scope="package")
def kube_cluster(tmp_path_factory, base_settings):
    """The real local control plane (etcd, kube-apiserver, controller manager, scheduler, kwok, Karpenter-kwok,
    KubeRay) on loopback ports, once for the contract tier (every test that uses it is here); stopped and wiped
    right after the last test that uses it (the modules that do run first), so it does not idle beside the rest."""
    from infra.local.kube.cluster import missing_binaries
    from pipelines.services import local_cluster

    missing = missing_binaries(base_settings.cache)
    if missing:
        pytest.fail(f"the local control plane is not built ({missing}): `make cluster` (or `make test`) builds it")
    home = tmp_path_factory.mktemp("kube-home")
    cluster = local_cluster(load_settings({"AGENTIC_HOME": str(home), "AGENTIC_CACHE": str(base_settings.cache)}))
    info = cluster.up()
    cluster.info = info
    _UP.append(cluster)
    yield cluster
    _stop()
