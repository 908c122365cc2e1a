"""The ADS server against a scripted client speaking the xDS protocol like Envoy.

The client sees exactly what goes on the wire, so the tests check the push order (clusters and
endpoints before listeners and routes, removals after), ACK gating (one response in flight),
NACK handling (last good kept, the same content never resent) and delta responses.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from controller import ir, translate
from controller.translate import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
)
from controller.xds import AdsServer, _eds_clusters, _Entry, make_snapshot

SHORT = translate.SHORT_TYPE_NAMES


def model(*clusters: str, path: str = "/", tls: bool = False) -> ir.IR:
    """One HTTP listener on 10080 whose single route splits across ``clusters``."""
    route = ir.Route(
        "r",
        ir.RouteMatch(ir.PathMatch("PathPrefix", path)),
        ir.Forward(tuple(ir.WeightedBackend(c) for c in clusters)),
    )
    vhost = ir.VirtualHost("*", ("*",), (route,))
    chains = [ir.FilterChain("http-80", ir.RouteConfig("http-80", (vhost,)))]
    listeners = [ir.Listener("0.0.0.0:10080", "0.0.0.0", 10080, 80, "HTTP", tuple(chains))]
    secrets: list[ir.Secret] = []
    if tls:
        secrets.append(ir.Secret("ns/cert", certificate_chain="C", private_key="K"))
        https = ir.FilterChain(
            "ns/gw/https",
            ir.RouteConfig("ns/gw/https", (vhost,)),
            tls=ir.TLSTermination(("ns/cert",)),
        )
        listeners.append(ir.Listener("0.0.0.0:10443", "0.0.0.0", 10443, 443, "HTTPS", (https,)))
    return ir.IR(
        listeners=tuple(listeners),
        clusters=tuple(ir.Cluster(c) for c in clusters),
        endpoints=tuple(
            ir.ClusterEndpoints(c, (ir.Endpoint("10.0.0.1", 8080 + i),))
            for i, c in enumerate(clusters)
        ),
        secrets=tuple(secrets),
    )


class FakeEnvoy:
    """A scripted ADS client: send requests, read responses, remember the last nonce per type."""

    def __init__(self, port: int, delta: bool = False) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.delta = delta
        self.requests: queue.Queue[Any] = queue.Queue()
        self.responses: queue.Queue[Any] = queue.Queue()
        self.nonce: dict[str, str] = {}
        self.first = True
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        method = stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources
        self.call = method(self._requests())
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _requests(self) -> Iterator[Any]:
        while True:
            item = self.requests.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for response in self.call:
                self.responses.put(response)
        except grpc.RpcError:
            pass

    def ask(
        self,
        type_url: str,
        names: tuple[str, ...] = (),
        *,
        ack: Any = None,
        error: str | None = None,
        unsubscribe: tuple[str, ...] = (),
        initial: dict[str, str] | None = None,
    ) -> None:
        """Send a request for ``type_url``; ``ack`` is the response being answered;
        ``initial``: delta ``initial_resource_versions`` (what Envoy has on a new stream)."""
        if self.delta:
            request = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url,
                resource_names_subscribe=list(names),
                resource_names_unsubscribe=list(unsubscribe),
                initial_resource_versions=initial or {},
            )
        else:
            request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names))
        if self.first:
            request.node.id = "fake"
            request.node.cluster = "tests"
            self.first = False
        if ack is not None:
            request.response_nonce = ack.nonce
            if not self.delta:
                request.version_info = ack.version_info
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.requests.put(request)

    def recv(self, timeout: float = 5.0) -> Any:
        try:
            return self.responses.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no response within {timeout} s") from None

    def silent(self, timeout: float = 0.2) -> bool:
        try:
            got = self.responses.get(timeout=timeout)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected response: {SHORT[got.type_url]}")

    def close(self) -> None:
        self.requests.put(None)
        self.call.cancel()
        self.channel.close()


def names(response: Any) -> list[str]:
    out = []
    for item in response.resources:
        packed = item.resource if hasattr(item, "resource") and item.HasField("resource") else item
        message = {
            CLUSTER_TYPE: "envoy.config.cluster.v3.Cluster",
            ENDPOINT_TYPE: "envoy.config.endpoint.v3.ClusterLoadAssignment",
            ROUTE_TYPE: "envoy.config.route.v3.RouteConfiguration",
            LISTENER_TYPE: "envoy.config.listener.v3.Listener",
            SECRET_TYPE: "envoy.extensions.transport_sockets.tls.v3.Secret",
        }[response.type_url]
        assert packed.type_url.endswith(message)
        decoded: Any = {
            CLUSTER_TYPE: translate.cluster_pb2.Cluster,
            ENDPOINT_TYPE: translate.endpoint_pb2.ClusterLoadAssignment,
            ROUTE_TYPE: translate.route_pb2.RouteConfiguration,
            LISTENER_TYPE: translate.listener_pb2.Listener,
            SECRET_TYPE: translate.secret_pb2.Secret,
        }[response.type_url]()
        packed.Unpack(decoded)
        out.append(decoded.cluster_name if response.type_url == ENDPOINT_TYPE else decoded.name)
    return sorted(out)


@pytest.fixture
def server() -> Iterator[AdsServer]:
    ads = AdsServer()
    ads.start("127.0.0.1:0")
    yield ads
    ads.stop()


@pytest.fixture
def envoys(server: AdsServer) -> Iterator[list[FakeEnvoy]]:
    made: list[FakeEnvoy] = []
    yield made
    for client in made:
        client.close()


def connect(server: AdsServer, envoys: list[FakeEnvoy], delta: bool = False) -> FakeEnvoy:
    client = FakeEnvoy(server.port, delta)
    envoys.append(client)
    return client


def sync_first(client: FakeEnvoy, clusters: tuple[str, ...]) -> None:
    """Walk a fresh client through the first full push, checking the order on the wire."""
    client.ask(CLUSTER_TYPE)
    client.ask(LISTENER_TYPE)
    cds = client.recv()
    assert cds.type_url == CLUSTER_TYPE
    assert names(cds) == sorted(clusters)
    client.silent()  # nothing else before the CDS ACK
    client.ask(ENDPOINT_TYPE, clusters)  # Envoy subscribes to EDS of the new clusters ...
    client.ask(CLUSTER_TYPE, ack=cds)  # ... then ACKs CDS
    eds = client.recv()
    assert eds.type_url == ENDPOINT_TYPE
    assert names(eds) == sorted(clusters)
    client.silent()  # no listener before the endpoints are ACKed (the clusters are warm)
    client.ask(ENDPOINT_TYPE, clusters, ack=eds)
    lds = client.recv()
    assert lds.type_url == LISTENER_TYPE
    client.ask(ROUTE_TYPE, ("http-80",))
    client.ask(LISTENER_TYPE, ack=lds)
    rds = client.recv()
    assert rds.type_url == ROUTE_TYPE
    assert names(rds) == ["http-80"]
    client.ask(ROUTE_TYPE, ("http-80",), ack=rds)


def test_first_push_is_ordered_and_gated(server: AdsServer, envoys: list[FakeEnvoy]) -> None:
    generation = server.set_resources(translate.translate(model("svc/a/80", "svc/b/80")))
    client = connect(server, envoys)
    sync_first(client, ("svc/a/80", "svc/b/80"))
    assert server.wait_synced(generation, 5)
    client.silent()


def test_route_change_only_pushes_routes(server: AdsServer, envoys: list[FakeEnvoy]) -> None:
    server.set_resources(translate.translate(model("svc/a/80")))
    client = connect(server, envoys)
    sync_first(client, ("svc/a/80",))
    generation = server.set_resources(translate.translate(model("svc/a/80", path="/new")))
    rds = client.recv()
    assert rds.type_url == ROUTE_TYPE
    client.ask(ROUTE_TYPE, ("http-80",), ack=rds)
    assert server.wait_synced(generation, 5)
    client.silent()


def test_switching_backends_adds_before_routes_and_removes_after(
    server: AdsServer, envoys: list[FakeEnvoy]
) -> None:
    server.set_resources(translate.translate(model("svc/a/80")))
    client = connect(server, envoys)
    sync_first(client, ("svc/a/80",))
    generation = server.set_resources(translate.translate(model("svc/b/80")))
    # 1. clusters: old + new, so the old route keeps working
    cds = client.recv()
    assert (cds.type_url, names(cds)) == (CLUSTER_TYPE, ["svc/a/80", "svc/b/80"])
    client.ask(ENDPOINT_TYPE, ("svc/a/80", "svc/b/80"))
    client.ask(CLUSTER_TYPE, ack=cds)
    eds = client.recv()
    assert (eds.type_url, names(eds)) == (ENDPOINT_TYPE, ["svc/a/80", "svc/b/80"])
    client.silent()
    client.ask(ENDPOINT_TYPE, ("svc/a/80", "svc/b/80"), ack=eds)
    # 2. the route now points at b
    rds = client.recv()
    assert rds.type_url == ROUTE_TYPE
    route = translate.route_pb2.RouteConfiguration()
    rds.resources[0].Unpack(route)
    assert route.virtual_hosts[0].routes[0].route.cluster == "svc/b/80"
    assert not server.wait_synced(generation, 0.2)
    client.ask(ROUTE_TYPE, ("http-80",), ack=rds)
    # 3. only then is a removed
    cds = client.recv()
    assert (cds.type_url, names(cds)) == (CLUSTER_TYPE, ["svc/b/80"])
    client.ask(ENDPOINT_TYPE, ("svc/b/80",))
    client.ask(CLUSTER_TYPE, ack=cds)
    assert server.wait_synced(generation, 5)


def test_nack_keeps_last_good_and_is_not_retried(
    server: AdsServer, envoys: list[FakeEnvoy]
) -> None:
    server.set_resources(translate.translate(model("svc/a/80")))
    client = connect(server, envoys)
    sync_first(client, ("svc/a/80",))
    bad = server.set_resources(translate.translate(model("svc/a/80", path="/bad")))
    rds = client.recv()
    client.ask(ROUTE_TYPE, ("http-80",), ack=rds, error="route rejected for the test")
    assert not server.wait_synced(bad, 1)
    assert server.nacks and server.nacks[-1].message == "route rejected for the test"
    assert server.nacks[-1].type_url == ROUTE_TYPE
    client.silent()  # the same content is not pushed again
    # a repeated request (same nonce) does not bring the rejected content back either
    client.ask(ROUTE_TYPE, ("http-80",), ack=rds)
    client.silent()
    good = server.set_resources(translate.translate(model("svc/a/80", path="/good")))
    rds = client.recv()
    assert rds.type_url == ROUTE_TYPE
    client.ask(ROUTE_TYPE, ("http-80",), ack=rds)
    assert server.wait_synced(good, 5)


def test_secrets_are_served_after_listeners_ask(server: AdsServer, envoys: list[FakeEnvoy]) -> None:
    generation = server.set_resources(translate.translate(model("svc/a/80", tls=True)))
    client = connect(server, envoys)
    client.ask(CLUSTER_TYPE)
    client.ask(LISTENER_TYPE)
    cds = client.recv()
    client.ask(ENDPOINT_TYPE, ("svc/a/80",))
    client.ask(CLUSTER_TYPE, ack=cds)
    eds = client.recv()
    client.ask(ENDPOINT_TYPE, ("svc/a/80",), ack=eds)
    lds = client.recv()
    assert names(lds) == ["0.0.0.0:10080", "0.0.0.0:10443"]
    client.ask(ROUTE_TYPE, ("http-80", "ns/gw/https"))
    client.ask(SECRET_TYPE, ("ns/cert",))
    client.ask(LISTENER_TYPE, ack=lds)
    seen = {}
    for _ in range(2):
        response = client.recv()
        seen[response.type_url] = names(response)
        client.ask(
            response.type_url,
            ("http-80", "ns/gw/https") if response.type_url == ROUTE_TYPE else ("ns/cert",),
            ack=response,
        )
    assert seen == {ROUTE_TYPE: ["http-80", "ns/gw/https"], SECRET_TYPE: ["ns/cert"]}
    assert server.wait_synced(generation, 5)


def test_delta_sends_changes_and_removals(server: AdsServer, envoys: list[FakeEnvoy]) -> None:
    server.set_resources(translate.translate(model("svc/a/80", "svc/b/80")))
    client = connect(server, envoys, delta=True)
    client.ask(CLUSTER_TYPE)
    client.ask(LISTENER_TYPE)
    cds = client.recv()
    assert names(cds) == ["svc/a/80", "svc/b/80"]
    assert all(r.version for r in cds.resources)
    client.ask(ENDPOINT_TYPE, ("svc/a/80", "svc/b/80"))
    client.ask(CLUSTER_TYPE, ack=cds)
    eds = client.recv()
    assert names(eds) == ["svc/a/80", "svc/b/80"]
    client.ask(ENDPOINT_TYPE, ack=eds)
    lds = client.recv()
    client.ask(ROUTE_TYPE, ("http-80",))
    client.ask(LISTENER_TYPE, ack=lds)
    rds = client.recv()
    client.ask(ROUTE_TYPE, ack=rds)
    # drop b: the route changes first, then b is removed by name, and a is not resent
    generation = server.set_resources(translate.translate(model("svc/a/80")))
    rds = client.recv()
    assert rds.type_url == ROUTE_TYPE
    client.ask(ROUTE_TYPE, ack=rds)
    cds = client.recv()
    assert cds.type_url == CLUSTER_TYPE
    assert names(cds) == []
    assert list(cds.removed_resources) == ["svc/b/80"]
    client.ask(ENDPOINT_TYPE, unsubscribe=("svc/b/80",))
    client.ask(CLUSTER_TYPE, ack=cds)
    assert server.wait_synced(generation, 5)
    client.silent()


def test_a_dns_cluster_does_not_hold_the_push(server: AdsServer, envoys: list[FakeEnvoy]) -> None:
    """Envoy never subscribes to EDS for a STRICT_DNS cluster: the walk waits for the endpoints
    of the EDS clusters only, then goes on to listeners and routes."""
    base = model("svc/a/80", "backend/ns/dns/80")
    dns = ir.Cluster("backend/ns/dns/80", dns_hosts=(("backend.example.test", 80),))
    resources = translate.translate(
        ir.IR(
            listeners=base.listeners,
            clusters=(ir.Cluster("svc/a/80"), dns),
            endpoints=base.endpoints[:1],
        )
    )
    assert set(resources.of(ENDPOINT_TYPE)) == {"svc/a/80"}  # no load assignment for DNS
    generation = server.set_resources(resources)
    client = connect(server, envoys)
    client.ask(CLUSTER_TYPE)
    client.ask(LISTENER_TYPE)
    cds = client.recv()
    assert names(cds) == ["backend/ns/dns/80", "svc/a/80"]
    client.ask(ENDPOINT_TYPE, ("svc/a/80",))  # the EDS cluster only, as Envoy does
    client.ask(CLUSTER_TYPE, ack=cds)
    eds = client.recv()
    assert (eds.type_url, names(eds)) == (ENDPOINT_TYPE, ["svc/a/80"])
    client.silent()  # still warming: svc/a/80's endpoints are not ACKed yet
    client.ask(ENDPOINT_TYPE, ("svc/a/80",), ack=eds)
    lds = client.recv()
    assert lds.type_url == LISTENER_TYPE
    client.ask(ROUTE_TYPE, ("http-80",))
    client.ask(LISTENER_TYPE, ack=lds)
    rds = client.recv()
    assert rds.type_url == ROUTE_TYPE
    client.ask(ROUTE_TYPE, ("http-80",), ack=rds)
    assert server.wait_synced(generation, 5)


def test_only_dns_clusters_go_straight_to_listeners(
    server: AdsServer, envoys: list[FakeEnvoy]
) -> None:
    base = model("backend/ns/dns/80")
    dns = ir.Cluster("backend/ns/dns/80", dns_hosts=(("backend.example.test", 80),))
    server.set_resources(translate.translate(ir.IR(listeners=base.listeners, clusters=(dns,))))
    client = connect(server, envoys)
    client.ask(CLUSTER_TYPE)
    client.ask(LISTENER_TYPE)
    cds = client.recv()
    client.ask(CLUSTER_TYPE, ack=cds)
    assert client.recv().type_url == LISTENER_TYPE


def test_eds_clusters_after_a_delta_reconnect() -> None:
    """Clusters Envoy reports on reconnect carry only a version: their type is the target's when
    the content is the same; one the target does not have was warmed on the earlier stream."""
    model_ = model("svc/a/80")
    dns = ir.Cluster("backend/ns/dns/80", dns_hosts=(("backend.example.test", 80),))
    snapshot = make_snapshot(
        1,
        translate.translate(
            ir.IR(model_.listeners, (ir.Cluster("svc/a/80"), dns), model_.endpoints)
        ),
    )
    target = snapshot.of(CLUSTER_TYPE)
    assert target["svc/a/80"].eds and not target["backend/ns/dns/80"].eds
    learnt = {n: _Entry(n, e.version, None) for n, e in target.items()}
    learnt["old"] = _Entry("old", "v0", None)
    assert _eds_clusters(learnt, target) == {"svc/a/80"}
    assert _eds_clusters(dict(target), target) == {"svc/a/80"}
    learnt["svc/a/80"] = _Entry("svc/a/80", "other", None)  # changed: resent before the wait
    assert _eds_clusters(learnt, target) == set()


def test_wait_synced_needs_a_stream(server: AdsServer) -> None:
    generation = server.set_resources(translate.translate(model("svc/a/80")))
    assert not server.wait_synced(generation, 0.2)


def test_delta_reconnect_sends_only_changes_and_removes_last(
    server: AdsServer, envoys: list[FakeEnvoy]
) -> None:
    """Envoy reconnects (same process, new stream) reporting what it holds. While it was away
    the route moved from b to c: c is added and its endpoints sent, a is not resent, the route
    follows, and only then is b removed (b was removed first before the fix: the old route
    pointed at a cluster Envoy no longer had)."""
    old = make_snapshot(1, translate.translate(model("svc/a/80", "svc/b/80")))
    server.set_resources(translate.translate(model("svc/a/80", "svc/c/80")))
    new = server.snapshot
    assert new is not None

    def held(type_url: str) -> dict[str, str]:
        return {n: e.version for n, e in old.of(type_url).items()}

    client = connect(server, envoys, delta=True)
    client.ask(CLUSTER_TYPE, initial=held(CLUSTER_TYPE))
    client.ask(LISTENER_TYPE, initial=held(LISTENER_TYPE))
    client.ask(ENDPOINT_TYPE, ("svc/a/80", "svc/b/80"), initial=held(ENDPOINT_TYPE))
    client.ask(ROUTE_TYPE, ("http-80",), initial=held(ROUTE_TYPE))
    cds = client.recv()
    assert cds.type_url == CLUSTER_TYPE
    assert (names(cds), list(cds.removed_resources)) == (["svc/c/80"], [])
    client.ask(ENDPOINT_TYPE, ("svc/c/80",))
    client.ask(CLUSTER_TYPE, ack=cds)
    eds = client.recv()
    assert (eds.type_url, names(eds)) == (ENDPOINT_TYPE, ["svc/c/80"])  # a's are unchanged
    client.ask(ENDPOINT_TYPE, ack=eds)
    rds = client.recv()
    assert (rds.type_url, names(rds)) == (ROUTE_TYPE, ["http-80"])
    client.ask(ROUTE_TYPE, ack=rds)
    lds = client.recv()  # the first answer on the stream: nothing in it, the listener is the same
    assert (lds.type_url, names(lds), list(lds.removed_resources)) == (LISTENER_TYPE, [], [])
    client.ask(LISTENER_TYPE, ack=lds)
    cds = client.recv()
    assert (cds.type_url, names(cds), list(cds.removed_resources)) == (
        CLUSTER_TYPE,
        [],
        ["svc/b/80"],
    )
    client.ask(ENDPOINT_TYPE, unsubscribe=("svc/b/80",))
    client.ask(CLUSTER_TYPE, ack=cds)
    assert server.wait_synced(new.generation, 5)
    client.silent()
    sent = [(SHORT[p.type_url], p.names, p.removed) for p in server.sent]
    assert sent == [
        ("clusters", ("svc/c/80",), ()),
        ("endpoints", ("svc/c/80",), ()),
        ("routes", ("http-80",), ()),
        ("listeners", (), ()),
        ("clusters", (), ("svc/b/80",)),
    ]
