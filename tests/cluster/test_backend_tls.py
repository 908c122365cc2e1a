"""BackendTLSPolicy end to end against a real TLS backend: Envoy originates TLS and verifies the
backend with the CA the policy names, and fails closed when the policy cannot be enforced.

The backend is an echo server behind a TLS handshake (its own certificate, self-signed for
``secure.internal``), counting the TCP connections it accepts. Checked through the real Envoy:

- CA ConfigMap holding the backend's certificate → 200 from the backend (verified TLS);
- CA ConfigMap holding another certificate → the handshake is refused by Envoy (503), the
  backend saw a connection: verification happens;
- CA ConfigMap deleted → the policy has no valid CA: the share answers 500 and the backend sees
  no connection at all (no fallback to other CAs nor to no verification); the policy status
  says ``Accepted=False/NoValidCACertificate``, ``ResolvedRefs=False/InvalidCACertificateRef``;
- ``wellKnownCACertificates: System`` → verified against the host's CA bundle, which does not
  trust our test certificate: 503, never 200;
- the ConfigMap back → 200 again. An unrelated route answers 200 all along.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import controller_harness as h
from tests.realparts import facts
from tests.realparts.backends import EchoBackend, register_service
from tests.realparts.certs import self_signed
from tests.realparts.envoy_fixtures import EchoBackendsFactory

pytestmark = [pytest.mark.cluster, pytest.mark.envoy]

HOST = "btls.example.test"
SNI = "secure.internal"


@pytest.fixture
def running(kube_cluster: Any, envoy_binary: Path, tmp_path: Path) -> Iterator[h.Running]:
    with h.start_controller(
        kube_cluster.kubeconfig, envoy_binary, tmp_path / "envoy", prefix="btls"
    ) as run:
        yield run


class _TlsBackend:
    """Turn a started echo backend into a TLS one (same socket, wrapped) that counts the
    connections it accepts."""

    def __init__(self, backend: EchoBackend, workdir: Path) -> None:
        self.backend = backend
        self.cert_pem, key_pem = self_signed([SNI])
        cert_file, key_file = workdir / "backend.crt", workdir / "backend.key"
        cert_file.write_bytes(self.cert_pem)
        key_file.write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_file), str(key_file))
        server: Any = backend._server
        assert server is not None
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.accepted = 0
        plain_get_request = server.get_request

        def counting() -> tuple[socket.socket, Any]:
            conn, address = plain_get_request()
            self.accepted += 1
            return conn, address

        server.get_request = counting

    def status_on_a_new_connection(self, run: h.Running) -> int:
        """Drop Envoy's pooled connections (verified with the CA of their time), then ask."""
        server: Any = self.backend._server
        server.close_connections()
        return run.request("/secure/x", host=HOST).status

    def wait_status(self, run: h.Running, status: int) -> None:
        h.wait_for(
            lambda: self.status_on_a_new_connection(run) == status, 20, f"{status} on /secure"
        )


def _config_map(namespace: str, pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "backend-ca", "namespace": namespace},
        "data": {"ca.crt": pem.decode()},
    }


def _policy(namespace: str, validation: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": h.GW,
        "kind": "BackendTLSPolicy",
        "metadata": {"name": "secure", "namespace": namespace},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": "secure"}],
            "validation": {"hostname": SNI, **validation},
        },
    }


def _route(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": h.GW,
        "kind": "HTTPRoute",
        "metadata": {"name": "btls", "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": [HOST],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/secure"}}],
                    "backendRefs": [{"name": "secure", "port": 443}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/plain"}}],
                    "backendRefs": [{"name": "plain", "port": 80}],
                },
            ],
        },
    }


def _conditions(run: h.Running, policy: dict[str, Any]) -> dict[str, str]:
    ancestors = run.get(policy).get("status", {}).get("ancestors", [])
    return {
        c["type"]: f"{c['status']}/{c['reason']}"
        for a in ancestors
        if a.get("controllerName") == run.controller_name
        for c in a.get("conditions", [])
    }


def test_backend_tls_verifies_and_fails_closed(
    running: h.Running,
    kube_api: Any,
    namespace: str,
    echo_backends: EchoBackendsFactory,
    tmp_path: Path,
) -> None:
    run = running
    (secure,) = echo_backends(["secure"], routable=True)
    tls = _TlsBackend(secure, tmp_path)
    register_service(kube_api, namespace, "secure", [secure], port=443)
    register_service(kube_api, namespace, "plain", echo_backends(["plain"], routable=True))
    run.apply(h.gateway(namespace, run.class_name))
    run.apply(_config_map(namespace, tls.cert_pem))
    policy = _policy(
        namespace, {"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "backend-ca"}]}
    )
    run.apply(policy)
    run.apply(_route(namespace))

    # 1. the right CA: verified TLS to the backend
    answer = run.wait_status("/secure/x", HOST, 200)
    assert answer.backend == "secure" and answer.json()["path"] == "/secure/x"
    h.wait_for(lambda: _conditions(run, policy).get("Accepted") == "True/Accepted", 15, "Accepted")

    # 2. another CA in the ConfigMap: Envoy refuses the handshake (the backend saw it)
    other, _ = self_signed([SNI])
    run.apply(_config_map(namespace, other))
    before = tls.accepted
    tls.wait_status(run, 503)
    assert tls.accepted > before, "Envoy did not even try: this is not verification failing"

    # 3. the ConfigMap gone: no valid CA; 500 for that rule, not a single connection made
    h.delete(run.cluster, _config_map(namespace, other))
    tls.wait_status(run, 500)
    before = tls.accepted
    answers = [run.request("/secure/x", host=HOST).status for _ in range(10)]
    assert answers == [500] * 10
    assert tls.accepted == before, "a connection reached the backend of an unusable policy"
    assert run.request("/plain/y", host=HOST).backend == "plain"  # the other rule is served
    h.wait_for(
        lambda: (
            _conditions(run, policy)
            == {
                "Accepted": "False/NoValidCACertificate",
                "ResolvedRefs": "False/InvalidCACertificateRef",
            }
        ),
        15,
        "NoValidCACertificate status",
    )

    # 4. the system CAs: verification against the host bundle, which does not trust us
    run.apply(_policy(namespace, {"wellKnownCACertificates": "System"}))
    before = tls.accepted
    tls.wait_status(run, 503)
    assert tls.accepted > before
    assert {run.request("/secure/x", host=HOST).status for _ in range(5)} == {503}

    # 5. back to the right CA: served again
    run.apply(_config_map(namespace, tls.cert_pem), policy)
    assert run.wait_status("/secure/x", HOST, 200).backend == "secure"
    facts.record(
        "BackendTLSPolicy against a real TLS backend: right CA 200; wrong CA 503 (handshake "
        "refused by Envoy); CA ConfigMap missing 500 with no connection to the backend "
        "(fails closed) + NoValidCACertificate; wellKnownCACertificates System verified "
        "against the host bundle (503 for an untrusted backend)"
    )
