"""Envoy Gateway ClientTrafficPolicy ``tls`` end to end: objects in the real test cluster → our
controller → the real Envoy, with TLS clients that present (or do not present) certificates.

One Gateway on port 443 with four HTTPS listeners, each with its own hostname (SNI):

- ``mtls``: clientValidation with the CA from a Secret, ``optional: false`` — a client without a
  certificate, or with one from another CA, is refused; one signed by the CA gets 200;
- ``optional``: the CA from a ConfigMap, ``optional: true`` — no certificate is fine, a
  certificate from another CA is refused;
- ``open``: no policy — nobody is asked for a certificate;
- ``broken``: its policy names a CA Secret that does not exist — fail closed: the listener is not
  served at all and its status says Programmed=False.

The backend is an Envoy Gateway ``Backend`` (an ``ip`` endpoint on a loopback echo server), so
the route's status also proves the attachment engine resolves that kind (ResolvedRefs=True).
Certificates are generated for the run with ``cryptography``.
"""

from __future__ import annotations

import datetime
import http.client
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.cluster.controller_harness import (
    EG,
    GW,
    Answer,
    Running,
    start_controller,
    tls_request,
    wait_for,
)
from tests.realparts import facts
from tests.realparts.backends import EchoBackend, start_backends, stop_backends

pytestmark = [pytest.mark.cluster, pytest.mark.envoy]

DOMAIN = "tls.example.test"


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _Authority:
    """A throwaway CA that issues server and client certificates into ``workdir``."""

    def __init__(self, workdir: Path, label: str) -> None:
        self.workdir, self.label = workdir, label
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"kubectl-gw test CA {label}"))
            .issuer_name(_name(f"kubectl-gw test CA {label}"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(f"*.{DOMAIN}")]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        stem = self.workdir / f"{self.label}-{name}"
        issued = Issued(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(_pem_key(key))
        return issued


# --------------------------------------------------------------------------- the stage


@dataclass
class Stage:
    running: Running
    namespace: str
    backend: EchoBackend
    client: Issued  # signed by the CA the listeners trust
    rogue: Issued  # signed by another CA
    server_der: bytes

    def host(self, listener: str) -> str:
        return f"{listener}.{DOMAIN}"

    def get(self, listener: str, path: str = "/", client: Issued | None = None) -> Answer:
        answer, _cert = tls_request(
            self.running.port(443),
            path,
            host=self.host(listener),
            client_cert=(client.cert, client.key) if client is not None else None,
        )
        return answer


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _listener(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "port": 443,
        "protocol": "HTTPS",
        "hostname": f"{name}.{DOMAIN}",
        "tls": {"certificateRefs": [{"name": "server-cert"}]},
    }


def _client_policy(namespace: str, listener: str, validation: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": EG,
        "kind": "ClientTrafficPolicy",
        "metadata": {"name": listener, "namespace": namespace},
        "spec": {
            "targetRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "gw",
                    "sectionName": listener,
                }
            ],
            "tls": {"clientValidation": validation},
        },
    }


@pytest.fixture(scope="module")
def stage(
    kube_cluster: Any,
    kube_api: Any,
    envoy_binary: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    from kubernetes import client

    workdir = tmp_path_factory.mktemp("controller-tls")
    trusted = _Authority(workdir, "trusted")
    other = _Authority(workdir, "other")
    server = trusted.issue("server", server=True)
    client_cert = trusted.issue("client", server=False)
    rogue = other.issue("client", server=False)

    namespace = f"t-ctl-tls-{int(time.time()) % 100000}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    backends = start_backends(["app"])
    try:
        with start_controller(
            kube_cluster.kubeconfig, envoy_binary, workdir, ports=(443,), prefix="tls"
        ) as running:
            ns = namespace
            running.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "server-cert", "namespace": ns},
                    "type": "kubernetes.io/tls",
                    "data": {
                        "tls.crt": _b64(server.cert.read_bytes()),
                        "tls.key": _b64(server.key.read_bytes()),
                    },
                },
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "client-ca", "namespace": ns},
                    "data": {"ca.crt": _b64(trusted.pem)},
                },
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "client-ca", "namespace": ns},
                    "data": {"ca.crt": trusted.pem.decode()},
                },
                {
                    "apiVersion": EG,
                    "kind": "Backend",
                    "metadata": {"name": "app", "namespace": ns},
                    "spec": {
                        "endpoints": [
                            {"ip": {"address": backends[0].address, "port": backends[0].port}}
                        ]
                    },
                },
                _client_policy(
                    ns,
                    "mtls",
                    {
                        "caCertificateRefs": [{"group": "", "kind": "Secret", "name": "client-ca"}],
                        "optional": False,
                    },
                ),
                _client_policy(
                    ns,
                    "optional",
                    {
                        "caCertificateRefs": [
                            {"group": "", "kind": "ConfigMap", "name": "client-ca"}
                        ],
                        "optional": True,
                    },
                ),
                _client_policy(
                    ns,
                    "broken",
                    {"caCertificateRefs": [{"group": "", "kind": "Secret", "name": "no-such-ca"}]},
                ),
                {
                    "apiVersion": GW,
                    "kind": "Gateway",
                    "metadata": {"name": "gw", "namespace": ns},
                    "spec": {
                        "gatewayClassName": running.class_name,
                        "listeners": [
                            _listener(name) for name in ("mtls", "optional", "open", "broken")
                        ],
                    },
                },
                {
                    "apiVersion": GW,
                    "kind": "HTTPRoute",
                    "metadata": {"name": "web", "namespace": ns},
                    "spec": {
                        "parentRefs": [{"name": "gw"}],
                        "rules": [
                            {
                                "backendRefs": [
                                    {
                                        "group": "gateway.envoyproxy.io",
                                        "kind": "Backend",
                                        "name": "app",
                                    }
                                ]
                            }
                        ],
                    },
                },
            )
            stage = Stage(
                running,
                ns,
                backends[0],
                client_cert,
                rogue,
                x509.load_pem_x509_certificate(server.cert.read_bytes()).public_bytes(
                    serialization.Encoding.DER
                ),
            )
            started = time.monotonic()
            wait_for(lambda: stage.get("open").status == 200, 30, "the open listener")
            facts.record(
                f"controller tls: HTTPS listeners served {time.monotonic() - started:.2f}s "
                "after the objects were applied"
            )
            yield stage
    finally:
        stop_backends(backends)
        core.delete_namespace(namespace, _request_timeout=10)


def _refused(stage: Stage, listener: str, client: Issued | None) -> str:
    """The error a request gets when Envoy refuses the client's certificate (or its absence).

    With TLS 1.3 the client's side of the handshake completes before the server has checked
    the certificate; the refusal (an alert, or the connection closed) surfaces on the request.
    """
    try:
        answer = stage.get(listener, client=client)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError) as err:
        return type(err).__name__ + ": " + str(err)
    raise AssertionError(f"{listener}: expected a refused handshake, got HTTP {answer.status}")


# --------------------------------------------------------------------------- tests


def test_mtls_refuses_a_client_without_a_certificate(stage: Stage) -> None:
    # The policy is in force once a signed client gets through (the listener is programmed).
    wait_for(lambda: stage.get("mtls", client=stage.client).status == 200, 30, "the mTLS listener")
    before = len(stage.backend.requests)
    error = _refused(stage, "mtls", None)
    facts.record(f"controller tls: a client without a certificate got {error[:120]}")
    assert len(stage.backend.requests) == before, "a request without a certificate got through"


def test_mtls_refuses_a_certificate_from_another_ca(stage: Stage) -> None:
    wait_for(lambda: stage.get("mtls", client=stage.client).status == 200, 30, "the mTLS listener")
    before = len(stage.backend.requests)
    _refused(stage, "mtls", stage.rogue)
    assert len(stage.backend.requests) == before


def test_mtls_accepts_a_certificate_signed_by_the_ca(stage: Stage) -> None:
    marker = f"/signed/{time.monotonic_ns()}"
    answer = wait_for(
        lambda: (a := stage.get("mtls", marker, client=stage.client)).status == 200 and a,
        30,
        "200 with a signed client certificate",
    )
    assert answer.backend == "app"
    assert stage.backend.requests[-1]["path"] == marker


def test_optional_validation_allows_no_certificate_but_not_a_bad_one(stage: Stage) -> None:
    wait_for(lambda: stage.get("optional").status == 200, 30, "the optional listener")
    assert stage.get("optional", client=stage.client).backend == "app"
    _refused(stage, "optional", stage.rogue)


def test_listener_without_a_policy_asks_for_nothing(stage: Stage) -> None:
    answer, certificate = tls_request(
        stage.running.port(443), "/", host=stage.host("open"), client_cert=None
    )
    assert answer.backend == "app"
    assert certificate == stage.server_der


def test_unenforceable_policy_fails_closed_with_status(stage: Stage) -> None:
    gateway = {
        "apiVersion": GW,
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": stage.namespace},
    }

    def conditions() -> dict[str, dict[str, dict[str, Any]]]:
        status = stage.running.get(gateway).get("status") or {}
        return {
            str(lis["name"]): {str(c["type"]): c for c in lis.get("conditions") or []}
            for lis in status.get("listeners") or []
        }

    def settled() -> dict[str, dict[str, dict[str, Any]]] | None:
        found = conditions()
        programmed = {name: c.get("Programmed", {}).get("status") for name, c in found.items()}
        want = {"mtls": "True", "optional": "True", "open": "True", "broken": "False"}
        return found if programmed == want else None

    found = wait_for(settled, 30, "listener status")
    broken = found["broken"]["Programmed"]
    assert broken["reason"] == "Invalid"
    assert "no-such-ca" in broken["message"], broken
    # Not served: the SNI of the broken listener gets no filter chain of its own. The default
    # chain does not exist either (every listener has a hostname), so the handshake fails.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        stage.get("broken")


def test_route_to_a_backend_kind_reports_resolved_refs(stage: Stage) -> None:
    route = {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": stage.namespace},
    }

    def resolved() -> dict[str, Any] | None:
        parents = (stage.running.get(route).get("status") or {}).get("parents") or []
        ours = [p for p in parents if p.get("controllerName") == stage.running.controller_name]
        if not ours:
            return None
        return {c["type"]: c for c in ours[0].get("conditions") or []}.get("ResolvedRefs")

    condition = wait_for(resolved, 30, "the route's ResolvedRefs condition")
    assert (condition["status"], condition["reason"]) == ("True", "ResolvedRefs"), condition
