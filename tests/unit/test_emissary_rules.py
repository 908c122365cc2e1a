"""Emissary's rules reproduced by the provider: canary weights, service syntax, paths, Host
association, and the listeners TCPMappings and Host TLS parameters get from the layout."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from converters.api import ExistingGateway, MigrateOptions
from converters.emissary import EmissaryOptions, convert_with
from converters.emissary.groups import WeightError, shares
from converters.emissary.hosts import HostIndex, HostIR
from converters.emissary.matching import duration, glob_compatible, path_plan, re2_escape
from converters.emissary.model import Src
from converters.emissary.service import ServiceError, parse
from converters.report import Conversion
from kubectl_gw.model import KubeObject, ObjectRef
from tests import gwapi_limits

EMISSARY = "getambassador.io/v3alpha1"


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([None], [100]),
        ([None, 10], [90, 10]),
        ([None, None, None], [33, 33, 34]),
        ([None, 15, None], [42, 15, 43]),
        ([None, 100], [0, 100]),
        ([30, 20], [30, 20]),
        ([None, None, None, None, 99], [0, 0, 0, 1, 99]),
    ],
)
def test_shares_follow_emissary(weights: list[int | None], expected: list[int]) -> None:
    assert shares(weights) == expected


@given(st.lists(st.one_of(st.none(), st.integers(0, 40)), min_size=2, max_size=8))
def test_shares_add_up_to_100_with_an_unweighted_member(weights: list[int | None]) -> None:
    if sum(w for w in weights if w is not None) > 100:
        with pytest.raises(WeightError):
            shares(weights)
        return
    got = shares(weights)
    assert all(0 <= s <= 100 for s in got)
    for w, s in zip(weights, got, strict=True):
        if w is not None:
            assert s == w
    if None in weights:
        assert sum(got) == 100


def test_weight_over_100_is_an_error() -> None:
    with pytest.raises(WeightError):
        shares([None, 101])
    with pytest.raises(WeightError):
        shares([70, 60])


@given(st.text(alphabet="/abcxyz.-_+*?()[]{}|^$\\", min_size=1, max_size=12))
def test_string_prefix_regex_is_exact(prefix: str) -> None:
    """The strict conversion matches exactly the paths that start with the prefix."""
    regex = re.compile(re2_escape(prefix) + ".*")
    for path in (prefix, prefix + "kind", prefix[:-1], "/" + prefix):
        assert bool(regex.fullmatch(path)) == path.startswith(prefix)


def test_man_does_not_become_pathprefix() -> None:
    plan = path_plan({"prefix": "/man", "service": "x"}, eg=True)
    assert plan.match == {"type": "RegularExpression", "value": "/man.*"}
    assert plan.regex_rewrite == {"pattern": "^/man", "substitution": "/"}
    plan = path_plan({"prefix": "/man/", "service": "x"}, eg=True)
    assert plan.match == {"type": "PathPrefix", "value": "/man/"}
    assert plan.rewrite == {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}


@pytest.mark.parametrize(
    ("text", "kind", "name", "namespace", "port"),
    [
        ("quote", "service", "quote", "ns", 80),
        ("quote:8080", "service", "quote", "ns", 8080),
        ("https://quote", "service", "quote", "ns", 443),
        ("quote.other", "service", "quote", "other", 80),
        ("quote.other.svc.cluster.local:9000", "service", "quote", "other", 9000),
        ("httpbin.org", "external", "httpbin.org", "", 80),
        ("127.0.0.1:8877", "local", "127.0.0.1", "", 8877),
    ],
)
def test_service_syntax(text: str, kind: str, name: str, namespace: str, port: int) -> None:
    t = parse(text, "ns", set(), set())
    assert (t.kind, t.name, t.namespace, t.port) == (kind, name, namespace, port)


@pytest.mark.parametrize("text", ["", "ftp://x", "x:99999", "bad_name"])
def test_bad_service(text: str) -> None:
    with pytest.raises(ServiceError):
        parse(text, "ns", set(), set())


def test_host_globs() -> None:
    assert glob_compatible("*", "a.example.com")
    assert glob_compatible("*.example.com", "a.example.com")
    assert not glob_compatible("*.example.com", "example.com")
    assert glob_compatible("shop.example.*", "shop.example.com")
    assert not glob_compatible("a.example.com", "b.example.com")


@pytest.mark.parametrize(
    ("ms", "text"), [(0, "0s"), (3000, "3s"), (1500, "1s500ms"), (120000, "2m"), (3600000, "1h")]
)
def test_durations(ms: int, text: str) -> None:
    assert duration(ms) == text


# --------------------------------------------------------------------------- Host association


def _associated_by_scan(
    hosts: list[HostIR], glob: str | None, host_regex: bool, labels: dict[str, str]
) -> list[HostIR]:
    """Emissary's IRHost.matches_httpgroup, tried against every Host (the reference)."""
    out = []
    for host in hosts:
        has_hostname = host_regex or bool(glob)
        host_match = host_regex or (bool(glob) and glob_compatible(host.hostname, str(glob)))
        if host.selector is not None:
            sel_match = all(labels.get(k) == v for k, v in host.selector.items())
            ok = (host_match and sel_match) if has_hostname else sel_match
        else:
            ok = host_match
        if ok:
            out.append(host)
    return out


GLOBS = st.sampled_from(
    [
        "*",
        "",
        "a.example.com",
        "b.example.com",
        "example.com",
        "a.example.com:8080",
        "*.example.com",
        "*.a.example.com",
        "a.example.*",
        ".example.com",
    ]
)
SELECTORS = st.one_of(st.none(), st.dictionaries(st.sampled_from("xy"), st.sampled_from("12")))


@given(
    st.lists(st.tuples(GLOBS, SELECTORS), max_size=8),
    st.one_of(st.none(), GLOBS),
    st.booleans(),
    st.dictionaries(st.sampled_from("xy"), st.sampled_from("12")),
)
def test_host_index_associates_like_a_scan_of_every_host(
    specs: list[tuple[str, dict[str, str] | None]],
    glob: str | None,
    host_regex: bool,
    labels: dict[str, str],
) -> None:
    hosts = []
    for i, (hostname, selector) in enumerate(specs):
        ref = ObjectRef(EMISSARY, "Host", "ns", f"h{i}")
        src = Src(ref, "Host", "v3alpha1", "ns", f"h{i}", {}, {"hostname": hostname})
        hosts.append(HostIR(src, hostname, hostname or None, selector, None))
    index = HostIndex(hosts)
    assert index.associated(glob, host_regex, labels) == _associated_by_scan(
        hosts, glob, host_regex, labels
    )
    if glob:
        assert index.compatible(glob) == [h for h in hosts if glob_compatible(h.hostname, glob)]


# --------------------------------------------------------------------------- TCP and TLS listeners


def _obj(kind: str, namespace: str, name: str, spec: dict[str, Any]) -> KubeObject:
    obj = {"apiVersion": EMISSARY, "kind": kind, "metadata": {"name": name, "namespace": namespace}}
    return {**obj, "spec": spec}  # type: ignore[typeddict-item]


def _convert(objects: list[KubeObject], **options: Any) -> Conversion:
    return convert_with(objects, MigrateOptions(**options), EmissaryOptions())


def _entry(conversion: Conversion, name: str, key: str) -> tuple[str, str, list[str]]:
    [entry] = [e for e in conversion.report.entries if e.source.name == name and e.key == key]
    return entry.status, entry.message, [f"{o.kind}/{o.name}" for o in entry.outputs]


def test_tcpmapping_on_the_http_port_is_an_error_and_the_http_listener_stays() -> None:
    objects = [
        _obj("Mapping", "web", "site", {"hostname": "*", "prefix": "/", "service": "site"}),
        _obj("TCPMapping", "data", "raw", {"port": 8080, "service": "raw:9000"}),
    ]
    conversion = _convert(objects)
    status, message, _ = _entry(conversion, "raw", "spec.port")
    assert status == "error"
    assert "port 80 is already an HTTP listener" in message
    assert not [o for o in conversion.objects if o["kind"] == "TCPRoute"]
    [gateway] = [o for o in conversion.objects if o["kind"] == "Gateway"]
    assert [lis["protocol"] for lis in gateway["spec"]["listeners"]] == ["HTTP"]


def test_tcpmapping_alone_gets_a_gateway_with_its_tcp_listener() -> None:
    conversion = _convert([_obj("TCPMapping", "data", "pg", {"port": 5432, "service": "pg:5432"})])
    [gateway] = [o for o in conversion.objects if o["kind"] == "Gateway"]
    assert [(lis["name"], lis["port"]) for lis in gateway["spec"]["listeners"]] == [
        ("tcp-5432", 5432)
    ]
    [route] = [o for o in conversion.objects if o["kind"] == "TCPRoute"]
    assert route["spec"]["parentRefs"][0]["sectionName"] == "tcp-5432"
    assert _entry(conversion, "pg", "spec.port")[2] == ["Gateway/envoy-gateway", "TCPRoute/pg"]


def test_tcpmapping_with_an_existing_gateway_says_what_it_needs() -> None:
    objects = [_obj("TCPMapping", "data", "pg", {"port": 5432, "service": "pg:5432"})]
    conversion = _convert(objects, gateway=ExistingGateway("infra", "edge", "web"))
    assert not [o for o in conversion.objects if o["kind"] == "Gateway"]
    [route] = [o for o in conversion.objects if o["kind"] == "TCPRoute"]
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "namespace": "infra",
            "name": "edge",
            "port": 5432,
        }
    ]
    status, message, _ = _entry(conversion, "pg", "spec.port")
    assert status == "partial"
    assert "the existing Gateway infra/edge needs a TCP listener on port 5432" in message


def test_tcp_listeners_past_64_go_into_a_listenerset() -> None:
    objects = [
        _obj("TCPMapping", "data", f"db{i:02d}", {"port": 10000 + i, "service": f"db{i}:5432"})
        for i in range(70)
    ]
    conversion = _convert(objects)
    counts = [
        (o["kind"], len(o["spec"]["listeners"]))
        for o in conversion.objects
        if "listeners" in o["spec"]
    ]
    assert counts == [("Gateway", 64), ("ListenerSet", 6)]
    [last] = [o for o in conversion.objects if o["metadata"]["name"] == "db69"]
    assert last["spec"]["parentRefs"][0]["kind"] == "ListenerSet"


def test_host_tls_parameters_reach_every_gateway_of_the_per_namespace_layout() -> None:
    objects = [
        _obj(
            "Host",
            "a",
            "secure",
            {
                "hostname": "s.example.com",
                "tlsSecret": {"name": "s-tls"},
                "tls": {"min_tls_version": "v1.2"},
            },
        ),
        _obj("Mapping", "a", "one", {"hostname": "s.example.com", "prefix": "/a/", "service": "x"}),
        _obj("Mapping", "b", "two", {"hostname": "s.example.com", "prefix": "/b/", "service": "y"}),
    ]
    conversion = _convert(objects, gateway_per_namespace=True)
    policies = [o for o in conversion.objects if o["kind"] == "ClientTrafficPolicy"]
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["a", "b"]
    for policy in policies:
        assert policy["spec"]["tls"] == {"minVersion": "1.2"}
        assert policy["spec"]["targetRefs"][0]["sectionName"] == "https-s-example-com"


def test_more_than_64_certificates_for_one_hostname_are_capped_and_reported() -> None:
    hosts = [
        _obj(
            "Host",
            f"team-{i:02d}",
            "edge",
            {"hostname": "shared.example.com", "tlsSecret": {"name": "tls"}},
        )
        for i in range(66)
    ]
    mapping = _obj(
        "Mapping", "web", "site", {"hostname": "shared.example.com", "prefix": "/", "service": "s"}
    )
    conversion = _convert([*hosts, mapping])
    assert not gwapi_limits.violations(conversion.objects)
    [https] = [
        lis
        for o in conversion.objects
        if o["kind"] == "Gateway"
        for lis in o["spec"]["listeners"]
        if lis["protocol"] == "HTTPS"
    ]
    assert len(https["tls"]["certificateRefs"]) == 64
    dropped = [
        e for e in conversion.report.entries if e.key == "spec.tlsSecret" and e.status == "error"
    ]
    assert len(dropped) == 2
    assert all("64 certificates, the most Gateway API allows" in e.message for e in dropped)


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 40), st.booleans())
@example(16, False)
@example(17, False)
@example(40, True)
def test_routes_past_32_parent_refs_are_split_into_copies(hosts: int, grpc: bool) -> None:
    objects = [
        _obj(
            "Host",
            "shop",
            f"site-{i:02d}",
            {
                "hostname": f"site-{i:02d}.example.com",
                "tlsSecret": {"name": f"site-{i:02d}"},
                "requestPolicy": {"insecure": {"action": "Route"}},
            },
        )
        for i in range(hosts)
    ]
    objects.append(_obj("AuthService", "auth", "authn", {"auth_service": "ext:3000"}))
    web: dict[str, Any] = {"hostname": "*", "prefix": "/", "service": "web"}
    web |= {"retry_policy": {"retry_on": "5xx"}, "bypass_auth": True}
    if grpc:
        web |= {"prefix": "/shop.Orders/", "rewrite": "", "grpc": True}
        web.pop("bypass_auth")
    objects.append(_obj("Mapping", "shop", "web", web))
    conversion = _convert(objects)
    assert not gwapi_limits.violations(conversion.objects)
    kind = "GRPCRoute" if grpc else "HTTPRoute"
    routes = [o for o in conversion.objects if o["kind"] == kind]
    assert len(routes) == -(-2 * hosts // 32)
    parents = [repr(p) for r in routes for p in r["spec"]["parentRefs"]]
    assert len(parents) == len(set(parents)) == 2 * hosts
    assert all(r["spec"]["rules"] == routes[0]["spec"]["rules"] for r in routes)
    names = sorted(r["metadata"]["name"] for r in routes)
    assert len(set(names)) == len(names)
    for policy_kind in ["BackendTrafficPolicy"] + ([] if grpc else ["SecurityPolicy"]):
        targeted = sorted(
            t["name"]
            for o in conversion.objects
            if o["kind"] == policy_kind
            for t in o["spec"]["targetRefs"]
            if t["kind"] == kind
        )
        assert targeted == names, policy_kind
    _status, _message, outputs = _entry(conversion, "web", "spec.service")
    assert sorted(o.split("/")[1] for o in outputs if o.startswith(kind)) == names
    if len(routes) > 1:
        assert "the same rules are written to" in _entry(conversion, "web", "spec.prefix")[1]
