"""Envoy Gateway policies: attachment precedence, merging, parsing, and the RBAC compilation of
ordered allow/deny rules (checked against first-match semantics with hypothesis)."""

from __future__ import annotations

import base64
import ipaddress
import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller import egpolicy as eg
from controller import gatewayapi_to_ir, ir, translate
from controller.run import DEFAULT_CONTROLLER_NAME
from controller.xds import AdsServer
from kubectl_gw.io import load_inputs
from tests.unit import test_xds_envoy
from tests.unit.test_translate_golden import GOLDEN

GW_GROUP = "gateway.networking.k8s.io"
envoy_with_ads = test_xds_envoy.envoy_with_ads  # the fixture, shared
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
    assert grpc.unenforceable  # no backend to ask
    both = eg.security_policy(
        _policy("SecurityPolicy", "s", "", [], extAuth={"grpc": _AUTH, "http": _AUTH})
    )
    assert both.unenforceable
    extra = eg.security_policy(
        _policy("SecurityPolicy", "t", "", [], extAuth={"grpc": _AUTH, "recomputeRoute": True})
    )
    assert extra.unenforceable == ("SecurityPolicy app/t: extAuth.recomputeRoute not implemented",)


_AUTH = {"backendRefs": [{"name": "auth", "port": 9001}]}


def test_ext_auth_grpc_status_on_error_and_body() -> None:
    parsed = eg.security_policy(
        _policy(
            "SecurityPolicy",
            "grpc",
            "",
            [],
            extAuth={
                "grpc": _AUTH,
                "statusOnError": 503,
                "bodyToExtAuth": {"maxRequestBytes": 4096},
                "timeout": "250ms",
                "headersToExtAuth": ["x-user"],
            },
        )
    )
    assert not parsed.unenforceable
    assert parsed.ext_auth is not None
    assert (parsed.ext_auth.grpc, parsed.ext_auth.status_on_error) == (True, 503)
    assert (parsed.ext_auth.body_bytes, parsed.ext_auth.timeout_seconds) == (4096, 0.25)
    bad = eg.security_policy(
        _policy("SecurityPolicy", "bad", "", [], extAuth={"http": _AUTH, "statusOnError": 200})
    )
    assert bad.unenforceable


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


# --------------------------------------------------------------------------- ClientTrafficPolicy


def _ctp(name: str, created: str, refs: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return _policy("ClientTrafficPolicy", name, created, refs, **spec)


def test_client_policy_attaches_to_listener_then_listener_set_then_gateway() -> None:
    kind = "ClientTrafficPolicy"
    whole = _ctp("whole", "2026-01-01T00:00:00Z", [_gateway_ref()])
    section = _ctp("section", "2026-01-03T00:00:00Z", [_gateway_ref("https")])
    section_old = _ctp("section-old", "2026-01-02T00:00:00Z", [_gateway_ref("https")])
    set_ref = {"group": GW_GROUP, "kind": "ListenerSet", "name": "team"}
    whole_set = _ctp("whole-set", "2026-01-01T00:00:00Z", [set_ref])
    policies = eg.Policies([whole, section, section_old, whole_set])
    gateway = ("Gateway", "app", "gw")
    assert _name(policies.listener_policy(kind, gateway, "https", ("app", "gw"))) == "section-old"
    assert _name(policies.listener_policy(kind, gateway, "http", ("app", "gw"))) == "whole"
    team = ("ListenerSet", "app", "team")
    assert _name(policies.listener_policy(kind, team, "https", ("app", "gw"))) == "whole-set"
    other_set = ("ListenerSet", "app", "other")
    assert _name(policies.listener_policy(kind, other_set, "x", ("app", "gw"))) == "whole"
    assert eg.Policies([whole_set]).listener_policy(kind, gateway, "https", ("app", "gw")) is None


def test_client_tls_modes() -> None:
    def validation(**spec: Any) -> eg.ClientValidationSpec:
        ca = [{"name": "ca"}]
        parsed = eg.client_policy(
            _ctp("p", "", [], tls={"clientValidation": {"caCertificateRefs": ca, **spec}})
        )
        assert parsed.tls is not None and parsed.tls.validation is not None, parsed
        assert not parsed.unenforceable, parsed.unenforceable
        return parsed.tls.validation

    def flags(v: eg.ClientValidationSpec) -> tuple[bool, bool]:
        return v.require_certificate, v.accept_untrusted

    assert flags(validation()) == (True, False)  # RequireAndVerify by default
    assert flags(validation(optional=False)) == (True, False)
    assert flags(validation(optional=True)) == (False, False)  # VerifyIfGiven
    assert flags(validation(mode="Request")) == (False, True)
    assert flags(validation(mode="RequireAny")) == (True, True)
    assert flags(validation(mode="RequireAndVerify", optional=True)) == (True, False)
    no_ca = eg.client_policy(_ctp("p", "", [], tls={"clientValidation": {"optional": True}}))
    assert no_ca.unenforceable  # verifying needs a CA
    any_cert = eg.client_policy(_ctp("p", "", [], tls={"clientValidation": {"mode": "RequireAny"}}))
    assert not any_cert.unenforceable


def test_client_tls_values_envoy_would_reject_fail_closed() -> None:
    def problems(**tls: Any) -> tuple[str, ...]:
        return eg.client_policy(_ctp("p", "", [], tls=tls)).unenforceable

    assert problems(minVersion="1.2", maxVersion="1.3", ciphers=["AES128-SHA"]) == ()
    assert problems(ciphers=["[AES128-SHA|AES256-SHA]"]) == ()
    assert problems(ciphers=["RC4-MD5"])
    assert problems(ciphers=["[AES128-SHA|RC4]"])
    assert problems(minVersion="1.3", maxVersion="1.2")
    assert problems(minVersion="1.4")
    assert problems(ecdhCurves=["P-192"])
    assert problems(signatureAlgorithms=["md5"])
    assert problems(alpnProtocols=["spdy/3"])
    assert problems(alpnProtocols=[]) == ()  # ALPN off: allowed
    assert problems(clientValidation={"mode": "Request", "spkiHashes": ["short"]})
    assert problems(clientValidation={"mode": "Request", "certificateHashes": ["zz"]})
    assert problems(clientValidation={"mode": "Request", "subjectAltNames": {"x400": []}})
    assert problems(session={"resumption": {"stateless": {}}}) == ()
    assert problems(somethingNew=True)


def test_client_policy_other_fields_protect_or_not() -> None:
    def parsed(**spec: Any) -> eg.ClientPolicy:
        return eg.client_policy(_ctp("p", "", [], **spec))

    tuning = parsed(timeout={"http": {"idleTimeout": "5m"}}, http2={}, tcpKeepalive={})
    assert not tuning.unenforceable and len(tuning.notes) == 3
    assert parsed(clientIPDetection={"xForwardedFor": {"numTrustedHops": 1}}).unenforceable
    assert parsed(path={"escapedSlashesAction": "RejectRequest"}).unenforceable
    assert not parsed(path={"escapedSlashesAction": "KeepUnchanged"}).unenforceable
    assert parsed(headers={"withUnderscoresAction": "RejectRequest"}).unenforceable
    assert parsed(headers={"earlyRequestHeaders": {"remove": ["x-user"]}}).unenforceable
    cosmetic = parsed(headers={"enableEnvoyHeaders": True})
    assert not cosmetic.unenforceable and cosmetic.notes
    assert parsed(futureField={}).unenforceable


def test_pem_blocks_keep_only_well_formed_der() -> None:
    body = base64.b64encode(bytes([0x30, 0x03, 0x02, 0x01, 0x07])).decode()
    good = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
    truncated = base64.b64encode(bytes([0x30, 0x05, 0x02, 0x01])).decode()
    bad = f"-----BEGIN CERTIFICATE-----\n{truncated}\n-----END CERTIFICATE-----\n"
    junk = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
    crl = good.replace("CERTIFICATE", "X509 CRL")
    text = "comment\n" + good + bad + junk + crl
    assert eg.pem_blocks(text, "CERTIFICATE") == [good]
    assert eg.pem_blocks(text, "X509 CRL") == [crl]
    assert eg.pem_blocks("", "CERTIFICATE") == []


@given(st.binary(min_size=0, max_size=300))
def test_der_length_check_accepts_exactly_one_sequence(payload: bytes) -> None:
    if len(payload) < 0x80:
        der = bytes([0x30, len(payload)]) + payload
    else:
        der = bytes([0x30, 0x82]) + len(payload).to_bytes(2, "big") + payload
    assert eg._der_sequence(der)
    assert not eg._der_sequence(der + b"\x00")
    assert not eg._der_sequence(der[:-1]) or not payload


@pytest.mark.envoy
def test_real_envoy_accepts_every_tls_value_the_parser_accepts(
    envoy_with_ads: AdsServer,
) -> None:
    """Every cipher, curve and signature algorithm the parser lets through is one Envoy takes
    (a rejected listener would stop every later update)."""
    objects = [
        item.obj for item in load_inputs([str(GOLDEN / "client-tls" / "input.yaml")]).objects
    ]
    offset = random.randrange(20000, 40000, 1000)
    options = gatewayapi_to_ir.BuildOptions(listen_address="127.0.0.1", port_offset=offset)
    _result, built = gatewayapi_to_ir.compute_and_build(
        objects, frozenset({DEFAULT_CONTROLLER_NAME}), options
    )
    https = next(lis for lis in built.ir.listeners if lis.protocol == "HTTPS")
    variants = [
        {"ciphers": tuple(sorted(eg.CIPHER_SUITES))},
        {"ecdh_curves": tuple(sorted(eg.ECDH_CURVES))},
        {"signature_algorithms": tuple(sorted(eg.SIGNATURE_ALGORITHMS))},
        {"alpn": tuple(sorted(eg.ALPN_PROTOCOLS))},
        {"alpn": ()},
        *({"min_version": v, "max_version": "Auto"} for v in eg.TLS_VERSIONS),
    ]
    for variant in variants:
        chains = tuple(
            replace(c, tls=replace(c.tls, **variant)) if c.tls is not None else c
            for c in https.filter_chains
        )
        listeners = tuple(
            replace(lis, filter_chains=chains) if lis is https else lis
            for lis in built.ir.listeners
        )
        model = replace(built.ir, listeners=listeners)
        generation = envoy_with_ads.set_resources(translate.translate(model))
        synced = envoy_with_ads.wait_synced(generation, 15)
        nacks = [n.message for n in envoy_with_ads.nacks]
        assert synced and not nacks, f"{variant}: {nacks or 'timeout'}"


def test_client_tls_golden_verdicts_and_notes() -> None:
    """What the client-tls golden's listeners report: served, or not served and why."""
    objects = [
        item.obj for item in load_inputs([str(GOLDEN / "client-tls" / "input.yaml")]).objects
    ]
    _result, built = gatewayapi_to_ir.compute_and_build(
        objects, frozenset({DEFAULT_CONTROLLER_NAME}), gatewayapi_to_ir.BuildOptions()
    )
    verdicts = {key.name: (ok, reason) for key, (ok, reason, _m) in built.programmed.items()}
    assert verdicts == {
        "default": (True, "Programmed"),
        "strict": (True, "Programmed"),
        "optional": (True, "Programmed"),
        "any-cert": (True, "Programmed"),
        "http": (True, "Programmed"),
        "no-grant": (False, "Invalid"),
        "bad-cipher": (False, "Invalid"),
        "client-ip": (False, "Invalid"),
    }
    messages = {key.name: m for key, (_ok, _r, m) in built.programmed.items()}
    assert "no ReferenceGrant in elsewhere" in messages["no-grant"]
    assert "NOT-A-CIPHER" in messages["bad-cipher"]
    assert "clientIPDetection" in messages["client-ip"]
    assert any("no listener 'strcit'" in n for n in built.notes), built.notes
    chains = {c.name: c for lis in built.ir.listeners for c in lis.filter_chains}
    strict = chains["infra/gw/strict"].tls
    assert strict is not None and strict.client_validation is not None
    assert strict.client_validation.ca_secret == "clienttrafficpolicy/infra/strict/ca"
    assert strict.client_validation.require_certificate
    default = chains["infra/gw/default"].tls  # the Gateway-wide policy
    assert default is not None and default.alpn == ("http/1.1",)
    assert default.client_validation is None
    secrets = {s.name: s for s in built.ir.secrets}
    assert secrets["clienttrafficpolicy/infra/strict/ca"].crl.startswith("-----BEGIN X509 CRL")
