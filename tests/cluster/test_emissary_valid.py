"""The Emissary provider against the real test API server (official Gateway API v1.6, Envoy
Gateway v1.9 and trimmed Emissary v3alpha1 CRDs).

- every golden ``expected.yaml`` is accepted by server-side dry-run apply (namespaces created
  first), so the converter emits only what the CRD schemas and CEL rules accept;
- every golden *input* in ``getambassador.io/v3alpha1`` (and the core objects beside them) is
  accepted by Emissary's own CRDs, so the inputs are realistic;
- ``migrate`` reads Mappings and a Host created in the cluster, applies the result, and the
  routes read back with Emissary's semantics (canary weights, prefix rewrite).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kubectl_gw.errors import ClusterError
from kubectl_gw.io import load_inputs
from kubectl_gw.kube import Cluster, KubeTarget, connect
from kubectl_gw.model import KINDS, KubeObject, kind_info
from tests.realparts import facts
from tests.unit.test_emissary_golden import CASES, GOLDEN, case_inputs

if TYPE_CHECKING:
    from tests.realparts.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

NAMESPACE_INFO = next(k for k in KINDS if k.kind == "Namespace")


def _cluster(kube_cluster: ControlPlane) -> Cluster:
    return connect(KubeTarget(kubeconfig=str(kube_cluster.kubeconfig)))


def _ensure_namespaces(cluster: Cluster, objects: list[KubeObject]) -> None:
    names = {o["metadata"].get("namespace") for o in objects} - {None, ""}
    for name in sorted(n for n in names if n):
        cluster.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, NAMESPACE_INFO
        )


def _dry_run(cluster: Cluster, objects: list[KubeObject]) -> list[str]:
    failures = []
    for obj in objects:
        info = kind_info(obj["apiVersion"], obj["kind"])
        if info is None:
            failures.append(f"{obj['kind']} {obj['metadata']['name']}: unknown kind")
            continue
        try:
            cluster.apply(obj, info, dry_run=True)
        except ClusterError as err:
            meta = obj["metadata"]
            failures.append(f"{obj['kind']} {meta.get('namespace')}/{meta['name']}: {err}")
    return failures


def test_every_expected_output_is_accepted(kube_cluster: ControlPlane) -> None:
    cluster = _cluster(kube_cluster)
    failures: list[str] = []
    count = 0
    for name in CASES:
        expected = [i.obj for i in load_inputs([str(GOLDEN / name / "expected.yaml")]).objects]
        _ensure_namespaces(cluster, expected)
        failures += [f"{name}: {f}" for f in _dry_run(cluster, expected)]
        count += len(expected)
    facts.record(
        f"emissary goldens: {count} expected objects in {len(CASES)} cases, "
        f"{count - len(failures)} accepted by server-side dry-run"
    )
    assert not failures, "\n".join(failures)
    assert count > 100


def test_v3alpha1_inputs_are_accepted_by_emissary_crds(kube_cluster: ControlPlane) -> None:
    cluster = _cluster(kube_cluster)
    failures: list[str] = []
    count = 0
    for name in CASES:
        inputs = [
            o
            for o in case_inputs(GOLDEN / name)
            if o["apiVersion"] in ("getambassador.io/v3alpha1", "v1", "networking.k8s.io/v1")
            and o["kind"] != "Namespace"
        ]
        _ensure_namespaces(cluster, inputs)
        failures += [f"{name}: {f}" for f in _dry_run(cluster, inputs)]
        count += sum(1 for o in inputs if o["apiVersion"].startswith("getambassador.io"))
    facts.record(f"emissary goldens: {count} v3alpha1 inputs accepted by Emissary's CRDs")
    assert not failures, "\n".join(failures)
    assert count > 60


def _create(cluster: Cluster, obj: dict[str, Any]) -> None:
    info = kind_info(obj["apiVersion"], obj["kind"])
    assert info is not None
    cluster.apply(obj, info)  # type: ignore[arg-type]


def test_migrate_reads_the_cluster_and_applies(
    kube_cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    from kubectl_gw import cli

    cluster = _cluster(kube_cluster)
    ns = namespace
    amb = "getambassador.io/v3alpha1"
    _create(
        cluster,
        {
            "apiVersion": amb,
            "kind": "Host",
            "metadata": {"name": "shop", "namespace": ns},
            "spec": {
                "hostname": "shop.example.com",
                "tlsSecret": {"name": "shop-tls"},
                "requestPolicy": {"insecure": {"action": "Redirect"}},
            },
        },
    )
    for name, extra in (("web", {}), ("web-canary", {"weight": 10})):
        _create(
            cluster,
            {
                "apiVersion": amb,
                "kind": "Mapping",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "hostname": "shop.example.com",
                    "prefix": "/shop",
                    "service": name,
                    **extra,
                },
            },
        )
    report = tmp_path / "report.json"
    code = cli.run(
        [
            "migrate",
            "--kubeconfig",
            str(kube_cluster.kubeconfig),
            "-n",
            ns,
            "--provider",
            "emissary",
            "--gateway-namespace",
            ns,
            "--apply",
            "--report",
            str(report),
            "--report-format",
            "json",
        ]
    )
    assert code == 0
    routes = cluster.request(
        "GET", f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes"
    )["items"]
    by_name = {r["metadata"]["name"]: r for r in routes}
    assert set(by_name) == {"shop-example-com", "shop-redirect-to-https"}, sorted(by_name)
    rule = by_name["shop-example-com"]["spec"]["rules"][0]
    assert rule["matches"][0]["path"] == {"type": "RegularExpression", "value": "/shop.*"}
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [
        ("web", 90),
        ("web-canary", 10),
    ]
    assert rule["timeouts"] == {"request": "3s"}
    filters = cluster.request(
        "GET", f"/apis/gateway.envoyproxy.io/v1alpha1/namespaces/{ns}/httproutefilters"
    )["items"]
    assert [f["spec"]["urlRewrite"]["path"]["replaceRegexMatch"] for f in filters] == [
        {"pattern": "^/shop", "substitution": "/"}
    ]
    gateway = cluster.request(
        "GET", f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/gateways/envoy-gateway"
    )
    assert {(lis["protocol"], lis["port"]) for lis in gateway["spec"]["listeners"]} == {
        ("HTTP", 80),
        ("HTTPS", 443),
    }
    data = json.loads(report.read_text())
    assert data["provider"] == "emissary"
    assert {e["source"]["name"] for e in data["entries"]} >= {"shop", "web", "web-canary"}
    mappings = cluster.request("GET", f"/apis/getambassador.io/v3alpha1/namespaces/{ns}/mappings")[
        "items"
    ]
    assert len(mappings) == 2  # the sources are untouched
    facts.record(
        "emissary migrate: read 3 v3alpha1 objects from the cluster, applied "
        f"{len(routes)} HTTPRoutes + Gateway + HTTPRouteFilter"
    )
