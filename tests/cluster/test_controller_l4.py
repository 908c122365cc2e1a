"""TLSRoute, TCPRoute and UDPRoute end to end: objects in the real test cluster → our controller
→ the real Envoy → real L4 backends (TLS servers with their own certificates, TCP and UDP
echoes) behind Services and EndpointSlices in the test network.

One Gateway:

- ``pass`` (TLS Passthrough, :443) and ``https`` (HTTPS, :443, ``site.l4.test``) share a port,
  told apart by SNI: TLSRoutes ``a.l4.test`` → TLS backend A, ``b.l4.test`` → TLS backend B; an
  HTTPRoute for ``site.l4.test`` → an HTTP echo (the Gateway's certificate);
- ``term`` (TLS Terminate, :8443, ``*.term.l4.test``): a TLSRoute to a plain TCP echo;
- ``tcp`` (TCP, :5432): a TCPRoute split 3:1 over two TCP echoes;
- ``broken`` (TCP, :5433): a TCPRoute to a Service that does not exist;
- ``udp`` (UDP, :5353): a UDPRoute to a UDP echo.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.cluster.controller_harness import GW, Running, start_controller, tls_request, wait_for
from tests.realparts import facts
from tests.realparts.backends import EchoBackend, register_service, start_backends, stop_backends
from tests.realparts.certs import tls_secret
from tests.realparts.l4_backends import (
    L4Backend,
    l4_service,
    start_group,
    tcp_exchange,
    tls_exchange,
    udp_exchange,
)

pytestmark = [pytest.mark.cluster, pytest.mark.envoy]

PORTS = (443, 8443, 5432, 5433, 5353)


@dataclass
class Stage:
    running: Running
    namespace: str
    l4: dict[str, list[L4Backend]]
    web: list[EchoBackend]
    gateway_cert: bytes  # DER

    def port(self, gateway_port: int) -> int:
        return self.running.port(gateway_port)


def _route(kind: str, name: str, namespace: str, section: str, spec: dict[str, Any]) -> Any:
    return {
        "apiVersion": GW,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"parentRefs": [{"name": "gw", "sectionName": section}], **spec},
    }


def _refs(*items: tuple[str, int, int]) -> list[dict[str, Any]]:
    return [{"name": n, "port": p, "weight": w} for n, p, w in items]


@pytest.fixture(scope="module")
def stage(
    kube_cluster: Any,
    kube_api: Any,
    envoy_binary: Any,
    test_network: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    from kubernetes import client

    namespace = f"t-l4-{int(time.time()) % 100000}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    l4: dict[str, list[L4Backend]] = {}
    web: list[EchoBackend] = []
    try:
        l4["tls-a"] = start_group(["tls-a"], "tls", test_network)
        l4["tls-b"] = start_group(["tls-b"], "tls", test_network)
        l4["plain"] = start_group(["plain"], "tcp", test_network)
        l4["tcp-a"] = start_group(["tcp-a"], "tcp", test_network)
        l4["tcp-b"] = start_group(["tcp-b"], "tcp", test_network)
        l4["echo-udp"] = start_group(["echo-udp"], "udp", test_network)
        web = start_backends(["web"], routable=True, network=test_network)
        register_service(kube_api, namespace, "web", web)
        secret = tls_secret(namespace, "gw-cert", ["site.l4.test", "*.term.l4.test"])
        gateway_cert = ssl.PEM_cert_to_DER_cert(
            base64.b64decode(secret["data"]["tls.crt"]).decode()
        )
        workdir = tmp_path_factory.mktemp("l4-envoy")
        with start_controller(
            kube_cluster.kubeconfig, envoy_binary, workdir, ports=PORTS, prefix="l4"
        ) as running:
            objects: list[dict[str, Any]] = [secret]
            service_ports = {"tls-a": 443, "tls-b": 443, "plain": 9000, "tcp-a": 9000}
            service_ports |= {"tcp-b": 9000, "echo-udp": 53}
            for name, group in l4.items():
                objects += l4_service(namespace, name, group, service_ports[name])
            tls = {"mode": "Terminate", "certificateRefs": [{"name": "gw-cert"}]}
            objects.append(
                {
                    "apiVersion": GW,
                    "kind": "Gateway",
                    "metadata": {"name": "gw", "namespace": namespace},
                    "spec": {
                        "gatewayClassName": running.class_name,
                        "listeners": [
                            {
                                "name": "pass",
                                "port": 443,
                                "protocol": "TLS",
                                "tls": {"mode": "Passthrough"},
                            },
                            {
                                "name": "https",
                                "port": 443,
                                "protocol": "HTTPS",
                                "hostname": "site.l4.test",
                                "tls": tls,
                            },
                            {
                                "name": "term",
                                "port": 8443,
                                "protocol": "TLS",
                                "hostname": "*.term.l4.test",
                                "tls": tls,
                            },
                            {"name": "tcp", "port": 5432, "protocol": "TCP"},
                            {"name": "broken", "port": 5433, "protocol": "TCP"},
                            {"name": "udp", "port": 5353, "protocol": "UDP"},
                        ],
                    },
                }
            )
            ns = namespace
            objects += [
                _route("TLSRoute", "a", ns, "pass", {"hostnames": ["a.l4.test"], "rules": [
                    {"backendRefs": _refs(("tls-a", 443, 1))}]}),
                _route("TLSRoute", "b", ns, "pass", {"hostnames": ["b.l4.test"], "rules": [
                    {"backendRefs": _refs(("tls-b", 443, 1))}]}),
                _route("HTTPRoute", "site", ns, "https", {"rules": [
                    {"backendRefs": _refs(("web", 80, 1))}]}),
                _route("TLSRoute", "term", ns, "term", {"hostnames": ["x.term.l4.test"], "rules": [
                    {"backendRefs": _refs(("plain", 9000, 1))}]}),
                _route("TCPRoute", "split", ns, "tcp", {"rules": [
                    {"backendRefs": _refs(("tcp-a", 9000, 3), ("tcp-b", 9000, 1))}]}),
                _route("TCPRoute", "missing", ns, "broken", {"rules": [
                    {"backendRefs": _refs(("nothing-here", 9000, 1))}]}),
                _route("UDPRoute", "dns", ns, "udp", {"rules": [
                    {"backendRefs": _refs(("echo-udp", 53, 1))}]}),
            ]  # fmt: skip
            running.apply(*objects)
            yield Stage(running, namespace, l4, web, gateway_cert)
    finally:
        for group in l4.values():
            for backend in group:
                backend.stop()
        stop_backends(web)
        core.delete_namespace(namespace, _request_timeout=10)


def _tls_ok(stage: Stage, port: int, sni: str) -> tuple[bytes, bytes] | None:
    try:
        return tls_exchange(stage.port(port), sni, b"hello")
    except (OSError, ssl.SSLError):
        return None


# --------------------------------------------------------------------------- TLS


def test_tls_passthrough_by_sni(stage: Stage) -> None:
    started = time.monotonic()
    answer, cert = wait_for(lambda: _tls_ok(stage, 443, "a.l4.test"), 30, "a.l4.test via Envoy")
    facts.record(f"L4: first passthrough answer {time.monotonic() - started:.2f}s after start")
    assert answer == b"tls-a:hello"
    assert cert == stage.l4["tls-a"][0].certificate  # backend A's own: not terminated
    answer, cert = wait_for(lambda: _tls_ok(stage, 443, "b.l4.test"), 20, "b.l4.test")
    assert answer == b"tls-b:hello"
    assert cert == stage.l4["tls-b"][0].certificate
    assert cert != stage.gateway_cert
    # An SNI no chain claims: Envoy closes the connection (no handshake, no backend).
    before = sum(b.connections for g in stage.l4.values() for b in g)
    with pytest.raises((OSError, ssl.SSLError)):
        tls_exchange(stage.port(443), "c.l4.test", b"hello")
    assert sum(b.connections for g in stage.l4.values() for b in g) == before


def test_https_and_passthrough_share_the_port(stage: Stage) -> None:
    def https() -> Any:
        answer, cert = tls_request(stage.port(443), "/x", host="site.l4.test")
        return answer.status == 200 and (answer, cert)

    answer, cert = wait_for(https, 30, "HTTPS site.l4.test on the passthrough port")
    assert answer.backend == "web"
    assert cert == stage.gateway_cert  # terminated by Envoy with the Gateway's certificate
    got = wait_for(lambda: _tls_ok(stage, 443, "a.l4.test"), 20, "a.l4.test")
    assert got[1] == stage.l4["tls-a"][0].certificate


def test_tls_terminate_sends_plaintext(stage: Stage) -> None:
    answer, cert = wait_for(lambda: _tls_ok(stage, 8443, "x.term.l4.test"), 30, "x.term")
    assert answer == b"plain:hello"  # the backend is a plain TCP echo: it got cleartext
    assert cert == stage.gateway_cert
    assert b"hello\n" in stage.l4["plain"][0].received
    # Its only route is x.term.l4.test: another name under the listener's wildcard is refused.
    assert _tls_ok(stage, 8443, "y.term.l4.test") is None


# --------------------------------------------------------------------------- TCP and UDP


def test_tcp_route_weights(stage: Stage) -> None:
    port = stage.port(5432)
    wait_for(lambda: tcp_exchange(port, b"hi").startswith(b"tcp-"), 30, "TCPRoute answers")
    total = 400
    seen = Counter(tcp_exchange(port, b"x").split(b":")[0].decode() for _ in range(total))
    assert set(seen) == {"tcp-a", "tcp-b"}, seen
    share = seen["tcp-a"] / total
    facts.record(f"L4: TCPRoute 3:1 split over {total} connections: tcp-a {share:.2%}")
    assert 0.65 <= share <= 0.85, seen  # 75 % expected; 400 draws: sd about 2.2 %


def test_udp_route_echo(stage: Stage) -> None:
    port = stage.port(5353)

    def echo() -> bytes | None:
        try:
            return udp_exchange(port, b"ping", timeout=0.5)
        except OSError:
            return None

    assert wait_for(echo, 30, "UDPRoute echo") == b"echo-udp:ping"
    answers = {udp_exchange(port, f"n{i}".encode()) for i in range(20)}
    assert answers == {f"echo-udp:n{i}".encode() for i in range(20)}


# --------------------------------------------------------------------------- status


def _conditions(items: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in items}


def test_status_and_a_missing_backend(stage: Stage) -> None:
    running, ns = stage.running, stage.namespace
    gateway = {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "gw", "namespace": ns}}

    def programmed() -> Any:
        status = running.get(gateway).get("status") or {}
        listeners = {item["name"]: item for item in status.get("listeners") or []}
        ok = len(listeners) == 6 and all(
            _conditions(item.get("conditions") or []).get("Programmed", ("",))[0] == "True"
            for item in listeners.values()
        )
        return ok and listeners

    listeners = wait_for(programmed, 30, "every listener Programmed=True")
    assert listeners["pass"]["attachedRoutes"] == 2
    assert listeners["tcp"]["attachedRoutes"] == 1
    assert {k["kind"] for k in listeners["udp"]["supportedKinds"]} == {"UDPRoute"}

    def route_status(kind: str, name: str) -> dict[str, tuple[str, str]]:
        obj = running.get(
            {"apiVersion": GW, "kind": kind, "metadata": {"name": name, "namespace": ns}}
        )
        parents = [
            p
            for p in (obj.get("status") or {}).get("parents") or []
            if p.get("controllerName") == running.controller_name
        ]
        return _conditions(parents[0]["conditions"]) if parents else {}

    for kind, name in (
        ("TLSRoute", "a"),
        ("TLSRoute", "term"),
        ("TCPRoute", "split"),
        ("UDPRoute", "dns"),
    ):
        got = wait_for(lambda k=kind, n=name: route_status(k, n), 30, f"{kind} {name} status")
        assert got["Accepted"] == ("True", "Accepted"), (kind, name, got)
        assert got["ResolvedRefs"] == ("True", "ResolvedRefs"), (kind, name, got)
    missing = wait_for(lambda: route_status("TCPRoute", "missing"), 30, "missing status")
    assert missing["Accepted"] == ("True", "Accepted")
    assert missing["ResolvedRefs"] == ("False", "BackendNotFound")
    # Its connections are closed; every other route is still served.
    assert tcp_exchange(stage.port(5433), b"hi") == b""
    assert tcp_exchange(stage.port(5432), b"hi").startswith(b"tcp-")
    assert udp_exchange(stage.port(5353), b"still") == b"echo-udp:still"


# --------------------------------------------------------------------------- migrate


def test_migrated_ssl_passthrough_ingress_is_served(
    stage: Stage, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ingress-nginx Ingress with ``ssl-passthrough``, converted by ``kubectl gw migrate``
    (a TLS Passthrough listener and a TLSRoute), applied and served by SNI through the same
    Envoy port as the Gateway above (another Gateway on port 443: merged by SNI)."""
    import json

    from kubectl_gw.cli import run

    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "pass",
            "namespace": stage.namespace,
            "annotations": {"nginx.ingress.kubernetes.io/ssl-passthrough": "true"},
        },
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "migrated.l4.test",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "tls-b", "port": {"number": 443}}},
                            }
                        ]
                    },
                }
            ],
        },
    }
    source = tmp_path / "ingress.json"
    source.write_text(json.dumps(ingress))
    capsys.readouterr()
    code = run(
        [
            "migrate",
            "-f",
            str(source),
            "--gateway-per-namespace",
            "--gateway-class",
            stage.running.class_name,
            "-o",
            "json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads(out)
    objects = doc["items"] if doc.get("kind") == "List" else [doc]
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Gateway", "TLSRoute"], kinds
    stage.running.apply(*objects)
    answer, cert = wait_for(
        lambda: _tls_ok(stage, 443, "migrated.l4.test"), 30, "the migrated passthrough"
    )
    assert answer == b"tls-b:hello"
    assert cert == stage.l4["tls-b"][0].certificate  # passed through, not terminated
    # The first Gateway's routes on the same port still answer.
    assert _tls_ok(stage, 443, "a.l4.test") == (b"tls-a:hello", stage.l4["tls-a"][0].certificate)
