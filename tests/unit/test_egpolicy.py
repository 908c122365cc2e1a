"""Envoy Gateway policies: attachment precedence, merging, parsing, and the RBAC compilation of
ordered allow/deny rules (checked against first-match semantics with hypothesis)."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controller import egpolicy as eg
from controller import ir, translate

GW_GROUP = "gateway.networking.k8s.io"
EG_API = "gateway.envoyproxy.io/v1alpha1"


def _policy(
    kind: str, name: str, created: str, refs: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": EG_API,
        "kind": kind,
        "metadata": {"name": name, "namespace": "app", "creationTimestamp": created},
        "spec": {"targetRefs": refs, **spec},
    }


def _route_ref(section: str | None = None) -> dict[str, Any]:
    ref = {"group": GW_GROUP, "kind": "HTTPRoute", "name": "web"}
    return {**ref, "sectionName": section} if section else ref


def _gateway_ref(section: str | None = None) -> dict[str, Any]:
    ref = {"group": GW_GROUP, "kind": "Gateway", "name": "gw"}
    return {**ref, "sectionName": section} if section else ref


WHERE = eg.RouteTarget("HTTPRoute", "app", "web", "rule-a", "app", "gw", "http")


def _name(found: Any) -> str:
    assert found is not None
    return str(found["metadata"]["name"])


def test_most_specific_policy_wins_then_the_oldest() -> None:
    kind = "BackendTrafficPolicy"
    gateway = _policy(kind, "gateway", "2026-01-01T00:00:00Z", [_gateway_ref()])
    listener = _policy(kind, "listener", "2026-01-05T00:00:00Z", [_gateway_ref("http")])
    route = _policy(kind, "route", "2026-01-05T00:00:00Z", [_route_ref()])
    rule_old = _policy(kind, "rule-old", "2026-01-02T00:00:00Z", [_route_ref("rule-a")])
    rule_new = _policy(kind, "rule-new", "2026-01-01T00:00:00Z", [_route_ref("rule-a")])
    rule_new["metadata"]["creationTimestamp"] = "2026-01-03T00:00:00Z"
    elsewhere = {**rule_old, "metadata": {**rule_old["metadata"], "namespace": "other"}}
    objects = [gateway, listener, route, rule_new, rule_old, elsewhere]
    assert _name(eg.Policies(objects).find(kind, WHERE)) == "rule-old"
    assert _name(eg.Policies(objects[:3]).find(kind, WHERE)) == "route"
    assert _name(eg.Policies(objects[:2]).find(kind, WHERE)) == "listener"
    assert _name(eg.Policies(objects[:1]).find(kind, WHERE)) == "gateway"
    other_rule = eg.RouteTarget("HTTPRoute", "app", "web", "rule-b", "app", "gw", "https")
    assert _name(eg.Policies(objects).find(kind, other_rule)) == "route"
    assert eg.Policies([elsewhere]).find(kind, WHERE) is None  # policies attach locally
    assert eg.Policies(objects).find("SecurityPolicy", WHERE) is None


def test_merge_type_merges_onto_the_gateway_policy() -> None:
    kind = "BackendTrafficPolicy"
    gateway = _policy(
        kind,
        "defaults",
        "2026-01-01T00:00:00Z",
        [_gateway_ref()],
        timeout={"tcp": {"connectTimeout": "3s"}},
    )
    route = _policy(
        kind,
        "checkout",
        "2026-01-01T00:00:00Z",
        [_route_ref("rule-a")],
        mergeType="StrategicMerge",
        retry={"numRetries": 2, "retryOn": {"triggers": ["5xx"]}},
        timeout={"http": {"requestTimeout": "10s"}},
    )
    found = eg.Policies([gateway, route]).find(kind, WHERE)
    assert found is not None
    parsed = eg.traffic_policy(found)
    assert parsed.name == "checkout"
    assert parsed.cluster.connect_timeout_seconds == 3.0
    assert parsed.request_timeout_seconds == 10.0
    assert parsed.retry is not None and parsed.retry.triggers == ("5xx",)
    assert not parsed.notes
    # Without mergeType the route policy replaces the Gateway one.
    del route["spec"]["mergeType"]
    replaced = eg.traffic_policy(eg.Policies([gateway, route]).find(kind, WHERE) or {})
    assert replaced.cluster.connect_timeout_seconds is None


def test_traffic_policy_reports_what_it_ignores() -> None:
    obj = _policy(
        "BackendTrafficPolicy",
        "p",
        "",
        [_route_ref()],
        compression=[{"type": "Gzip"}],
        loadBalancer={
            "type": "ConsistentHash",
            "consistentHash": {"type": "Cookie", "cookie": {"name": "c"}},
        },
        rateLimit={"type": "Global", "global": {"rules": []}},
    )
    parsed = eg.traffic_policy(obj)
    assert parsed.cluster.lb_policy == "Maglev"
    assert parsed.hash_policies == (ir.HashPolicy("Cookie", "c", None, ()),)
    assert parsed.rate_limit is None
    assert any("compression" in n for n in parsed.notes)
    assert any("Global" in n for n in parsed.notes)


def test_security_features_not_implemented_fail_closed() -> None:
    jwt = eg.security_policy(_policy("SecurityPolicy", "p", "", [], jwt={"providers": []}))
    assert jwt.unenforceable
    principals = eg.security_policy(
        _policy(
            "SecurityPolicy",
            "q",
            "",
            [],
            authorization={
                "rules": [{"action": "Allow", "principal": {"headers": [{"name": "x"}]}}]
            },
        )
    )
    assert principals.unenforceable and principals.authorization is None
    grpc = eg.security_policy(_policy("SecurityPolicy", "r", "", [], extAuth={"grpc": {}}))
    assert grpc.unenforceable


def test_htpasswd_keeps_only_sha_lines() -> None:
    text = "alice:{SHA}tiY7sUhYKUwI5L3866kDY+ENcrQ=\nbob:$apr1$x$y\n# comment\n\ncarol:plain\n"
    secret = {"data": {".htpasswd": base64.b64encode(text.encode()).decode()}}
    users, notes = eg.htpasswd_users(secret)
    assert users == "alice:{SHA}tiY7sUhYKUwI5L3866kDY+ENcrQ=\n"
    assert notes and "bob, carol" in notes[0]
    assert eg.htpasswd_users(None) == ("", ["Secret not found"])
    assert eg.htpasswd_users({"data": {}})[0] == ""


def test_quantities_and_durations() -> None:
    assert eg.parse_quantity("20Mi") == 20 * 1024 * 1024
    assert eg.parse_quantity("1k") == 1000
    assert eg.parse_quantity(512) == 512
    assert eg.parse_quantity("1.5Ki") == 1536
    assert eg.parse_quantity("lots") is None
    assert eg.parse_duration("1m30s") == 90
    assert eg.parse_duration("100ms") == 0.1
    assert eg.parse_duration("soon") is None


# --------------------------------------------------------------------------- RBAC


def _matches(principal: Any, address: ipaddress.IPv4Address) -> bool:
    which = principal.WhichOneof("identifier")
    if which == "any":
        return True
    if which == "remote_ip":
        network = ipaddress.ip_network(
            f"{principal.remote_ip.address_prefix}/{principal.remote_ip.prefix_len.value}"
        )
        return address in network
    if which == "and_ids":
        return all(_matches(p, address) for p in principal.and_ids.ids)
    if which == "or_ids":
        return any(_matches(p, address) for p in principal.or_ids.ids)
    if which == "not_id":
        return not _matches(principal.not_id, address)
    raise AssertionError(f"unexpected principal {which}")


CIDRS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3/32", "192.168.0.0/16", "0.0.0.0/0"]
rules_strategy = st.lists(
    st.tuples(st.booleans(), st.lists(st.sampled_from(CIDRS), min_size=1, max_size=3)),
    max_size=5,
)
addresses = st.sampled_from(["10.1.2.3", "10.1.9.9", "10.9.9.9", "192.168.1.1", "8.8.8.8"])


@given(rules=rules_strategy, default_allow=st.booleans(), address=addresses)
def test_rbac_is_first_match_of_the_ordered_rules(
    rules: list[tuple[bool, list[str]]], default_allow: bool, address: str
) -> None:
    auth = ir.Authorization(
        default_allow, tuple(ir.AuthorizationRule(allow, tuple(cidrs)) for allow, cidrs in rules)
    )
    ip = ipaddress.IPv4Address(address)
    expected = default_allow
    for allow, cidrs in rules:
        if any(ip in ipaddress.ip_network(c) for c in cidrs):
            expected = allow
            break
    compiled = translate._rbac(auth)
    assert compiled.action == compiled.ALLOW
    (policy,) = compiled.policies.values()
    assert any(_matches(p, ip) for p in policy.principals) == expected
