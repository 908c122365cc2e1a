"""Shared converter contracts: collision-free names, the report, provenance marks."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from converters import naming, provenance
from converters.report import Report
from kubectl_gw.model import ObjectRef

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_wildcard_and_apex_do_not_collide() -> None:
    names = naming.allocate(
        {
            "*.example.com": "*.example.com",
            "example.com": "example.com",
            "shop.example.com": "shop.example.com",
        }
    )
    assert names["shop.example.com"] == "shop-example-com"
    assert names["*.example.com"] == "wildcard-example-com"
    assert names["example.com"] == "example-com"


def test_clashing_readable_names_both_get_hashes() -> None:
    names = naming.allocate({"a.b-c": "a.b-c", "a-b.c": "a-b.c"})
    assert names["a.b-c"] != names["a-b.c"]
    assert all(n.startswith("a-b-c-") for n in names.values())


def test_long_names_are_cut_with_a_hash() -> None:
    name = naming.allocate_one("x" * 100, "y")
    assert len(name) == 63
    assert DNS_LABEL.match(name)


@given(st.lists(st.text(min_size=1, max_size=80), min_size=1, max_size=20, unique=True))
def test_allocation_is_valid_unique_and_order_free(keys: list[str]) -> None:
    forward = naming.allocate({k: k for k in keys})
    backward = naming.allocate({k: k for k in reversed(keys)})
    assert forward == backward
    assert naming.unique(forward.values())
    assert all(DNS_LABEL.match(n) and len(n) <= 63 for n in forward.values())


def test_report_contract_and_order() -> None:
    report = Report()
    ing_b = ObjectRef("networking.k8s.io/v1", "Ingress", "shop", "b")
    ing_a = ObjectRef("networking.k8s.io/v1", "Ingress", "shop", "a")
    route = ObjectRef("gateway.networking.k8s.io/v1", "HTTPRoute", "shop", "r")
    report.add(ing_b, "spec.rules[0].http.paths[0]", "converted", "ok", [route])
    report.add(ing_a, "nginx.ingress.kubernetes.io/server-snippet", "unsupported", "snippet")
    report.add(ing_b, "nginx.ingress.kubernetes.io/ssl-redirect", "converted", "redirect")
    data = report.to_data()
    assert [(d["source"]["name"], d["key"]) for d in data] == [
        ("a", "nginx.ingress.kubernetes.io/server-snippet"),
        ("b", "spec.rules[0].http.paths[0]"),
        ("b", "nginx.ingress.kubernetes.io/ssl-redirect"),
    ]
    assert data[1] == {
        "source": {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "namespace": "shop",
            "name": "b",
        },
        "key": "spec.rules[0].http.paths[0]",
        "status": "converted",
        "message": "ok",
        "outputs": [
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "namespace": "shop",
                "name": "r",
            }
        ],
    }
    assert [e.status for e in report.incomplete()] == ["unsupported"]


def test_stamp_marks_generated_objects() -> None:
    obj: Any = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "shop"},
    }
    sources = [
        ObjectRef("networking.k8s.io/v1", "Ingress", "shop", "b"),
        ObjectRef("networking.k8s.io/v1", "Ingress", "shop", "a"),
        ObjectRef("networking.k8s.io/v1", "Ingress", "shop", "a"),
    ]
    provenance.stamp(obj, sources)
    assert provenance.is_managed(obj)
    assert obj["metadata"]["annotations"][provenance.SOURCES_ANNOTATION] == (
        "Ingress shop/a, Ingress shop/b"
    )
