"""Delta (incremental) xDS end to end: the controller in ``delta=True`` mode programs the real
Envoy 1.40 (bootstrap ``api_type: DELTA_GRPC``), and every change is proven request by request
through Envoy to the real echo backends, while a Prober runs on an unrelated route.

Checked, besides the traffic:

- Envoy's own view (admin ``/config_dump?include_eds``) is exactly the controller's target:
  the same dynamic clusters, listeners and route configurations, each at the version (content
  hash) we sent, no warming leftovers, and the endpoints of every EDS cluster; nothing stale
  after removals;
- what went on the wire (``AdsServer.sent``): delta responses carry only changed resources,
  removals come by name (``removed_resources``) and only after the routes stopped using them;
- an xDS stream broken while Envoy lives: Envoy reconnects with ``initial_resource_versions``;
  the server sends what changed while it was away and nothing unchanged;
- a NACK keeps the last good configuration, and the next good one is accepted.

The last test measures route propagation (create an HTTPRoute → first 200) with ~500 routes in
place, state of the world against delta, and records it (no assertion on time).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf.message import Message

from controller.translate import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    Resources,
)
from controller.xds import Push
from tests.cluster import controller_harness as h
from tests.realparts import facts
from tests.realparts.backends import EchoBackend, register_service
from tests.realparts.certs import tls_secret
from tests.realparts.envoy_fixtures import EchoBackendsFactory

pytestmark = [pytest.mark.cluster, pytest.mark.envoy]

MAIN = "main.example.test"


@pytest.fixture
def running(kube_cluster: Any, envoy_binary: Path, tmp_path: Path) -> Iterator[h.Running]:
    with h.start_controller(
        kube_cluster.kubeconfig,
        envoy_binary,
        tmp_path / "envoy",
        ports=(80, 443),
        prefix="delta",
        delta=True,
    ) as run:
        yield run


# --------------------------------------------------------------------------- helpers


def _https_gateway(namespace: str, class_name: str, secret: str) -> dict[str, Any]:
    gw = h.gateway(namespace, class_name)
    gw["spec"]["listeners"].append(
        {
            "name": "https",
            "port": 443,
            "protocol": "HTTPS",
            "tls": {"mode": "Terminate", "certificateRefs": [{"name": secret}]},
        }
    )
    return gw


def _start_main(
    run: h.Running, kube_api: Any, namespace: str, echo: EchoBackendsFactory
) -> h.Prober:
    """The Gateway, a ``main`` route served by its own backend, and a Prober on it."""
    register_service(kube_api, namespace, "main", echo(["main"], routable=True))
    if not any(o["kind"] == "Gateway" for o in run.applied):
        run.apply(h.gateway(namespace, run.class_name))
    run.apply(h.http_route(namespace, "main", MAIN, "main"))
    h.wait_for(lambda: h.probe(run.address, MAIN).backend == "main", 30, "the main route")
    return h.Prober(run.address, MAIN).start()


def _assert_prober_clean(prober: h.Prober) -> int:
    answers = prober.stop()
    failed = [a for a in answers if a.status != 200 or a.backend != "main"]
    assert len(answers) > 20, "the prober hardly ran"
    assert not failed, f"{len(failed)} of {len(answers)} requests on {MAIN} failed: {failed[:5]}"
    return len(answers)


def _delete_route(run: h.Running, namespace: str, name: str) -> None:
    h.delete(run.cluster, h.http_route(namespace, name, "x", "x"))


def _delete_service(kube_api: Any, namespace: str, name: str) -> None:
    """The Service and its EndpointSlices (no garbage collector runs in the test cluster)."""
    from kubernetes import client

    client.CoreV1Api(kube_api).delete_namespaced_service(name, namespace)
    client.DiscoveryV1Api(kube_api).delete_collection_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={name}"
    )


def _set_endpoints(kube_api: Any, namespace: str, service: str, group: list[EchoBackend]) -> None:
    """Replace the endpoints of ``service``'s (single) EndpointSlice by ``group``."""
    from kubernetes import client

    discovery = client.DiscoveryV1Api(kube_api)
    found = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    ).items
    assert len(found) == 1, [s.metadata.name for s in found]
    assert len({b.port for b in group}) == 1
    discovery.patch_namespaced_endpoint_slice(
        found[0].metadata.name,
        namespace,
        {
            "endpoints": [
                {"addresses": [b.address], "conditions": {"ready": True}, "hostname": b.name}
                for b in group
            ],
            "ports": [{"name": "http", "protocol": "TCP", "port": group[0].port}],
        },
    )


TYPES = {
    "ClustersConfigDump": CLUSTER_TYPE,
    "ListenersConfigDump": LISTENER_TYPE,
    "RoutesConfigDump": ROUTE_TYPE,
    "EndpointsConfigDump": ENDPOINT_TYPE,
    "SecretsConfigDump": SECRET_TYPE,
}


def envoy_view(run: h.Running) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Envoy's dynamic resources from ``/config_dump?include_eds``: per type, name → the
    version it holds; and anything not simply active (warming, draining, errors)."""
    status, text = run.controller.supervisor.admin_get("/config_dump?include_eds", timeout=10)
    assert status == 200, text[:300]
    view: dict[str, dict[str, str]] = {t: {} for t in TYPES.values()}
    odd: list[str] = []
    for section in json.loads(text)["configs"]:
        kind = TYPES.get(section["@type"].rsplit(".", 1)[-1])
        if kind == CLUSTER_TYPE:
            for item in section.get("dynamic_active_clusters", []):
                view[kind][item["cluster"]["name"]] = item.get("version_info", "")
            odd += [
                f"warming cluster {c['cluster']['name']}"
                for c in section.get("dynamic_warming_clusters", [])
            ]
        elif kind == LISTENER_TYPE:
            for item in section.get("dynamic_listeners", []):
                if "active_state" in item:
                    view[kind][item["name"]] = item["active_state"].get("version_info", "")
                odd += [
                    f"listener {item['name']} {state}"
                    for state in ("warming_state", "draining_state", "error_state")
                    if state in item
                ]
        elif kind == ROUTE_TYPE:
            for item in section.get("dynamic_route_configs", []):
                view[kind][item["route_config"]["name"]] = item.get("version_info", "")
        elif kind == ENDPOINT_TYPE:
            # (no per-resource version in this dump: the addresses it holds instead)
            for item in section.get("dynamic_endpoint_configs", []):
                config = item["endpoint_config"]
                view[kind][config["cluster_name"]] = _addresses(
                    lb["endpoint"]["address"]["socket_address"]
                    for group in config.get("endpoints", [])
                    for lb in group.get("lb_endpoints", [])
                )
        elif kind == SECRET_TYPE:
            for item in section.get("dynamic_active_secrets", []):
                view[kind][item["name"]] = item.get("version_info", "")
            odd += [
                f"warming secret {s['name']}" for s in section.get("dynamic_warming_secrets", [])
            ]
    return view, odd


def _addresses(sockets: Iterable[Mapping[str, Any]]) -> str:
    return " ".join(sorted(f"{s['address']}:{s.get('port_value', 0)}" for s in sockets))


def target_view(run: h.Running) -> dict[str, dict[str, str]]:
    snapshot = run.controller.server.snapshot
    assert snapshot is not None
    view = {t: {n: e.version for n, e in snapshot.of(t).items()} for t in TYPES.values()}
    for name, entry in snapshot.of(ENDPOINT_TYPE).items():
        assignment = endpoint_pb2.ClusterLoadAssignment()
        entry.packed.Unpack(assignment)
        view[ENDPOINT_TYPE][name] = _addresses(
            {
                "address": lb.endpoint.address.socket_address.address,
                "port_value": lb.endpoint.address.socket_address.port_value,
            }
            for group in assignment.endpoints
            for lb in group.lb_endpoints
        )
    return view


def assert_envoy_matches_target(run: h.Running, timeout: float = 15) -> None:
    """Envoy holds exactly the target's clusters, listeners and routes, at our versions in delta
    (content hashes; names only in SotW), the endpoints of every cluster with a load assignment and
    the secrets; nothing warming, draining or left over."""

    versions = run.controller.config.delta  # SotW: versions are per type, not per resource

    def same() -> bool:
        view, odd = envoy_view(run)
        want = target_view(run)
        if not versions:
            for type_url in (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE):
                view[type_url] = dict.fromkeys(view[type_url], "")
                want[type_url] = dict.fromkeys(want[type_url], "")
        problems = list(odd)
        for type_url in TYPES.values():
            if view[type_url] != want[type_url]:
                extra = sorted(set(view[type_url]) - set(want[type_url]))
                missing = sorted(set(want[type_url]) - set(view[type_url]))
                stale = sorted(
                    f"{n} {view[type_url][n]!r} != {want[type_url][n]!r}"
                    for n in set(view[type_url]) & set(want[type_url])
                    if view[type_url][n] != want[type_url][n]
                )
                short = type_url.rsplit(".", 1)[-1]
                problems.append(f"{short}: extra {extra} missing {missing} stale {stale}")
        assert not problems, problems
        return True

    h.wait_for(same, timeout, "Envoy's config_dump to equal the controller's target")


def _pushes_since(run: h.Running, mark: int) -> list[Push]:
    return list(run.controller.server.sent)[mark:]


def _mark(run: h.Running) -> int:
    return len(run.controller.server.sent)


def _short(push: Push) -> str:
    return push.type_url.rsplit(".", 1)[-1]


# --------------------------------------------------------------------------- routes


def test_delta_routes_added_changed_removed(
    running: h.Running, kube_api: Any, namespace: str, echo_backends: EchoBackendsFactory
) -> None:
    run = running
    pool = echo_backends(["pool-x", "pool-y"], routable=True)
    other = echo_backends(["other"], routable=True)
    for index in range(4):
        register_service(kube_api, namespace, f"pool-{index}", pool)
    register_service(kube_api, namespace, "other", other)
    prober = _start_main(run, kube_api, namespace, echo_backends)
    assert all(p.delta for p in run.controller.server.sent), "the stream is not delta"

    # added: each new route (half of them on a Service with no cluster yet) answers 404 until
    # its first 200 and never 5xx (clusters and endpoints were warm before the route came)
    hosts = [f"r{i}.example.test" for i in range(8)]
    propagation = []
    for index, host in enumerate(hosts):
        began = time.monotonic()
        run.apply(h.http_route(namespace, f"r{index}", host, f"pool-{index % 4}"))
        at, before = h.first_200(run.address, host)
        propagation.append(at - began)
        assert {p.status for p in before} <= {404}, (host, before[-3:])
    assert_envoy_matches_target(run)

    # changed: another backend and a response header; the old answer until the new one
    mark = _mark(run)
    run.apply(h.http_route(namespace, "r0", hosts[0], "other", response_header=("x-v", "2")))

    def changed() -> bool:
        answer = run.request("/", host=hosts[0])
        assert answer.status == 200, answer.status
        return answer.backend == "other" and answer.header("x-v") == "2"

    h.wait_for(changed, 15, "the changed route")
    pushed = _pushes_since(run, mark)
    clusters = [p for p in pushed if p.type_url == CLUSTER_TYPE]
    # one cluster added (other), and nothing else of the (unchanged) clusters resent
    assert clusters and clusters[0].names == (f"svc/{namespace}/other/80",), clusters
    assert all(not p.removed for p in clusters)  # pool-0 is still used by r4
    assert_envoy_matches_target(run)

    # removed: r1 and r5 were the only users of pool-1: its cluster is removed by name, after
    # the routes stopped using it; every removed host answers 404
    mark = _mark(run)
    for index in (1, 5, 2):
        _delete_route(run, namespace, f"r{index}")
    for index in (1, 5, 2):
        h.wait_for(
            lambda i=index: h.probe(run.address, hosts[i]).status == 404,
            15,
            f"404 on the removed {hosts[index]}",
        )
    assert_envoy_matches_target(run)
    pushed = _pushes_since(run, mark)
    gone = f"svc/{namespace}/pool-1/80"
    removal = next(i for i, p in enumerate(pushed) if gone in p.removed)
    assert pushed[removal].type_url == CLUSTER_TYPE and not pushed[removal].names
    assert any(p.type_url == ROUTE_TYPE for p in pushed[:removal]), [_short(p) for p in pushed]
    # the routes left still answer
    for index in (0, 3, 4, 6, 7):
        assert run.request("/", host=hosts[index]).status == 200
    count = _assert_prober_clean(prober)
    facts.record(
        f"delta xDS routes: 8 added (p50 {statistics.median(propagation) * 1000:.0f} ms to first "
        f"200, no 5xx before), 1 changed, 3 removed (404, cluster removed by name after RDS); "
        f"{count} requests on an unrelated route, 0 failed; config_dump == target"
    )


# --------------------------------------------------------------------------- backends


def test_delta_service_recreated_and_endpoints_followed(
    running: h.Running, kube_api: Any, namespace: str, echo_backends: EchoBackendsFactory
) -> None:
    run = running
    register_service(kube_api, namespace, "one", echo_backends(["one-a"], routable=True))
    prober = _start_main(run, kube_api, namespace, echo_backends)
    host = "one.example.test"
    run.apply(h.http_route(namespace, "one", host, "one"))
    h.wait_for(lambda: h.probe(run.address, host).backend == "one-a", 30, "one-a")
    cluster = f"svc/{namespace}/one/80"

    # the Service goes: the rule answers 500 and the cluster is removed (delta removal)
    mark = _mark(run)
    _delete_service(kube_api, namespace, "one")
    h.wait_for(lambda: h.probe(run.address, host).status == 500, 15, "500 without the Service")
    assert_envoy_matches_target(run)
    assert cluster not in target_view(run)[CLUSTER_TYPE]
    removed = [p for p in _pushes_since(run, mark) if cluster in p.removed]
    assert [p.type_url for p in removed] == [CLUSTER_TYPE], removed

    # ... and comes back with another endpoint: the cluster is added again, and served
    mark = _mark(run)
    register_service(kube_api, namespace, "one", echo_backends(["one-b"], routable=True))
    h.wait_for(lambda: h.probe(run.address, host).backend == "one-b", 15, "the recreated one")
    assert any(cluster in p.names for p in _pushes_since(run, mark) if p.type_url == CLUSTER_TYPE)
    assert_envoy_matches_target(run)

    # endpoints scaled up (EndpointSlice with two endpoints on one port): both are served,
    # and only the load assignment was pushed (no cluster, route or listener)
    group = echo_backends(["one-c", "one-d"], routable=True)
    mark = _mark(run)
    _set_endpoints(kube_api, namespace, "one", group)

    def both() -> bool:
        seen = {h.probe(run.address, host).backend for _ in range(12)}
        return seen == {"one-c", "one-d"}

    h.wait_for(both, 15, "both endpoints of the scaled slice")
    kinds = {p.type_url for p in _pushes_since(run, mark)}
    assert kinds == {ENDPOINT_TYPE}, kinds
    # scaled down to one, at a new address
    single = echo_backends(["one-e"], routable=True)
    _set_endpoints(kube_api, namespace, "one", single)

    def only_e() -> bool:
        return {h.probe(run.address, host).backend for _ in range(8)} == {"one-e"}

    h.wait_for(only_e, 15, "the single new endpoint")
    assert_envoy_matches_target(run)
    count = _assert_prober_clean(prober)
    facts.record(
        "delta xDS backends: Service deleted → 500 and cluster removed by name; recreated → "
        f"served; EndpointSlice scaled 1→2→1 with new addresses followed by EDS alone; {count} "
        "requests on an unrelated route, 0 failed"
    )


# --------------------------------------------------------------------------- TLS


def test_delta_certificate_rotation(
    running: h.Running, kube_api: Any, namespace: str, echo_backends: EchoBackendsFactory
) -> None:
    run = running
    host = "secure.example.test"
    first = tls_secret(namespace, "cert", [host])
    run.apply(first)
    run.apply(_https_gateway(namespace, run.class_name, "cert"))
    prober = _start_main(run, kube_api, namespace, echo_backends)
    register_service(kube_api, namespace, "web", echo_backends(["web"], routable=True))
    run.apply(h.http_route(namespace, "web", host, "web"))

    def served_with(secret: dict[str, Any]) -> bool:
        answer, der = h.tls_request(run.port(443), "/", host=host)
        pem = base64.b64decode(secret["data"]["tls.crt"]).decode()
        import ssl

        return (
            answer.status == 200
            and answer.backend == "web"
            and der == ssl.PEM_cert_to_DER_cert(pem)
        )

    h.wait_for(lambda: served_with(first), 30, "HTTPS with the first certificate")
    assert_envoy_matches_target(run)

    mark = _mark(run)
    second = tls_secret(namespace, "cert", [host])
    rotated_at = time.monotonic()
    run.apply(second)
    h.wait_for(lambda: served_with(second), 15, "HTTPS with the rotated certificate")
    took = time.monotonic() - rotated_at
    pushed = _pushes_since(run, mark)
    assert {p.type_url for p in pushed} == {SECRET_TYPE}, [_short(p) for p in pushed]
    assert [p.names for p in pushed] == [(f"{namespace}/cert",)]
    assert_envoy_matches_target(run)
    count = _assert_prober_clean(prober)
    facts.record(
        f"delta xDS certificate rotation: one SDS resource pushed, new certificate served "
        f"{took * 1000:.0f} ms after the Secret changed; {count} requests on {MAIN}, 0 failed"
    )


# --------------------------------------------------------------------------- Envoy and stream


def test_delta_envoy_killed_and_stream_reconnected(
    running: h.Running, kube_api: Any, namespace: str, echo_backends: EchoBackendsFactory
) -> None:
    run = running
    for name in ("keep", "gone", "two"):
        register_service(kube_api, namespace, name, echo_backends([name], routable=True))
    _start_main(run, kube_api, namespace, echo_backends).stop()
    run.apply(h.http_route(namespace, "keep", "keep.example.test", "keep"))
    run.apply(h.http_route(namespace, "gone", "gone.example.test", "gone"))
    for name in ("keep", "gone"):
        h.wait_for(lambda n=name: h.probe(run.address, f"{n}.example.test").backend == n, 30, name)

    # 1. Envoy SIGKILLed: the supervisor starts a new one, a fresh process with nothing to
    # report, which gets the whole configuration over a new delta stream
    supervisor = run.controller.supervisor
    old_pid = supervisor.pid
    assert old_pid is not None
    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    h.wait_for(lambda: supervisor.pid not in (None, old_pid), 15, "a new Envoy")
    h.wait_for(lambda: h.probe(run.address, MAIN).backend == "main", 20, "traffic back")
    back = time.monotonic() - killed_at
    assert_envoy_matches_target(run)

    # 2. The xDS stream breaks while Envoy lives (our server goes away), and things change
    # meanwhile: Envoy keeps serving its last configuration, then reconnects with
    # initial_resource_versions and gets only what changed.
    server = run.controller.server
    port = server.port
    before = target_view(run)
    server.stop()
    generation = server.generation
    run.apply(h.http_route(namespace, "keep", "keep.example.test", "two"))  # new cluster
    _delete_route(run, namespace, "gone")  # a cluster to remove
    h.wait_for(
        lambda: (
            server.generation >= generation + 1
            and f"svc/{namespace}/gone/80" not in target_view(run)[CLUSTER_TYPE]
            and f"svc/{namespace}/two/80" in target_view(run)[CLUSTER_TYPE]
        ),
        15,
        "the controller to publish the changes made while Envoy was away",
    )
    # still the old configuration, served by Envoy on its own
    assert h.probe(run.address, "keep.example.test").backend == "keep"
    assert h.probe(run.address, "gone.example.test").backend == "gone"
    mark = _mark(run)
    server.start(f"127.0.0.1:{port}")
    h.wait_for(lambda: h.probe(run.address, "keep.example.test").backend == "two", 30, "keep → two")
    h.wait_for(lambda: h.probe(run.address, "gone.example.test").status == 404, 15, "gone: 404")
    assert_envoy_matches_target(run)
    after = target_view(run)
    pushed = _pushes_since(run, mark)
    sent = {t: [n for p in pushed if p.type_url == t for n in p.names] for t in TYPES.values()}
    removed = [n for p in pushed for n in p.removed]
    changed = {
        t: sorted(n for n, v in after[t].items() if before[t].get(n) != v) for t in TYPES.values()
    }
    # what changed while away was sent, once; nothing unchanged was resent
    for type_url in (CLUSTER_TYPE, ROUTE_TYPE, LISTENER_TYPE, ENDPOINT_TYPE):
        assert sorted(sent[type_url]) == changed[type_url], (type_url, sent, changed)
    assert sent[CLUSTER_TYPE] == [f"svc/{namespace}/two/80"]
    # gone's cluster, and keep's (its route moved to two): each removed once
    assert sorted(removed) == [f"svc/{namespace}/gone/80", f"svc/{namespace}/keep/80"]
    assert sorted(removed) == sorted(set(before[CLUSTER_TYPE]) - set(after[CLUSTER_TYPE]))
    order = [(_short(p), p.names, p.removed) for p in pushed]
    removal = next(i for i, p in enumerate(pushed) if p.removed)
    assert any(p.type_url == ROUTE_TYPE and p.names for p in pushed[:removal]), order
    facts.record(
        f"delta xDS Envoy SIGKILL: traffic back {back:.2f} s after the kill; stream reconnect "
        f"with initial_resource_versions: {len(pushed)} responses, resources sent only for what "
        f"changed while away ({sum(len(v) for v in sent.values())}), removal after RDS"
    )


# --------------------------------------------------------------------------- NACK

_MESSAGE_TYPES: dict[str, type[Message]] = {
    CLUSTER_TYPE: cluster_pb2.Cluster,
    ENDPOINT_TYPE: endpoint_pb2.ClusterLoadAssignment,
    LISTENER_TYPE: listener_pb2.Listener,
    ROUTE_TYPE: route_pb2.RouteConfiguration,
    SECRET_TYPE: secret_pb2.Secret,
}


def _messages(snapshot: Any, type_url: str) -> Iterator[tuple[str, Message]]:
    """The snapshot's resources of one type, unpacked (what the translator had produced)."""
    for name, entry in snapshot.of(type_url).items():
        message = _MESSAGE_TYPES[type_url]()
        entry.packed.Unpack(message)
        yield name, message


def test_delta_nack_keeps_last_good(
    running: h.Running, kube_api: Any, namespace: str, echo_backends: EchoBackendsFactory
) -> None:
    """A route configuration Envoy refuses (a header regex with a lookahead, which RE2 cannot
    compile) is NACKed and Envoy keeps the last good one; the next good one is accepted.

    The attachment engine drops such a rule (see the next test), so the refused content is
    published through the xDS server directly, as a translator bug would publish it."""
    run = running
    register_service(kube_api, namespace, "web", echo_backends(["web"], routable=True))
    prober = _start_main(run, kube_api, namespace, echo_backends)
    server = run.controller.server
    nacks = len(server.nacks)
    snapshot = server.snapshot
    assert snapshot is not None
    resources = {t: dict(_messages(snapshot, t)) for t in TYPES.values()}
    config = route_pb2.RouteConfiguration()
    config.CopyFrom(resources[ROUTE_TYPE]["http-80"])
    bad_host = "bad.example.test"
    vhost = config.virtual_hosts.add(name=bad_host, domains=[bad_host])
    route = vhost.routes.add(name="bad")
    route.match.prefix = "/"
    header = route.match.headers.add(name="x-tenant")
    header.string_match.safe_regex.regex = "(?=a)a"
    route.direct_response.status = 200
    resources[ROUTE_TYPE]["http-80"] = config
    server.set_resources(Resources(resources))
    h.wait_for(lambda: len(server.nacks) > nacks, 15, "Envoy to reject the regular expression")
    nack = server.nacks[-1]
    assert nack.type_url == ROUTE_TYPE and "(?=" in nack.message, nack
    # the last good configuration stays: main is served, the bad virtual host is not there
    assert h.probe(run.address, bad_host, timeout=5).status == 404
    time.sleep(0.5)
    assert len(server.nacks) == nacks + 1, "the rejected content was pushed again"
    # the controller's next configuration (a new route) is good and accepted
    run.apply(h.http_route(namespace, "good", "good.example.test", "web"))
    h.wait_for(
        lambda: run.request("/", host="good.example.test").backend == "web", 15, "the good route"
    )
    assert_envoy_matches_target(run)
    count = _assert_prober_clean(prober)
    facts.record(
        f"delta xDS NACK: RE2 refused {nack.message[:80]!r}; last good kept ({count} requests "
        "on an unrelated route, 0 failed), the next good configuration accepted"
    )


def test_regex_re2_cannot_compile_is_dropped_not_sent(
    running: h.Running, kube_api: Any, namespace: str, echo_backends: EchoBackendsFactory
) -> None:
    """A lookahead regex passes Python's ``re`` but not RE2: the engine drops that rule
    (PartiallyInvalid, or Accepted=False when it was the only one), so Envoy never refuses the
    port's whole route configuration and other routes keep getting updates."""
    run = running
    register_service(kube_api, namespace, "web", echo_backends(["web"], routable=True))
    prober = _start_main(run, kube_api, namespace, echo_backends)
    server = run.controller.server
    nacks = len(server.nacks)
    bad = h.http_route(namespace, "lookahead", "la.example.test", "web")
    bad["spec"]["rules"][0]["matches"][0]["headers"] = [
        {"type": "RegularExpression", "name": "x-tenant", "value": "(?=a)a"}
    ]
    run.apply(bad)
    run.apply(h.http_route(namespace, "after", "after.example.test", "web"))
    h.wait_for(
        lambda: run.request("/", host="after.example.test").backend == "web", 15, "a later route"
    )
    assert len(server.nacks) == nacks
    assert h.probe(run.address, "la.example.test").status == 404

    def accepted() -> Any:
        status = run.get(bad).get("status") or {}
        parents = status.get("parents") or []
        return parents and {c["type"]: c for c in parents[0].get("conditions") or []}

    h.wait_for(lambda: accepted(), 15, "the route's status")
    condition = accepted()["Accepted"]
    assert (condition["status"], condition["reason"]) == ("False", "UnsupportedValue"), condition
    assert "look-around" in condition["message"], condition
    _assert_prober_clean(prober)


# --------------------------------------------------------------------------- propagation


def test_propagation_sotw_vs_delta_with_500_routes(
    kube_cluster: Any,
    kube_api: Any,
    namespace: str,
    echo_backends: EchoBackendsFactory,
    envoy_binary: Path,
    tmp_path: Path,
) -> None:
    """Create an HTTPRoute → first 200, with ~500 routes in place, SotW then delta (the same
    objects, one controller at a time). Recorded, not asserted on time."""
    pool = echo_backends(["p-1", "p-2"], routable=True)
    for index in range(10):
        register_service(kube_api, namespace, f"pool-{index}", pool)
    cluster = None
    results: dict[str, list[float]] = {}
    for mode in ("sotw", "delta"):
        with h.start_controller(
            kube_cluster.kubeconfig,
            envoy_binary,
            tmp_path / mode,
            prefix=f"prop-{mode}",
            delta=mode == "delta",
        ) as run:
            cluster = run.cluster
            run.apply(h.gateway(namespace, run.class_name))
            if mode == "sotw":
                for index in range(500):
                    h.apply(
                        cluster,
                        h.http_route(
                            namespace,
                            f"bg-{index}",
                            f"bg-{index}.example.test",
                            f"pool-{index % 10}",
                        ),
                    )
            h.wait_for(
                lambda: h.probe(run.address, "bg-499.example.test").status == 200,
                60,
                "the 500 routes in place",
            )
            # each controller writes the 500 routes' status first: measure after that, not
            # while it competes for the API server and the CPU
            writer = run.controller.writer
            assert writer is not None and writer.wait_idle(120), "status writes did not finish"
            time.sleep(0.5)
            times = []
            for index in range(20):
                host = f"{mode}-{index}.example.test"
                began = time.monotonic()
                h.apply(cluster, h.http_route(namespace, f"{mode}-{index}", host, "pool-3"))
                at, before = h.first_200(run.address, host)
                assert {p.status for p in before} <= {404}, before[-3:]
                times.append(at - began)
            results[mode] = times
            assert_envoy_matches_target(run, timeout=30)
    line = "; ".join(
        f"{mode} p50 {statistics.median(t) * 1000:.0f} ms max {max(t) * 1000:.0f} ms"
        for mode, t in results.items()
    )
    facts.record(f"route propagation with 500 routes in place (20 new routes each): {line}")
