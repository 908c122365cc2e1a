"""The provider tells the controller exactly which objects changed: the incremental pipeline
looks at those routes only, so a change the provider leaves out would never be served.

Against the real API server: a create, a status write (touched, not changed), a spec update and
a delete each show up in ``take_changes()``; and a relist (what a 410 or an API server restart
causes) reports the difference between the cache and the new list, object by object.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest

from controller.provider import Changes, Provider
from kubectl_gw import kube
from kubectl_gw.model import kind_info
from tests.cluster import controller_harness as h
from tests.realparts.controlplane import ControlPlane

ROUTE = kind_info("gateway.networking.k8s.io/v1", "HTTPRoute")
SERVICE = kind_info("v1", "Service")


@pytest.fixture
def provider(kube_cluster: ControlPlane, kube_crds: Any) -> Iterator[Provider]:
    assert ROUTE is not None and SERVICE is not None
    cluster = kube.connect(kube.KubeTarget(kubeconfig=str(kube_cluster.kubeconfig)))
    running = Provider(cluster, [ROUTE, SERVICE], lambda: None)
    running.start()
    try:
        assert running.wait_synced(30), "the provider did not list its kinds"
        yield running
    finally:
        running.stop()


def _mine(changes: Changes, namespace: str) -> dict[tuple[str, str, str], Any]:
    return {k: v for k, v in changes.changed.items() if k[1] == namespace}


def _wait_changes(
    provider: Provider, namespace: str, want: set[tuple[str, str, str]], timeout: float = 10.0
) -> tuple[dict[tuple[str, str, str], Any], set[tuple[str, str, str]]]:
    """Take changes until ``want`` keys were all touched; return what changed and what was
    touched (in ``namespace``) over those takes."""
    changed: dict[tuple[str, str, str], Any] = {}
    touched: set[tuple[str, str, str]] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        changes = provider.take_changes()
        changed.update(_mine(changes, namespace))
        touched.update(k for k in changes.touched if k[1] == namespace)
        if want <= touched:
            return changed, touched
        time.sleep(0.05)
    raise AssertionError(f"not seen within {timeout} s: {want - touched}")


def test_watch_events_are_reported_object_by_object(provider: Provider, namespace: str) -> None:
    provider.take_changes()  # the first listing
    key = ("HTTPRoute", namespace, "r1")
    route = h.http_route(namespace, "r1", "r1.example.test", "svc")
    h.create(provider.cluster, route)
    changed, _ = _wait_changes(provider, namespace, {key})
    assert set(changed) == {key} and changed[key]["metadata"]["name"] == "r1"

    # a status write: touched, not changed (nothing the controller computes reads status)
    current = h.get(provider.cluster, route)
    current["status"] = {
        "parents": [
            {
                "parentRef": {"name": "gw"},
                "controllerName": "example.test/other",
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": "True",
                        "reason": "Accepted",
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        ]
    }
    assert ROUTE is not None
    path = provider.cluster.collection_path(ROUTE, namespace) + "/r1"
    provider.cluster.request("PUT", path + "/status", body=current)
    changed, touched = _wait_changes(provider, namespace, {key})
    assert changed == {} and key in touched

    # a spec change, then a delete
    current = h.get(provider.cluster, route)
    current["spec"]["hostnames"] = ["r1b.example.test"]
    provider.cluster.request("PUT", path, body=current)
    changed, _ = _wait_changes(provider, namespace, {key})
    assert changed[key]["spec"]["hostnames"] == ["r1b.example.test"]
    h.delete(provider.cluster, route)
    deadline = time.monotonic() + 10
    seen: dict[tuple[str, str, str], Any] = {}
    while key not in seen and time.monotonic() < deadline:
        seen.update(_mine(provider.take_changes(), namespace))
        time.sleep(0.05)
    assert key in seen and seen[key] is None


def test_a_relist_reports_the_difference_with_the_cache(provider: Provider, namespace: str) -> None:
    """As after a 410 or an API server restart: the new list replaces the cache, and every
    object that appeared, went or changed its spec is a change; a status-only difference is
    only touched."""
    assert SERVICE is not None
    provider.take_changes()

    def service(name: str, port: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
            "spec": {"ports": [{"port": port}]},
        }
        if status is not None:
            obj["status"] = status
        return obj

    others = [o for o in provider.objects() if o.get("kind") == "Service"]
    provider._replace(SERVICE, [*others, service("a", 80), service("b", 80)], listed=True)
    provider.take_changes()
    relisted = [
        *others,
        service("a", 81),  # spec changed
        service("c", 80),  # new
        # "b" is gone
    ]
    provider._replace(SERVICE, relisted, listed=True)
    changes = provider.take_changes()
    mine = _mine(changes, namespace)
    assert set(mine) == {
        ("Service", namespace, "a"),
        ("Service", namespace, "b"),
        ("Service", namespace, "c"),
    }
    assert mine[("Service", namespace, "b")] is None
    assert mine[("Service", namespace, "a")]["spec"]["ports"] == [{"port": 81}]
    assert "Service" in changes.kinds

    # the same list again with a status-only difference: touched, not changed
    again = [copy.deepcopy(o) for o in relisted]
    again[-1]["status"] = {"loadBalancer": {}}
    provider._replace(SERVICE, again, listed=True)
    changes = provider.take_changes()
    assert _mine(changes, namespace) == {}
    assert ("Service", namespace, "c") in changes.touched
    assert "Service" not in changes.kinds
