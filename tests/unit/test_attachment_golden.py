"""Scenario table for the attachment engine: YAML inputs, expected ``describe -o json``.

Each case under ``tests/golden/attachment/<case>/`` holds ``input.yaml`` and ``expected.json``
(the whole ``-o json`` document for the inputs). ``KGW_UPDATE_GOLDEN=1`` rewrites the expected
files; review every diff. Independently of the golden files, ``VERDICTS`` states the verdicts
each scenario exists for, so a regenerated golden cannot quietly accept a wrong answer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from controller import attachment as at
from kubectl_gw import describe, io

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "attachment"
UPDATE = os.environ.get("KGW_UPDATE_GOLDEN") == "1"

# case -> [(route "Kind ns/name", parentRef index, accepted, reason)]
VERDICTS: dict[str, list[tuple[str, int, bool, str]]] = {
    "basic-same-namespace": [("HTTPRoute infra/web", 0, True, "Accepted")],
    "cross-namespace-from-same": [("HTTPRoute apps/app", 0, False, "NotAllowedByListeners")],
    "cross-namespace-from-all": [("HTTPRoute apps/app", 0, True, "Accepted")],
    "selector-namespaces": [
        ("HTTPRoute apps/app", 0, True, "Accepted"),
        ("HTTPRoute private/secret-app", 0, False, "NotAllowedByListeners"),
        ("HTTPRoute unlisted/other", 0, True, "Accepted"),
    ],
    "hostname-intersection": [
        ("HTTPRoute apps/specific", 0, True, "Accepted"),
        ("HTTPRoute apps/wildcard-route", 0, True, "Accepted"),
        ("HTTPRoute apps/apex", 0, False, "NoMatchingListenerHostname"),
    ],
    "section-and-port": [
        ("HTTPRoute apps/by-section", 0, True, "Accepted"),
        ("HTTPRoute apps/by-port", 0, True, "Accepted"),
        ("HTTPRoute apps/typo-section", 0, False, "NoMatchingParent"),
        ("HTTPRoute apps/wrong-port", 0, False, "NoMatchingParent"),
        ("HTTPRoute apps/section-port-mismatch", 0, False, "NoMatchingParent"),
        ("HTTPRoute apps/two-parents", 0, True, "Accepted"),
        ("HTTPRoute apps/two-parents", 1, False, "NoMatchingParent"),
    ],
    "tls-passthrough-httproute": [
        ("HTTPRoute apps/web", 0, False, "NotAllowedByListeners"),
        ("TLSRoute apps/tls", 0, True, "Accepted"),
        ("TLSRoute apps/tls-other-host", 0, False, "NoMatchingListenerHostname"),
    ],
    "allowed-kinds": [
        ("HTTPRoute apps/web", 0, False, "NotAllowedByListeners"),
        ("HTTPRoute apps/web-ok", 0, True, "Accepted"),
        ("GRPCRoute apps/grpc-on-tcp", 0, False, "NotAllowedByListeners"),
    ],
    "conflicting-listeners": [("HTTPRoute team-b/on-conflicted", 0, True, "Accepted")],
    "identical-matches": [
        ("HTTPRoute apps/a-first", 0, True, "Accepted"),
        ("HTTPRoute apps/b-second", 0, True, "Accepted"),
    ],
    "backend-refs": [("HTTPRoute apps/backends", 0, True, "Accepted")],
    "eg-backend-refs": [("HTTPRoute apps/backends", 0, True, "Accepted")],
    "missing-parents": [
        ("HTTPRoute apps/missing-gateway", 0, False, "NoMatchingParent"),
        ("HTTPRoute apps/missing-listenerset", 0, False, "NoMatchingParent"),
        ("HTTPRoute apps/no-name", 0, False, "NoMatchingParent"),
        ("HTTPRoute apps/odd-kind", 0, False, "UnsupportedValue"),
        ("HTTPRoute apps/mesh", 0, False, "UnsupportedValue"),
    ],
    "missing-gatewayclass": [("HTTPRoute apps/web", 0, False, "Pending")],
    "invalid-rules": [
        ("HTTPRoute apps/incompatible", 0, False, "IncompatibleFilters"),
        ("HTTPRoute apps/all-bad", 0, False, "UnsupportedValue"),
        ("HTTPRoute apps/partly-bad", 0, True, "Accepted"),
        ("TLSRoute apps/no-hostnames", 0, False, "UnsupportedValue"),
    ],
    "listenerset-attachment": [
        ("HTTPRoute team/via-set", 0, True, "Accepted"),
        ("HTTPRoute team/via-refused-set", 0, False, "NoMatchingParent"),
        ("HTTPRoute apps/gateway-section-in-set", 0, False, "NoMatchingParent"),
        ("HTTPRoute apps/from-gateway-ns", 0, False, "NotAllowedByListeners"),
    ],
    "certificate-refs": [("HTTPRoute apps/b", 0, True, "Accepted")],
    "unsupported-protocol": [("HTTPRoute apps/to-sctp", 0, False, "NotAllowedByListeners")],
    "grpc-and-tcp-precedence": [
        ("GRPCRoute apps/svc", 0, True, "Accepted"),
        ("TCPRoute apps/db-old", 0, True, "Accepted"),
        ("TCPRoute apps/db-new", 0, True, "Accepted"),
    ],
}


def _compute(case: str) -> tuple[at.AttachmentResult, dict[str, Any]]:
    loaded = io.load_inputs([str(GOLDEN / case / "input.yaml")])
    objects = [item.obj for item in loaded.objects]
    result = at.compute(objects)
    view = describe.select(result, describe.Selection())
    view.findings = describe.compare_status(objects, view, live=False)
    return result, describe.to_data(view)


def test_every_case_directory_is_in_the_table() -> None:
    on_disk = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
    assert on_disk == sorted(VERDICTS)


@pytest.mark.parametrize("case", sorted(VERDICTS))
def test_golden(case: str) -> None:
    _result, data = _compute(case)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    expected = GOLDEN / case / "expected.json"
    if UPDATE:
        expected.write_text(text, encoding="utf-8")
    assert expected.is_file(), f"missing {expected}; run with KGW_UPDATE_GOLDEN=1 and review"
    assert text == expected.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", sorted(VERDICTS))
def test_verdicts(case: str) -> None:
    result, _data = _compute(case)
    for route, index, accepted, reason in VERDICTS[case]:
        kind, nsname = route.split(" ")
        ns, name = nsname.split("/")
        found = result.route(kind, ns, name)
        assert found is not None, route
        parent = found.parents[index]
        assert (parent.accepted, parent.reason) == (accepted, reason), (route, parent.message)


def _listener(result: at.AttachmentResult, owner: str, name: str) -> at.ListenerResult:
    for lis in result.all_listeners():
        if f"{lis.key.owner.kind} {lis.key.owner.nsname}" == owner and lis.name == name:
            return lis
    raise AssertionError(f"no listener {owner}/{name}")


def _cond(lis: at.ListenerResult, type_: str) -> tuple[str, str]:
    found = lis.condition(type_)
    assert found is not None
    return found.status, found.reason


def test_cross_namespace_message_names_the_fix() -> None:
    result, _ = _compute("cross-namespace-from-same")
    parent = result.routes[0].parents[0]
    assert "from: Same admits only namespace infra" in parent.message
    assert "allowedRoutes.namespaces.from: All" in parent.problems[0].hint


def test_backend_reasons() -> None:
    result, _ = _compute("backend-refs")
    route = result.routes[0]
    got = [(b.ref["name"], b.mirror, b.resolved, b.reason) for b in route.backends]
    assert got == [
        ("granted", False, True, "ResolvedRefs"),
        ("ungranted", False, False, "RefNotPermitted"),
        ("missing", False, False, "BackendNotFound"),
        ("app", False, False, "BackendNotFound"),  # the Service has no port 81
        ("b", False, False, "InvalidKind"),
        ("db", False, False, "UnsupportedProtocol"),
        ("app", False, True, "ResolvedRefs"),
        ("ungranted", True, False, "RefNotPermitted"),
    ]
    refs = route.parents[0].conditions[1]
    assert (refs.type, refs.status, refs.reason) == ("ResolvedRefs", "False", "RefNotPermitted")
    assert route.parents[0].accepted  # Accepted can be True while ResolvedRefs is False


def test_envoy_gateway_backend_reasons() -> None:
    result, _ = _compute("eg-backend-refs")
    route = result.routes[0]
    got = [(b.ref["name"], b.ref["namespace"], b.resolved, b.reason) for b in route.backends]
    assert got == [
        ("local", "apps", True, "ResolvedRefs"),
        ("missing", "apps", False, "BackendNotFound"),
        ("shared", "external", True, "ResolvedRefs"),  # granted for the Backend kind
        ("private", "external", False, "RefNotPermitted"),  # granted as a Service only
        ("local", "apps", False, "InvalidKind"),  # a Backend of another group
    ]
    refs = route.parents[0].conditions[1]
    assert (refs.type, refs.status) == ("ResolvedRefs", "False")
    no_backends, _ = _compute("backend-refs")
    assert not any("Backends (gateway.envoyproxy.io)" in n for n in no_backends.notes)


def test_conflicts() -> None:
    result, _ = _compute("conflicting-listeners")
    gw = "Gateway apps/gw"
    # indistinct listeners of one Gateway: no winner
    assert _cond(_listener(result, gw, "mixed-http"), "Conflicted") == ("True", "ProtocolConflict")
    assert _cond(_listener(result, gw, "mixed-https"), "Conflicted") == ("True", "ProtocolConflict")
    assert _cond(_listener(result, gw, "http"), "Conflicted") == ("False", "NoConflicts")
    # ListenerSets lose to the Gateway, and the newer set to the older
    dup = _listener(result, "ListenerSet team-a/team-a", "dup")
    assert _cond(dup, "Conflicted") == ("True", "ListenerConflict")
    assert _cond(dup, "Accepted") == ("False", "ListenerConflict")
    assert _cond(_listener(result, "ListenerSet team-a/team-a", "fine"), "Accepted")[0] == "True"
    late = _listener(result, "ListenerSet team-b/team-b", "late")
    assert _cond(late, "Conflicted") == ("True", "ListenerConflict")
    assert late.attached_routes == 1  # a route may attach to a conflicted listener (GEP-1713)
    gateway = result.gateway("apps", "gw")
    assert gateway is not None
    accepted = gateway.condition("Accepted")
    assert accepted is not None
    assert (accepted.status, accepted.reason) == ("True", "ListenersNotValid")


def test_listener_certificate_refs() -> None:
    result, _ = _compute("certificate-refs")
    gw = "Gateway apps/gw"
    assert _cond(_listener(result, gw, "granted"), "ResolvedRefs") == ("True", "ResolvedRefs")
    not_granted = _listener(result, gw, "not-granted")
    assert _cond(not_granted, "ResolvedRefs") == ("False", "RefNotPermitted")
    assert _cond(not_granted, "Programmed") == ("False", "Invalid")
    assert _cond(_listener(result, gw, "missing"), "ResolvedRefs") == (
        "False",
        "InvalidCertificateRef",
    )
    assert _cond(_listener(result, gw, "wrong-kind"), "ResolvedRefs") == (
        "False",
        "InvalidCertificateRef",
    )


def test_unsupported_protocol_and_invalid_kinds() -> None:
    result, _ = _compute("unsupported-protocol")
    assert _cond(_listener(result, "Gateway apps/gw", "sctp"), "Accepted") == (
        "False",
        "UnsupportedProtocol",
    )
    partial = result.gateway("apps", "gw")
    only_bad = result.gateway("apps", "only-bad")
    assert partial is not None and only_bad is not None
    assert (partial.conditions[0].status, partial.conditions[0].reason) == (
        "True",
        "ListenersNotValid",
    )
    assert (only_bad.conditions[0].status, only_bad.conditions[0].reason) == (
        "False",
        "ListenersNotValid",
    )
    kinds, _ = _compute("allowed-kinds")
    bad = _listener(kinds, "Gateway apps/gw", "bad-kinds")
    assert _cond(bad, "ResolvedRefs") == ("False", "InvalidRouteKinds")
    assert bad.supported_kinds == [("gateway.networking.k8s.io", "HTTPRoute")]


def test_shadowing_and_precedence() -> None:
    result, _ = _compute("identical-matches")
    table = _listener(result, "Gateway apps/gw", "http").routing
    order = [(e.route.name, e.rule, e.match_index) for e in table]
    assert order == [
        ("a-first", 1, 0),  # Exact /api
        ("a-first", 1, 1),  # the same Exact match again: shadowed by the one above
        ("z-oldest", 2, 0),  # RegularExpression: after Exact, before PathPrefix (as EG)
        ("z-oldest", 0, 0),  # PathPrefix /api + header, oldest
        ("a-first", 0, 0),  # same match, newer (no timestamp)
        ("b-second", 0, 0),  # same match, alphabetically after a-first
        ("z-oldest", 1, 0),  # PathPrefix / with method + query
    ]
    by = {(e.route.name, e.rule, e.match_index): e for e in table}
    assert by[("a-first", 1, 1)].shadowed_by is by[("a-first", 1, 0)]
    assert "earlier match in the same rule" in by[("a-first", 1, 1)].shadow_reason
    assert by[("a-first", 0, 0)].shadowed_by is by[("z-oldest", 0, 0)]
    assert "older creationTimestamp" in by[("a-first", 0, 0)].shadow_reason
    assert by[("b-second", 0, 0)].shadowed_by is by[("z-oldest", 0, 0)]
    assert by[("z-oldest", 1, 0)].shadowed_by is None
    assert [e.rank for e in table] == list(range(1, 8))


def test_grpc_and_tcp_precedence() -> None:
    result, _ = _compute("grpc-and-tcp-precedence")
    grpc = _listener(result, "Gateway apps/gw", "http").routing
    assert [(e.rule, e.shadowed_by is not None) for e in grpc] == [
        (1, False),
        (0, False),
        (2, True),
    ]
    tcp = _listener(result, "Gateway apps/gw", "tcp")
    assert tcp.attached_routes == 2  # both Accepted ...
    assert [(e.route.name, e.shadowed_by is not None) for e in tcp.routing] == [
        ("db-old", False),  # ... but only the oldest receives traffic
        ("db-new", True),
    ]


def test_missing_parents_write_no_status() -> None:
    result, _ = _compute("missing-parents")
    assert all(not p.writes_status for r in result.routes for p in r.parents)
    result, _ = _compute("missing-gatewayclass")
    parent = result.routes[0].parents[0]
    assert parent.conditions[0].status == "Unknown"
    assert not parent.writes_status


def test_listener_sets() -> None:
    result, _ = _compute("listenerset-attachment")
    refused = result.listener_set("team", "refused")
    accepted = result.listener_set("team", "accepted")
    assert refused is not None and accepted is not None
    assert (refused.attached, refused.conditions[0].reason) == (False, "NotAllowed")
    assert (accepted.attached, accepted.conditions[0].reason) == (True, "Accepted")
    gw = result.gateway("apps", "open")
    assert gw is not None and gw.attached_listener_sets == 1


def test_controller_names_filter_other_classes() -> None:
    loaded = io.load_inputs([str(GOLDEN / "basic-same-namespace" / "input.yaml")])
    objects = [item.obj for item in loaded.objects]
    mine = at.compute(objects, controller_names=frozenset({"kubectl-gw.dev/controller"}))
    other = at.compute(objects, controller_names=frozenset({"example.com/other"}))
    assert [g.key.name for g in mine.gateways] == ["gw"]
    assert mine.routes[0].parents[0].accepted
    assert other.gateways == [] and other.routes == []  # not ours: no status at all
