"""Every routing feature end to end: objects in the real test cluster → our controller → the
real Envoy → real echo backends, whose JSON says which backend got the request, with which
path, host and headers.

One controller, one Gateway and one namespace serve the whole module; each test adds its own
HTTPRoute (and policies) under a hostname of its own, so the tests are independent.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from tests.cluster.controller_harness import EG, GW, Running, start_controller, wait_for
from tests.realparts import facts
from tests.realparts.backends import (
    EchoBackend,
    next_loopback_address,
    register_service,
    start_backends,
    stop_backends,
)

pytestmark = [pytest.mark.cluster, pytest.mark.envoy]


@dataclass
class Stage:
    running: Running
    namespace: str
    backends: dict[str, list[EchoBackend]]

    def route(self, name: str, rules: list[dict[str, Any]]) -> str:
        """Apply an HTTPRoute ``name`` on host ``<name>.example.test``; return the host."""
        host = f"{name}.example.test"
        self.running.apply(
            {
                "apiVersion": GW,
                "kind": "HTTPRoute",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [host], "rules": rules},
            }
        )
        return host

    def policy(
        self, kind: str, name: str, route: str, section: str | None, spec: dict[str, Any]
    ) -> None:
        target: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}
        target["name"] = route
        if section is not None:
            target["sectionName"] = section
        self.running.apply(
            {
                "apiVersion": EG,
                "kind": kind,
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"targetRefs": [target], **spec},
            }
        )

    def seen(self, service: str) -> list[dict[str, Any]]:
        return [r for b in self.backends[service] for r in b.requests]


def _ref(service: str, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": service, "port": 80}
    if weight is not None:
        ref["weight"] = weight
    return ref


def _prefix(value: str) -> list[dict[str, Any]]:
    return [{"path": {"type": "PathPrefix", "value": value}}]


class _Silent:
    """A TCP server inside the test network that accepts and never answers (timeouts)."""

    def __init__(self, network: Any) -> None:
        self.address = network.add_address()
        self.sock: socket.socket = network.listen(self.address)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture(scope="module")
def stage(
    kube_cluster: Any,
    kube_api: Any,
    envoy_binary: Any,
    test_network: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    from kubernetes import client

    namespace = f"t-features-{int(time.time()) % 100000}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    groups = {
        "a": ["a-1", "a-2"],
        "b": ["b"],
        "c": ["c"],
        "shadow": ["shadow"],
        "auth": ["auth"],
    }
    backends: dict[str, list[EchoBackend]] = {}
    silent = _Silent(test_network)
    try:
        for service, names in groups.items():
            backends[service] = start_backends(names, routable=True, network=test_network)
            register_service(kube_api, namespace, service, backends[service])
        register_service(
            kube_api, namespace, "silent", [EchoBackend("silent", silent.address, silent.port)]
        )
        workdir = tmp_path_factory.mktemp("features-envoy")
        with start_controller(
            kube_cluster.kubeconfig, envoy_binary, workdir, prefix="features"
        ) as running:
            running.apply(
                {
                    "apiVersion": GW,
                    "kind": "Gateway",
                    "metadata": {"name": "gw", "namespace": namespace},
                    "spec": {
                        "gatewayClassName": running.class_name,
                        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                    },
                }
            )
            yield Stage(running, namespace, backends)
    finally:
        silent.close()
        for group in backends.values():
            stop_backends(group)
        core.delete_namespace(namespace, _request_timeout=10)


# --------------------------------------------------------------------------- matching


def test_path_header_query_and_method_matches(stage: Stage) -> None:
    host = stage.route(
        "matches",
        [
            {
                "matches": [{"path": {"type": "Exact", "value": "/exact"}}],
                "backendRefs": [_ref("b")],
            },
            {"matches": _prefix("/prefix"), "backendRefs": [_ref("c")]},
            {
                "matches": [{"headers": [{"name": "X-Env", "value": "canary"}]}],
                "backendRefs": [_ref("c")],
            },
            {
                "matches": [{"queryParams": [{"name": "v", "value": "2"}]}],
                "backendRefs": [_ref("b")],
            },
            {
                "matches": [{"path": {"type": "Exact", "value": "/m"}, "method": "POST"}],
                "backendRefs": [_ref("c")],
            },
            {"matches": _prefix("/"), "backendRefs": [_ref("a")]},
        ],
    )
    stage.running.wait_status("/exact", host)
    get = stage.running.request
    assert get("/exact", host=host).backend == "b"
    assert get("/exact/more", host=host).backend in ("a-1", "a-2")  # Exact is exact
    assert get("/prefix", host=host).backend == "c"
    assert get("/prefix/x", host=host).backend == "c"
    assert get("/prefixed", host=host).backend in ("a-1", "a-2")  # segment-wise prefix
    assert get("/any", host=host, headers={"X-Env": "canary"}).backend == "c"
    assert get("/any?v=2", host=host).backend == "b"
    assert get("/any?v=3", host=host).backend in ("a-1", "a-2")
    assert get("/m", host=host, method="POST", body=b"x").backend == "c"
    assert get("/m", host=host).backend in ("a-1", "a-2")
    assert get("/exact", host="other.example.test").status == 404
    # kubectl-gw ranks RegularExpression paths after every PathPrefix (the spec leaves it to
    # implementations), so they get a host without a catch-all prefix.
    regex_host = stage.route(
        "matches-regex",
        [
            {
                "matches": [{"path": {"type": "RegularExpression", "value": "/re/[0-9]+"}}],
                "backendRefs": [_ref("b")],
            },
            {
                "matches": [{"path": {"type": "Exact", "value": "/re/exact"}}],
                "backendRefs": [_ref("c")],
            },
        ],
    )
    stage.running.wait_status("/re/123", regex_host)
    assert get("/re/exact", host=regex_host).backend == "c"
    assert get("/re/12a", host=regex_host).status == 404  # the regex matches the whole path
    assert get("/re/1/2", host=regex_host).status == 404


def test_weights_hold_within_tolerance(stage: Stage) -> None:
    host = stage.route(
        "weights", [{"matches": _prefix("/"), "backendRefs": [_ref("a", 80), _ref("b", 20)]}]
    )
    stage.running.wait_status("/", host)
    total = 600
    counts = Counter(stage.running.request(f"/w{i}", host=host).backend for i in range(total))
    b_share = counts["b"] / total
    assert set(counts) == {"a-1", "a-2", "b"}, counts
    assert 0.14 <= b_share <= 0.26, counts  # 20 % ± 6 points (binomial sd ≈ 1.6 points)
    facts.record(f"controller features: weight 80/20 over {total} requests gave b {b_share:.3f}")


# --------------------------------------------------------------------------- filters


def test_request_and_response_header_modifiers(stage: Stage) -> None:
    host = stage.route(
        "headers",
        [
            {
                "matches": _prefix("/"),
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {
                            "set": [{"name": "X-Set", "value": "set-by-gw"}],
                            "add": [{"name": "X-Add", "value": "added"}],
                            "remove": ["X-Drop"],
                        },
                    },
                    {
                        "type": "ResponseHeaderModifier",
                        "responseHeaderModifier": {
                            "set": [{"name": "X-Resp", "value": "r1"}],
                            "add": [{"name": "X-Resp-Add", "value": "r2"}],
                            "remove": ["X-Backend"],
                        },
                    },
                ],
                "backendRefs": [_ref("b")],
            }
        ],
    )
    stage.running.wait_status("/", host)
    answer = stage.running.request(
        "/h",
        host=host,
        headers={"X-Set": "client", "X-Add": "client", "X-Drop": "gone", "X-Keep": "kept"},
    )
    seen = answer.json()["headers"]
    assert seen["x-set"] == "set-by-gw"
    assert seen["x-add"] == "client, added"
    assert "x-drop" not in seen
    assert seen["x-keep"] == "kept"
    assert answer.header("x-resp") == "r1"
    assert answer.header("x-resp-add") == "r2"
    assert answer.header("x-backend") is None  # the echo's own header, removed


def test_request_redirects(stage: Stage) -> None:
    def redirect(spec: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "RequestRedirect", "requestRedirect": spec}]

    host = stage.route(
        "redirects",
        [
            {
                "matches": _prefix("/scheme"),
                "filters": redirect({"scheme": "https", "statusCode": 301}),
            },
            {
                "matches": _prefix("/moved"),
                "filters": redirect(
                    {
                        "hostname": "new.example.test",
                        "port": 8443,
                        "statusCode": 308,
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"},
                    }
                ),
            },
            {
                "matches": [{"path": {"type": "Exact", "value": "/old"}}],
                "filters": redirect(
                    {
                        "path": {"type": "ReplaceFullPath", "replaceFullPath": "/brand/new"},
                        "statusCode": 303,
                    }
                ),
            },
            {
                "matches": _prefix("/default"),
                "filters": redirect({"hostname": "elsewhere.example.test"}),
            },
        ],
    )
    stage.running.wait_status("/scheme", host, 301)
    get = stage.running.request
    scheme = get("/scheme/x?q=1", host=host)
    assert (scheme.status, scheme.header("location")) == (301, f"https://{host}/scheme/x?q=1")
    moved = get("/moved/deep/path", host=host)
    assert (moved.status, moved.header("location")) == (
        308,
        "http://new.example.test:8443/new/deep/path",
    )
    old = get("/old", host=host)
    assert old.status == 303
    assert old.header("location") == f"http://{host}/brand/new"
    default = get("/default/y", host=host)
    assert default.status == 302
    assert default.header("location") == "http://elsewhere.example.test/default/y"


def test_url_rewrites(stage: Stage) -> None:
    def rewrite(spec: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "URLRewrite", "urlRewrite": spec}]

    host = stage.route(
        "rewrites",
        [
            {
                "matches": _prefix("/prefix/one"),
                "filters": rewrite(
                    {
                        "hostname": "rewritten.example.test",
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/one"},
                    }
                ),
                "backendRefs": [_ref("b")],
            },
            {
                "matches": _prefix("/strip"),
                "filters": rewrite(
                    {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}
                ),
                "backendRefs": [_ref("b")],
            },
            {
                "matches": _prefix("/full"),
                "filters": rewrite(
                    {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/replaced"}}
                ),
                "backendRefs": [_ref("b")],
            },
        ],
    )
    stage.running.wait_status("/full", host)
    seen = stage.running.request("/prefix/one/two?x=1", host=host).json()
    assert (seen["path"], seen["host"], seen["query"]) == (
        "/one/two",
        "rewritten.example.test",
        {"x": ["1"]},
    )
    assert stage.running.request("/strip/a/b", host=host).json()["path"] == "/a/b"
    assert stage.running.request("/strip", host=host).json()["path"] == "/"
    full = stage.running.request("/full/any/thing", host=host).json()
    assert (full["path"], full["host"]) == ("/replaced", host)


def test_request_mirror(stage: Stage) -> None:
    host = stage.route(
        "mirror",
        [
            {
                "matches": _prefix("/"),
                "filters": [
                    {"type": "RequestMirror", "requestMirror": {"backendRef": _ref("shadow")}}
                ],
                "backendRefs": [_ref("b")],
            }
        ],
    )
    stage.running.wait_status("/", host)
    marker = f"/mirrored-{time.monotonic_ns()}"
    answer = stage.running.request(marker, host=host, headers={"X-Trace": "m1"})
    assert answer.backend == "b"
    copy = wait_for(
        lambda: next((r for r in stage.seen("shadow") if r["path"] == marker), None),
        10,
        "the mirrored request",
    )
    assert copy["headers"]["x-trace"] == "m1"
    assert copy["host"].startswith(host)  # Envoy suffixes the mirror's Host with "-shadow"


def test_cors_preflight_and_simple_request(stage: Stage) -> None:
    host = stage.route(
        "cors",
        [
            {
                "matches": _prefix("/"),
                "filters": [
                    {
                        "type": "CORS",
                        "cors": {
                            "allowOrigins": ["https://shop.example.test", "https://*.partner.test"],
                            "allowMethods": ["GET", "POST"],
                            "allowHeaders": ["X-Token"],
                            "exposeHeaders": ["X-Backend"],
                            "maxAge": 600,
                            "allowCredentials": True,
                        },
                    }
                ],
                "backendRefs": [_ref("b")],
            }
        ],
    )
    stage.running.wait_status("/", host)
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-Token",
    }
    before = len(stage.seen("b"))
    ok = stage.running.request(
        "/api",
        host=host,
        method="OPTIONS",
        headers={"Origin": "https://shop.example.test", **preflight},
    )
    assert ok.status == 200
    assert ok.header("access-control-allow-origin") == "https://shop.example.test"
    assert "POST" in (ok.header("access-control-allow-methods") or "")
    assert "X-Token" in (ok.header("access-control-allow-headers") or "")
    assert ok.header("access-control-max-age") == "600"
    assert ok.header("access-control-allow-credentials") == "true"
    wildcard = stage.running.request(
        "/api",
        host=host,
        method="OPTIONS",
        headers={"Origin": "https://a.partner.test", **preflight},
    )
    assert wildcard.header("access-control-allow-origin") == "https://a.partner.test"
    assert len(stage.seen("b")) == before, "Envoy answered the preflights itself"
    refused = stage.running.request(
        "/api", host=host, method="OPTIONS", headers={"Origin": "https://evil.test", **preflight}
    )
    assert refused.header("access-control-allow-origin") is None
    simple = stage.running.request(
        "/api", host=host, headers={"Origin": "https://shop.example.test"}
    )
    assert simple.backend == "b"
    assert simple.header("access-control-allow-origin") == "https://shop.example.test"
    assert simple.header("access-control-expose-headers") == "X-Backend"


def test_request_timeout_gives_504(stage: Stage) -> None:
    host = stage.route(
        "timeouts",
        [
            {
                "matches": _prefix("/slow"),
                "backendRefs": [_ref("silent")],
                "timeouts": {"request": "500ms"},
            },
            {"matches": _prefix("/"), "backendRefs": [_ref("b")]},
        ],
    )
    stage.running.wait_status("/", host)
    started = time.monotonic()
    answer = stage.running.request("/slow", host=host)
    took = time.monotonic() - started
    assert answer.status == 504, answer
    assert 0.45 <= took < 3, took


# --------------------------------------------------------------------------- Envoy Gateway


def test_eg_local_rate_limit_gives_429_after_the_limit(stage: Stage) -> None:
    host = stage.route(
        "ratelimit",
        [
            {"name": "limited", "matches": _prefix("/limited"), "backendRefs": [_ref("b")]},
            {"name": "free", "matches": _prefix("/"), "backendRefs": [_ref("b")]},
        ],
    )
    stage.running.wait_status("/", host)
    stage.policy(
        "BackendTrafficPolicy",
        "ratelimit",
        "ratelimit",
        "limited",
        {
            "rateLimit": {
                "type": "Local",
                "local": {
                    "rules": [
                        {
                            "clientSelectors": [
                                {"sourceCIDR": {"type": "Distinct", "value": "0.0.0.0/0"}}
                            ],
                            "limit": {"requests": 5, "unit": "Minute"},
                        }
                    ]
                },
            }
        },
    )
    # Wait until the limit is in force (the first 429), then count from a fresh bucket: the
    # bucket refills only once a minute, so count what is left of it.
    wait_for(lambda: stage.running.request("/limited", host=host).status == 429, 20, "a 429")
    statuses = [stage.running.request("/limited", host=host).status for _ in range(5)]
    assert statuses == [429] * 5
    assert stage.running.request("/other", host=host).status == 200  # other rule: no limit


def test_eg_ip_allow_and_deny(stage: Stage) -> None:
    host = stage.route(
        "ipacl",
        [
            {"name": "deny-local", "matches": _prefix("/deny"), "backendRefs": [_ref("b")]},
            {"name": "allow-local", "matches": _prefix("/allow"), "backendRefs": [_ref("b")]},
            {"name": "allow-other", "matches": _prefix("/other"), "backendRefs": [_ref("b")]},
        ],
    )
    stage.running.wait_status("/deny", host)

    def acl(section: str, default: str, rules: list[dict[str, Any]]) -> None:
        stage.policy(
            "SecurityPolicy",
            f"ipacl-{section}",
            "ipacl",
            section,
            {"authorization": {"defaultAction": default, "rules": rules}},
        )

    acl("deny-local", "Allow", [{"action": "Deny", "principal": {"clientCIDRs": ["127.0.0.0/8"]}}])
    acl(
        "allow-local", "Deny", [{"action": "Allow", "principal": {"clientCIDRs": ["127.0.0.1/32"]}}]
    )
    acl("allow-other", "Deny", [{"action": "Allow", "principal": {"clientCIDRs": ["10.0.0.0/8"]}}])
    stage.running.wait_status("/deny", host, 403)
    stage.running.wait_status("/other", host, 403)
    assert stage.running.request("/allow", host=host).backend == "b"


def test_eg_basic_auth(stage: Stage, kube_api: Any) -> None:
    from kubernetes import client

    digest = base64.b64encode(hashlib.sha1(b"wonderland").digest()).decode()
    htpasswd = f"alice:{{SHA}}{digest}\n"
    core: Any = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        stage.namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "users-htpasswd"},
            "data": {".htpasswd": base64.b64encode(htpasswd.encode()).decode()},
        },
    )
    host = stage.route(
        "basic", [{"name": "private", "matches": _prefix("/"), "backendRefs": [_ref("b")]}]
    )
    stage.running.wait_status("/", host)
    stage.policy(
        "SecurityPolicy",
        "basic",
        "basic",
        None,
        {"basicAuth": {"users": {"group": "", "kind": "Secret", "name": "users-htpasswd"}}},
    )
    stage.running.wait_status("/", host, 401)

    def auth(user: str, password: str) -> dict[str, str]:
        return {
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        }

    assert stage.running.request("/", host=host, headers=auth("alice", "wrong")).status == 401
    assert (
        stage.running.request("/", host=host, headers=auth("mallory", "wonderland")).status == 401
    )
    assert stage.running.request("/", host=host, headers=auth("alice", "wonderland")).backend == "b"


def test_eg_ext_auth_with_path_override(stage: Stage) -> None:
    host = stage.route(
        "extauth",
        [
            {"name": "checked", "matches": _prefix("/checked"), "backendRefs": [_ref("b")]},
            {"name": "refused", "matches": _prefix("/refused"), "backendRefs": [_ref("b")]},
        ],
    )
    stage.running.wait_status("/checked", host)

    def ext(section: str, path: str) -> None:
        stage.policy(
            "SecurityPolicy",
            f"extauth-{section}",
            "extauth",
            section,
            {
                "extAuth": {
                    "http": {
                        "backendRefs": [
                            {"group": "", "kind": "Service", "name": "auth", "port": 80}
                        ],
                        "pathOverride": path,
                    }
                }
            },
        )

    ext("checked", "/verify")
    ext("refused", "/status/403")  # the echo answers 403 there: access refused
    stage.running.wait_status("/refused/x", host, 403)
    refused_checks = [r for r in stage.seen("auth") if r["path"] == "/status/403"]
    assert refused_checks, stage.seen("auth")[-3:]
    refused = f"/refused/{time.monotonic_ns()}"
    assert stage.running.request(refused, host=host).status == 403
    assert not [r for r in stage.seen("b") if r["path"] == refused], "refused yet forwarded"
    marker = f"/checked/{time.monotonic_ns()}"

    def checked() -> bool:
        return stage.running.request(marker, host=host).status == 200 and any(
            r["path"] == "/verify" for r in stage.seen("auth")
        )

    wait_for(checked, 20, "a request allowed by the auth service")
    assert stage.seen("b")[-1]["path"] == marker
    # The check carried the client's request headers, on the overridden path.
    check = [r for r in stage.seen("auth") if r["path"] == "/verify"][-1]
    assert check["host"] == host
    assert {r["path"] for r in stage.seen("auth")} <= {"/verify", "/status/403"}


def test_eg_session_affinity_by_cookie_sticks(stage: Stage) -> None:
    host = stage.route(
        "affinity", [{"name": "sticky", "matches": _prefix("/"), "backendRefs": [_ref("a")]}]
    )
    stage.running.wait_status("/", host)
    stage.policy(
        "BackendTrafficPolicy",
        "affinity",
        "affinity",
        "sticky",
        {
            "loadBalancer": {
                "type": "ConsistentHash",
                "consistentHash": {"type": "Cookie", "cookie": {"name": "route", "ttl": "1h"}},
            }
        },
    )
    first = wait_for(
        lambda: (a := stage.running.request("/", host=host)).header("set-cookie") and a,
        20,
        "the affinity cookie",
    )
    cookie = str(first.header("set-cookie")).split(";", 1)[0]
    assert cookie.startswith("route=")
    sticky = {
        stage.running.request(f"/s{i}", host=host, headers={"Cookie": cookie}).backend
        for i in range(30)
    }
    assert len(sticky) == 1, sticky
    # Without the cookie both endpoints get traffic (each request gets a new cookie).
    spread = {stage.running.request(f"/n{i}", host=host).backend for i in range(40)}
    assert spread == {"a-1", "a-2"}


def test_eg_retry_on_status_codes(stage: Stage) -> None:
    host = stage.route(
        "retry", [{"name": "flaky", "matches": _prefix("/"), "backendRefs": [_ref("c")]}]
    )
    stage.running.wait_status("/", host)
    stage.policy(
        "BackendTrafficPolicy",
        "retry",
        "retry",
        "flaky",
        {"retry": {"numRetries": 2, "retryOn": {"httpStatusCodes": [503]}}},
    )
    path = f"/status/503/{time.monotonic_ns()}"

    def attempts() -> int:
        return sum(1 for r in stage.seen("c") if r["path"] == path)

    def retried() -> bool:
        stage.running.request(path, host=host)
        return attempts() >= 3

    wait_for(retried, 20, "retries")
    once = f"/status/503/once-{time.monotonic_ns()}"
    assert stage.running.request(once, host=host).status == 503
    assert sum(1 for r in stage.seen("c") if r["path"] == once) == 3  # 1 try + 2 retries


def test_eg_http_route_filter_regex_rewrite_and_direct_response(stage: Stage) -> None:
    ns = stage.namespace
    stage.running.apply(
        {
            "apiVersion": EG,
            "kind": "HTTPRouteFilter",
            "metadata": {"name": "strip-api", "namespace": ns},
            "spec": {
                "urlRewrite": {
                    "path": {
                        "type": "ReplaceRegexMatch",
                        "replaceRegexMatch": {
                            "pattern": "(?i)^(?:/api(/|$)(.*)).*",
                            "substitution": "/\\2",
                        },
                    }
                }
            },
        },
        {
            "apiVersion": EG,
            "kind": "HTTPRouteFilter",
            "metadata": {"name": "teapot", "namespace": ns},
            "spec": {
                "directResponse": {
                    "statusCode": 418,
                    "contentType": "text/plain",
                    "body": {"type": "Inline", "inline": "short and stout"},
                }
            },
        },
    )

    def ext(name: str) -> list[dict[str, Any]]:
        ref = {"group": "gateway.envoyproxy.io", "kind": "HTTPRouteFilter", "name": name}
        return [{"type": "ExtensionRef", "extensionRef": ref}]

    host = stage.route(
        "extension",
        [
            {
                "matches": [{"path": {"type": "RegularExpression", "value": "(?i)/api(/|$)(.*)"}}],
                "filters": ext("strip-api"),
                "backendRefs": [_ref("b")],
            },
            {
                "matches": [{"path": {"type": "Exact", "value": "/teapot"}}],
                "filters": ext("teapot"),
            },
            {
                "matches": [{"path": {"type": "Exact", "value": "/nowhere"}}],
                "filters": ext("nowhere"),
                "backendRefs": [_ref("b")],
            },
        ],
    )
    stage.running.wait_status("/teapot", host, 418)
    assert stage.running.request("/API/v1/items", host=host).json()["path"] == "/v1/items"
    assert stage.running.request("/api", host=host).json()["path"] == "/"
    teapot = stage.running.request("/teapot", host=host)
    assert (teapot.body, teapot.header("content-type")) == (b"short and stout", "text/plain")
    assert stage.running.request("/nowhere", host=host).status == 500


def test_eg_request_buffer_limit_gives_413(stage: Stage) -> None:
    host = stage.route(
        "buffer", [{"name": "upload", "matches": _prefix("/"), "backendRefs": [_ref("b")]}]
    )
    stage.running.wait_status("/", host)
    stage.policy(
        "BackendTrafficPolicy", "buffer", "buffer", None, {"requestBuffer": {"limit": "1Ki"}}
    )
    big = b"x" * 4096
    wait_for(
        lambda: stage.running.request("/", host=host, method="POST", body=big).status == 413,
        20,
        "a 413",
    )
    small = stage.running.request("/", host=host, method="POST", body=b"y" * 512)
    assert small.json()["body_bytes"] == 512


class _GrpcAuthz:
    """An Envoy ext_authz gRPC service on a loopback address: allows requests carrying
    ``x-allow: yes`` (and tells Envoy to add ``x-auth-user``), denies the others with 403."""

    def __init__(self) -> None:
        import grpc
        from envoy.service.auth.v3 import external_auth_pb2_grpc

        self.checks: list[Any] = []
        self.address = next_loopback_address()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(_Servicer(self), self.server)
        self.port = self.server.add_insecure_port(f"{self.address}:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)


class _Servicer:
    def __init__(self, owner: _GrpcAuthz) -> None:
        self.owner = owner

    def Check(self, request: Any, context: Any) -> Any:  # noqa: N802  (the gRPC method name)
        from envoy.config.core.v3 import base_pb2
        from envoy.service.auth.v3 import external_auth_pb2
        from envoy.type.v3 import http_status_pb2
        from google.rpc import code_pb2, status_pb2

        http = request.attributes.request.http
        self.owner.checks.append(http)
        if http.headers.get("x-allow") == "yes":
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.OK),
                ok_response=external_auth_pb2.OkHttpResponse(
                    headers=[
                        base_pb2.HeaderValueOption(
                            header=base_pb2.HeaderValue(key="x-auth-user", value="grpc-alice")
                        )
                    ]
                ),
            )
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED),
            denied_response=external_auth_pb2.DeniedHttpResponse(
                status=http_status_pb2.HttpStatus(code=http_status_pb2.Forbidden),
                body="denied by grpc",
            ),
        )


def _eg_backend(stage: Stage, name: str, address: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": EG,
        "kind": "Backend",
        "metadata": {"name": name, "namespace": stage.namespace},
        "spec": {"endpoints": [{"ip": {"address": address, "port": port}}]},
    }


def test_eg_ext_auth_grpc_to_a_backend_kind(stage: Stage) -> None:
    authz = _GrpcAuthz()
    echo = start_backends(["grpc-protected"])
    with socket.socket() as probe:  # a loopback port nobody listens on: the service is down
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    try:
        backend_ref = {"group": "gateway.envoyproxy.io", "kind": "Backend"}
        stage.running.apply(
            _eg_backend(stage, "grpc-authz", authz.address, authz.port),
            _eg_backend(stage, "grpc-protected", echo[0].address, echo[0].port),
            _eg_backend(stage, "grpc-authz-down", "127.0.0.1", dead_port),
        )
        host = stage.route(
            "grpcauth",
            [
                {
                    "name": name,
                    "matches": _prefix(f"/{name}"),
                    "backendRefs": [{**backend_ref, "name": "grpc-protected"}],
                }
                for name in ("checked", "down")
            ],
        )
        stage.running.wait_status("/checked", host)  # the Backend kind is served

        def ext(section: str, backend: str, **extra: Any) -> None:
            stage.policy(
                "SecurityPolicy",
                f"grpcauth-{section}",
                "grpcauth",
                section,
                {"extAuth": {"grpc": {"backendRefs": [{**backend_ref, "name": backend}]}, **extra}},
            )

        ext("checked", "grpc-authz")
        ext("down", "grpc-authz-down", statusOnError=503)
        denied = stage.running.wait_status("/checked/x", host, 403)
        assert denied.body == b"denied by grpc"
        marker = f"/checked/{time.monotonic_ns()}"
        before = len(echo[0].requests)
        assert stage.running.request(marker, host=host).status == 403
        assert len(echo[0].requests) == before, "denied yet forwarded"
        allowed = stage.running.request(marker, host=host, headers={"X-Allow": "yes"})
        assert allowed.backend == "grpc-protected"
        seen = echo[0].requests[-1]
        assert (seen["path"], seen["headers"]["x-auth-user"]) == (marker, "grpc-alice")
        check = authz.checks[-1]
        assert (check.path, check.host, check.headers["x-allow"]) == (marker, host, "yes")
        # the service cannot be reached (polls before that policy was programmed went through)
        stage.running.wait_status("/down/y", host, 503)
        before = len(echo[0].requests)
        assert stage.running.request("/down/z", host=host).status == 503
        assert not [r for r in echo[0].requests[before:] if r["path"].startswith("/down")]
        facts.record(f"controller features: gRPC ext_authz answered {len(authz.checks)} checks")
    finally:
        authz.stop()
        stop_backends(echo)


def test_eg_backend_fqdn(stage: Stage) -> None:
    """A Backend with an ``fqdn`` endpoint (``localhost``, a loopback echo) is a STRICT_DNS
    cluster: Envoy resolves it itself (no EDS), and the push is not held waiting for its
    endpoints, so the route serves it and the rest of the route is unaffected."""
    echo = EchoBackend.start("by-fqdn", "127.0.0.1")
    try:
        stage.running.apply(
            {
                "apiVersion": EG,
                "kind": "Backend",
                "metadata": {"name": "by-fqdn", "namespace": stage.namespace},
                "spec": {"endpoints": [{"fqdn": {"hostname": "localhost", "port": echo.port}}]},
            }
        )
        backend_ref = {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": "by-fqdn"}
        host = stage.route(
            "fqdn",
            [
                {"matches": _prefix("/dns"), "backendRefs": [backend_ref]},
                {"matches": _prefix("/"), "backendRefs": [_ref("b")]},
            ],
        )
        stage.running.wait_status("/", host)
        answer = stage.running.wait_status("/dns/x", host)
        assert answer.backend == "by-fqdn"
        assert echo.requests[-1]["path"] == "/dns/x"
        assert stage.running.request("/other", host=host).backend == "b"
    finally:
        echo.stop()


def test_eg_backend_status(stage: Stage) -> None:
    """Backends our routes use get Envoy Gateway's ``Accepted`` condition, written to the real
    API server: True for a Backend that is served, False/Invalid (with why) for one that is
    not (a unix socket endpoint); the route still serves its other rule."""
    echo = EchoBackend.start("backend-status", "127.0.0.1")
    try:
        good = _eg_backend(stage, "status-good", echo.address, echo.port)
        unix = {
            "apiVersion": EG,
            "kind": "Backend",
            "metadata": {"name": "status-unix", "namespace": stage.namespace},
            "spec": {"endpoints": [{"unix": {"path": "/var/run/backend.sock"}}]},
        }
        stage.running.apply(good, unix)
        kind = {"group": "gateway.envoyproxy.io", "kind": "Backend"}
        host = stage.route(
            "backend-status",
            [
                {"matches": _prefix("/unix"), "backendRefs": [{**kind, "name": "status-unix"}]},
                {"matches": _prefix("/"), "backendRefs": [{**kind, "name": "status-good"}]},
            ],
        )
        assert stage.running.wait_status("/", host).backend == "backend-status"
        stage.running.wait_status("/unix/x", host, 500)

        def accepted(obj: dict[str, Any]) -> dict[str, Any] | None:
            conditions = (stage.running.get(obj).get("status") or {}).get("conditions") or []
            return next((c for c in conditions if c.get("type") == "Accepted"), None)

        ok = wait_for(lambda: accepted(good), 20, "the good Backend's status")
        assert (ok["status"], ok["reason"], ok["message"]) == (
            "True",
            "Accepted",
            "The Backend was accepted",
        )
        bad = wait_for(lambda: accepted(unix), 20, "the unix Backend's status")
        assert (bad["status"], bad["reason"]) == ("False", "Invalid")
        assert "only ip and fqdn" in bad["message"]
        facts.record(f"controller features: Backend status written ({bad['message']})")
    finally:
        echo.stop()


def test_a_route_moved_off_our_gateway_loses_our_status(stage: Stage) -> None:
    """A route whose parentRefs no longer name a Gateway of ours keeps no status entry of
    ours (another controller's entry stays): written, then taken out, on the real API
    server."""
    host = stage.route("moving", [{"matches": _prefix("/"), "backendRefs": [_ref("a")]}])
    stage.running.wait_status("/", host)
    obj = {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": "moving", "namespace": stage.namespace},
    }
    ours = stage.running.controller_name

    def entries() -> list[str]:
        parents = (stage.running.get(obj).get("status") or {}).get("parents") or []
        return sorted(str(p.get("controllerName")) for p in parents)

    wait_for(lambda: ours in entries(), 20, "our status entry")
    stage.running.apply(
        {
            **obj,
            "spec": {
                "parentRefs": [{"name": "elsewhere"}],
                "hostnames": [host],
                "rules": [{"matches": _prefix("/"), "backendRefs": [_ref("a")]}],
            },
        }
    )
    stage.running.wait_status("/", host, 404)
    wait_for(lambda: ours not in entries(), 20, "our status entry taken out")
