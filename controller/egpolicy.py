"""Envoy Gateway extension objects → IR pieces. Pure.

``kubectl gw migrate`` (target ``envoy-gateway``, the default) emits Envoy Gateway objects next
to the standard ones: BackendTrafficPolicy, SecurityPolicy, HTTPRouteFilter and Backend. This
module reads them the way Envoy Gateway v1.9 does, for the parts the controller implements:

- **Attachment** (:class:`Policies`): ``spec.targetRefs`` (and the older single ``targetRef``)
  to an HTTPRoute/GRPCRoute (``sectionName`` = a rule name) or a Gateway (``sectionName`` = a
  listener name), in the policy's own namespace. The most specific policy of a kind wins and
  replaces the others entirely: route rule > route > Gateway listener > Gateway; among
  policies at the same level the oldest (then the name) wins, as in Envoy Gateway.
- **BackendTrafficPolicy** (:func:`traffic_policy`): ``timeout`` (tcp.connectTimeout,
  http.connectionIdleTimeout, http.maxConnectionDuration, http.requestTimeout,
  http.streamIdleTimeout), ``retry`` (numRetries, retryOn.triggers/httpStatusCodes,
  perRetry.timeout/backOff), ``loadBalancer`` (RoundRobin, LeastRequest, Random,
  ConsistentHash on SourceIP/Header/Cookie/QueryParams with tableSize), ``circuitBreaker``,
  ``rateLimit`` of type Local (clientSelectors sourceCIDR Exact/Distinct and headers
  Exact/RegularExpression/Distinct), ``requestBuffer.limit`` and ``routingType: Service``.
  Other fields are reported in ``notes`` and ignored (they change no routing decision).
- **SecurityPolicy** (:func:`security_policy`): ``authorization`` by clientCIDRs (and
  operation methods), ``basicAuth`` (htpasswd ``{SHA}`` lines from a Secret's ``.htpasswd``)
  and HTTP ``extAuth``. A security feature the controller cannot enforce makes the covered
  routes answer 500 (fail closed), never serve unprotected.
- **HTTPRouteFilter** (:func:`route_filter`): ``urlRewrite.path`` ReplaceRegexMatch,
  ``urlRewrite.hostname`` of type Header is not implemented (reported), and ``directResponse``
  with an inline body.
- **Backend** (:func:`backend_endpoints`): ``ip`` and ``fqdn`` endpoints (one port).
- **ClientTrafficPolicy**: not implemented; a note names each one that targets our Gateways.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller import ir
from kubectl_gw.model import ENVOY_GATEWAY_GROUP, GATEWAY_GROUP

POLICY_KINDS = (
    "BackendTrafficPolicy",
    "SecurityPolicy",
    "HTTPRouteFilter",
    "Backend",
    "ClientTrafficPolicy",
)
"""Envoy Gateway kinds the controller reads: the provider must watch them."""

_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
_QUANTITY_RE = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_QUANTITY_UNITS = {
    None: 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
_UNIT_SECONDS = {
    "Second": 1.0,
    "Minute": 60.0,
    "Hour": 3600.0,
    "Day": 86400.0,
    "Month": 30 * 86400.0,
    "Year": 365 * 86400.0,
}
_HTPASSWD_SHA = re.compile(r"^[^:\s]+:\{SHA\}[A-Za-z0-9+/]{27}=$")
_BTP_FIELDS = frozenset(
    {
        "mergeType",
        "targetRef",
        "targetRefs",
        "timeout",
        "retry",
        "loadBalancer",
        "circuitBreaker",
        "rateLimit",
        "requestBuffer",
        "routingType",
    }
)
_SP_FIELDS = frozenset({"targetRef", "targetRefs", "authorization", "basicAuth", "extAuth"})


def parse_duration(value: str) -> float | None:
    """Gateway API duration (``1h``, ``10s``, ``500ms``, ``1m30s``) in seconds; None if bad."""
    match = _DURATION_RE.match(value.strip()) if value else None
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def parse_quantity(value: Any) -> int | None:
    """A Kubernetes quantity (``20Mi``, ``1G``, ``512``) in bytes; None if not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    match = _QUANTITY_RE.match(str(value).strip())
    if match is None:
        return None
    return int(float(match.group(1)) * _QUANTITY_UNITS[match.group(2)])


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def policy_id(obj: Mapping[str, Any]) -> str:
    """``<Kind> <ns>/<name>`` for notes."""
    meta = _meta(obj)
    return f"{obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name', '')}"


# --------------------------------------------------------------------------- attachment


@dataclass(frozen=True)
class RouteTarget:
    """Where a route entry sits: the route (kind, ns, name, rule name) and its listener."""

    kind: str
    namespace: str
    name: str
    rule_name: str | None
    gateway_namespace: str
    gateway_name: str
    listener: str


class Policies:
    """Envoy Gateway policies and filters of a snapshot of objects, indexed by target."""

    def __init__(self, objects: Iterable[Mapping[str, Any]]) -> None:
        # (policy kind, target kind, namespace, name, section or None) → candidates
        self._by_target: dict[tuple[str, str, str, str, str | None], list[Mapping[str, Any]]]
        self._by_target = defaultdict(list)
        self.filters: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.backends: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._merged: dict[tuple[int, int], Mapping[str, Any]] = {}
        for obj in objects:
            kind = obj.get("kind")
            api = str(obj.get("apiVersion", ""))
            if not api.startswith(ENVOY_GATEWAY_GROUP + "/"):
                continue
            meta = _meta(obj)
            key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            if kind == "HTTPRouteFilter":
                self.filters[key] = obj
            elif kind == "Backend":
                self.backends[key] = obj
            elif kind in ("BackendTrafficPolicy", "SecurityPolicy", "ClientTrafficPolicy"):
                spec = _spec(obj)
                refs = _list(spec.get("targetRefs"))
                if isinstance(spec.get("targetRef"), Mapping):
                    refs = [*refs, spec["targetRef"]]
                for ref in refs:
                    if not isinstance(ref, Mapping):
                        continue
                    if str(ref.get("group") or "") != GATEWAY_GROUP:
                        continue
                    if ref.get("namespace") not in (None, "", key[0]):
                        continue  # policies attach in their own namespace only
                    section = ref.get("sectionName")
                    target = (
                        str(kind),
                        str(ref.get("kind") or ""),
                        key[0],
                        str(ref.get("name") or ""),
                        str(section) if section else None,
                    )
                    if obj not in self._by_target[target]:
                        self._by_target[target].append(obj)
        for candidates in self._by_target.values():
            candidates.sort(
                key=lambda o: (
                    str(_meta(o).get("creationTimestamp", "")),
                    str(_meta(o).get("name", "")),
                )
            )

    def find(self, policy_kind: str, where: RouteTarget) -> Mapping[str, Any] | None:
        """The policy of ``policy_kind`` that applies to a route entry, or None.

        A route-level policy with ``mergeType`` (StrategicMerge or JSONMerge) is merged onto
        the Gateway-level policy that would apply otherwise: its fields win, maps merge, lists
        are replaced (what both merge types do for the fields implemented here). The merged
        object keeps the route-level policy's metadata.
        """
        winners = [
            found[0]
            for found in (self._by_target.get((policy_kind, *level)) for level in _levels(where))
            if found
        ]
        if not winners:
            return None
        chosen = winners[0]
        if _spec(chosen).get("mergeType") and len(winners) > 1:
            parent = next((w for w in winners[1:] if _is_gateway_level(w, where)), None)
            if parent is not None:
                key = (id(chosen), id(parent))
                if key in self._merged:
                    return self._merged[key]
                merged = _merge(
                    {
                        k: v
                        for k, v in _spec(parent).items()
                        if k not in ("targetRefs", "targetRef")
                    },
                    {k: v for k, v in _spec(chosen).items() if k != "mergeType"},
                )
                self._merged[key] = {**chosen, "spec": merged}
                return self._merged[key]
        return chosen

    def gateway_policies(self, policy_kind: str, namespace: str, name: str) -> list[str]:
        """Names of policies of a kind that target a Gateway (for notes)."""
        return sorted(
            str(_meta(o).get("name", ""))
            for (kind, target_kind, ns, target, _section), found in self._by_target.items()
            if kind == policy_kind
            and target_kind == "Gateway"
            and (ns, target) == (namespace, name)
            for o in found
        )


def _levels(where: RouteTarget) -> list[tuple[str, str, str, str | None]]:
    levels: list[tuple[str, str, str, str | None]] = []
    if where.rule_name:
        levels.append((where.kind, where.namespace, where.name, where.rule_name))
    levels.append((where.kind, where.namespace, where.name, None))
    levels.append(("Gateway", where.gateway_namespace, where.gateway_name, where.listener))
    levels.append(("Gateway", where.gateway_namespace, where.gateway_name, None))
    return levels


def _is_gateway_level(obj: Mapping[str, Any], where: RouteTarget) -> bool:
    refs = [*_list(_spec(obj).get("targetRefs")), _spec(obj).get("targetRef")]
    return any(
        isinstance(r, Mapping)
        and r.get("kind") == "Gateway"
        and r.get("name") == where.gateway_name
        for r in refs
    )


def _merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- traffic


@dataclass(frozen=True)
class ClusterSettings:
    """The cluster-level part of a BackendTrafficPolicy (None: Envoy Gateway's default)."""

    connect_timeout_seconds: float | None = None
    lb_policy: ir.LbPolicy | None = None
    hash_table_size: int | None = None
    circuit_breaker: ir.CircuitBreaker | None = None
    idle_timeout_seconds: float | None = None
    max_connection_duration_seconds: float | None = None
    routing_to_service: bool = False

    @property
    def empty(self) -> bool:
        return self == ClusterSettings()


@dataclass(frozen=True)
class TrafficPolicy:
    namespace: str
    name: str
    cluster: ClusterSettings = ClusterSettings()
    hash_policies: tuple[ir.HashPolicy, ...] = ()
    retry: ir.Retry | None = None
    request_timeout_seconds: float | None = None
    stream_idle_timeout_seconds: float | None = None
    rate_limit: ir.LocalRateLimit | None = None
    request_buffer_bytes: int | None = None
    notes: tuple[str, ...] = ()


def _duration_field(
    spec: Mapping[str, Any], key: str, where: str, notes: list[str]
) -> float | None:
    raw = spec.get(key)
    if raw is None:
        return None
    value = parse_duration(str(raw))
    if value is None:
        notes.append(f"{where}.{key}: {raw!r} is not a duration; ignored")
    return value


def _int_field(spec: Mapping[str, Any], key: str) -> int | None:
    value = spec.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def traffic_policy(obj: Mapping[str, Any]) -> TrafficPolicy:
    """A BackendTrafficPolicy as far as the controller implements it (see the module doc)."""
    meta, spec = _meta(obj), _spec(obj)
    who = policy_id(obj)
    notes: list[str] = []
    ignored = sorted(k for k in spec if k not in _BTP_FIELDS)
    if ignored:
        notes.append(f"{who}: not implemented, ignored: {', '.join(ignored)}")

    timeout = _map(spec.get("timeout"))
    tcp, http = _map(timeout.get("tcp")), _map(timeout.get("http"))
    for key in sorted(
        set(http)
        - {
            "connectionIdleTimeout",
            "maxConnectionDuration",
            "requestTimeout",
            "streamIdleTimeout",
        }
    ):
        notes.append(f"{who}: timeout.http.{key} not implemented, ignored")

    lb_policy, table_size, hashes = _load_balancer(_map(spec.get("loadBalancer")), who, notes)
    breaker = _circuit_breaker(_map(spec.get("circuitBreaker")), who, notes)
    cluster = ClusterSettings(
        connect_timeout_seconds=_duration_field(tcp, "connectTimeout", "timeout.tcp", notes),
        lb_policy=lb_policy,
        hash_table_size=table_size,
        circuit_breaker=breaker,
        idle_timeout_seconds=_duration_field(http, "connectionIdleTimeout", "timeout.http", notes),
        max_connection_duration_seconds=_duration_field(
            http, "maxConnectionDuration", "timeout.http", notes
        ),
        routing_to_service=spec.get("routingType") == "Service",
    )
    buffer_bytes: int | None = None
    if "requestBuffer" in spec:
        buffer_bytes = parse_quantity(_map(spec.get("requestBuffer")).get("limit"))
        if buffer_bytes is None:
            notes.append(f"{who}: requestBuffer.limit is not a quantity; ignored")
    return TrafficPolicy(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        cluster=cluster,
        hash_policies=hashes,
        retry=_retry(_map(spec.get("retry")), who, notes) if "retry" in spec else None,
        request_timeout_seconds=_duration_field(http, "requestTimeout", "timeout.http", notes),
        stream_idle_timeout_seconds=_duration_field(
            http, "streamIdleTimeout", "timeout.http", notes
        ),
        rate_limit=_rate_limit(_map(spec.get("rateLimit")), who, notes)
        if "rateLimit" in spec
        else None,
        request_buffer_bytes=buffer_bytes,
        notes=tuple(notes),
    )


def _load_balancer(
    spec: Mapping[str, Any], who: str, notes: list[str]
) -> tuple[ir.LbPolicy | None, int | None, tuple[ir.HashPolicy, ...]]:
    if not spec:
        return None, None, ()
    kind = spec.get("type")
    for key in sorted(set(spec) - {"type", "consistentHash"}):
        notes.append(f"{who}: loadBalancer.{key} not implemented, ignored")
    if kind in ("RoundRobin", "LeastRequest", "Random"):
        return kind, None, ()
    if kind != "ConsistentHash":
        notes.append(f"{who}: loadBalancer.type {kind!r} not implemented; LeastRequest used")
        return None, None, ()
    consistent = _map(spec.get("consistentHash"))
    table = _int_field(consistent, "tableSize")
    how = consistent.get("type")
    hashes: list[ir.HashPolicy] = []
    if how == "SourceIP":
        hashes.append(ir.HashPolicy("SourceIP"))
    elif how == "Header":
        headers = [consistent.get("header")] if consistent.get("header") else []
        headers += _list(consistent.get("headers"))
        hashes += [
            ir.HashPolicy("Header", str(h["name"]))
            for h in headers
            if isinstance(h, Mapping) and h.get("name")
        ]
    elif how == "Cookie":
        cookie = _map(consistent.get("cookie"))
        if cookie.get("name"):
            ttl = parse_duration(str(cookie["ttl"])) if cookie.get("ttl") is not None else None
            attributes = tuple(
                sorted((str(k), str(v)) for k, v in _map(cookie.get("attributes")).items())
            )
            hashes.append(ir.HashPolicy("Cookie", str(cookie["name"]), ttl, attributes))
    elif how == "QueryParams":
        hashes += [
            ir.HashPolicy("QueryParam", str(q["name"]))
            for q in _list(consistent.get("queryParams"))
            if isinstance(q, Mapping) and q.get("name")
        ]
    if not hashes:
        notes.append(f"{who}: consistentHash type {how!r} not implemented; LeastRequest used")
        return None, None, ()
    return "Maglev", table, tuple(hashes)


def _circuit_breaker(
    spec: Mapping[str, Any], who: str, notes: list[str]
) -> ir.CircuitBreaker | None:
    if not spec:
        return None
    for key in sorted(
        set(spec)
        - {
            "maxConnections",
            "maxPendingRequests",
            "maxParallelRequests",
            "maxParallelRetries",
            "maxRequestsPerConnection",
        }
    ):
        notes.append(f"{who}: circuitBreaker.{key} not implemented, ignored")
    return ir.CircuitBreaker(
        max_connections=_int_field(spec, "maxConnections"),
        max_pending_requests=_int_field(spec, "maxPendingRequests"),
        max_parallel_requests=_int_field(spec, "maxParallelRequests"),
        max_parallel_retries=_int_field(spec, "maxParallelRetries"),
        max_requests_per_connection=_int_field(spec, "maxRequestsPerConnection"),
    )


def _retry(spec: Mapping[str, Any], who: str, notes: list[str]) -> ir.Retry:
    retry_on = _map(spec.get("retryOn"))
    per = _map(spec.get("perRetry"))
    backoff = _map(per.get("backOff"))
    codes = tuple(int(c) for c in _list(retry_on.get("httpStatusCodes")) if isinstance(c, int))
    triggers = [str(t) for t in _list(retry_on.get("triggers"))]
    if codes and "retriable-status-codes" not in triggers:
        triggers.append("retriable-status-codes")
    if not triggers:
        # Envoy Gateway's default retryOn: connection failures and 503s.
        triggers = ["connect-failure", "refused-stream", "unavailable", "cancelled"]
        triggers += ["retriable-status-codes"]
        codes = codes or (503,)
    if "numAttemptsPerPriority" in spec:
        notes.append(f"{who}: retry.numAttemptsPerPriority not implemented, ignored")
    attempts = _int_field(spec, "numRetries")
    return ir.Retry(
        attempts=2 if attempts is None else attempts,
        codes=codes,
        backoff_seconds=_duration_field(backoff, "baseInterval", "retry.perRetry.backOff", notes),
        max_backoff_seconds=_duration_field(
            backoff, "maxInterval", "retry.perRetry.backOff", notes
        ),
        on_connection_error=False,
        triggers=tuple(triggers),
        per_try_timeout_seconds=_duration_field(per, "timeout", "retry.perRetry", notes),
    )


def _rate_limit(spec: Mapping[str, Any], who: str, notes: list[str]) -> ir.LocalRateLimit | None:
    if spec.get("type", "Local") != "Local" or "global" in spec:
        notes.append(f"{who}: rateLimit type Global needs a rate-limit service; not implemented")
        return None
    rules: list[ir.RateLimitRule] = []
    for raw in _list(_map(spec.get("local")).get("rules")):
        if not isinstance(raw, Mapping):
            continue
        limit = _map(raw.get("limit"))
        requests = _int_field(limit, "requests")
        unit = _UNIT_SECONDS.get(str(limit.get("unit")))
        if requests is None or unit is None:
            notes.append(f"{who}: a rate limit rule without requests/unit; ignored")
            continue
        selectors = [s for s in _list(raw.get("clientSelectors")) if isinstance(s, Mapping)]
        if len(selectors) > 1:
            notes.append(f"{who}: only the first clientSelector of a rule is implemented")
        selector = selectors[0] if selectors else {}
        for key in sorted(set(selector) - {"sourceCIDR", "headers"}):
            notes.append(f"{who}: clientSelectors.{key} not implemented, ignored")
        for key in sorted(set(raw) - {"limit", "clientSelectors"}):
            notes.append(f"{who}: rateLimit rule {key} not implemented, ignored")
        cidr_spec = _map(selector.get("sourceCIDR"))
        cidr: str | None = None
        if cidr_spec.get("value"):
            try:
                cidr = str(ipaddress.ip_network(str(cidr_spec["value"]), strict=False))
            except ValueError:
                notes.append(f"{who}: sourceCIDR {cidr_spec['value']!r} is not a CIDR; ignored")
                continue
        headers: list[tuple[str, str, str]] = []
        for header in _list(selector.get("headers")):
            if not isinstance(header, Mapping) or not header.get("name"):
                continue
            kind = str(header.get("type") or "Exact")
            if kind == "Distinct":
                headers.append((str(header["name"]).lower(), "Distinct", ""))
            elif kind in ("Exact", "RegularExpression") and header.get("value") is not None:
                headers.append((str(header["name"]).lower(), kind, str(header["value"])))
            else:
                notes.append(f"{who}: header selector {header.get('name')} not implemented")
        rules.append(
            ir.RateLimitRule(
                requests=requests,
                fill_seconds=unit,
                client_cidr=cidr,
                distinct_client=cidr_spec.get("type") == "Distinct",
                headers=tuple(headers),
            )
        )
    return ir.LocalRateLimit(tuple(rules)) if rules else None


# --------------------------------------------------------------------------- security


@dataclass(frozen=True)
class ExtAuthSpec:
    """An HTTP extAuth whose backend the IR builder still has to resolve."""

    backend_ref: Mapping[str, Any]
    path_prefix: str = ""
    path_override: str | None = None
    headers_to_backend: tuple[str, ...] = ()
    headers_to_ext_auth: tuple[str, ...] = ()
    timeout_seconds: float = 10.0
    fail_open: bool = False


@dataclass(frozen=True)
class SecurityPolicy:
    namespace: str
    name: str
    authorization: ir.Authorization | None = None
    basic_auth_users: Mapping[str, Any] | None = None  # the Secret reference
    ext_auth: ExtAuthSpec | None = None
    unenforceable: tuple[str, ...] = ()  # why covered routes must answer 500 instead
    notes: tuple[str, ...] = field(default=())

    @property
    def filter_name(self) -> str:
        return f"{self.namespace}/{self.name}"


def security_policy(obj: Mapping[str, Any]) -> SecurityPolicy:
    meta, spec = _meta(obj), _spec(obj)
    who = policy_id(obj)
    problems: list[str] = []
    ignored = sorted(k for k in spec if k not in _SP_FIELDS)
    if ignored:
        # CORS, JWT, OIDC, API keys...: all restrict access; serving without them is unsafe.
        problems.append(f"{who}: {', '.join(ignored)} not implemented")
    authorization = None
    if "authorization" in spec:
        authorization = _authorization(_map(spec.get("authorization")), who, problems)
    basic = _map(spec.get("basicAuth"))
    users = _map(basic.get("users")) if basic else None
    if basic and not users:
        problems.append(f"{who}: basicAuth.users is missing")
    ext_auth = _ext_auth(_map(spec.get("extAuth")), who, problems) if "extAuth" in spec else None
    notes = []
    if basic and basic.get("forwardUsernameHeader"):
        notes.append(f"{who}: basicAuth.forwardUsernameHeader not implemented, ignored")
    return SecurityPolicy(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        authorization=authorization,
        basic_auth_users=users or None,
        ext_auth=ext_auth,
        unenforceable=tuple(problems),
        notes=tuple(notes),
    )


def _authorization(
    spec: Mapping[str, Any], who: str, problems: list[str]
) -> ir.Authorization | None:
    default = spec.get("defaultAction", "Deny")
    rules: list[ir.AuthorizationRule] = []
    for index, raw in enumerate(_list(spec.get("rules"))):
        if not isinstance(raw, Mapping):
            continue
        principal = _map(raw.get("principal"))
        extra = sorted(set(principal) - {"clientCIDRs"}) + sorted(
            set(raw) - {"name", "action", "principal"}
        )
        if extra:
            problems.append(
                f"{who}: authorization rule {index}: {', '.join(extra)} not implemented"
            )
            return None
        try:
            cidrs = tuple(
                str(ipaddress.ip_network(str(c), strict=False))
                for c in _list(principal.get("clientCIDRs"))
            )
        except ValueError as err:
            problems.append(f"{who}: authorization rule {index}: {err}")
            return None
        rules.append(ir.AuthorizationRule(allow=raw.get("action") == "Allow", client_cidrs=cidrs))
    return ir.Authorization(default_allow=default == "Allow", rules=tuple(rules))


def _ext_auth(spec: Mapping[str, Any], who: str, problems: list[str]) -> ExtAuthSpec | None:
    http = _map(spec.get("http"))
    if not http:
        problems.append(f"{who}: extAuth without http (gRPC) not implemented")
        return None
    refs = [r for r in _list(http.get("backendRefs")) if isinstance(r, Mapping)]
    if isinstance(http.get("backendRef"), Mapping):
        refs.insert(0, http["backendRef"])
    for key in sorted(set(spec) - {"http", "failOpen", "timeout", "headersToExtAuth"}):
        problems.append(f"{who}: extAuth.{key} not implemented")
    for key in sorted(
        set(http) - {"backendRef", "backendRefs", "path", "pathOverride", "headersToBackend"}
    ):
        problems.append(f"{who}: extAuth.http.{key} not implemented")
    if not refs:
        problems.append(f"{who}: extAuth.http has no backendRefs")
        return None
    timeout = parse_duration(str(spec["timeout"])) if spec.get("timeout") else None
    override = http.get("pathOverride")
    return ExtAuthSpec(
        backend_ref=refs[0],
        path_prefix=str(http.get("path") or ""),
        path_override=str(override) if override else None,
        headers_to_backend=tuple(str(h) for h in _list(http.get("headersToBackend"))),
        headers_to_ext_auth=tuple(str(h) for h in _list(spec.get("headersToExtAuth"))),
        timeout_seconds=timeout if timeout is not None else 10.0,
        fail_open=spec.get("failOpen") is True,
    )


def htpasswd_users(secret: Mapping[str, Any] | None) -> tuple[str, list[str]]:
    """The ``.htpasswd`` lines of a Secret that Envoy's basic_auth accepts, and notes.

    Envoy verifies ``{SHA}`` hashes only (as Envoy Gateway documents); other lines are dropped
    with a note (Envoy would reject the whole route configuration for one of them).
    """
    if secret is None:
        return "", ["Secret not found"]
    raw = _map(secret.get("data")).get(".htpasswd")
    if raw is None:
        return "", ["the Secret has no .htpasswd key"]
    try:
        text = base64.b64decode(str(raw), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", [".htpasswd is not base64 text"]
    good: list[str] = []
    dropped: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if _HTPASSWD_SHA.match(line):
            good.append(line)
        else:
            dropped.append(line.split(":", 1)[0])
    notes = []
    if dropped:
        notes.append(
            "users without a {SHA} password hash dropped (Envoy supports only those): "
            + ", ".join(dropped)
        )
    return ("\n".join(good) + "\n") if good else "", notes


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class RouteFilter:
    """What an HTTPRouteFilter adds to a rule."""

    path_rewrite: ir.PathRewrite | None = None
    direct_response: ir.DirectResponse | None = None
    content_type: str | None = None
    problems: tuple[str, ...] = ()  # set: the rule answers 500


def route_filter(obj: Mapping[str, Any] | None) -> RouteFilter:
    if obj is None:
        return RouteFilter(problems=("the HTTPRouteFilter does not exist",))
    spec = _spec(obj)
    who = policy_id(obj)
    problems = [
        f"{who}: {k} not implemented" for k in sorted(set(spec) - {"urlRewrite", "directResponse"})
    ]
    rewrite: ir.PathRewrite | None = None
    url = _map(spec.get("urlRewrite"))
    if url.get("hostname") is not None:
        problems.append(f"{who}: urlRewrite.hostname not implemented")
    path = _map(url.get("path"))
    if path:
        regex = _map(path.get("replaceRegexMatch"))
        if path.get("type") == "ReplaceRegexMatch" and regex.get("pattern"):
            rewrite = ir.PathRewrite(
                "ReplaceRegexMatch", str(regex.get("substitution", "")), str(regex["pattern"])
            )
        else:
            problems.append(f"{who}: urlRewrite.path type {path.get('type')!r} not implemented")
    response: ir.DirectResponse | None = None
    content_type: str | None = None
    direct = _map(spec.get("directResponse"))
    if direct:
        body = _map(direct.get("body"))
        if body and body.get("type", "Inline") != "Inline":
            problems.append(
                f"{who}: directResponse body of type {body.get('type')} not implemented"
            )
        status = _int_field(direct, "statusCode") or 200
        response = ir.DirectResponse(status, str(body.get("inline") or ""))
        content_type = str(direct["contentType"]) if direct.get("contentType") else None
    return RouteFilter(rewrite, response, content_type, tuple(problems))


# --------------------------------------------------------------------------- backends


def backend_endpoints(
    obj: Mapping[str, Any] | None, port: int | None
) -> tuple[tuple[ir.Endpoint, ...], tuple[tuple[str, int], ...], str | None]:
    """(IP endpoints, DNS names, problem) of an Envoy Gateway Backend for ``port``.

    Each endpoint has its own port; ``port`` (from the backendRef) fills in a missing one.
    """
    if obj is None:
        return (), (), "the Backend does not exist"
    spec = _spec(obj)
    if spec.get("type") not in (None, "Endpoints"):
        return (), (), f"Backend type {spec.get('type')} is not implemented"
    ips: list[ir.Endpoint] = []
    names: list[tuple[str, int]] = []
    for raw in _list(spec.get("endpoints")):
        raw = _map(raw)
        if raw.get("ip"):
            ip = _map(raw["ip"])
            ips.append(ir.Endpoint(str(ip.get("address")), int(ip.get("port") or port or 0)))
        elif raw.get("fqdn"):
            fqdn = _map(raw["fqdn"])
            names.append((str(fqdn.get("hostname")), int(fqdn.get("port") or port or 0)))
        else:
            return (), (), "only ip and fqdn Backend endpoints are implemented"
    if ips and names:
        return (), (), "a Backend mixing ip and fqdn endpoints is not implemented"
    if not ips and not names:
        return (), (), "the Backend has no endpoints"
    return tuple(sorted(set(ips), key=lambda e: (e.address, e.port))), tuple(sorted(names)), None


def backend_tls(obj: Mapping[str, Any] | None) -> bool:
    """Does the Backend ask for TLS with the system CAs (``tls.wellKnownCACertificates``)?"""
    tls = _map(_spec(obj or {}).get("tls"))
    return tls.get("wellKnownCACertificates") == "System"
