"""converters.layout: Gateways, listeners, ListenerSets past 64, selectors and grants."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from converters.api import ExistingGateway
from converters.layout import Grants, LayoutOptions, SecretRef, need, plan

OPTS = LayoutOptions("eg", "gateway-system")


def test_shared_gateway_listeners_selector_and_grant() -> None:
    needs = [
        need("nginx", "shop", "shop.example.com", "HTTPS", certificates=[SecretRef("shop", "t")]),
        need("nginx", "shop", "shop.example.com", "HTTP"),
        need("nginx", "blog", "shop.example.com", "HTTP"),
    ]
    grants = Grants()
    layout = plan(needs, OPTS, grants)
    [gw] = layout.objects
    assert gw["metadata"] == {
        "name": "nginx",
        "namespace": "gateway-system",
        "labels": gw["metadata"]["labels"],
        "annotations": gw["metadata"]["annotations"],
    }
    by_name = {lis["name"]: lis for lis in gw["spec"]["listeners"]}
    http = by_name["http-shop-example-com"]
    assert http["allowedRoutes"]["namespaces"]["selector"]["matchExpressions"][0]["values"] == [
        "blog",
        "shop",
    ]
    https = by_name["https-shop-example-com"]
    assert https["tls"]["certificateRefs"] == [
        {"group": "", "kind": "Secret", "name": "t", "namespace": "shop"}
    ]
    [grant] = grants.render()
    assert grant["metadata"]["namespace"] == "shop"
    assert grant["spec"]["from"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "gateway-system"}
    ]
    assert layout.parent(needs[1].key)["sectionName"] == "http-shop-example-com"
    assert layout.parent(needs[2].key) == layout.parent(needs[1].key)


def test_wildcard_and_apex_get_distinct_listener_names() -> None:
    needs = [
        need("nginx", "a", "*.example.com", "HTTP"),
        need("nginx", "a", "example.com", "HTTP"),
    ]
    layout = plan(needs, OPTS, Grants())
    names = [lis["name"] for lis in layout.objects[0]["spec"]["listeners"]]
    assert len(set(names)) == 2
    assert layout.parent(needs[0].key) != layout.parent(needs[1].key)


def test_past_64_listeners_go_into_listenersets() -> None:
    needs = [need("nginx", "a", f"h{i}.example.com", "HTTP") for i in range(150)]
    layout = plan(needs, OPTS, Grants())
    kinds = [o["kind"] for o in layout.objects]
    assert kinds == ["Gateway", "ListenerSet", "ListenerSet"]
    assert [len(o["spec"]["listeners"]) for o in layout.objects] == [64, 64, 22]
    assert layout.objects[0]["spec"]["allowedListeners"] == {"namespaces": {"from": "Same"}}
    parents = {layout.parent(n.key)["kind"] for n in needs}
    assert parents == {"Gateway", "ListenerSet"}
    assert layout.objects[1]["spec"]["parentRef"]["name"] == "nginx"


def test_per_namespace_layout_keeps_certificates_local() -> None:
    needs = [need("nginx", "shop", "a.example.com", "HTTPS", certificates=[SecretRef("shop", "t")])]
    grants = Grants()
    layout = plan(needs, LayoutOptions("eg", "gateway-system", per_namespace=True), grants)
    gw = layout.objects[0]
    assert gw["metadata"]["namespace"] == "shop"
    assert "namespace" not in gw["spec"]["listeners"][0]["tls"]["certificateRefs"][0]
    assert gw["spec"]["listeners"][0]["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    assert grants.render() == []


def test_existing_gateway_plans_nothing() -> None:
    needs = [
        need("nginx", "a", "x.example.com", "HTTPS"),
        need("nginx", "a", "x.example.com", "HTTP"),
    ]
    layout = plan(needs, LayoutOptions("eg", "gs", ExistingGateway("infra", "edge")), Grants())
    assert layout.objects == []
    assert layout.parent(needs[0].key)["port"] == 443
    assert layout.parent(needs[1].key)["port"] == 80
    section = plan(
        needs, LayoutOptions("eg", "gs", ExistingGateway("infra", "edge", "web")), Grants()
    )
    assert {section.parent(n.key)["sectionName"] for n in needs} == {"web"}


def test_grants_split_at_16_targets() -> None:
    needs = [
        need("nginx", "a", f"h{i}.example.com", "HTTPS", certificates=[SecretRef("a", f"s{i}")])
        for i in range(20)
    ]
    grants = Grants()
    layout = plan(needs, OPTS, grants)
    rendered = grants.render()
    assert [len(g["spec"]["to"]) for g in rendered] == [16, 4]
    names = {g["metadata"]["name"] for g in rendered}
    for item in needs:
        assert any(
            ref.name in names for ref in layout.outputs[item.key] if ref.kind == "ReferenceGrant"
        )


@given(
    st.lists(st.sampled_from(["a.example.com", "*.example.com", "example.com", ""]), max_size=8),
    st.randoms(use_true_random=False),
)
def test_plan_is_order_independent(hosts: list[str], rng: Random) -> None:
    needs = [need("nginx", ns, h, "HTTP") for h in hosts for ns in ("x", "y", "z")]
    shuffled = list(needs)
    rng.shuffle(shuffled)
    assert plan(needs, OPTS, Grants()).objects == plan(shuffled, OPTS, Grants()).objects


# --------------------------------------------------------------------------- TCP, TLS, ports


def test_tcp_listeners_are_named_by_port_and_sorted_after_the_others() -> None:
    needs = [
        need("emissary", "data", None, "TCP", port=6379),
        need("emissary", "data", None, "TCP", port=5432),
        need("emissary", "web", "a.example.com", "HTTP"),
    ]
    layout = plan(needs, OPTS, Grants())
    listeners = layout.objects[0]["spec"]["listeners"]
    assert [(lis["name"], lis["port"], lis["protocol"]) for lis in listeners] == [
        ("http-a-example-com", 80, "HTTP"),
        ("tcp-5432", 5432, "TCP"),
        ("tcp-6379", 6379, "TCP"),
    ]
    assert "hostname" not in listeners[1] and "tls" not in listeners[1]
    assert layout.parent(needs[0].key)["sectionName"] == "tcp-6379"
    assert layout.errors == {}


def test_tcp_needs_a_port_and_no_hostname_tls_needs_a_mode() -> None:
    with pytest.raises(ValueError, match="TCP"):
        need("c", "ns", None, "TCP")
    with pytest.raises(ValueError, match="TCP"):
        need("c", "ns", "a.example.com", "TCP", port=5432)
    with pytest.raises(ValueError, match="TLS"):
        need("c", "ns", "a.example.com", "TLS")
    with pytest.raises(ValueError, match="passes TLS through"):
        need("c", "ns", "a.example.com", "HTTPS", passthrough=True)


def test_tcp_on_a_port_another_protocol_uses_gets_an_error_whatever_the_order() -> None:
    tcp = need("c", "data", None, "TCP", port=443)
    https = need("c", "web", "a.example.com", "HTTPS", certificates=[SecretRef("web", "t")])
    for needs in ([tcp, https], [https, tcp]):
        layout = plan(needs, OPTS, Grants())
        assert tcp.key not in layout.parents
        assert layout.outputs[tcp.key] == []
        assert "port 443 is already an HTTPS listener" in layout.errors[tcp.key]
        assert [lis["protocol"] for lis in layout.objects[0]["spec"]["listeners"]] == ["HTTPS"]


def test_tls_terminate_with_certificates_and_grants() -> None:
    cert = SecretRef("data", "db-tls")
    terminate = need("c", "data", "db.example.com", "TLS", port=8443, certificates=[cert])
    grants = Grants()
    layout = plan(needs := [terminate], OPTS, grants)
    [lis] = layout.objects[0]["spec"]["listeners"]
    assert lis["protocol"] == "TLS"
    assert lis["tls"] == {
        "mode": "Terminate",
        "certificateRefs": [{"group": "", "kind": "Secret", "name": "db-tls", "namespace": "data"}],
    }
    [grant] = grants.render()
    assert grant["spec"]["to"] == [{"group": "", "kind": "Secret", "name": "db-tls"}]
    assert [r.kind for r in layout.outputs[needs[0].key]] == ["Gateway", "ReferenceGrant"]


def test_passthrough_wins_over_termination_on_one_listener_and_says_so() -> None:
    cert = SecretRef("a", "t")
    terminate = need("c", "a", "x.example.com", "TLS", certificates=[cert])
    through = need("c", "b", "x.example.com", "TLS", passthrough=True)
    grants = Grants()
    layout = plan([terminate, through], OPTS, grants)
    [lis] = layout.objects[0]["spec"]["listeners"]
    assert lis["tls"] == {"mode": "Passthrough"}
    assert grants.render() == []
    assert "certificate a/t is not used" in layout.notes[terminate.key][0]
    assert through.key not in layout.notes


def test_port_map_turns_asked_ports_into_listener_ports() -> None:
    options = LayoutOptions("eg", "gs", port_map=((8080, 80), (8443, 443)))
    needs = [
        need("c", "a", "x.example.com", "HTTP", port=8080),
        need("c", "a", "x.example.com", "HTTPS", port=8443, certificates=[SecretRef("a", "t")]),
        need("c", "a", None, "TCP", port=5432),
    ]
    layout = plan(needs, options, Grants())
    ports = [(lis["protocol"], lis["port"]) for lis in layout.objects[0]["spec"]["listeners"]]
    assert ports == [("HTTP", 80), ("HTTPS", 443), ("TCP", 5432)]
    assert needs[0].key.port == 8080  # keys keep the asked-for port
    assert [lis.port for lis in layout.listeners_for("x.example.com", "HTTP", 8080)] == [80]
    existing = plan(
        needs,
        LayoutOptions("eg", "gs", ExistingGateway("i", "e"), port_map=options.port_map),
        Grants(),
    )
    assert existing.parent(needs[1].key)["port"] == 443


def test_existing_gateway_tcp_attaches_by_port_even_with_a_section() -> None:
    tcp = need("c", "data", None, "TCP", port=5432)
    http = need("c", "web", "a.example.com", "HTTP")
    layout = plan(
        [tcp, http], LayoutOptions("eg", "gs", ExistingGateway("i", "e", "web")), Grants()
    )
    assert layout.parent(tcp.key) == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "namespace": "i",
        "name": "e",
        "port": 5432,
    }
    assert layout.notes[tcp.key] == ["the existing Gateway i/e needs a TCP listener on port 5432"]
    assert layout.parent(http.key)["sectionName"] == "web"
    assert layout.listener(tcp.key) is not None and layout.listener(tcp.key).section == ""  # type: ignore[union-attr]


def test_tcp_listeners_count_toward_64_and_go_into_listenersets() -> None:
    needs = [need("c", "a", f"h{i}.example.com", "HTTP") for i in range(60)]
    needs += [need("c", "a", None, "TCP", port=9000 + i) for i in range(10)]
    layout = plan(needs, OPTS, Grants())
    assert [(o["kind"], len(o["spec"]["listeners"])) for o in layout.objects] == [
        ("Gateway", 64),
        ("ListenerSet", 6),
    ]
    last = layout.parent(needs[-1].key)
    assert (last["kind"], last["sectionName"]) == ("ListenerSet", "tcp-9009")
    assert [r.kind for r in layout.outputs[needs[-1].key]] == ["ListenerSet", "Gateway"]


def test_listeners_for_finds_every_gateway_of_the_per_namespace_layout() -> None:
    cert = [SecretRef("x", "t")]
    needs = [need("c", ns, "a.example.com", "HTTPS", certificates=cert) for ns in ("y", "x")]
    layout = plan(needs, LayoutOptions("eg", "gs", per_namespace=True), Grants())
    found = layout.listeners_for("a.example.com", "HTTPS", 443)
    assert [(r.kind, r.namespace, r.section) for r in found] == [
        ("Gateway", "x", "https-a-example-com"),
        ("Gateway", "y", "https-a-example-com"),
    ]
    assert found[0].target_ref() == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "c",
        "sectionName": "https-a-example-com",
    }
    assert layout.listeners_for("a.example.com", "HTTP", 80) == []


def test_a_listener_holds_at_most_64_certificates_the_first_asked_for() -> None:
    # 70 namespaces each ask for the same hostname with their own certificate, in reverse
    # name order: the first 64 asked for are kept (not the first 64 by name).
    needs = [
        need(
            "nginx",
            f"team-{i:02d}",
            "alias.example.net",
            "HTTPS",
            certificates=[SecretRef(f"team-{i:02d}", "tls")],
        )
        for i in reversed(range(70))
    ]
    grants = Grants()
    layout = plan(needs, OPTS, grants)
    [gw] = layout.objects
    [listener] = gw["spec"]["listeners"]
    refs = listener["tls"]["certificateRefs"]
    assert len(refs) == 64
    assert {r["namespace"] for r in refs} == {f"team-{i:02d}" for i in range(6, 70)}
    # every namespace still gets the listener; the six without a served certificate say why
    assert all(n.key in layout.parents for n in needs)
    noted = {n.key.route_namespace for n in needs if layout.notes.get(n.key)}
    assert noted == {f"team-{i:02d}" for i in range(6)}
    [text] = layout.notes[needs[-1].key]
    assert "team-00/tls is not served" in text and "64 certificates" in text
    assert set(layout.dropped_certificates) == {
        ("alias.example.net", SecretRef(f"team-{i:02d}", "tls")) for i in range(6)
    }
    # grants only for the certificates served
    granted = {g["metadata"]["namespace"] for g in grants.render()}
    assert granted == {f"team-{i:02d}" for i in range(6, 70)}
    for n in needs:
        assert {r.namespace for r in layout.outputs[n.key][1:]} <= granted


def test_64_certificates_are_not_capped() -> None:
    needs = [
        need("nginx", "a", "x.example.com", "HTTPS", certificates=[SecretRef("a", f"c{i}")])
        for i in range(64)
    ]
    layout = plan(needs, OPTS, Grants())
    assert len(layout.objects[0]["spec"]["listeners"][0]["tls"]["certificateRefs"]) == 64
    assert not layout.notes and not layout.dropped_certificates
