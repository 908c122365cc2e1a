"""The migration examples end to end: ``kubectl gw migrate -f examples/... --apply`` into the
real test cluster, our controller with the real Envoy serving the result, and requests landing
where the original ingress-nginx semantics say.

The example's namespaces are suffixed per run (``shop`` → ``shop-<id>``, also inside the
auth-url annotation) so the shared cluster never sees two runs collide; hostnames stay as they
are. Services are selector-less with EndpointSlices pointing at echo backends in the test
network namespace, with the example's port numbers; TLS Secrets are self-signed certificates
made here.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kubectl_gw import cli
from tests.cluster.controller_harness import (
    Running,
    TlsSession,
    start_controller,
    tls_request,
    wait_for,
)
from tests.realparts import certs, facts
from tests.realparts.backends import register_service
from tests.realparts.envoy_fixtures import EchoBackendsFactory

pytestmark = [pytest.mark.cluster, pytest.mark.envoy]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _sans(der: bytes) -> list[str]:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return list(
        cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
    )


def _tls_secret(kube_api: Any, namespace: str, name: str, hosts: list[str]) -> None:
    from kubernetes import client

    core: Any = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(namespace, certs.tls_secret(namespace, name, hosts))


def _localized(source: Path, target: Path, renames: dict[str, str]) -> None:
    """Copy the example with its namespaces renamed (``namespace:`` fields and auth URLs)."""
    target.mkdir(parents=True)
    for path in sorted(source.glob("*.yaml")):
        text = path.read_text()
        for old, new in renames.items():
            text = re.sub(rf"(namespace:\s*){old}\b", rf"\g<1>{new}", text)
            text = text.replace(f".{old}.svc", f".{new}.svc")
        (target / path.name).write_text(text)


def test_ingress_nginx_example_serves_as_nginx_did(
    kube_cluster: Any,
    kube_api: Any,
    envoy_binary: Path,
    echo_backends: EchoBackendsFactory,
    tmp_path: Path,
) -> None:
    from kubernetes import client

    suffix = uuid.uuid4().hex[:6]
    shop, docs, gateways = f"shop-{suffix}", f"docs-{suffix}", f"gw-{suffix}"
    core = client.CoreV1Api(kube_api)
    for ns in (shop, docs, gateways):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        # Backends behind the example's Services (same names and port numbers), plus the
        # auth service the api Ingress's auth-url names.
        storefront = echo_backends(["storefront-1", "storefront-2"], routable=True)
        canary = echo_backends(["storefront-canary"], routable=True)
        api = echo_backends(["api"], routable=True)
        auth = echo_backends(["auth"], routable=True)
        docs_backend = echo_backends(["docs"], routable=True)
        register_service(kube_api, shop, "storefront", storefront)
        register_service(kube_api, shop, "storefront-canary", canary)
        register_service(kube_api, shop, "api", api, port=8080)
        register_service(kube_api, shop, "auth", auth)
        register_service(kube_api, docs, "docs", docs_backend)
        _tls_secret(kube_api, shop, "shop-tls", ["shop.example.com", "www.shop.example.com"])
        _tls_secret(kube_api, shop, "orders-tls", ["orders.shop.example.com"])
        source = tmp_path / "ingress-nginx"
        _localized(EXAMPLES / "ingress-nginx", source, {"shop": shop, "docs": docs})

        with start_controller(
            kube_cluster.kubeconfig,
            envoy_binary,
            tmp_path / "envoy",
            ports=(80, 443),
            prefix="examples",
        ) as running:
            started = time.monotonic()
            code = cli.run(
                [
                    "migrate",
                    "-f",
                    str(source),
                    "--kubeconfig",
                    str(kube_cluster.kubeconfig),
                    "--gateway-class",
                    running.class_name,
                    "--gateway-namespace",
                    gateways,
                    "--apply",
                ]
            )
            assert code == 0, "migrate --apply failed"
            _check_ingress_nginx_semantics(running, api_seen=api, auth_seen=auth)
            facts.record(
                "examples e2e: ingress-nginx example migrated, applied and serving as nginx "
                f"did {time.monotonic() - started:.1f} s after migrate --apply"
            )
    finally:
        for ns in (shop, docs, gateways):
            core.delete_namespace(ns, _request_timeout=10)


def _check_ingress_nginx_semantics(running: Running, api_seen: Any, auth_seen: Any) -> None:
    sessions: dict[str, TlsSession] = {}
    try:
        _check(running, api_seen, auth_seen, sessions)
    finally:
        for session in sessions.values():
            session.close()


def _check(
    running: Running, api_seen: Any, auth_seen: Any, sessions: dict[str, TlsSession]
) -> None:
    https = running.port(443)

    def shop(path: str, host: str = "shop.example.com", **kwargs: Any) -> Any:
        session = sessions.get(host) or sessions.setdefault(host, TlsSession(https, host))
        answer = session.request(path, **kwargs)
        assert host in _sans(session.certificate), "the certificate of the SNI's listener"
        return answer

    # The whole shop is programmed (the last objects in the apply order are policies).
    wait_for(
        lambda: tls_request(https, "/api/ready", host="shop.example.com")[0].status == 200,
        30,
        "https://shop.example.com/api",
    )

    # ssl-redirect: plain HTTP answers 308 to the same URL on https.
    plain = running.request("/checkout?step=2", host="shop.example.com")
    assert plain.status == 308
    assert plain.header("location") == "https://shop.example.com/checkout?step=2"
    assert running.request("/", host="www.shop.example.com").status == 308

    # The storefront (regex mode host: case-insensitive prefixes), canary weight 10 %.
    total = 300
    counts = Counter(shop(f"/Item/{i}").backend for i in range(total))
    assert set(counts) == {"storefront-1", "storefront-2", "storefront-canary"}, counts
    share = counts["storefront-canary"] / total
    assert 0.05 <= share <= 0.16, counts
    # canary-by-cookie: "always" → canary, "never" → the main backend, whatever the weight.
    always = {shop("/", headers={"Cookie": "a=1; beta=always"}).backend for _ in range(15)}
    assert always == {"storefront-canary"}
    never = {shop("/", headers={"Cookie": "beta=never"}).backend for _ in range(30)}
    assert never <= {"storefront-1", "storefront-2"}
    assert shop("/checkout").backend.startswith("storefront")
    assert shop("/", host="www.shop.example.com").backend in ("storefront-1", "storefront-2")

    # The API: /api(/|$)(.*) rewritten to /$2, CORS for the shop, auth-url checked first.
    before = len(auth_seen[0].requests)
    answer = shop("/api/v1/items?page=2")
    assert answer.backend == "api"
    assert api_seen[0].requests[-1]["path"] == "/v1/items"
    assert api_seen[0].requests[-1]["query"] == {"page": ["2"]}
    assert shop("/API").json()["path"] == "/"  # use-regex is case-insensitive
    checks = auth_seen[0].requests[before:]
    assert checks and {c["path"] for c in checks} == {"/verify"}, checks
    preflight = shop(
        "/api/v1/items",
        method="OPTIONS",
        headers={
            "Origin": "https://shop.example.com",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert preflight.status == 200
    assert preflight.header("access-control-allow-origin") == "https://shop.example.com"
    assert preflight.header("access-control-allow-credentials") == "true"
    foreign = shop(
        "/api/v1/items",
        method="OPTIONS",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert foreign.header("access-control-allow-origin") is None

    # Docs: plain HTTP, the default backend catches everything, the server alias too.
    assert running.request("/v1/guide", host="docs.example.com").backend == "docs"
    assert running.request("/elsewhere", host="docs.example.com").backend == "docs"
    assert running.request("/", host="documentation.example.com").backend == "docs"
    # Hosts no Ingress named are not served.
    assert running.request("/", host="unknown.example.com").status == 404
