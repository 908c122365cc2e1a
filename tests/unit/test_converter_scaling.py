"""The converters do work proportional to their input: operation counts, never wall-clock time.

Each test converts an input of size n and one of size 4n and counts the Python line events
executed (``sys.settrace``; deterministic for a given input). Linear work grows 4x, sorting a
little more; the per-item scans of every item that these tests guard against (the report
scanned once per Ingress, ReferenceGrants recomputed once per grant, every Host tried for
every Mapping, ...) made the same inputs grow 8-9x, and much more at real sizes (10,000
Ingresses took 15 minutes). ``MAX_GROWTH`` leaves room for n log n, not for n².
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from converters.api import MigrateOptions
from converters.emissary import EmissaryOptions, convert_with
from converters.ingress_nginx import convert as nginx_convert
from converters.layout import GrantNeed, Grants, LayoutOptions, SecretRef, need, plan
from kubectl_gw.model import GATEWAY_GROUP, KubeObject
from tests.bench import corpus

FACTOR = 4
MAX_GROWTH = 5.0  # for FACTOR times the input: 4 for linear work, ~5.2 already for n^1.2
EMISSARY = "getambassador.io/v3alpha1"


def line_events(work: Callable[[], object]) -> int:
    """How many Python lines ``work`` executes (every module, standard library included)."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        return local

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        work()
    finally:
        sys.settrace(previous)
    return count


def growth(make: Callable[[int], Callable[[], object]], n: int) -> tuple[float, int, int]:
    small, large = line_events(make(n)), line_events(make(FACTOR * n))
    return large / small, small, large


def test_counter_tells_linear_from_quadratic() -> None:
    """The measure itself: a linear loop grows 4x, a loop over pairs 16x."""

    def linear(n: int) -> Callable[[], object]:
        return lambda: [i for i in range(n)]

    def quadratic(n: int) -> Callable[[], object]:
        return lambda: [(i, j) for i in range(n) for j in range(n)]

    assert growth(linear, 200)[0] < MAX_GROWTH
    assert growth(quadratic, 200)[0] > 3 * MAX_GROWTH


# --------------------------------------------------------------------------- ingress-nginx


@pytest.mark.parametrize("per_namespace", [False, True], ids=["shared", "per-namespace"])
def test_ingress_nginx_conversion_is_linear(per_namespace: bool) -> None:
    """The benchmark's corpus mix: shared hosts, TLS, canaries, annotations, two classes."""
    options = MigrateOptions(gateway_per_namespace=per_namespace)

    def make(n: int) -> Callable[[], object]:
        objects: list[KubeObject] = corpus.generate(n)  # type: ignore[assignment]
        return lambda: nginx_convert(objects, options)

    ratio, small, large = growth(make, 100)
    assert ratio < MAX_GROWTH, f"{small} → {large} line events for {FACTOR}x the Ingresses"


# --------------------------------------------------------------------------- layout


def test_layout_plan_and_grants_are_linear() -> None:
    """Many HTTPS hosts with certificates in other namespaces: listeners past 64 go into
    ListenerSets, every certificate needs a ReferenceGrant, every need its grant's name."""

    def make(n: int) -> Callable[[], object]:
        needs = []
        for i in range(n):
            ns = f"team-{i % 7}"
            cert = SecretRef(ns, f"cert-{i}")
            host = f"app{i}.example.com"
            needs.append(need("nginx", ns, host, "HTTPS", certificates=[cert]))
            needs.append(need("nginx", ns, host, "HTTP"))
        return lambda: plan(needs, LayoutOptions("eg", "gateway-system"), Grants())

    ratio, small, large = growth(make, 100)
    assert ratio < MAX_GROWTH, f"{small} → {large} line events for {FACTOR}x the needs"


def test_grants_interleaved_add_and_lookup_is_linear() -> None:
    """Converters ask for a grant's ReferenceGrant right after adding it (Emissary does)."""

    def make(n: int) -> Callable[[], object]:
        wanted = [
            GrantNeed(GATEWAY_GROUP, "HTTPRoute", "web", "", "Service", "backends", f"svc-{i:05d}")
            for i in reversed(range(n))
        ]

        def work() -> None:
            grants = Grants()
            for grant in wanted:
                grants.add(grant)
                grants.ref_for(grant)
            grants.render()

        return work

    ratio, small, large = growth(make, 100)
    assert ratio < MAX_GROWTH, f"{small} → {large} line events for {FACTOR}x the grants"


# --------------------------------------------------------------------------- emissary


def emissary_corpus(n: int) -> list[KubeObject]:
    """n TLS Hosts (some with a TLSContext), two Mappings each (one to a Service in another
    namespace), TCPMappings with and without host, and a wildcard Host that every
    ``*.apps`` Mapping also associates with."""
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": EMISSARY,
            "kind": "Host",
            "metadata": {"name": "apps-wildcard", "namespace": "shared"},
            "spec": {"hostname": "*.apps.example.com", "tlsSecret": {"name": "apps-cert"}},
        }
    ]
    for i in range(n):
        ns = f"team-{i // 10:03d}"
        host = f"app{i}.example.com" if i % 3 else f"app{i}.apps.example.com"
        spec: dict[str, Any] = {"hostname": host, "tlsSecret": {"name": f"cert-{i}"}}
        if i % 5 == 0:
            spec["tlsContext"] = {"name": f"ctx-{i}"}
            objects.append(
                {
                    "apiVersion": EMISSARY,
                    "kind": "TLSContext",
                    "metadata": {"name": f"ctx-{i}", "namespace": ns},
                    "spec": {"hosts": [host], "secret": f"cert-{i}", "min_tls_version": "v1.2"},
                }
            )
        objects.append(
            {
                "apiVersion": EMISSARY,
                "kind": "Host",
                "metadata": {"name": f"host-{i}", "namespace": ns},
                "spec": spec,
            }
        )
        for j in range(2):
            service = f"svc-{i}.shared:8080" if j else f"svc-{i}"
            objects.append(
                {
                    "apiVersion": EMISSARY,
                    "kind": "Mapping",
                    "metadata": {"name": f"map-{i}-{j}", "namespace": ns},
                    "spec": {"hostname": host, "prefix": f"/p{j}/", "service": service},
                }
            )
        if i % 7 == 0:
            tcp: dict[str, Any] = {"port": 9000 + i, "service": f"db-{i}.shared:5432"}
            if i % 2:
                tcp["host"] = host
            objects.append(
                {
                    "apiVersion": EMISSARY,
                    "kind": "TCPMapping",
                    "metadata": {"name": f"tcp-{i}", "namespace": ns},
                    "spec": tcp,
                }
            )
    return objects  # type: ignore[return-value]


def test_emissary_conversion_is_linear() -> None:
    def make(n: int) -> Callable[[], object]:
        objects = emissary_corpus(n)
        return lambda: convert_with(objects, MigrateOptions(), EmissaryOptions())

    ratio, small, large = growth(make, 50)
    assert ratio < MAX_GROWTH, f"{small} → {large} line events for {FACTOR}x the resources"
