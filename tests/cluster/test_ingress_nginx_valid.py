"""The ingress-nginx provider's output is accepted by a real API server with the official CRDs.

- every golden ``expected.yaml`` is applied with server-side dry run (``dryRun=All``): the
  apiserver runs the OpenAPI schemas, the CEL rules and the Gateway API admission policy;
- a hypothesis test generates Ingresses (hosts, TLS, path types, regex, canaries, annotations),
  converts them, checks that every path is accounted for, and dry-run applies the output.
"""

from __future__ import annotations

import string
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters.api import MigrateOptions
from converters.ingress_nginx import convert
from kubectl_gw import kube
from kubectl_gw.errors import ClusterError
from kubectl_gw.model import KINDS, KubeObject, kind_info
from tests.realparts import facts
from tests.unit.test_ingress_nginx_golden import (
    CASES,
    GOLDEN,
    case_inputs,
    check_contract,
    expected_objects,
)

if TYPE_CHECKING:
    from tests.realparts.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

HYPOTHESIS_NAMESPACES = ("hyp-a", "hyp-b")
NAMESPACE_INFO = next(k for k in KINDS if k.kind == "Namespace")


@pytest.fixture(scope="module")
def cluster(kube_cluster: ControlPlane) -> Iterator[kube.Cluster]:
    connected = kube.connect(kube.KubeTarget(kubeconfig=str(kube_cluster.kubeconfig)))
    yield connected
    connected.api.close()  # type: ignore[no-untyped-call]


def ensure_namespaces(cluster: kube.Cluster, names: set[str]) -> None:
    for name in sorted(names):
        ns: KubeObject = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        cluster.apply(ns, NAMESPACE_INFO)


def dry_run(cluster: kube.Cluster, objects: list[KubeObject]) -> list[str]:
    """Apply every object with dryRun=All; the problems, one line each."""
    ensure_namespaces(
        cluster, {o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")}
    )
    problems = []
    for obj in objects:
        info = kind_info(obj["apiVersion"], obj["kind"])
        assert info is not None, obj["kind"]
        try:
            cluster.apply(obj, info, dry_run=True)
        except ClusterError as err:
            meta = obj["metadata"]
            problems.append(f"{obj['kind']} {meta.get('namespace')}/{meta['name']}: {err}")
    return problems


@pytest.mark.parametrize("name", CASES)
def test_golden_output_is_accepted(cluster: kube.Cluster, name: str) -> None:
    objects = expected_objects(GOLDEN / name)
    assert objects or name == "classless-ignored", name
    problems = dry_run(cluster, objects)
    assert not problems, "\n".join(problems)


def test_every_golden_was_applied(cluster: kube.Cluster) -> None:
    began = time.monotonic()
    total = 0
    kinds: set[str] = set()
    for name in CASES:
        objects = expected_objects(GOLDEN / name)
        total += len(objects)
        kinds |= {o["kind"] for o in objects}
        assert not dry_run(cluster, objects), name
    facts.record(
        f"ingress-nginx goldens: {total} objects of {len(CASES)} cases accepted by the API "
        f"server (dryRun=All; kinds: {', '.join(sorted(kinds))}) in "
        f"{time.monotonic() - began:.1f} s"
    )


# --------------------------------------------------------------------------- generated


_label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
_host = st.one_of(
    st.just(""),
    st.builds(lambda a, b: f"{a}.{b}.example.com", _label, st.sampled_from(["a", "b", "c"])),
    st.builds(lambda a: f"*.{a}.example.com", st.sampled_from(["a", "b"])),
)
_segment = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=6)
_path = st.one_of(
    st.just("/"),
    st.builds(
        lambda parts, slash: "/" + "/".join(parts) + ("/" if slash else ""),
        st.lists(_segment, min_size=1, max_size=3),
        st.booleans(),
    ),
    st.sampled_from(["/api(/|$)(.*)", "/v[0-9]+/items", "^/exact$", "/(?!x)bad", "/a//b"]),
)
_annotation = st.sampled_from(
    [
        {},
        {"use-regex": "true"},
        {"rewrite-target": "/$1"},
        {"rewrite-target": "/"},
        {"ssl-redirect": "false"},
        {"force-ssl-redirect": "true"},
        {"enable-cors": "true", "cors-allow-origin": "https://a.example.com"},
        {"limit-rps": "10"},
        {"proxy-body-size": "10m", "proxy-read-timeout": "120"},
        {"whitelist-source-range": "10.0.0.0/8"},
        {"affinity": "cookie"},
        {"backend-protocol": "GRPC"},
        {"backend-protocol": "HTTPS"},
        {"app-root": "/home"},
        {"permanent-redirect": "https://example.org"},
        {"configuration-snippet": "return 200;"},
        {"server-alias": "alias.example.net"},
        {"from-to-www-redirect": "true"},
    ]
)


@st.composite
def _ingress(draw: st.DrawFn, index: int) -> KubeObject:
    ns = draw(st.sampled_from(HYPOTHESIS_NAMESPACES))
    rules: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 2))):
        paths = [
            {
                "path": draw(_path),
                "pathType": draw(st.sampled_from(["Exact", "Prefix", "ImplementationSpecific"])),
                "backend": {"service": {"name": "web", "port": {"number": 80}}},
            }
            for _ in range(draw(st.integers(1, 3)))
        ]
        rules.append({"host": draw(_host), "http": {"paths": paths}})
    for rule in rules:
        if not rule["host"]:
            del rule["host"]
    annotations = {f"nginx.ingress.kubernetes.io/{k}": v for k, v in draw(_annotation).items()}
    if draw(st.integers(0, 4)) == 0:
        annotations["nginx.ingress.kubernetes.io/canary"] = "true"
        annotations["nginx.ingress.kubernetes.io/canary-weight"] = "25"
    spec: dict[str, Any] = {"ingressClassName": "nginx", "rules": rules}
    hosts: list[str] = [r["host"] for r in rules if r.get("host")]
    with_tls: bool = draw(st.booleans())
    if hosts and with_tls:
        spec["tls"] = [{"hosts": hosts, "secretName": f"tls-{index}"}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": f"ing-{index}",
            "namespace": ns,
            "annotations": annotations,
            "creationTimestamp": f"2024-01-{index + 1:02d}T00:00:00Z",
        },
        "spec": spec,
    }


@st.composite
def _inputs(draw: st.DrawFn) -> list[KubeObject]:
    count = draw(st.integers(1, 4))
    return [draw(_ingress(i)) for i in range(count)]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ingresses=_inputs(), target=st.sampled_from(["envoy-gateway", "standard"]))
def test_generated_ingresses_convert_to_accepted_objects(
    cluster: kube.Cluster, ingresses: list[KubeObject], target: str
) -> None:
    objects: list[KubeObject] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": "nginx"},
            "spec": {"controller": "k8s.io/ingress-nginx"},
        },
        *ingresses,
    ]
    result = convert(objects, MigrateOptions(target=target))  # type: ignore[arg-type]
    check_contract(objects, result)
    if target == "standard":
        assert all(o["apiVersion"].startswith("gateway.networking.k8s.io/") for o in result.objects)
    problems = dry_run(cluster, result.objects)
    assert not problems, "\n".join(problems)


def test_inputs_of_goldens_load() -> None:
    for name in CASES:
        assert case_inputs(GOLDEN / name), name
