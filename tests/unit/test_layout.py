"""converters.layout: Gateways, listeners, ListenerSets past 64, selectors and grants."""

from __future__ import annotations

from random import Random

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
