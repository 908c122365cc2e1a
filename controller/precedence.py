"""Route match precedence: normalised matches, the spec's sort keys, shadowing, request matching.

Pure. The Gateway API orders every (hostname, match) of the routes attached to one listener:

HTTPRoute (``HTTPRouteRule.Matches`` doc), highest precedence first:
  1. characters in the matching non-wildcard hostname, then characters in the matching hostname;
  2. an Exact path, then a RegularExpression, then a PathPrefix, each the longest first
     (regular expressions are implementation-specific: kubectl-gw ranks them as Envoy Gateway
     does, ``internal/gatewayapi/sort.go``, which ``migrate``'s output is written for);
  3. a method match; 4. the most header matches; 5. the most query-param matches;
  6. across routes: the oldest ``creationTimestamp``, then ``{namespace}/{name}`` alphabetically;
  7. within a route: rule order, then match order.

GRPCRoute (``GRPCRouteRule.Matches`` doc): hostname as above, then characters in the matching
service, characters in the matching method, the most header matches (kubectl-gw then prefers an
Exact method match over a RegularExpression one), then oldest, alphabetical, rule order.

An entry is *shadowed* when an entry ranked before it matches every request it matches; then it
never receives traffic. For non-regular-expression matches that only happens when the two are
the same match, and the tie-break (age, name, rule order) decides; regular expressions are
compared as text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller import hostnames as hn
from kubectl_gw import re2

PATH_TYPES = ("Exact", "PathPrefix", "RegularExpression")
VALUE_MATCH_TYPES = ("Exact", "RegularExpression")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")

# --------------------------------------------------------------------------- normalised matches


@dataclass(frozen=True)
class HTTPMatch:
    """One ``HTTPRouteMatch`` with its defaults applied; header names lower-cased; sorted."""

    path_type: str = "PathPrefix"
    path: str = "/"
    method: str | None = None
    headers: tuple[tuple[str, str, str], ...] = ()  # (type, lower-case name, value)
    query: tuple[tuple[str, str, str], ...] = ()  # (type, name, value)

    def describe(self) -> str:
        parts = [f"{self.path_type} {self.path}"]
        if self.method:
            parts.append(f"method {self.method}")
        for kind, name, value in self.headers:
            parts.append(f"header {name}{'=' if kind == 'Exact' else '~'}{value}")
        for kind, name, value in self.query:
            parts.append(f"query {name}{'=' if kind == 'Exact' else '~'}{value}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": {"type": self.path_type, "value": self.path}}
        if self.method:
            out["method"] = self.method
        if self.headers:
            out["headers"] = [{"type": t, "name": n, "value": v} for t, n, v in self.headers]
        if self.query:
            out["queryParams"] = [{"type": t, "name": n, "value": v} for t, n, v in self.query]
        return out


@dataclass(frozen=True)
class GRPCMatch:
    """One ``GRPCRouteMatch`` with its defaults applied (empty service/method = any)."""

    method_type: str = "Exact"
    service: str = ""
    method: str = ""
    headers: tuple[tuple[str, str, str], ...] = ()

    def describe(self) -> str:
        what = f"{self.service or '*'}/{self.method or '*'}"
        parts = [what if self.method_type == "Exact" else f"~{what}"]
        for kind, name, value in self.headers:
            parts.append(f"header {name}{'=' if kind == 'Exact' else '~'}{value}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.service or self.method:
            method: dict[str, str] = {"type": self.method_type}
            if self.service:
                method["service"] = self.service
            if self.method:
                method["method"] = self.method
            out["method"] = method
        if self.headers:
            out["headers"] = [{"type": t, "name": n, "value": v} for t, n, v in self.headers]
        return out


Match = HTTPMatch | GRPCMatch


def _pairs(items: Any, *, lower: bool) -> tuple[tuple[str, str, str], ...] | str:
    """Header/query matches as sorted triples, or an error message."""
    if items is None:
        return ()
    if not isinstance(items, list):
        return "must be a list"
    out = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            return "each match needs a name"
        kind = item.get("type") or "Exact"
        if kind not in VALUE_MATCH_TYPES:
            return f'match type "{kind}" is not supported'
        value = str(item.get("value", ""))
        if kind == "RegularExpression" and (problem := regex_problem(value)) is not None:
            return problem
        name = item["name"].lower() if lower else item["name"]
        out.append((kind, name, value))
    return tuple(sorted(set(out)))


def regex_problem(pattern: str) -> str | None:
    """Why a pattern is not one Envoy (RE2) can compile, or None. Envoy refuses a whole route
    configuration over one such pattern, so the rule is dropped here instead (every other
    route on the port would otherwise stop receiving updates)."""
    why = re2.problem(pattern)
    return None if why is None else f"regular expression {pattern!r}: {why}"


def http_match(raw: Any) -> HTTPMatch | str:
    """Normalise one HTTPRouteMatch; a string is the reason it is unsupported."""
    if not isinstance(raw, Mapping):
        return "a match must be an object"
    path = raw.get("path") or {}
    if not isinstance(path, Mapping):
        return "path must be an object"
    path_type = path.get("type") or "PathPrefix"
    value = path.get("value")
    value = "/" if value is None else str(value)
    if path_type not in PATH_TYPES:
        return f'path match type "{path_type}" is not supported'
    if path_type != "RegularExpression" and not value.startswith("/"):
        return f'path "{value}" must start with "/"'
    if path_type == "RegularExpression" and (problem := regex_problem(value)) is not None:
        return problem
    method = raw.get("method")
    if method is not None and method not in HTTP_METHODS:
        return f'method "{method}" is not supported'
    headers = _pairs(raw.get("headers"), lower=True)
    if isinstance(headers, str):
        return f"headers: {headers}"
    query = _pairs(raw.get("queryParams"), lower=False)
    if isinstance(query, str):
        return f"queryParams: {query}"
    return HTTPMatch(path_type, value, method, headers, query)


def grpc_match(raw: Any) -> GRPCMatch | str:
    """Normalise one GRPCRouteMatch; a string is the reason it is unsupported."""
    if not isinstance(raw, Mapping):
        return "a match must be an object"
    method = raw.get("method") or {}
    if not isinstance(method, Mapping):
        return "method must be an object"
    kind = method.get("type") or "Exact"
    if kind not in VALUE_MATCH_TYPES:
        return f'method match type "{kind}" is not supported'
    service = str(method.get("service") or "")
    name = str(method.get("method") or "")
    if kind == "RegularExpression":
        for pattern in (service, name):
            if (problem := regex_problem(pattern)) is not None:
                return f"method match: {problem}"
    headers = _pairs(raw.get("headers"), lower=True)
    if isinstance(headers, str):
        return f"headers: {headers}"
    return GRPCMatch(kind, service, name, headers)


# --------------------------------------------------------------------------- precedence keys

# Position in a key tuple → the words that explain a win decided there.
HTTP_KEY_REASONS = (
    "a longer non-wildcard hostname",
    "a longer hostname",
    "an Exact path beats a RegularExpression, and a RegularExpression a PathPrefix",
    "a longer path",
    "a method match",
    "more header matches",
    "more query-param matches",
    "an older creationTimestamp",
    "an earlier namespace/name alphabetically",
    "an earlier rule in the same route",
    "an earlier match in the same rule",
)
GRPC_KEY_REASONS = (
    "a longer non-wildcard hostname",
    "a longer hostname",
    "a longer service",
    "a longer method",
    "more header matches",
    "an Exact method match beats a RegularExpression",
    "an older creationTimestamp",
    "an earlier namespace/name alphabetically",
    "an earlier rule in the same route",
    "an earlier match in the same rule",
)
PLAIN_KEY_REASONS = (
    "a longer non-wildcard hostname",
    "a longer hostname",
    "an older creationTimestamp",
    "an earlier namespace/name alphabetically",
    "an earlier rule in the same route",
    "an earlier match in the same rule",
)

_PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


@dataclass(frozen=True)
class RouteOrder:
    """The route-level tie-break: age (missing timestamps count as newest), then name."""

    created: str
    namespace: str
    name: str

    def key(self) -> tuple[tuple[int, str], str]:
        age = (0, self.created) if self.created else (1, "")
        return (age, f"{self.namespace}/{self.name}")


def http_key(
    hostname: str, match: HTTPMatch, order: RouteOrder, rule: int, index: int
) -> tuple[Any, ...]:
    """Ascending sort key: smaller sorts first = higher precedence."""
    nonwild, length = hn.specificity(hostname)
    return (
        -nonwild,
        -length,
        _PATH_RANK[match.path_type],
        -len(_prefix_norm(match.path) if match.path_type == "PathPrefix" else match.path),
        0 if match.method else 1,
        -len(match.headers),
        -len(match.query),
        *order.key(),
        rule,
        index,
    )


def grpc_key(
    hostname: str, match: GRPCMatch, order: RouteOrder, rule: int, index: int
) -> tuple[Any, ...]:
    nonwild, length = hn.specificity(hostname)
    return (
        -nonwild,
        -length,
        -len(match.service),
        -len(match.method),
        -len(match.headers),
        0 if match.method_type == "Exact" else 1,
        *order.key(),
        rule,
        index,
    )


def plain_key(hostname: str, order: RouteOrder, rule: int, index: int) -> tuple[Any, ...]:
    """TLSRoute (by SNI hostname), TCPRoute and UDPRoute: hostname, then age and name."""
    nonwild, length = hn.specificity(hostname)
    return (-nonwild, -length, *order.key(), rule, index)


def deciding_reason(winner: tuple[Any, ...], loser: tuple[Any, ...], reasons: Sequence[str]) -> str:
    """Why ``winner`` sorts before ``loser``: the words for the first key position that differs."""
    for position, (a, b) in enumerate(zip(winner, loser, strict=True)):
        if a != b:
            # the route tie-break is one tuple (age, name); split it into its two reasons
            return reasons[position] if position < len(reasons) else "rule order"
    return "identical"


# --------------------------------------------------------------------------- coverage (shadowing)


def _prefix_norm(path: str) -> str:
    return path.rstrip("/") or "/"


def _prefix_covers(prefix: str, path: str) -> bool:
    p = _prefix_norm(prefix)
    return p == "/" or path == p or path.startswith(p + "/")


def http_covers(a: HTTPMatch, b: HTTPMatch) -> bool:
    """Does ``a`` match every request ``b`` matches (decidable cases only)?"""
    if a.path_type == "RegularExpression" or b.path_type == "RegularExpression":
        if a.path_type != b.path_type or a.path != b.path:
            return False
    elif a.path_type == "Exact":
        if b.path_type != "Exact" or a.path != b.path:
            return False
    elif b.path_type == "Exact":
        if not _prefix_covers(a.path, b.path):
            return False
    elif not _prefix_covers(a.path, _prefix_norm(b.path)):
        return False
    if a.method is not None and a.method != b.method:
        return False
    return set(a.headers) <= set(b.headers) and set(a.query) <= set(b.query)


def grpc_covers(a: GRPCMatch, b: GRPCMatch) -> bool:
    if a.method_type != b.method_type and (a.service or a.method):
        return False
    if a.service and a.service != b.service:
        return False
    if a.method and a.method != b.method:
        return False
    return set(a.headers) <= set(b.headers)


# --------------------------------------------------------------------------- request matching


@dataclass(frozen=True)
class Request:
    """An HTTP request as ``describe request`` sees it; header names lower-cased."""

    scheme: str
    host: str
    port: int
    path: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def param(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]


def _value_ok(kind: str, expected: str, values: Sequence[str]) -> bool:
    if kind == "Exact":
        return expected in values
    try:
        pattern = re.compile(expected)
    except re.error:
        return False
    return any(pattern.fullmatch(v) for v in values)


def http_request_matches(match: HTTPMatch, request: Request) -> bool:
    path = request.path or "/"
    if match.path_type == "Exact" and path != match.path:
        return False
    if match.path_type == "PathPrefix" and not _prefix_covers(match.path, path):
        return False
    if match.path_type == "RegularExpression":
        try:
            if not re.fullmatch(match.path, path):
                return False
        except re.error:
            return False
    if match.method is not None and match.method != request.method:
        return False
    for kind, name, value in match.headers:
        if not _value_ok(kind, value, request.header(name)):
            return False
    return all(_value_ok(kind, value, request.param(name)) for kind, name, value in match.query)


def grpc_request_matches(match: GRPCMatch, request: Request) -> bool:
    """A gRPC call is ``POST /<service>/<method>`` with ``content-type: application/grpc``."""
    parts = request.path.strip("/").split("/")
    if len(parts) != 2:
        return False
    service, method = parts
    for want, got in ((match.service, service), (match.method, method)):
        if not want:
            continue
        if match.method_type == "Exact" and want != got:
            return False
        if match.method_type == "RegularExpression" and not _value_ok(
            "RegularExpression", want, [got]
        ):
            return False
    return all(_value_ok(kind, value, request.header(name)) for kind, name, value in match.headers)
