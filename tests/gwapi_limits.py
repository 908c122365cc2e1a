"""Gateway API list limits (``maxItems`` of the v1.6 standard CRDs) and a check of converter
output against them, for tests that do not have an API server at hand (the goldens, the
corpus sizes too big to dry-run). The cluster tests let the real API server judge.

Paths are dotted field paths from the object root; ``[]`` steps into every item of a list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from kubectl_gw.model import KubeObject

_ROUTE_COMMON = {
    "spec.parentRefs": 32,
    "spec.rules": 16,
    "spec.rules[].backendRefs": 16,
    "spec.rules[].backendRefs[].filters": 16,
}
_HEADER_FILTERS = {
    f"spec.rules[].filters[].{f}.{op}": 16
    for f in ("requestHeaderModifier", "responseHeaderModifier")
    for op in ("set", "add", "remove")
}
_HTTP_LIKE = {
    **_ROUTE_COMMON,
    **_HEADER_FILTERS,
    "spec.hostnames": 16,
    "spec.rules[].matches": 64,
    "spec.rules[].matches[].headers": 16,
    "spec.rules[].filters": 16,
}
_LISTENERS = {"spec.listeners": 64, "spec.listeners[].tls.certificateRefs": 64}

LIMITS: dict[str, dict[str, int]] = {
    "Gateway": {**_LISTENERS, "spec.addresses": 16},
    "ListenerSet": _LISTENERS,
    "HTTPRoute": {
        **_HTTP_LIKE,
        "spec.rules[].matches[].queryParams": 16,
        "spec.rules[].filters[].cors.allowOrigins": 64,
        "spec.rules[].filters[].cors.allowMethods": 9,
        "spec.rules[].filters[].cors.allowHeaders": 64,
        "spec.rules[].filters[].cors.exposeHeaders": 64,
    },
    "GRPCRoute": _HTTP_LIKE,
    "TLSRoute": {**_ROUTE_COMMON, "spec.hostnames": 1024, "spec.rules": 1},
    "TCPRoute": {**_ROUTE_COMMON, "spec.rules": 1},
    "ReferenceGrant": {"spec.from": 16, "spec.to": 16},
    "BackendTLSPolicy": {"spec.targetRefs": 16, "spec.validation.subjectAltNames": 5},
}


def _lists(value: Any, steps: list[str]) -> Iterator[list[Any]]:
    if not steps:
        if isinstance(value, list):
            yield value
        return
    step, rest = steps[0], steps[1:]
    name, each = (step[:-2], True) if step.endswith("[]") else (step, False)
    if not isinstance(value, dict) or name not in value:
        return
    found = value[name]
    if each:
        for item in found if isinstance(found, list) else []:
            yield from _lists(item, rest)
    else:
        yield from _lists(found, rest)


def largest(objects: Iterable[KubeObject]) -> dict[str, tuple[int, str]]:
    """``Kind path`` → (the longest such list in ``objects``, the object that has it)."""
    out: dict[str, tuple[int, str]] = {}
    for obj in objects:
        kind = str(obj.get("kind", ""))
        meta: dict[str, Any] = dict(obj.get("metadata") or {})
        where = f"{kind} {meta.get('namespace', '')}/{meta.get('name', '')}"
        for path in LIMITS.get(kind, {}):
            for found in _lists(obj, path.split(".")):
                key = f"{kind} {path}"
                if len(found) > out.get(key, (-1, ""))[0]:
                    out[key] = (len(found), where)
    return out


def violations(objects: Iterable[KubeObject]) -> list[str]:
    """Every list longer than Gateway API allows, one line each (empty: all within limits)."""
    out = []
    for key, (length, where) in sorted(largest(objects).items()):
        kind, path = key.split(" ", 1)
        limit = LIMITS[kind][path]
        if length > limit:
            out.append(f"{where}: {path} has {length} items, at most {limit} allowed")
    return out
