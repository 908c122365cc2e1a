"""ingress-nginx provider: path semantics, RE2 checks, and behaviour checked outside goldens."""

from __future__ import annotations

import re
from typing import Any

import pytest

from converters.api import MigrateOptions
from converters.ingress_nginx import convert
from converters.ingress_nginx.paths import RegexError, check_re2, plain_match, regex_mode_match
from kubectl_gw.model import KubeObject
from tests import gwapi_limits

CLASS: KubeObject = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "IngressClass",
    "metadata": {"name": "nginx"},
    "spec": {"controller": "k8s.io/ingress-nginx"},
}


def ingress(
    name: str,
    host: str,
    *paths: tuple[str, str],
    ann: dict[str, str] | None = None,
    ns: str = "shop",
    ts: str = "",
) -> KubeObject:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if ann:
        meta["annotations"] = {f"nginx.ingress.kubernetes.io/{k}": v for k, v in ann.items()}
    if ts:
        meta["creationTimestamp"] = ts
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,  # type: ignore[typeddict-item]
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": p,
                                "pathType": t,
                                "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            }
                            for p, t in paths
                        ]
                    },
                }
            ],
        },
    }


def routes(objs: list[KubeObject]) -> list[KubeObject]:
    return [o for o in objs if o["kind"] == "HTTPRoute"]


@pytest.mark.parametrize("pattern", ["/(?=x)", "/(?<!x)y", "/(a)\\1", "/(?>a)", "/a++", "/(?P=n)"])
def test_re2_refuses_pcre_only_constructs(pattern: str) -> None:
    with pytest.raises(RegexError):
        check_re2(pattern)


@pytest.mark.parametrize("pattern", ["/api(/|$)(.*)", "^/v[0-9]+$", "/a\\\\1", "/[a-z]{2,3}"])
def test_re2_accepts_plain_regexes(pattern: str) -> None:
    check_re2(pattern)


def test_regex_mode_is_a_case_insensitive_prefix() -> None:
    match = regex_mode_match("/foo")
    assert match.value == "(?i)/foo.*"
    assert re.fullmatch(match.value, "/FOObar")
    assert re.fullmatch(regex_mode_match("/a|/b").value, "/bz")


def test_plain_matches() -> None:
    assert plain_match("/foo", "Prefix").type == "PathPrefix"
    assert plain_match("/foo", "Exact").type == "Exact"
    impl = plain_match("/foo.x", "ImplementationSpecific")
    assert impl.type == "RegularExpression" and re.fullmatch(impl.value, "/foo.xbar")
    assert not re.fullmatch(impl.value, "/fooyx")
    odd = plain_match("/a//b", "Prefix")
    assert odd.type == "RegularExpression" and re.fullmatch(odd.value, "/a//b/c")


def test_use_regex_on_one_ingress_switches_the_whole_host() -> None:
    objs = [
        CLASS,
        ingress("a", "h.example.com", ("/Exact", "Exact")),
        ingress("b", "h.example.com", ("/re", "Prefix"), ann={"use-regex": "true"}),
        ingress("c", "other.example.com", ("/x", "Exact")),
    ]
    out = convert(objs, MigrateOptions())
    types = {
        r["spec"]["hostnames"][0]: {
            m["path"]["type"] for rule in r["spec"]["rules"] for m in rule["matches"]
        }
        for r in routes(out.objects)
    }
    assert types == {"h.example.com": {"RegularExpression"}, "other.example.com": {"Exact"}}


def test_oldest_ingress_wins_a_duplicate_path() -> None:
    objs = [
        CLASS,
        ingress("new", "h.example.com", ("/", "Prefix"), ts="2025-01-01T00:00:00Z"),
        ingress("old", "h.example.com", ("/", "Prefix"), ns="other", ts="2020-01-01T00:00:00Z"),
    ]
    out = convert(objs, MigrateOptions())
    [route] = routes(out.objects)
    assert route["metadata"]["namespace"] == "other"
    loser = [
        e for e in out.report.entries if e.source.name == "new" and e.key.startswith("spec.rules")
    ]
    assert [e.status for e in loser] == ["error"]


def test_standard_target_emits_only_gateway_api_kinds() -> None:
    objs = [
        CLASS,
        ingress(
            "a",
            "h.example.com",
            ("/", "Prefix"),
            ann={"limit-rps": "5", "rewrite-target": "/$1", "affinity": "cookie"},
        ),
    ]
    out = convert(objs, MigrateOptions(target="standard"))
    assert {o["apiVersion"].split("/")[0] for o in out.objects} == {"gateway.networking.k8s.io"}
    statuses = {e.key.rsplit("/", 1)[-1]: e.status for e in out.report.entries}
    assert (
        statuses["limit-rps"] == statuses["rewrite-target"] == statuses["affinity"] == "unsupported"
    )


def test_every_annotation_once_even_when_unknown() -> None:
    objs = [
        CLASS,
        ingress(
            "a",
            "h.example.com",
            ("/", "Prefix"),
            ann={"made-up": "1", "server-snippet": "x", "enable-cors": "true"},
        ),
    ]
    out = convert(objs, MigrateOptions())
    keys = [e.key for e in out.report.entries if e.key.startswith("nginx.")]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 3


def test_custom_annotation_prefix() -> None:
    obj = ingress("a", "h.example.com", ("/", "Prefix"))
    obj["metadata"]["annotations"] = {"custom.io/use-regex": "true"}
    out = convert([CLASS, obj], MigrateOptions(annotation_prefix="custom.io"))
    [route] = routes(out.objects)
    assert route["spec"]["rules"][0]["matches"][0]["path"]["type"] == "RegularExpression"


@pytest.mark.parametrize("enabled", [True, False])
def test_conversion_pauses_the_cyclic_gc_and_restores_it(
    enabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import importlib

    module = importlib.import_module("converters.ingress_nginx.convert")
    seen: list[bool] = []
    run = module._Run.run

    def spy(self: Any) -> Any:
        seen.append(gc.isenabled())
        return run(self)

    monkeypatch.setattr(module._Run, "run", spy)
    (gc.enable if enabled else gc.disable)()
    try:
        convert([CLASS, ingress("a", "a.example.com", ("/", "Prefix"))], MigrateOptions())
        assert seen == [False]
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


def test_existing_gateway_certificate_note_is_said_once() -> None:
    """A host whose rules fill two HTTPRoutes asks twice for its HTTPS listener; the report
    says once what the existing Gateway must serve."""
    from converters.api import ExistingGateway

    ing = ingress("big", "a.example.com", *[(f"/p{i}", "Prefix") for i in range(20)])
    ing["spec"]["tls"] = [{"hosts": ["a.example.com"], "secretName": "a-tls"}]
    options = MigrateOptions(gateway=ExistingGateway("infra", "edge"))
    result = convert([CLASS, ing], options)
    [entry] = [e for e in result.report.entries if e.key == "spec.tls[0]"]
    assert entry.message.count("the existing Gateway infra/edge must serve") == 1
    assert len(routes(result.objects)) >= 2


def _alias_claims(result: Any) -> dict[str, tuple[str, str]]:
    return {
        f"{e.source.namespace}/{e.source.name}": (e.status, e.message)
        for e in result.report.entries
        if e.key == "nginx.ingress.kubernetes.io/server-alias"
    }


def test_an_alias_many_namespaces_claim_is_served_by_one_host_with_one_certificate() -> None:
    """The corpus bug: 70 namespaces give the same alias, each with its own TLS Secret. nginx
    serves the alias from the server first by hostname (it ignores the others' conflicting
    server name): one listener, one certificate, 69 Ingresses told who won."""
    objs: list[KubeObject] = [CLASS]
    for i in range(70):
        ing = ingress(
            f"app-{i:02d}",
            f"app.team-{69 - i:02d}.example.com",  # the oldest Ingress is not first by name
            ("/", "Prefix"),
            ann={"server-alias": "alias.example.net"},
            ns=f"team-{69 - i:02d}",
            ts=f"2020-01-01T00:00:{i:02d}Z",
        )
        ing["spec"]["tls"] = [{"secretName": f"tls-{i:02d}"}]
        objs.append(ing)
    result = convert(objs, MigrateOptions())
    assert not gwapi_limits.violations(result.objects)
    listeners = [
        lis
        for o in result.objects
        if o["kind"] in ("Gateway", "ListenerSet")
        for lis in o["spec"]["listeners"]
        if lis.get("hostname") == "alias.example.net"
    ]
    assert [lis["protocol"] for lis in listeners] == ["HTTP", "HTTPS"]
    [https] = [lis for lis in listeners if lis["protocol"] == "HTTPS"]
    assert https["tls"]["certificateRefs"] == [
        {"group": "", "kind": "Secret", "name": "tls-69", "namespace": "team-00"}
    ]
    with_alias = [
        r for r in routes(result.objects) if "alias.example.net" in r["spec"]["hostnames"]
    ]
    assert {r["metadata"]["namespace"] for r in with_alias} == {"team-00"}
    claims = _alias_claims(result)
    assert claims.pop("team-00/app-69") == (
        "converted",
        "extra hostnames on the host's routes and listeners (same certificate)",
    )
    assert {status for status, _m in claims.values()} == {"error"}
    assert len(claims) == 69
    _status, message = claims["team-05/app-64"]
    assert message == (
        "alias.example.net not served for app.team-05.example.com: it is already an alias of "
        "app.team-00.example.com (Ingress team-00/app-69), which comes first in nginx's server "
        "order (by hostname); nginx ignores the conflicting server name, and so does this "
        "conversion"
    )


def test_a_host_takes_its_aliases_from_its_oldest_ingress_that_has_any() -> None:
    objs = [
        CLASS,
        ingress("plain", "h.example.com", ("/a", "Prefix"), ts="2019-01-01T00:00:00Z"),
        ingress(
            "new",
            "h.example.com",
            ("/b", "Prefix"),
            ann={"server-alias": "new.example.net, same.example.net"},
            ts="2025-01-01T00:00:00Z",
        ),
        ingress(
            "old",
            "h.example.com",
            ("/c", "Prefix"),
            ann={"server-alias": "same.example.net"},
            ns="other",
            ts="2020-01-01T00:00:00Z",
        ),
    ]
    result = convert(objs, MigrateOptions())
    for route in routes(result.objects):
        assert route["spec"]["hostnames"] == ["h.example.com", "same.example.net"]
    claims = _alias_claims(result)
    assert claims["other/old"][0] == "converted"
    status, message = claims["shop/new"]
    assert status == "partial"  # same.example.net is served (by the older Ingress's list)
    assert "new.example.net not served for h.example.com: the host takes its aliases from " in (
        message
    )
    assert "Ingress other/old" in message


def test_custom_headers_past_16_are_reported_not_emitted() -> None:
    headers: KubeObject = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "many", "namespace": "shop"},
        "data": {f"X-H{i:02d}": "v" for i in range(20)},
    }
    ing = ingress("web", "h.example.com", ("/", "Prefix"), ann={"custom-headers": "many"})
    result = convert([CLASS, headers, ing], MigrateOptions())
    assert not gwapi_limits.violations(result.objects)
    [route] = routes(result.objects)
    [modifier] = [f for f in route["spec"]["rules"][0]["filters"] if "responseHeaderModifier" in f]
    names = [h["name"] for h in modifier["responseHeaderModifier"]["set"]]
    assert names == [f"X-H{i:02d}" for i in range(16)]
    [entry] = [e for e in result.report.entries if e.key.endswith("/custom-headers")]
    assert entry.status == "partial"
    assert entry.message.endswith("dropped: X-H16, X-H17, X-H18, X-H19")
