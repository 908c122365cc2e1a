"""tests.gwapi_limits: the list limits the goldens and the corpus tests check output against."""

from __future__ import annotations

from typing import Any

from kubectl_gw.model import KubeObject
from tests import gwapi_limits


def _route(hostnames: int, filters: int = 1) -> KubeObject:
    obj: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "a"},
        "spec": {
            "hostnames": [f"h{i}.example.com" for i in range(hostnames)],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]},
                {
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {
                                "set": [{"name": f"x{i}", "value": "v"} for i in range(filters)]
                            },
                        }
                    ]
                },
            ],
        },
    }
    return obj  # type: ignore[return-value]


def test_within_limits_is_clean_and_largest_finds_the_longest_list() -> None:
    objects = [_route(16, 16), _route(3, 2)]
    assert gwapi_limits.violations(objects) == []
    longest = gwapi_limits.largest(objects)
    assert longest["HTTPRoute spec.hostnames"] == (16, "HTTPRoute a/r")
    assert longest["HTTPRoute spec.rules"][0] == 2
    assert longest["HTTPRoute spec.rules[].filters[].requestHeaderModifier.set"][0] == 16


def test_past_limits_are_reported_per_path() -> None:
    gateway: dict[str, Any] = {
        "kind": "Gateway",
        "metadata": {"name": "g", "namespace": "gw"},
        "spec": {
            "listeners": [
                {"name": "ok", "tls": {"certificateRefs": [{"name": "c"}]}},
                {"name": "big", "tls": {"certificateRefs": [{"name": f"c{i}"} for i in range(65)]}},
            ]
        },
    }
    found = gwapi_limits.violations([_route(17, 17), gateway])  # type: ignore[list-item]
    assert found == [
        "Gateway gw/g: spec.listeners[].tls.certificateRefs has 65 items, at most 64 allowed",
        "HTTPRoute a/r: spec.hostnames has 17 items, at most 16 allowed",
        "HTTPRoute a/r: spec.rules[].filters[].requestHeaderModifier.set has 17 items, "
        "at most 16 allowed",
    ]
