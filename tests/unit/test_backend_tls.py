"""BackendTLSPolicy in the IR builder fails closed (Gateway API v1.4+ BackendTLSPolicyValidation):
a policy whose CA references are all unusable (missing ConfigMap, no PEM ``ca.crt``, another
kind) or whose ``wellKnownCACertificates`` is not supported gives its backend no cluster: that
share answers 500, never an unverified or differently verified TLS connection. The verdict
agrees with the policy status ``controller.policy_status`` writes for the same objects."""

from __future__ import annotations

from typing import Any

import pytest

from controller import gatewayapi_to_ir, ir, policy_status
from tests.realparts import certs

GW = "gateway.networking.k8s.io/v1"
OURS = "kubectl-gw.dev/test"
CA = certs.self_signed(["ca.example"])[0].decode()
SECURE = "svc/app/secure/443"


def _objects(validation: dict[str, Any], *extra: dict[str, Any]) -> list[dict[str, Any]]:
    def meta(name: str, ns: str | None = "app") -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"}
        if ns:
            out["namespace"] = ns
        return out

    def service(name: str, port: int, port_name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(name),
            "spec": {"ports": [{"name": port_name, "port": port, "targetPort": port}]},
        }

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}},
        {
            "apiVersion": GW,
            "kind": "GatewayClass",
            "metadata": meta("ours", None),
            "spec": {"controllerName": OURS},
        },
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": meta("gw"),
            "spec": {
                "gatewayClassName": "ours",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
        {
            "apiVersion": GW,
            "kind": "HTTPRoute",
            "metadata": meta("web"),
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/secure"}}],
                        "backendRefs": [
                            {"name": "secure", "port": 443, "weight": 3},
                            {"name": "plain", "port": 80, "weight": 1},
                        ],
                    },
                ],
            },
        },
        service("secure", 443, "https"),
        service("plain", 80, "http"),
        {
            "apiVersion": GW,
            "kind": "BackendTLSPolicy",
            "metadata": meta("secure"),
            "spec": {
                "targetRefs": [{"group": "", "kind": "Service", "name": "secure"}],
                "validation": {"hostname": "secure.internal", **validation},
            },
        },
        *extra,
    ]


def _config_map(name: str, ca: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "app"},
        "data": {"ca.crt": ca},
    }


def _ref(name: str, kind: str = "ConfigMap") -> dict[str, Any]:
    return {"group": "", "kind": kind, "name": name}


def _build(objects: list[dict[str, Any]]) -> tuple[gatewayapi_to_ir.BuildResult, list[Any]]:
    result, built = gatewayapi_to_ir.compute_and_build(
        objects,  # type: ignore[arg-type]
        frozenset({OURS}),
        gatewayapi_to_ir.BuildOptions("127.0.0.1", 0),
    )
    verdicts = policy_status.compute(objects, result, built.notes, built.policy_problems)  # type: ignore[arg-type]
    return built, verdicts


def _shares(built: gatewayapi_to_ir.BuildResult) -> list[tuple[str | None, int]]:
    (route,) = [
        r
        for lis in built.ir.listeners
        for chain in lis.filter_chains
        for vhost in chain.route_config.virtual_hosts
        for r in vhost.routes
    ]
    assert isinstance(route.action, ir.Forward)
    return [(b.cluster, b.weight) for b in route.action.backends]


def _accepted(verdicts: list[Any]) -> tuple[str, str]:
    (verdict,) = [v for v in verdicts if v.kind == "BackendTLSPolicy"]
    (ancestor,) = verdict.ancestors
    (accepted,) = [c for c in ancestor.conditions if c.type == "Accepted"]
    return accepted.status, accepted.reason


@pytest.mark.parametrize(
    ("case", "validation", "extra"),
    [
        ("missing ConfigMap", {"caCertificateRefs": [_ref("gone")]}, []),
        ("no PEM in ca.crt", {"caCertificateRefs": [_ref("ca")]}, [_config_map("ca", "junk")]),
        (
            "a PEM block that is no certificate",
            {"caCertificateRefs": [_ref("ca")]},
            [_config_map("ca", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")],
        ),
        ("a Secret (unsupported kind)", {"caCertificateRefs": [_ref("ca", "Secret")]}, []),
    ],
)
def test_no_usable_ca_fails_closed(
    case: str, validation: dict[str, Any], extra: list[dict[str, Any]]
) -> None:
    built, verdicts = _build(_objects(validation, *extra))
    # the TLS backend's share answers 500 (an invalid backend), the other share is untouched
    assert _shares(built) == [(None, 3), ("svc/app/plain/80", 1)], case
    assert SECURE not in {c.name for c in built.ir.clusters}
    assert any("app/secure port 443" in n and "answer 500" in n for n in built.notes)
    # and the policy status says why
    assert _accepted(verdicts) == ("False", "NoValidCACertificate"), case


def test_a_usable_ca_is_verified_against() -> None:
    built, verdicts = _build(
        _objects(
            {"caCertificateRefs": [_ref("gone"), _ref("ca")]},  # the first unusable: skipped
            _config_map("ca", CA),
        )
    )
    assert _shares(built) == [(SECURE, 3), ("svc/app/plain/80", 1)]
    (cluster,) = [c for c in built.ir.clusters if c.name == SECURE]
    assert cluster.tls == ir.UpstreamTLS(sni="secure.internal", ca_secret="configmap/app/ca")
    (secret,) = [s for s in built.ir.secrets if s.name == "configmap/app/ca"]
    assert secret.ca == CA
    assert _accepted(verdicts) == ("True", "Accepted")


def test_well_known_system_uses_the_system_cas_and_other_values_fail_closed() -> None:
    built, verdicts = _build(_objects({"wellKnownCACertificates": "System"}))
    (cluster,) = [c for c in built.ir.clusters if c.name == SECURE]
    assert cluster.tls == ir.UpstreamTLS(sni="secure.internal", ca_secret=None)  # host bundle
    assert _accepted(verdicts) == ("True", "Accepted")  # status and data plane agree
    built, verdicts = _build(_objects({"wellKnownCACertificates": "Unknown"}))
    assert _shares(built)[0] == (None, 3)
    assert _accepted(verdicts) == ("False", "Invalid")


def test_well_known_system_without_a_host_bundle_fails_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Envoy would refuse a cluster naming a CA file that does not exist (and then every later
    cluster update): the share answers 500 instead, and the status says why."""
    monkeypatch.setattr(ir, "system_ca_bundle", lambda: None)
    built, verdicts = _build(_objects({"wellKnownCACertificates": "System"}))
    assert _shares(built)[0] == (None, 3)
    assert SECURE not in {c.name for c in built.ir.clusters}
    assert _accepted(verdicts) == ("False", "Invalid")


def test_no_hostname_fails_closed() -> None:
    objects = _objects({"caCertificateRefs": [_ref("ca")]}, _config_map("ca", CA))
    del objects[6]["spec"]["validation"]["hostname"]
    built, _ = _build(objects)
    assert _shares(built)[0] == (None, 3)


def test_a_policy_for_another_port_name_does_not_apply() -> None:
    objects = _objects({"caCertificateRefs": [_ref("gone")]})
    objects[6]["spec"]["targetRefs"][0]["sectionName"] = "other-port"
    built, _ = _build(objects)
    (cluster,) = [c for c in built.ir.clusters if c.name == SECURE]
    assert cluster.tls is None
