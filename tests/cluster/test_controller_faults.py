"""Faults: the controller recovers from each of these with no manual step, and traffic resumes.

- the API server restarts mid-run (killed, then started again on the same port with the same
  etcd data): Envoy keeps serving during the outage, the watches reconnect and relist, and a
  change made after the restart reaches Envoy;
- Envoy is killed: the supervisor starts a new one, which gets the whole configuration again;
- a Service and its EndpointSlice are deleted (the rule answers 500, status says
  BackendNotFound) and recreated with other endpoints: traffic reaches them;
- a watch expires: the resumed watch's resourceVersion has been compacted away, the API server
  answers 410 Gone, the provider relists, and a change made after that reaches Envoy.

How the 410 is forced, reliably: these tests run their own control plane whose kube-apiserver
has the watch cache disabled for EndpointSlices only (``--watch-cache-sizes=
endpointslices.discovery.k8s.io#0``), so an EndpointSlice watch is served by etcd itself; the
controller's watches last 2 s (``watch_timeout``) before being resumed from the last
resourceVersion seen. The test writes a few unrelated objects (to move etcd's revision past
that resourceVersion), then compacts etcd at its current revision through etcd's v3 HTTP
gateway. The next resume asks etcd for compacted history and gets 410 ``Expired``. (With the
watch cache on, the cache serves the resume from memory and would hide the compaction; an
API server restart also yields 410s, as the watch cache restarts at the current revision.)
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import controller_harness as h
from tests.realparts import facts
from tests.realparts.backends import register_service
from tests.realparts.controlplane import ControlPlane
from tests.realparts.envoy_fixtures import EchoBackendsFactory

HOST = "faults.example.test"
WATCH_CACHE_OFF = "--watch-cache-sizes=endpointslices.discovery.k8s.io#0"


@pytest.fixture(scope="module")
def fault_plane() -> Iterator[ControlPlane]:
    """A control plane of our own: these tests restart its API server and compact its etcd."""
    from tests.realparts import controlplane, crds
    from tests.realparts.bins import ensure_binaries

    plane: ControlPlane | None = None
    try:
        plane = controlplane.start(ensure_binaries(), apiserver_args=(WATCH_CACHE_OFF,))
        with contextlib.closing(plane.api_client()) as client:
            crds.install_bundles(client, ("gateway-api-standard", "gateway-api-experimental-x"))
    except Exception as exc:  # never skip: the real part must start
        detail = plane.logs_tail() if plane is not None else ""
        if plane is not None:
            plane.stop()
        pytest.fail(f"fault control plane unavailable: {exc}\n{detail}", pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def fault_api(fault_plane: ControlPlane) -> Iterator[Any]:
    with contextlib.closing(fault_plane.api_client()) as client:
        yield client


@pytest.fixture
def fault_ns(fault_api: Any) -> str:
    from kubernetes import client

    name = f"f-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(fault_api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


@pytest.fixture(params=[True, False], ids=["delta", "sotw"])
def running(
    request: pytest.FixtureRequest, fault_plane: ControlPlane, envoy_binary: Path, tmp_path: Path
) -> Iterator[h.Running]:
    """Every fault once with each xDS variant (delta is the default; SotW stays supported)."""
    with h.start_controller(
        fault_plane.kubeconfig,
        envoy_binary,
        tmp_path / "envoy",
        watch_timeout=2,
        delta=request.param,
    ) as running:
        yield running


def _serve(running: h.Running, namespace: str, service: str, backend: str) -> dict[str, Any]:
    """Gateway + HTTPRoute to ``service``; wait until Envoy answers from ``backend``."""
    h.apply(running.cluster, h.gateway(namespace, running.class_name))
    route = h.http_route(namespace, "web", HOST, service)
    h.apply(running.cluster, route)
    h.wait_for(
        lambda: h.probe(running.address, HOST).backend == backend, 30, f"traffic on {backend}"
    )
    return route


def _switch(running: h.Running, namespace: str, backend: str, what: str) -> float:
    """Point the route at ``backend``; seconds until Envoy answers from it."""
    began = time.monotonic()
    h.apply(running.cluster, h.http_route(namespace, "web", HOST, backend))
    h.wait_for(lambda: h.probe(running.address, HOST).backend.startswith(backend), 30, what)
    return time.monotonic() - began


# --------------------------------------------------------------------------- API server restart


@pytest.mark.cluster
@pytest.mark.envoy
def test_apiserver_restart(
    running: h.Running,
    fault_plane: ControlPlane,
    fault_api: Any,
    fault_ns: str,
    echo_backends: EchoBackendsFactory,
) -> None:
    register_service(fault_api, fault_ns, "one", echo_backends(["one"], routable=True))
    register_service(fault_api, fault_ns, "two", echo_backends(["two"], routable=True))
    _serve(running, fault_ns, "one", "one")
    provider = running.controller.provider
    errors_before = provider.errors
    relists_before = provider.relists

    prober = h.Prober(running.address, HOST).start()
    time.sleep(0.3)
    down_at = time.monotonic()
    fault_plane.stop_apiserver(kill=True)
    time.sleep(3)  # the watches fail and retry against a dead server meanwhile
    restart_seconds = fault_plane.start_apiserver()
    up_at = time.monotonic()
    time.sleep(0.3)
    answers = prober.stop()
    during = [a for a in answers if down_at <= a.at <= up_at]
    assert len(during) > 50, "the prober did not run during the outage"
    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} requests failed while the API server was down: {failed[:3]}"

    # the watches noticed and relisted, on their own
    h.wait_for(lambda: provider.errors > errors_before, 10, "the provider to see the outage")
    served = set(provider.listed_at)  # kinds whose CRD is installed (the others are 404)
    assert {"gateways", "httproutes", "services", "endpointslices"} <= served
    h.wait_for(
        lambda: all(provider.listed_at[k] > down_at for k in served),
        30,
        "every served kind to be relisted after the restart",
    )
    # a change made after the restart reaches Envoy
    propagation = _switch(running, fault_ns, "two", "the post-restart change on Envoy")
    # and status is still written: a new route gets Accepted
    extra = h.http_route(fault_ns, "extra", "extra.example.test", "one")
    h.apply(running.cluster, extra)

    def accepted() -> bool:
        parents = h.get(running.cluster, extra).get("status", {}).get("parents", [])
        return any(
            c["type"] == "Accepted" and c["status"] == "True"
            for p in parents
            for c in p.get("conditions", [])
        )

    h.wait_for(accepted, 15, "status of a route created after the restart")
    facts.record(
        f"fault apiserver restart: {len(during)} requests during a "
        f"{up_at - down_at:.1f} s outage, 0 failed; API server back in {restart_seconds:.1f} s; "
        f"change after restart on Envoy in {propagation * 1000:.0f} ms; "
        f"watch errors {provider.errors - errors_before}, relists "
        f"{provider.relists - relists_before}, 410s {sum(provider.expired.values())}"
    )


# --------------------------------------------------------------------------- Envoy killed


@pytest.mark.cluster
@pytest.mark.envoy
def test_envoy_killed_is_restarted(
    running: h.Running, fault_api: Any, fault_ns: str, echo_backends: EchoBackendsFactory
) -> None:
    register_service(fault_api, fault_ns, "one", echo_backends(["one"], routable=True))
    register_service(fault_api, fault_ns, "two", echo_backends(["two"], routable=True))
    _serve(running, fault_ns, "one", "one")
    supervisor = running.controller.supervisor
    old_pid = supervisor.pid
    assert old_pid is not None

    prober = h.Prober(running.address, HOST).start()
    time.sleep(0.3)
    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    h.wait_for(
        lambda: supervisor.pid not in (None, old_pid), 15, "the supervisor to start a new Envoy"
    )
    h.wait_for(
        lambda: any(a.status == 200 and a.at > killed_at + 0.1 for a in list(prober.answers)),
        20,
        "traffic through the new Envoy",
    )
    back_at = next(a.at for a in list(prober.answers) if a.status == 200 and a.at > killed_at + 0.1)
    time.sleep(0.5)
    answers = prober.stop()
    after = [a for a in answers if a.at > back_at]
    assert after and all(a.status == 200 and a.backend == "one" for a in after), after[:5]
    assert supervisor.restarts >= 1
    # the new Envoy follows changes like the first one
    propagation = _switch(running, fault_ns, "two", "a change through the new Envoy")
    facts.record(
        f"fault Envoy SIGKILL: traffic back {back_at - killed_at:.2f} s after the kill "
        f"(supervisor backoff 0.5 s); change afterwards on Envoy in {propagation * 1000:.0f} ms"
    )


# --------------------------------------------------------------------------- Service recreated


@pytest.mark.cluster
@pytest.mark.envoy
def test_service_deleted_and_recreated(
    running: h.Running, fault_api: Any, fault_ns: str, echo_backends: EchoBackendsFactory
) -> None:
    from kubernetes import client

    register_service(fault_api, fault_ns, "one", echo_backends(["one-a"], routable=True))
    route = _serve(running, fault_ns, "one", "one-a")
    core = client.CoreV1Api(fault_api)
    discovery = client.DiscoveryV1Api(fault_api)
    # No garbage collector runs in the test cluster: delete the slices with the Service.
    core.delete_namespaced_service("one", fault_ns)
    discovery.delete_collection_namespaced_endpoint_slice(
        fault_ns, label_selector="kubernetes.io/service-name=one"
    )
    h.wait_for(lambda: h.probe(running.address, HOST).status == 500, 15, "500 without a backend")

    def resolved_refs() -> str:
        parents = h.get(running.cluster, route).get("status", {}).get("parents", [])
        return next(
            (
                f"{c['status']}/{c['reason']}"
                for p in parents
                for c in p.get("conditions", [])
                if c["type"] == "ResolvedRefs"
            ),
            "",
        )

    h.wait_for(lambda: resolved_refs() == "False/BackendNotFound", 15, "BackendNotFound status")

    recreated_at = time.monotonic()
    register_service(fault_api, fault_ns, "one", echo_backends(["one-b"], routable=True))
    h.wait_for(
        lambda: h.probe(running.address, HOST).backend == "one-b", 15, "the recreated Service"
    )
    back = time.monotonic() - recreated_at
    answers = [h.probe(running.address, HOST) for _ in range(20)]
    assert {(a.status, a.backend) for a in answers} == {(200, "one-b")}
    h.wait_for(lambda: resolved_refs() == "True/ResolvedRefs", 15, "ResolvedRefs back to True")
    facts.record(
        f"fault Service deleted + recreated: 500 while missing, new endpoints served "
        f"{back * 1000:.0f} ms after recreation"
    )


# --------------------------------------------------------------------------- watch expiry (410)


def _etcd(plane: ControlPlane, path: str, body: dict[str, Any]) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(
        plane.etcd_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with opener.open(req, timeout=10) as response:
        return dict(json.loads(response.read()))


def compact_etcd(plane: ControlPlane) -> int:
    """Compact etcd's history up to its current revision (physically); return the revision."""
    key = base64.b64encode(b"/registry/namespaces/default").decode()
    revision = int(_etcd(plane, "/v3/kv/range", {"key": key})["header"]["revision"])
    _etcd(plane, "/v3/kv/compaction", {"revision": str(revision), "physical": True})
    return revision


@pytest.mark.cluster
@pytest.mark.envoy
def test_watch_expired_410_relists(
    running: h.Running,
    fault_plane: ControlPlane,
    fault_api: Any,
    fault_ns: str,
    echo_backends: EchoBackendsFactory,
) -> None:
    from kubernetes import client

    register_service(fault_api, fault_ns, "one", echo_backends(["one-a"], routable=True))
    _serve(running, fault_ns, "one", "one-a")
    provider = running.controller.provider
    before = provider.expired.get("endpointslices", 0)

    # move etcd's revision past the EndpointSlice watch's resourceVersion, then compact
    core = client.CoreV1Api(fault_api)
    for index in range(3):
        core.create_namespaced_config_map(
            fault_ns, {"metadata": {"name": f"bump-{index}"}, "data": {"i": str(index)}}
        )
    revision = compact_etcd(fault_plane)
    h.wait_for(
        lambda: provider.expired.get("endpointslices", 0) > before,
        15,
        "the EndpointSlice watch to expire (410) after compaction",
    )
    expired_at = time.monotonic()

    # the relisted cache is live: new endpoints for the Service reach Envoy (an endpoints-only
    # change: the controller rebuilds the IR without rerunning the attachment engine)
    incremental_before = running.controller.stats.incremental
    discovery = client.DiscoveryV1Api(fault_api)
    new = echo_backends(["one-b"], routable=True)[0]
    slice_name = (
        discovery.list_namespaced_endpoint_slice(
            fault_ns, label_selector="kubernetes.io/service-name=one"
        )
        .items[0]
        .metadata.name
    )
    discovery.patch_namespaced_endpoint_slice(
        slice_name,
        fault_ns,
        {
            "endpoints": [
                {"addresses": [new.address], "conditions": {"ready": True}, "hostname": "one-b"}
            ],
            "ports": [{"name": "http", "protocol": "TCP", "port": new.port}],
        },
    )
    h.wait_for(
        lambda: h.probe(running.address, HOST).backend == "one-b",
        15,
        "the endpoints changed after the 410 to reach Envoy",
    )
    assert running.controller.stats.incremental > incremental_before
    facts.record(
        f"fault watch expiry: etcd compacted at revision {revision}, EndpointSlice watch got "
        f"410 and relisted; endpoints changed afterwards served "
        f"{(time.monotonic() - expired_at) * 1000:.0f} ms later"
    )
