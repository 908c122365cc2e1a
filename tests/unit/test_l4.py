"""L4 building (controller.l4 through the builder): TLSRoute / TCPRoute / UDPRoute → IR.

The xDS shapes are pinned by the goldens ``tests/golden/translate/l4-*``; these tests check the
decisions behind them: which listener is served or skipped and why, the notes, the SNI
ownership on a shared port (never two chains claiming one name: Envoy would reject the
listener), and that HTTP listeners are untouched by L4 ones on other ports.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controller import attachment as att
from controller import gatewayapi_to_ir, ir, l4, translate
from controller import hostnames as hn

CONTROLLER = "kubectl-gw.dev/controller"
GW = "gateway.networking.k8s.io/v1"
OPTIONS = gatewayapi_to_ir.BuildOptions(listen_address="127.0.0.1", port_offset=10000)


def _class() -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": "ours"},
        "spec": {"controllerName": CONTROLLER},
    }


def _gateway(listeners: list[dict[str, Any]], name: str = "gw") -> dict[str, Any]:
    for item in listeners:
        item.setdefault("allowedRoutes", {"namespaces": {"from": "All"}})
    return {
        "apiVersion": GW,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": "infra"},
        "spec": {"gatewayClassName": "ours", "listeners": listeners},
    }


def _route(
    kind: str,
    name: str,
    section: str,
    backends: list[tuple[str, int, int]],
    hostnames: list[str] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    gateway: str = "gw",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "parentRefs": [{"name": gateway, "namespace": "infra", "sectionName": section}],
        "rules": [{"backendRefs": [{"name": n, "port": p, "weight": w} for n, p, w in backends]}],
    }
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": GW,
        "kind": kind,
        "metadata": {"name": name, "namespace": "app", "creationTimestamp": created},
        "spec": spec,
    }


def _service(name: str, port: int, protocol: str = "TCP") -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "app"},
            "spec": {"ports": [{"name": "p", "port": port, "protocol": protocol}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-1",
                "namespace": "app",
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.9.0.1"]}],
            "ports": [{"name": "p", "port": port + 1, "protocol": protocol}],
        },
    ]


def _build(*objects: dict[str, Any]) -> tuple[att.AttachmentResult, gatewayapi_to_ir.BuildResult]:
    return gatewayapi_to_ir.compute_and_build(
        [_class(), *objects], frozenset({CONTROLLER}), OPTIONS
    )


def _programmed(built: gatewayapi_to_ir.BuildResult, listener: str) -> tuple[bool, str, str]:
    for key, value in built.programmed.items():
        if key.name == listener:
            return value
    raise AssertionError(f"no programmed entry for {listener}: {built.programmed}")


# --------------------------------------------------------------------------- TCP


def test_oldest_tcp_route_wins_and_the_other_is_noted() -> None:
    _result, built = _build(
        _gateway([{"name": "db", "port": 5432, "protocol": "TCP"}]),
        _route("TCPRoute", "new", "db", [("pg", 5432, 1)], created="2026-03-01T00:00:00Z"),
        _route("TCPRoute", "old", "db", [("pg", 5432, 1)], created="2026-01-01T00:00:00Z"),
        *_service("pg", 5432),
    )
    (listener,) = built.ir.listeners
    assert listener.protocol == "TCP" and listener.filter_chains == ()
    (chain,) = listener.l4_chains
    assert chain.name == "tcp/infra/gw/db/app/old"
    assert chain.action.backends == (ir.WeightedBackend("svc/app/pg/5432/tcp", 1),)
    assert any("TCPRoute app/new gets no traffic" in n for n in built.notes), built.notes
    assert _programmed(built, "db")[0]
    (cluster,) = built.ir.clusters
    assert cluster.protocol == "tcp"
    assert built.ir.endpoints[0].endpoints == (ir.Endpoint("10.9.0.1", 5433),)


def test_missing_backend_closes_only_its_share() -> None:
    _result, built = _build(
        _gateway([{"name": "db", "port": 5432, "protocol": "TCP"}]),
        _route("TCPRoute", "r", "db", [("pg", 5432, 2), ("gone", 5432, 1)]),
        *_service("pg", 5432),
    )
    (chain,) = built.ir.listeners[0].l4_chains
    assert chain.action.backends == (
        ir.WeightedBackend("svc/app/pg/5432/tcp", 2),
        ir.WeightedBackend(None, 1),
    )
    proxy = translate.to_dict(translate.translate(built.ir))["listeners"][0]["filterChains"][0]
    weights = proxy["filters"][0]["typedConfig"]["weightedClusters"]["clusters"]
    assert weights == [
        {"name": "svc/app/pg/5432/tcp", "weight": 2},
        {"name": ir.INVALID_BACKEND_CLUSTER, "weight": 1},
    ]
    assert any("unresolved backends' share are closed" in n for n in built.notes)


def test_tcp_and_udp_share_a_port_number_but_http_and_tcp_do_not() -> None:
    _result, built = _build(
        _gateway(
            [
                {"name": "t", "port": 53, "protocol": "TCP"},
                {"name": "u", "port": 53, "protocol": "UDP"},
            ]
        ),
        _gateway([{"name": "web", "port": 53, "protocol": "HTTP"}], name="other"),
        _route("TCPRoute", "t", "t", [("dns", 53, 1)]),
        _route("UDPRoute", "u", "u", [("dns-udp", 53, 1)]),
        *_service("dns", 53),
        *_service("dns-udp", 53, "UDP"),
    )
    assert _programmed(built, "u")[0]
    # infra/gw sorts before infra/other: TCP got the port first; HTTP there is refused.
    assert _programmed(built, "t")[0]
    assert _programmed(built, "web") == (False, "Invalid", "port 53 already serves TCP")
    (udp,) = built.ir.udp_listeners
    assert udp.name == "udp/127.0.0.1:10053" and udp.cluster == "svc/app/dns-udp/53/udp"
    assert [item.name for item in built.ir.listeners] == ["127.0.0.1:10053"]


def test_udp_split_uses_weighted_localities() -> None:
    _result, built = _build(
        _gateway([{"name": "u", "port": 53, "protocol": "UDP"}]),
        _route("UDPRoute", "u", "u", [("a", 53, 1), ("b", 53, 3)]),
        *_service("a", 53, "UDP"),
        *_service("b", 53, "UDP"),
    )
    (udp,) = built.ir.udp_listeners
    assert udp.cluster == "udproute/app/u"
    cluster = next(c for c in built.ir.clusters if c.name == udp.cluster)
    assert cluster.locality_weighted and cluster.protocol == "udp"
    assignment = next(e for e in built.ir.endpoints if e.cluster == udp.cluster)
    assert [g.weight for g in assignment.localities] == [1, 3]


def test_listener_without_routes_is_programmed_but_binds_nothing() -> None:
    _result, built = _build(_gateway([{"name": "idle", "port": 7000, "protocol": "TCP"}]))
    ok, _reason, message = _programmed(built, "idle")
    assert ok and "none is served yet" in message
    assert built.ir.listeners == ()


# --------------------------------------------------------------------------- TLS


def test_https_passthrough_is_refused_with_a_reason() -> None:
    _result, built = _build(
        _gateway([{"name": "h", "port": 443, "protocol": "HTTPS", "tls": {"mode": "Passthrough"}}])
    )
    ok, _reason, message = _programmed(built, "h")
    assert not ok and "use protocol TLS" in message


def test_sni_names_go_to_the_most_specific_listener() -> None:
    _result, built = _build(
        _gateway(
            [
                {"name": "any", "port": 443, "protocol": "TLS", "tls": {"mode": "Passthrough"}},
                {
                    "name": "wild",
                    "port": 443,
                    "protocol": "TLS",
                    "hostname": "*.example.com",
                    "tls": {"mode": "Passthrough"},
                },
            ]
        ),
        _route("TLSRoute", "broad", "any", [("s", 443, 1)], ["a.example.com", "other.test"]),
        _route("TLSRoute", "narrow", "wild", [("s", 443, 1)], ["a.example.com"]),
        *_service("s", 443),
    )
    (listener,) = built.ir.listeners
    names = {c.name: c.server_names for c in listener.l4_chains}
    assert names == {
        "tls/infra/gw/any/app/broad": ("other.test",),
        "tls/infra/gw/wild/app/narrow": ("a.example.com",),
    }
    assert any("left to the more specific listener" in n for n in built.notes)


hostname = st.sampled_from(
    ["a.example.com", "b.example.com", "*.example.com", "x.a.example.com", "*.a.example.com"]
)


@settings(max_examples=60, deadline=None)
@given(
    listener_hosts=st.lists(st.one_of(st.none(), hostname), min_size=1, max_size=4, unique=True),
    routes=st.lists(
        st.tuples(st.integers(0, 3), st.lists(hostname, min_size=1, max_size=3, unique=True)),
        max_size=6,
    ),
)
def test_no_server_name_is_claimed_twice(
    listener_hosts: list[str | None], routes: list[tuple[int, list[str]]]
) -> None:
    listeners: list[dict[str, Any]] = []
    for i, host in enumerate(listener_hosts):
        item: dict[str, Any] = {
            "name": f"l{i}",
            "port": 443,
            "protocol": "TLS",
            "tls": {"mode": "Passthrough"},
        }
        if host is not None:
            item["hostname"] = host
        listeners.append(item)
    objects = [_gateway(listeners), *_service("s", 443)]
    for j, (index, hosts) in enumerate(routes):
        section = f"l{index % len(listener_hosts)}"
        objects.append(
            _route(
                "TLSRoute",
                f"r{j}",
                section,
                [("s", 443, 1)],
                hosts,
                f"2026-01-{j + 1:02d}T00:00:00Z",
            )
        )
    _result, built = _build(*objects)
    for listener in built.ir.listeners:
        claimed = [n for c in listener.l4_chains for n in c.server_names]
        assert len(claimed) == len(set(claimed)), claimed
        for chain in listener.l4_chains:
            assert chain.server_names  # a TLS chain always matches by SNI
            # each name is within its listener's hostname
            section = chain.name.split("/")[3]
            own = listener_hosts[int(section[1:])]
            assert all(hn.covers(hn.normalize(own), n) for n in chain.server_names)
    translate.translate(built.ir)  # and the translator accepts it


def test_compatible_protocols() -> None:
    assert l4.compatible("HTTPS", "TLS") and l4.compatible("TLS", "HTTPS")
    assert not l4.compatible("HTTP", "TLS") and not l4.compatible("TCP", "TLS")
    assert l4.transport("UDP") == "udp" and l4.transport("TLS") == "tcp"
