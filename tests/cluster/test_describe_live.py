"""``kubectl gw describe`` against the real test API server.

Objects are created in the cluster (labelled namespaces, a GatewayClass, a Gateway, routes,
ReferenceGrants, Services, a TLS Secret), described live through the CLI with ``--kubeconfig``,
and described offline from the same objects read back from the API server: the computed
results must be equal. Then the status subresource gets a stale route status and a wrong
``attachedRoutes`` count, and describe must flag both.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kubectl_gw import cli, io
from tests.realparts import crds, facts

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.realparts.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

GW = "gateway.networking.k8s.io"
CONTROLLER = "kubectl-gw.test/controller"
PLURALS = {
    "Namespace": ("", "namespaces", False),
    "Service": ("", "services", True),
    "Secret": ("", "secrets", True),
    "GatewayClass": (f"{GW}/v1", "gatewayclasses", False),
    "Gateway": (f"{GW}/v1", "gateways", True),
    "HTTPRoute": (f"{GW}/v1", "httproutes", True),
    "ReferenceGrant": (f"{GW}/v1beta1", "referencegrants", True),
    "Backend": ("gateway.envoyproxy.io/v1alpha1", "backends", True),
}
EG_BACKEND = {"group": "gateway.envoyproxy.io", "kind": "Backend"}


def _path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    api_version, plural, namespaced = PLURALS[kind]
    base = f"/apis/{api_version}" if api_version else "/api/v1"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespaced else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


def _api_version(kind: str) -> str:
    return PLURALS[kind][0] or "v1"


def _obj(kind: str, name: str, namespace: str | None, spec: dict[str, Any], **extra: Any) -> Any:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta.update(extra.pop("metadata", {}))
    out = {"apiVersion": _api_version(kind), "kind": kind, "metadata": meta}
    if spec:
        out["spec"] = spec
    out.update(extra)
    return out


def _manifests(ns: str) -> list[dict[str, Any]]:
    apps, data = f"{ns}-apps", f"{ns}-data"
    cls = f"kgw-{ns}"

    def route(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
        return _obj("HTTPRoute", name, namespace, spec)

    def svc(name: str, namespace: str, port: int = 80) -> dict[str, Any]:
        return _obj("Service", name, namespace, {"ports": [{"port": port}]})

    def backend(name: str, namespace: str) -> dict[str, Any]:
        return _obj(
            "Backend",
            name,
            namespace,
            {"endpoints": [{"ip": {"address": "192.0.2.1", "port": 8080}}]},
        )

    pem = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
    return [
        _obj("Namespace", apps, None, {}, metadata={"labels": {"expose": "yes"}}),
        _obj("Namespace", data, None, {}),
        _obj("GatewayClass", cls, None, {"controllerName": CONTROLLER}),
        _obj(
            "Secret",
            "cert",
            data,
            {},
            type="kubernetes.io/tls",
            data={"tls.crt": pem, "tls.key": pem},
        ),
        svc("web", ns),
        svc("web-v2", ns),
        svc("app", apps),
        svc("db", data, 5432),
        svc("cache", data, 6379),
        backend("local", ns),
        backend("remote", data),
        _obj(
            "ReferenceGrant",
            "from-apps",
            data,
            {
                "from": [{"group": GW, "kind": "HTTPRoute", "namespace": apps}],
                "to": [{"group": "", "kind": "Service", "name": "db"}],
            },
        ),
        _obj(
            "Gateway",
            "gw",
            ns,
            {
                "gatewayClassName": cls,
                "listeners": [
                    {"name": "http", "protocol": "HTTP", "port": 80, "hostname": "*.example.com"},
                    {
                        "name": "selected",
                        "protocol": "HTTP",
                        "port": 8080,
                        "allowedRoutes": {
                            "namespaces": {
                                "from": "Selector",
                                "selector": {"matchLabels": {"expose": "yes"}},
                            }
                        },
                    },
                    {
                        "name": "https",
                        "protocol": "HTTPS",
                        "port": 443,
                        "tls": {"certificateRefs": [{"name": "cert", "namespace": data}]},
                    },
                ],
            },
        ),
        route(
            "web",
            ns,
            {
                "parentRefs": [{"name": "gw", "sectionName": "http"}],
                "hostnames": ["www.example.com"],
                "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
            },
        ),
        route(
            "web-v2",
            ns,
            {
                "parentRefs": [{"name": "gw", "sectionName": "http"}],
                "hostnames": ["www.example.com"],
                "rules": [{"backendRefs": [{"name": "web-v2", "port": 80}]}],
            },
        ),
        route(
            "blog",
            ns,
            {
                "parentRefs": [{"name": "gw", "sectionName": "http"}],
                "hostnames": ["blog.example.org"],
            },
        ),
        route("typo", ns, {"parentRefs": [{"name": "gw", "sectionName": "htpp"}]}),
        route(
            "eg",
            ns,
            {
                "parentRefs": [{"name": "gw", "sectionName": "http"}],
                "hostnames": ["eg.example.com"],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/remote"}}],
                        "backendRefs": [
                            {**EG_BACKEND, "name": "remote", "namespace": data, "port": 80}
                        ],
                    },
                    {"backendRefs": [{**EG_BACKEND, "name": "local", "port": 80}]},
                ],
            },
        ),
        route(
            "blocked",
            apps,
            {
                "parentRefs": [{"name": "gw", "namespace": ns, "sectionName": "http"}],
                "hostnames": ["app.example.com"],
            },
        ),
        route(
            "selected",
            apps,
            {
                "parentRefs": [{"name": "gw", "namespace": ns, "sectionName": "selected"}],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/db"}}],
                        "backendRefs": [{"name": "db", "namespace": data, "port": 5432}],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/cache"}}],
                        "backendRefs": [{"name": "cache", "namespace": data, "port": 6379}],
                    },
                    {"backendRefs": [{"name": "app", "port": 80}]},
                ],
            },
        ),
    ]


def _create(kube_api: ApiClient, obj: dict[str, Any]) -> None:
    ns = obj["metadata"].get("namespace")
    crds.api_request(kube_api, "POST", _path(obj["kind"], ns), obj)


def _delete(kube_api: ApiClient, obj: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):
        path = _path(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        crds.api_request(kube_api, "DELETE", path, timeout=10)


@pytest.fixture
def describe_setup(kube_api: ApiClient, namespace: str) -> Any:
    objects = _manifests(namespace)
    try:
        for obj in objects:
            _create(kube_api, obj)
        yield objects
    finally:
        for obj in reversed(objects):
            if obj["kind"] in ("GatewayClass", "Namespace"):
                _delete(kube_api, obj)


def _describe(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> tuple[str, str]:
    code = cli.run(["describe", *args])
    out, err = capsys.readouterr()
    assert code == expect, err
    return out, err


def _read_back(kube_api: ApiClient, manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same objects as the API server holds them, without status and managedFields."""
    out = []
    for obj in manifests:
        got = crds.api_request(
            kube_api,
            "GET",
            _path(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]),
        )
        got.setdefault("apiVersion", obj["apiVersion"])
        got.setdefault("kind", obj["kind"])
        got.pop("status", None)
        got["metadata"].pop("managedFields", None)
        if got["kind"] == "Secret":
            got.pop("data", None)
        out.append(got)
    return out


def _computed(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("status", "notes")}


def test_live_describe_equals_offline(
    kube_cluster: ControlPlane,
    kube_api: ApiClient,
    namespace: str,
    describe_setup: list[dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kubeconfig = str(kube_cluster.kubeconfig)
    scope = ["gatewayclass", f"kgw-{namespace}"]
    live_text, _ = _describe(capsys, *scope, "--kubeconfig", kubeconfig, "-o", "json")
    live = json.loads(live_text)

    snapshot = tmp_path / "objects.yaml"
    snapshot.write_text(io.to_yaml(_read_back(kube_api, describe_setup)))  # type: ignore[arg-type]
    offline_text, _ = _describe(capsys, *scope, "-f", str(snapshot), "-o", "json")
    offline = json.loads(offline_text)

    assert _computed(live) == _computed(offline)

    # and the results are the ones the spec asks for
    verdicts = {
        (r["namespace"].replace(namespace, "NS"), r["name"]): [
            (p["accepted"], p["reason"]) for p in r["parents"]
        ]
        for r in live["routes"]
    }
    assert verdicts == {
        ("NS", "web"): [(True, "Accepted")],
        ("NS", "web-v2"): [(True, "Accepted")],
        ("NS", "blog"): [(False, "NoMatchingListenerHostname")],
        ("NS", "typo"): [(False, "NoMatchingParent")],
        ("NS", "eg"): [(True, "Accepted")],
        ("NS-apps", "blocked"): [(False, "NotAllowedByListeners")],
        ("NS-apps", "selected"): [(True, "Accepted")],
    }
    selected = next(r for r in live["routes"] if r["name"] == "selected")
    assert [(b["ref"]["name"], b["reason"]) for b in selected["backends"]] == [
        ("db", "ResolvedRefs"),
        ("cache", "RefNotPermitted"),
        ("app", "ResolvedRefs"),
    ]
    eg = next(r for r in live["routes"] if r["name"] == "eg")  # Backends read from the cluster
    assert [(b["ref"]["name"], b["reason"]) for b in eg["backends"]] == [
        ("remote", "RefNotPermitted"),
        ("local", "ResolvedRefs"),
    ]
    (gateway,) = live["gateways"]
    listeners = {lis["name"]: lis for lis in gateway["listeners"]}
    assert {n: lis["attachedRoutes"] for n, lis in listeners.items()} == {
        "http": 3,
        "selected": 1,
        "https": 0,
    }
    https = {c["type"]: (c["status"], c["reason"]) for c in listeners["https"]["conditions"]}
    assert https["ResolvedRefs"] == ("False", "RefNotPermitted")
    shadowed = [e for e in listeners["http"]["routing"] if "shadowedBy" in e]
    assert [(e["name"], e["shadowedBy"]["name"]) for e in shadowed] == [("web-v2", "web")]

    # no controller runs in the test cluster: live describe says so, offline cannot know
    problems = {f["problem"] for f in live["status"]}
    assert "noController" in problems
    assert offline["status"] == []
    tree, _ = _describe(capsys, *scope, "--kubeconfig", kubeconfig)
    assert "no controller has accepted GatewayClass" in tree
    assert "NotAllowedByListeners" in tree
    assert (
        f"fix: add a ReferenceGrant in namespace {namespace}-data from HTTPRoute in {namespace} "
        "to Backend.gateway.envoyproxy.io remote" in tree
    )
    assert f"from HTTPRoute in {namespace}-apps to Service cache" in tree
    facts.record(
        f"describe live vs offline: {len(live['routes'])} routes, "
        f"{sum(len(g['listeners']) for g in live['gateways'])} listeners, results equal"
    )


def _status_patch(kube_api: ApiClient, kind: str, ns: str | None, name: str, body: Any) -> None:
    crds.api_request(
        kube_api,
        "PATCH",
        _path(kind, ns, name) + "/status",
        body,
        content_type="application/merge-patch+json",
    )


def test_live_describe_flags_written_status(
    kube_cluster: ControlPlane,
    kube_api: ApiClient,
    namespace: str,
    describe_setup: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    kubeconfig = str(kube_cluster.kubeconfig)
    ns = namespace
    now = "2026-01-01T00:00:00Z"

    def cond(type_: str, status: str, reason: str, generation: int) -> dict[str, Any]:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": "written by the test",
            "observedGeneration": generation,
            "lastTransitionTime": now,
        }

    # a controller "accepted" the class and the Gateway, but counts one route too many
    _status_patch(
        kube_api,
        "GatewayClass",
        None,
        f"kgw-{ns}",
        {"status": {"conditions": [cond("Accepted", "True", "Accepted", 1)]}},
    )
    listener_status = [
        {
            "name": name,
            "attachedRoutes": count,
            "supportedKinds": [{"group": GW, "kind": "HTTPRoute"}],
            "conditions": [cond("Accepted", "True", "Accepted", 1)],
        }
        for name, count in (("http", 4), ("selected", 1), ("https", 0))
    ]
    _status_patch(
        kube_api,
        "Gateway",
        ns,
        "gw",
        {
            "status": {
                "conditions": [cond("Accepted", "True", "Accepted", 1)],
                "listeners": listener_status,
            }
        },
    )
    # the route changed after the controller wrote its status: generation 2, observed 1
    crds.api_request(
        kube_api,
        "PATCH",
        _path("HTTPRoute", ns, "web"),
        {"spec": {"hostnames": ["www.example.com", "web.example.com"]}},
        content_type="application/merge-patch+json",
    )
    parent_status = {
        "parentRef": {"group": GW, "kind": "Gateway", "name": "gw", "sectionName": "http"},
        "controllerName": CONTROLLER,
        "conditions": [
            cond("Accepted", "True", "Accepted", 1),
            cond("ResolvedRefs", "True", "ResolvedRefs", 1),
        ],
    }
    foreign = {**parent_status, "controllerName": "example.com/other"}
    _status_patch(
        kube_api, "HTTPRoute", ns, "web", {"status": {"parents": [parent_status, foreign]}}
    )
    # the blocked route has a status that claims Accepted
    blocked_status = {
        **parent_status,
        "parentRef": {**parent_status["parentRef"], "namespace": ns},
    }
    _status_patch(
        kube_api, "HTTPRoute", f"{ns}-apps", "blocked", {"status": {"parents": [blocked_status]}}
    )

    out, _ = _describe(
        capsys, "gatewayclass", f"kgw-{ns}", "--kubeconfig", kubeconfig, "-o", "json"
    )
    findings = {
        (f["object"]["kind"], f["object"]["name"], f["problem"]): f["message"]
        for f in json.loads(out)["status"]
    }
    assert ("GatewayClass", f"kgw-{ns}", "noController") not in findings
    stale = findings[("HTTPRoute", "web", "stale")]
    assert "observedGeneration 1" in stale and "metadata.generation 2" in stale
    count = findings[("Gateway", "gw", "countMismatch")]
    assert "listener http" in count and "attachedRoutes 4" in count and "computes 3" in count
    mismatch = findings[("HTTPRoute", "blocked", "conditionMismatch")]
    assert "True/Accepted" in mismatch and "False/NotAllowedByListeners" in mismatch
    assert "example.com/other" in findings[("HTTPRoute", "web", "foreignController")]
    assert ("HTTPRoute", "web-v2", "missingStatus") in findings
    tree, _ = _describe(capsys, "httproute", "web", "-n", ns, "--kubeconfig", kubeconfig)
    assert "[stale]" in tree
