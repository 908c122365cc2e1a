"""Canary groups: Emissary's grouping key, its weight rule, group-level keys, and route order.

Mappings with the same match criteria form one group, i.e. one Gateway API rule with several
weighted ``backendRefs``. Weights follow ``normalize_weights_in_mappings``: a single Mapping gets
100; explicit weights are taken first (a weight over 100, or a sum over 100, drops the whole
group); the remainder is split equally over the unweighted Mappings (``round(rem / n)`` each,
Python's rounding) and the last one absorbs the rounding.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# Keys that must be identical across a group, or Emissary rejects the newcomer.
GROUP_KEYS = (
    "bypass_auth",
    "circuit_breakers",
    "cluster_timeout_ms",
    "connect_timeout_ms",
    "cluster_idle_timeout_ms",
    "cluster_max_connection_lifetime_ms",
    "group_id",
    "headers",
    "keepalive",
    "labels",
    "load_balancer",
    "method",
    "prefix",
    "prefix_regex",
    "prefix_exact",
)
# Keys that may differ per Mapping; a rule has one value, so differences are reported.
PER_MAPPING_KEYS = (
    "rewrite",
    "regex_rewrite",
    "host_rewrite",
    "timeout_ms",
    "idle_timeout_ms",
    "cors",
    "retry_policy",
    "tls",
    "add_linkerd_headers",
    "auto_host_rewrite",
    "remove_request_headers",
    "remove_response_headers",
    "allow_upgrade",
    "use_websocket",
    "health_checks",
    "case_sensitive",
)


class WeightError(ValueError):
    pass


def shares(weights: Sequence[int | None]) -> list[int]:
    """Each member's percentage, in the order given (Emissary's rule)."""
    if len(weights) == 1:
        return [100]
    out: list[int] = [0] * len(weights)
    total = 0
    for i, w in enumerate(weights):
        if w is not None:
            if w > 100 or w < 0:
                raise WeightError(f"weight {w} is outside 0..100")
            out[i] = round(w)
            total += round(w)
    if total > 100:
        raise WeightError(f"the explicit weights add up to {total}, over 100")
    free = [i for i, w in enumerate(weights) if w is None]
    if free:
        remaining = 100 - total
        each = round(remaining / len(free))
        cumulative = total
        for n, i in enumerate(free):
            if n == len(free) - 1:
                out[i] = max(0, 100 - cumulative)
            else:
                out[i] = max(0, min(each, 100 - cumulative))
                cumulative += out[i]
    return out


# --------------------------------------------------------------------------- route order


def emissary_rank(precedence: int, path: str, header_len: int, query_len: int) -> tuple[int, ...]:
    """Larger first (Emissary's ``route_weight``)."""
    return (precedence, len(path), header_len, query_len)


def gateway_rank(match: dict[str, Any]) -> tuple[int, ...]:
    """Smaller first (Envoy Gateway: Exact > RegularExpression > PathPrefix, then length,
    method, header and query-parameter counts)."""
    path = match.get("path") or {}
    kind = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}.get(path.get("type", ""), 3)
    return (
        kind,
        -len(path.get("value", "")),
        0 if match.get("method") else 1,
        -len(match.get("headers") or []),
        -len(match.get("queryParams") or []),
    )


def _samples(path: dict[str, str], literal: str) -> list[str]:
    if path["type"] == "Exact":
        return [path["value"]]
    base = literal
    return [base, base + "x", base.rstrip("/") + "/x", base + "/"]


def may_overlap(a: dict[str, Any], a_literal: str, b: dict[str, Any], b_literal: str) -> bool:
    """Whether one request could match both matches (heuristic, leaning to yes)."""
    if a.get("method") and b.get("method") and a["method"] != b["method"]:
        return False
    ha = {h["name"].lower(): h for h in a.get("headers") or []}
    for h in b.get("headers") or []:
        other = ha.get(h["name"].lower())
        if (
            other
            and other.get("type", "Exact") == h.get("type", "Exact") == "Exact"
            and (other["value"] != h["value"])
        ):
            return False
    pa, pb = a["path"], b["path"]
    for x, y, yl in ((pa, pb, b_literal), (pb, pa, a_literal)):
        if x["type"] == "RegularExpression":
            if y["type"] == "RegularExpression":
                return True
            try:
                regex = re.compile(x["value"])
            except re.error:
                return True
            return any(regex.fullmatch(s) for s in _samples(y, yl))
    # Literal paths with Emissary's string-prefix meaning.
    if pa["type"] == "Exact" and pb["type"] == "Exact":
        return bool(pa["value"] == pb["value"])
    if pa["type"] == "Exact":
        return bool(str(pa["value"]).startswith(b_literal))
    if pb["type"] == "Exact":
        return bool(str(pb["value"]).startswith(a_literal))
    return a_literal.startswith(b_literal) or b_literal.startswith(a_literal)
