"""Policy status (``controller.policy_status``, ``controller.status``): ancestors, conditions and
reasons as Envoy Gateway writes them, computed from objects + the attachment engine + the IR
builder, and merged into ``status.ancestors`` beside other controllers' entries."""

from __future__ import annotations

from typing import Any

from controller import gatewayapi_to_ir, policy_status
from controller import status as status_mod
from controller.attachment import Condition
from tests.realparts import certs

GW = "gateway.networking.k8s.io"
EG_API = "gateway.envoyproxy.io/v1alpha1"
OURS = "kubectl-gw.dev/test"
NOW = "2026-01-02T00:00:00Z"


def _world(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    def meta(name: str, ns: str | None = "app", created: str = "2026-01-01T00:00:00Z") -> Any:
        out: dict[str, Any] = {"name": name, "generation": 3, "creationTimestamp": created}
        if ns:
            out["namespace"] = ns
        return out

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}},
        {
            "apiVersion": f"{GW}/v1",
            "kind": "GatewayClass",
            "metadata": meta("ours", None),
            "spec": {"controllerName": OURS},
        },
        {
            "apiVersion": f"{GW}/v1",
            "kind": "GatewayClass",
            "metadata": meta("theirs", None),
            "spec": {"controllerName": "example.com/other"},
        },
        {
            "apiVersion": f"{GW}/v1",
            "kind": "Gateway",
            "metadata": meta("gw"),
            "spec": {
                "gatewayClassName": "ours",
                "listeners": [
                    {"name": "http", "port": 80, "protocol": "HTTP"},
                    {"name": "admin", "port": 8080, "protocol": "HTTP"},
                ],
            },
        },
        {
            "apiVersion": f"{GW}/v1",
            "kind": "Gateway",
            "metadata": meta("other-gw"),
            "spec": {
                "gatewayClassName": "theirs",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta("web"),
            "spec": {"ports": [{"name": "https", "port": 443}]},
        },
        _route("web", [{"name": "gw", "sectionName": "http"}, {"name": "other-gw"}]),
        _route("theirs-only", [{"name": "other-gw"}]),
        *extra,
    ]


def _route(name: str, parents: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": "app",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "parentRefs": parents,
            "rules": [
                {"name": "a", "backendRefs": [{"name": "web", "port": 443}]},
                {"name": "b", "backendRefs": [{"name": "web", "port": 443}]},
            ],
        },
    }


def _policy(
    kind: str,
    name: str,
    refs: list[dict[str, Any]],
    created: str = "2026-01-01T00:00:01Z",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": EG_API,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "app",
            "generation": 2,
            "creationTimestamp": created,
        },
        "spec": {"targetRefs": refs, **spec},
    }


def _ref(kind: str, name: str, section: str | None = None) -> dict[str, Any]:
    ref = {"group": GW, "kind": kind, "name": name}
    return {**ref, "sectionName": section} if section else ref


def _verdicts(objects: list[dict[str, Any]]) -> dict[str, policy_status.PolicyVerdict]:
    result, built = gatewayapi_to_ir.compute_and_build(
        objects,  # type: ignore[arg-type]
        frozenset({OURS}),
        gatewayapi_to_ir.BuildOptions(),
    )
    verdicts = policy_status.compute(objects, result, built.notes, built.policy_problems)  # type: ignore[arg-type]
    return {v.name: v for v in verdicts}


def _accepted(verdict: policy_status.PolicyVerdict) -> list[tuple[str, str, str]]:
    return [
        (str(a.ref.get("sectionName", "")), c.status, c.reason)
        for a in verdict.ancestors
        for c in a.conditions
        if c.type == "Accepted"
    ]


GW_ANCESTOR = {"group": GW, "kind": "Gateway", "namespace": "app", "name": "gw"}


def test_route_policy_ancestors_are_our_parent_gateways_with_their_section() -> None:
    verdicts = _verdicts(_world(_policy("BackendTrafficPolicy", "btp", [_ref("HTTPRoute", "web")])))
    (ancestor,) = verdicts["btp"].ancestors
    # The route's other parent belongs to another controller: not our ancestor to write.
    assert ancestor.ref == {**GW_ANCESTOR, "sectionName": "http"}
    assert ancestor.conditions == (
        Condition("Accepted", "True", "Accepted", policy_status.ACCEPTED_MESSAGE),
    )


def test_missing_targets_write_nothing_but_a_missing_section_is_target_not_found() -> None:
    verdicts = _verdicts(
        _world(
            _policy("BackendTrafficPolicy", "nowhere", [_ref("HTTPRoute", "missing")]),
            _policy("BackendTrafficPolicy", "not-ours", [_ref("HTTPRoute", "theirs-only")]),
            _policy("BackendTrafficPolicy", "other-gw", [_ref("Gateway", "other-gw")]),
            _policy("BackendTrafficPolicy", "typo", [_ref("HTTPRoute", "web", "c")]),
            _policy("ClientTrafficPolicy", "no-listener", [_ref("Gateway", "gw", "nope")]),
        )
    )
    assert set(verdicts) == {"typo", "no-listener"}
    (typo,) = verdicts["typo"].ancestors
    assert typo.conditions[0] == Condition(
        "Accepted", "False", "TargetNotFound", "No section name c found for HTTPRoute app/web"
    )
    (listener,) = verdicts["no-listener"].ancestors
    assert listener.ref == {**GW_ANCESTOR, "sectionName": "nope"}
    assert listener.conditions[0].reason == "TargetNotFound"


def test_the_oldest_policy_on_a_target_wins_the_others_are_conflicted() -> None:
    verdicts = _verdicts(
        _world(
            _policy(
                "BackendTrafficPolicy", "young", [_ref("HTTPRoute", "web")], "2026-03-01T00:00:00Z"
            ),
            _policy(
                "BackendTrafficPolicy", "old", [_ref("HTTPRoute", "web")], "2026-02-01T00:00:00Z"
            ),
            # Same target but a rule of it: no conflict, it overrides "old" for that rule.
            _policy("BackendTrafficPolicy", "rule", [_ref("HTTPRoute", "web", "b")]),
        )
    )
    assert _accepted(verdicts["old"]) == [("http", "True", "Accepted")]
    assert _accepted(verdicts["young"]) == [("http", "False", "Conflicted")]
    message = verdicts["young"].ancestors[0].conditions[0].message
    assert message == (
        "Unable to target HTTPRoute web, another BackendTrafficPolicy has already attached to it"
    )
    assert _accepted(verdicts["rule"]) == [("http", "True", "Accepted")]
    overridden = [c for c in verdicts["old"].ancestors[0].conditions if c.type == "Overridden"]
    assert overridden == [
        Condition(
            "Overridden",
            "True",
            "Overridden",
            "This policy is being overridden by other backendTrafficPolicies for these route "
            "rules: app/web/b",
        )
    ]


def test_gateway_policy_overridden_or_merged_by_route_policies() -> None:
    verdicts = _verdicts(
        _world(
            _policy("BackendTrafficPolicy", "gateway", [_ref("Gateway", "gw")]),
            _policy(
                "BackendTrafficPolicy",
                "merging",
                [_ref("HTTPRoute", "web")],
                mergeType="StrategicMerge",
            ),
            _policy("SecurityPolicy", "gateway-sp", [_ref("Gateway", "gw")]),
            _policy("SecurityPolicy", "route-sp", [_ref("HTTPRoute", "web", "a")]),
        )
    )
    gateway = {c.type: c for c in verdicts["gateway"].ancestors[0].conditions}
    assert verdicts["gateway"].ancestors[0].ref == GW_ANCESTOR
    assert gateway["Merged"].message.endswith("for these routes: app/web")
    assert "Overridden" not in gateway
    merging = {c.type: c for c in verdicts["merging"].ancestors[0].conditions}
    assert merging["Merged"].message == "Merged with policy app/gateway"
    sp = {c.type: c for c in verdicts["gateway-sp"].ancestors[0].conditions}
    assert sp["Overridden"].message.endswith("for these routes: app/web")


def test_unenforceable_is_invalid_and_ignored_fields_are_said_partially() -> None:
    verdicts = _verdicts(
        _world(
            _policy("SecurityPolicy", "jwt", [_ref("HTTPRoute", "web")], jwt={"providers": []}),
            _policy(
                "SecurityPolicy",
                "basic",
                [_ref("HTTPRoute", "web", "a")],
                basicAuth={"users": {"name": "no-such-secret"}},
            ),
            _policy(
                "BackendTrafficPolicy",
                "faults",
                [_ref("Gateway", "gw")],
                faultInjection={"abort": {"httpStatus": 503}},
                retry={"numRetries": 1},
            ),
        )
    )
    (jwt,) = verdicts["jwt"].ancestors
    assert jwt.conditions[0] == Condition("Accepted", "False", "Invalid", "jwt not implemented")
    (basic,) = verdicts["basic"].ancestors
    assert basic.conditions[0].reason == "Invalid"
    assert "Secret app/no-such-secret" in basic.conditions[0].message, basic
    (faults,) = verdicts["faults"].ancestors
    assert faults.conditions[0] == Condition(
        "Accepted",
        "True",
        "Accepted",
        f"{policy_status.PARTIAL_PREFIX}: not implemented, ignored: faultInjection",
    )


def test_backend_tls_policy_ancestors_are_gateways_whose_routes_use_the_service() -> None:
    def btls(name: str, created: str, **validation: Any) -> dict[str, Any]:
        return {
            "apiVersion": f"{GW}/v1",
            "kind": "BackendTLSPolicy",
            "metadata": {"name": name, "namespace": "app", "creationTimestamp": created},
            "spec": {
                "targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
                "validation": {"hostname": "web.example", **validation},
            },
        }

    ca = {"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}]}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ca", "namespace": "app"},
        "data": {"ca.crt": certs.self_signed(["ca.example"])[0].decode()},
    }
    unused = btls("unused", "2026-01-01T00:00:00Z", **ca)
    unused["spec"]["targetRefs"][0]["name"] = "nobody-uses-it"
    verdicts = _verdicts(
        _world(
            config_map,
            btls("first", "2026-01-01T00:00:01Z", **ca),
            btls("second", "2026-01-01T00:00:02Z", **ca),
            btls(
                "missing-ca",
                "2026-01-01T00:00:03Z",
                caCertificateRefs=[{"group": "", "kind": "ConfigMap", "name": "gone"}],
            ),
            unused,
        )
    )
    assert "unused" not in verdicts
    (first,) = verdicts["first"].ancestors
    assert first.ref == GW_ANCESTOR  # the Gateway, no section
    assert [(c.type, c.status, c.reason) for c in first.conditions] == [
        ("Accepted", "True", "Accepted"),
        ("ResolvedRefs", "True", "ResolvedRefs"),
    ]
    assert verdicts["second"].ancestors[0].conditions[0].reason == "Conflicted"
    missing = verdicts["missing-ca"].ancestors[0].conditions
    assert [(c.type, c.reason) for c in missing] == [
        ("Accepted", "Conflicted"),
        ("ResolvedRefs", "InvalidCACertificateRef"),
    ]


def _updates(objects: list[dict[str, Any]]) -> list[status_mod.StatusUpdate]:
    result, built = gatewayapi_to_ir.compute_and_build(
        objects,  # type: ignore[arg-type]
        frozenset({OURS}),
        gatewayapi_to_ir.BuildOptions(),
    )
    return status_mod.desired(
        objects,  # type: ignore[arg-type]
        result,
        built,
        status_mod.Programming(True, ("127.0.0.1",)),
        OURS,
        NOW,
    )


def _desired(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        u.name: u.status for u in _updates(objects) if u.kind in policy_status.POLICY_STATUS_KINDS
    }


def test_status_keeps_other_controllers_entries_and_transition_times() -> None:
    theirs = {
        "ancestorRef": {**GW_ANCESTOR, "name": "other-gw"},
        "controllerName": "example.com/other",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
    }
    policy = _policy("BackendTrafficPolicy", "btp", [_ref("HTTPRoute", "web")])
    policy["status"] = {
        "ancestors": [
            theirs,
            {
                "ancestorRef": {**GW_ANCESTOR, "sectionName": "http"},
                "controllerName": OURS,
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": "True",
                        "reason": "Accepted",
                        "message": "old words",
                        "observedGeneration": 1,
                        "lastTransitionTime": "2025-01-01T00:00:00Z",
                    }
                ],
            },
            {"ancestorRef": {**GW_ANCESTOR, "name": "gone"}, "controllerName": OURS},
        ]
    }
    status = _desired(_world(policy))["btp"]
    assert status["ancestors"] == [
        theirs,
        {
            "ancestorRef": {**GW_ANCESTOR, "sectionName": "http"},
            "controllerName": OURS,
            "conditions": [
                {
                    "type": "Accepted",
                    "status": "True",
                    "reason": "Accepted",
                    "message": policy_status.ACCEPTED_MESSAGE,
                    "observedGeneration": 2,
                    "lastTransitionTime": "2025-01-01T00:00:00Z",  # status unchanged: kept
                }
            ],
        },
    ]


def test_policies_never_ours_get_no_update_and_stale_entries_are_removed() -> None:
    stale = _policy("BackendTrafficPolicy", "stale", [_ref("HTTPRoute", "theirs-only")])
    stale["status"] = {
        "ancestors": [{"ancestorRef": GW_ANCESTOR, "controllerName": OURS, "conditions": []}]
    }
    never = _policy("BackendTrafficPolicy", "never", [_ref("HTTPRoute", "theirs-only")])
    desired = _desired(_world(stale, never))
    assert "never" not in desired
    assert desired["stale"]["ancestors"] == []


def _backend(name: str, endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": EG_API,
        "kind": "Backend",
        "metadata": {"name": name, "namespace": "app", "generation": 2},
        "spec": {"endpoints": endpoints},
    }


def _route_to_backends(name: str, parent: str, backends: list[str]) -> dict[str, Any]:
    route = _route(name, [{"name": parent}])
    route["spec"]["rules"] = [
        {
            "backendRefs": [
                {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": b, "port": 8080}
                for b in backends
            ]
        }
    ]
    return route


def test_backends_our_routes_use_get_envoy_gateways_accepted_condition() -> None:
    """Accepted/Accepted "The Backend was accepted", or Accepted=False/Invalid with why it
    cannot be served; Backends only other controllers' routes use are left to them."""
    objects = _world(
        _backend("good", [{"ip": {"address": "10.0.0.1", "port": 8080}}]),
        _backend(
            "mixed",
            [{"ip": {"address": "10.0.0.2"}}, {"fqdn": {"hostname": "a.example.test"}}],
        ),
        _backend("theirs", [{"ip": {"address": "10.0.0.3"}}]),
        _route_to_backends("uses", "gw", ["good", "mixed", "missing"]),
        _route_to_backends("their-route", "other-gw", ["theirs"]),
    )
    backends = {u.name: u.status for u in _updates(objects) if u.kind == "Backend"}
    assert set(backends) == {"good", "mixed"}
    (good,) = backends["good"]["conditions"]
    assert (good["type"], good["status"], good["reason"], good["message"]) == (
        "Accepted",
        "True",
        "Accepted",
        "The Backend was accepted",
    )
    assert good["observedGeneration"] == 2
    (mixed,) = backends["mixed"]["conditions"]
    assert (mixed["status"], mixed["reason"]) == ("False", "Invalid")
    assert "mixing ip and fqdn" in mixed["message"]
