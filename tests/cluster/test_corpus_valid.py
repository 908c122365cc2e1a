"""The benchmark corpus (``tests/bench/corpus.py``) converts to objects a real API server accepts.

- At 300 Ingresses the corpus already has what made the Gateway invalid at 10,000: the
  ``server-alias: alias.example.net`` that Ingresses of many namespaces share, each with its own
  TLS Secret, plus TLS hosts, ReferenceGrants and ListenerSets (past 64 listeners). The
  conversion (in process) is applied object by object with server-side dry run
  (``dryRun=All``: OpenAPI schemas, CEL rules, the Gateway API admission policy).
- The shared alias only had more than 64 certificates past ~3,000 Ingresses, too many objects
  to dry-run in a minute, so at 4,000 the longest lists of the output are checked against the
  CRDs' ``maxItems`` instead (and the input is checked to be one that broke the old layout).
- The bug at small scale (70 namespaces sharing an alias) is dry-run too, next to the Gateway
  the old layout made of it, which the API server must reject.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from converters.api import MigrateOptions
from converters.ingress_nginx import convert
from kubectl_gw import kube
from kubectl_gw.model import KubeObject
from tests import gwapi_limits
from tests.bench import corpus
from tests.cluster.test_ingress_nginx_valid import dry_run
from tests.realparts import facts

if TYPE_CHECKING:
    from tests.realparts.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

ALIAS = "alias.example.net"
ALIAS_KEY = f"{corpus.PREFIX}/server-alias"
DRY_RUN_SIZE = 300
LIMITS_SIZE = 4000


@pytest.fixture(scope="module")
def cluster(kube_cluster: ControlPlane) -> Iterator[kube.Cluster]:
    connected = kube.connect(kube.KubeTarget(kubeconfig=str(kube_cluster.kubeconfig)))
    yield connected
    connected.api.close()  # type: ignore[no-untyped-call]


def _alias_certificates(objects: list[dict[str, Any]]) -> dict[str, set[tuple[str, str]]]:
    """Per class, about the certificates the old layout put on the shared alias's listener:
    the TLS Secret of every host an Ingress gives the alias to (one certificateRef each; 8 at
    300 Ingresses and 216 at 10,000, where the old output had 8 and 200)."""
    alias_hosts: set[tuple[str, str]] = set()
    secrets: dict[tuple[str, str], tuple[str, str]] = {}
    for obj in objects:
        if obj["kind"] != "Ingress" or (obj["spec"].get("defaultBackend") is not None):
            continue
        cls = obj["spec"].get("ingressClassName", corpus.CLASSES[0])
        ns = obj["metadata"]["namespace"]
        hosts = [r["host"] for r in obj["spec"]["rules"]]
        if (obj["metadata"].get("annotations") or {}).get(ALIAS_KEY) == ALIAS:
            alias_hosts |= {(cls, h) for h in hosts}
        for entry in obj["spec"].get("tls") or []:
            for host in entry.get("hosts") or hosts:
                secrets.setdefault((cls, host), (ns, entry["secretName"]))
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for cls, host in alias_hosts:
        if (cls, host) in secrets:
            found[cls].add(secrets[(cls, host)])
    return found


def _alias_listeners(objects: list[KubeObject]) -> list[dict[str, Any]]:
    return [
        lis
        for o in objects
        if o["kind"] in ("Gateway", "ListenerSet")
        for lis in o["spec"]["listeners"]
        if lis.get("hostname") == ALIAS
    ]


def test_corpus_output_is_accepted_by_the_api_server(cluster: kube.Cluster) -> None:
    began = time.monotonic()
    sources = corpus.generate(DRY_RUN_SIZE)
    claimants = _alias_certificates(sources)
    # the case of the bug is in this corpus: several namespaces, each with its own Secret
    assert len({ns for ns, _name in claimants[corpus.CLASSES[0]]}) >= 3, claimants
    result = convert(sources, MigrateOptions())  # type: ignore[arg-type]
    objects = result.objects
    kinds = {o["kind"] for o in objects}
    assert {"Gateway", "ListenerSet", "ReferenceGrant", "HTTPRoute"} <= kinds, kinds
    https = [o for o in _alias_listeners(objects) if o["protocol"] == "HTTPS"]
    assert len(https) == 1, https  # one class's alias owner has TLS in this corpus
    assert len(https[0]["tls"]["certificateRefs"]) == 1
    conflicts = [
        e for e in result.report.entries if e.key == ALIAS_KEY and e.status in ("error", "partial")
    ]
    assert conflicts and all("already an alias of" in e.message for e in conflicts)
    converted = time.monotonic() - began
    problems = dry_run(cluster, objects)
    assert not problems, "\n".join(problems[:20])
    facts.record(
        f"corpus {DRY_RUN_SIZE} Ingresses: {len(objects)} objects accepted by the API server "
        f"(dryRun=All; {len(claimants[corpus.CLASSES[0]])} TLS Secrets give {ALIAS}, its "
        f"listener holds 1 certificate) in {time.monotonic() - began:.1f} s "
        f"(conversion {converted:.1f} s)"
    )


def test_corpus_at_scale_stays_within_gateway_api_list_limits() -> None:
    sources = corpus.generate(LIMITS_SIZE)
    claimants = _alias_certificates(sources)
    # the alias listener of a class used to hold every one of these Secrets
    assert max(len(v) for v in claimants.values()) > 64, {k: len(v) for k, v in claimants.items()}
    result = convert(sources, MigrateOptions())  # type: ignore[arg-type]
    assert not gwapi_limits.violations(result.objects)
    longest = gwapi_limits.largest(result.objects)
    for lis in _alias_listeners(result.objects):
        assert len((lis.get("tls") or {}).get("certificateRefs", [])) <= 1
    shown = {
        key: longest[key][0]
        for key in (
            "Gateway spec.listeners[].tls.certificateRefs",
            "HTTPRoute spec.hostnames",
            "HTTPRoute spec.parentRefs",
            "HTTPRoute spec.rules",
            "ReferenceGrant spec.to",
        )
        if key in longest
    }
    facts.record(
        f"corpus {LIMITS_SIZE} Ingresses: every list within Gateway API limits (longest: "
        + ", ".join(f"{k.split(' ', 1)[1]} {n}" for k, n in shown.items())
        + ")"
    )


def test_an_alias_70_namespaces_share_is_accepted_and_the_old_shape_is_not(
    cluster: kube.Cluster,
) -> None:
    """The bug at small scale: 70 namespaces give one alias, each with its own Secret. The
    conversion is accepted; the same Gateway with every Secret on the alias listener (what the
    old layout emitted) is rejected by the API server."""
    sources: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": "nginx"},
            "spec": {"controller": "k8s.io/ingress-nginx"},
        }
    ]
    for i in range(70):
        ns, host = f"alias-{i:02d}", f"app.alias-{i:02d}.example.com"
        sources.append(corpus._service(ns, "web", grpc=False))
        sources.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "web", "namespace": ns, "annotations": {ALIAS_KEY: ALIAS}},
                "spec": {
                    "ingressClassName": "nginx",
                    "tls": [{"hosts": [host], "secretName": "web-tls"}],
                    "rules": [
                        {
                            "host": host,
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": corpus._backend("web", False, False),
                                    }
                                ]
                            },
                        }
                    ],
                },
            }
        )
    result = convert(sources, MigrateOptions())  # type: ignore[arg-type]
    problems = dry_run(cluster, result.objects)
    assert not problems, "\n".join(problems[:20])
    [gateway] = [o for o in result.objects if o["kind"] == "Gateway"]
    [https] = [lis for lis in _alias_listeners([gateway]) if lis["protocol"] == "HTTPS"]
    assert len(https["tls"]["certificateRefs"]) == 1
    old = copy.deepcopy(gateway)
    for lis in _alias_listeners([old]):
        if lis["protocol"] == "HTTPS":
            lis["tls"]["certificateRefs"] = [
                {"group": "", "kind": "Secret", "name": "web-tls", "namespace": f"alias-{i:02d}"}
                for i in range(70)
            ]
    [rejected] = dry_run(cluster, [old])
    assert "certificateRefs" in rejected and "64" in rejected, rejected
