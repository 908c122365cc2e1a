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
  and ``extAuth`` over HTTP or gRPC (``statusOnError``, ``bodyToExtAuth``). A security
  feature the controller cannot enforce makes the covered routes answer 500 (fail closed),
  never serve unprotected.
- **HTTPRouteFilter** (:func:`route_filter`): ``urlRewrite.path`` ReplaceRegexMatch,
  ``urlRewrite.hostname`` of type Header is not implemented (reported), and ``directResponse``
  with an inline body.
- **Backend** (:func:`backend_endpoints`): ``ip`` and ``fqdn`` endpoints (one port),
  ``appProtocols`` h2c.
- **ClientTrafficPolicy** (:func:`client_policy`, attached by :meth:`Policies.listener_policy`
  to Gateway listeners: ``sectionName`` > whole ListenerSet > whole Gateway): ``tls``
  (min/maxVersion, ciphers, ecdhCurves, signatureAlgorithms, alpnProtocols, session
  resumption, and clientValidation: caCertificateRefs from a Secret or ConfigMap ``ca.crt``,
  optional/mode, spkiHashes, certificateHashes, subjectAltNames, crl, allowExpiredCertificate).
  Values Envoy would reject are refused here (one rejected listener would stop every update).
  A setting that protects something and is not implemented (``clientIPDetection``, ``path``,
  most of ``headers``, any unknown field) makes the listener fail closed: it is not served and
  reports Programmed=False. Settings that only tune connections (timeouts, keepalive, HTTP/1,
  HTTP/2, HTTP/3, PROXY protocol, connection limits, health check) are noted and ignored.
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
from kubectl_gw.model import ENVOY_GATEWAY_GROUP, GATEWAY_GROUP, meta_of, spec_of

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
_CTP_TUNING_FIELDS = frozenset(
    {
        "tcpKeepalive",
        "timeout",
        "connection",
        "http1",
        "http2",
        "http3",
        "grpc",
        "healthCheck",
        "enableProxyProtocol",
        "proxyProtocol",
    }
)
"""ClientTrafficPolicy fields that tune connections and protect nothing: ignored with a note."""
_CTP_COSMETIC_HEADERS = frozenset(
    {"enableEnvoyHeaders", "disableRateLimitHeaders", "preserveXRequestID", "requestID"}
)
TLS_VERSIONS = ("Auto", "1.0", "1.1", "1.2", "1.3")
CIPHER_SUITES = frozenset(
    {
        # BoringSSL names and their IANA aliases, as Envoy documents them (TLS 1.0-1.2 only).
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-AES128-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "ECDHE-RSA-AES128-SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "AES128-GCM-SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        "AES128-SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "ECDHE-RSA-AES256-SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "AES256-GCM-SHA384",
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "AES256-SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
    }
)
ECDH_CURVES = frozenset({"X25519", "P-256", "P-384", "P-521", "X25519MLKEM768"})
SIGNATURE_ALGORITHMS = frozenset(
    {
        "rsa_pkcs1_sha1",
        "rsa_pkcs1_sha256",
        "rsa_pkcs1_sha384",
        "rsa_pkcs1_sha512",
        "ecdsa_sha1",
        "ecdsa_secp256r1_sha256",
        "ecdsa_secp384r1_sha384",
        "ecdsa_secp521r1_sha512",
        "rsa_pss_rsae_sha256",
        "rsa_pss_rsae_sha384",
        "rsa_pss_rsae_sha512",
        "ed25519",
    }
)
ALPN_PROTOCOLS = frozenset({"http/1.0", "http/1.1", "h2"})
_SAN_TYPES = {
    "dnsNames": "DNS",
    "emailAddresses": "EMAIL",
    "ipAddresses": "IP_ADDRESS",
    "uris": "URI",
    "otherNames": "OTHER_NAME",
}
_STRING_MATCH_TYPES = frozenset({"Exact", "Prefix", "Suffix", "RegularExpression"})
_SPKI_HASH = re.compile(r"^[A-Za-z0-9+/]{43}=$")
_CERT_HASH = re.compile(r"^(?:[0-9A-Fa-f]{64}|[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31})$")
_OID = re.compile(r"^[0-2](?:\.(?:0|[1-9][0-9]*))+$")


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


_meta = meta_of
_spec = spec_of


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

    def listener_policy(
        self,
        policy_kind: str,
        owner: tuple[str, str, str],
        listener: str,
        gateway: tuple[str, str] | None,
    ) -> Mapping[str, Any] | None:
        """The policy of ``policy_kind`` for one Gateway listener, or None.

        ``owner`` is (kind, namespace, name) of the Gateway or ListenerSet declaring the
        listener, ``gateway`` the Gateway it merges into. A policy naming the listener
        (``sectionName``) wins over one on its whole owner, which wins over one on the whole
        Gateway a ListenerSet is attached to; at each level the oldest (then the name) wins.
        """
        owner_kind, namespace, name = owner
        levels: list[tuple[str, str, str, str | None]] = [
            (owner_kind, namespace, name, listener),
            (owner_kind, namespace, name, None),
        ]
        if gateway is not None and owner_kind != "Gateway":
            levels.append(("Gateway", gateway[0], gateway[1], None))
        for level in levels:
            found = self._by_target.get((policy_kind, *level))
            if found:
                return found[0]
        return None

    def section_targets(self, policy_kind: str) -> list[tuple[str, str, str, str, str]]:
        """(target kind, namespace, name, sectionName, policy name) of every policy of a kind
        that names a section, sorted (to report sections that do not exist)."""
        return sorted(
            (target_kind, ns, target, section, str(_meta(o).get("name", "")))
            for (kind, target_kind, ns, target, section), found in self._by_target.items()
            if kind == policy_kind and section is not None
            for o in found
        )

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


# --------------------------------------------------------------------------- client traffic


@dataclass(frozen=True)
class ClientValidationSpec:
    """``tls.clientValidation`` whose CA and CRL references the IR builder still resolves."""

    ca_refs: tuple[Mapping[str, Any], ...] = ()
    crl_refs: tuple[Mapping[str, Any], ...] = ()
    only_verify_leaf_crl: bool = False
    require_certificate: bool = True
    accept_untrusted: bool = False
    spki_hashes: tuple[str, ...] = ()
    certificate_hashes: tuple[str, ...] = ()
    subject_alt_names: tuple[ir.SanMatch, ...] = ()
    allow_expired: bool = False


@dataclass(frozen=True)
class ClientTLS:
    """``tls`` of a ClientTrafficPolicy (None: Envoy's default)."""

    min_version: ir.TlsVersion | None = None
    max_version: ir.TlsVersion | None = None
    ciphers: tuple[str, ...] = ()
    ecdh_curves: tuple[str, ...] = ()
    signature_algorithms: tuple[str, ...] = ()
    alpn: tuple[str, ...] | None = None
    stateless_resumption: bool = False
    stateful_resumption: bool = False
    validation: ClientValidationSpec | None = None


@dataclass(frozen=True)
class ClientPolicy:
    namespace: str
    name: str
    tls: ClientTLS | None = None
    unenforceable: tuple[str, ...] = ()  # set: the listener must not be served
    notes: tuple[str, ...] = ()


def client_policy(obj: Mapping[str, Any]) -> ClientPolicy:
    """A ClientTrafficPolicy as far as the controller implements it (see the module doc)."""
    meta, spec = _meta(obj), _spec(obj)
    who = policy_id(obj)
    problems: list[str] = []
    notes: list[str] = []
    for key in sorted(spec):
        if key in ("targetRef", "targetRefs", "tls"):
            continue
        if key in _CTP_TUNING_FIELDS:
            notes.append(f"{who}: {key} not implemented, ignored")
        elif key == "headers":
            headers = _map(spec.get("headers"))
            for sub in sorted(headers):
                if sub in _CTP_COSMETIC_HEADERS:
                    notes.append(f"{who}: headers.{sub} not implemented, ignored")
                elif sub == "withUnderscoresAction" and headers[sub] == "Allow":
                    continue  # what the HCM does
                else:
                    problems.append(f"{who}: headers.{sub} not implemented")
        elif key == "path":
            path = _map(spec.get("path"))
            for sub in sorted(path):
                # the HCM keeps escaped slashes and merges slashes; only those values are true
                if (sub, path[sub]) in (
                    ("escapedSlashesAction", "KeepUnchanged"),
                    ("disableMergeSlashes", False),
                ):
                    continue
                problems.append(f"{who}: path.{sub} {path[sub]!r} not implemented")
        else:
            problems.append(f"{who}: {key} not implemented")
    tls = _client_tls(_map(spec.get("tls")), who, problems, notes) if "tls" in spec else None
    return ClientPolicy(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        tls=tls,
        unenforceable=tuple(problems),
        notes=tuple(notes),
    )


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in _list(value))


def _client_tls(
    spec: Mapping[str, Any], who: str, problems: list[str], notes: list[str]
) -> ClientTLS:
    known = {
        "minVersion",
        "maxVersion",
        "ciphers",
        "ecdhCurves",
        "signatureAlgorithms",
        "alpnProtocols",
        "clientValidation",
        "session",
        "fingerprints",
    }
    for key in sorted(set(spec) - known):
        problems.append(f"{who}: tls.{key} not implemented")
    if spec.get("fingerprints"):
        notes.append(f"{who}: tls.fingerprints not implemented, ignored (logging only)")
    versions: list[ir.TlsVersion | None] = []
    for key in ("minVersion", "maxVersion"):
        raw = spec.get(key)
        if raw is None:
            versions.append(None)
        elif str(raw) in TLS_VERSIONS:
            versions.append(str(raw))  # type: ignore[arg-type]
        else:
            problems.append(f"{who}: tls.{key} {raw!r} is not one of {', '.join(TLS_VERSIONS)}")
            versions.append(None)
    low, high = versions
    order = {"1.0": 0, "1.1": 1, "1.2": 2, "1.3": 3}
    if low in order and high in order and order[low] > order[high]:
        problems.append(f"{who}: tls.minVersion {low} is above maxVersion {high}")
    ciphers = _strings(spec.get("ciphers"))
    for cipher in ciphers:
        members = cipher[1:-1].split("|") if cipher.startswith("[") else [cipher]
        if not cipher or not all(m in CIPHER_SUITES for m in members):
            problems.append(f"{who}: tls.ciphers: {cipher!r} is not a cipher suite Envoy knows")
    curves = _strings(spec.get("ecdhCurves"))
    problems += [
        f"{who}: tls.ecdhCurves: {c!r} is not a curve Envoy knows"
        for c in curves
        if c not in ECDH_CURVES
    ]
    algorithms = _strings(spec.get("signatureAlgorithms"))
    problems += [
        f"{who}: tls.signatureAlgorithms: {a!r} is not a signature algorithm Envoy knows"
        for a in algorithms
        if a not in SIGNATURE_ALGORITHMS
    ]
    alpn: tuple[str, ...] | None = None
    if "alpnProtocols" in spec:
        alpn = _strings(spec.get("alpnProtocols"))
        problems += [
            f"{who}: tls.alpnProtocols: {a!r} is not http/1.0, http/1.1 or h2"
            for a in alpn
            if a not in ALPN_PROTOCOLS
        ]
    resumption = _map(_map(spec.get("session")).get("resumption"))
    for key in sorted(set(_map(spec.get("session"))) - {"resumption"}):
        problems.append(f"{who}: tls.session.{key} not implemented")
    validation = (
        _client_validation(_map(spec.get("clientValidation")), who, problems)
        if "clientValidation" in spec
        else None
    )
    return ClientTLS(
        min_version=low,
        max_version=high,
        ciphers=ciphers,
        ecdh_curves=curves,
        signature_algorithms=algorithms,
        alpn=alpn,
        stateless_resumption="stateless" in resumption,
        stateful_resumption="stateful" in resumption,
        validation=validation,
    )


def _client_validation(
    spec: Mapping[str, Any], who: str, problems: list[str]
) -> ClientValidationSpec:
    where = f"{who}: tls.clientValidation"
    known = {
        "optional",
        "mode",
        "caCertificateRefs",
        "spkiHashes",
        "certificateHashes",
        "subjectAltNames",
        "crl",
        "allowExpiredCertificate",
    }
    for key in sorted(set(spec) - known):
        problems.append(f"{where}.{key} not implemented")
    mode = spec.get("mode")
    if mode is None:
        mode = "VerifyIfGiven" if spec.get("optional") is True else "RequireAndVerify"
    modes = {
        # mode: (a certificate is required, an untrusted certificate is accepted)
        "Request": (False, True),
        "RequireAny": (True, True),
        "VerifyIfGiven": (False, False),
        "RequireAndVerify": (True, False),
    }
    if mode not in modes:
        problems.append(f"{where}.mode {mode!r} is not one of {', '.join(modes)}")
        mode = "RequireAndVerify"
    require, untrusted = modes[str(mode)]
    ca_refs = tuple(r for r in _list(spec.get("caCertificateRefs")) if isinstance(r, Mapping))
    if not untrusted and not ca_refs:
        problems.append(f"{where}: mode {mode} needs caCertificateRefs")
    spki = _strings(spec.get("spkiHashes"))
    problems += [
        f"{where}.spkiHashes: {h!r} is not a base64 SHA-256"
        for h in spki
        if not _SPKI_HASH.match(h)
    ]
    hashes = _strings(spec.get("certificateHashes"))
    problems += [
        f"{where}.certificateHashes: {h!r} is not a hex SHA-256"
        for h in hashes
        if not _CERT_HASH.match(h)
    ]
    sans: list[ir.SanMatch] = []
    alt_names = _map(spec.get("subjectAltNames"))
    for key in sorted(alt_names):
        san_type = _SAN_TYPES.get(key)
        if san_type is None:
            problems.append(f"{where}.subjectAltNames.{key} not implemented")
            continue
        for raw in _list(alt_names[key]):
            match = _map(raw)
            kind = str(match.get("type") or "Exact")
            value = match.get("value")
            oid = str(match.get("oid") or "")
            if kind not in _STRING_MATCH_TYPES or not isinstance(value, str) or not value:
                problems.append(f"{where}.subjectAltNames.{key}: {dict(match)!r} not understood")
            elif san_type == "OTHER_NAME" and not _OID.match(oid):
                problems.append(f"{where}.subjectAltNames.otherNames: {oid!r} is not an OID")
            else:
                sans.append(ir.SanMatch(san_type, kind, value, oid))  # type: ignore[arg-type]
    crl = _map(spec.get("crl"))
    crl_refs = tuple(r for r in _list(crl.get("refs")) if isinstance(r, Mapping))
    if crl and not crl_refs:
        problems.append(f"{where}.crl has no refs")
    return ClientValidationSpec(
        ca_refs=ca_refs,
        crl_refs=crl_refs,
        only_verify_leaf_crl=crl.get("onlyVerifyLeafCertificate") is True,
        require_certificate=require,
        accept_untrusted=untrusted,
        spki_hashes=spki,
        certificate_hashes=hashes,
        subject_alt_names=tuple(sans),
        allow_expired=spec.get("allowExpiredCertificate") is True,
    )


_PEM_BLOCK = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\s*"
    r"(?P<body>[A-Za-z0-9+/=\s]*?)\s*-----END (?P=label)-----"
)


def pem_blocks(text: str, label: str) -> list[str]:
    """The PEM blocks of ``label`` (``CERTIFICATE``, ``X509 CRL``) in ``text`` whose body is
    base64 of one DER SEQUENCE of the right length, re-armoured; anything else is dropped.

    Not a full X.509 parse, but what Envoy would choke on first (a rejected SDS secret blocks
    every later secret update) never gets through.
    """
    out: list[str] = []
    for match in _PEM_BLOCK.finditer(text):
        if match.group("label") != label:
            continue
        body = "".join(match.group("body").split())
        try:
            der = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            continue
        if not _der_sequence(der):
            continue
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        out.append(f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n")
    return out


def _der_sequence(der: bytes) -> bool:
    if len(der) < 2 or der[0] != 0x30:
        return False
    first = der[1]
    if first < 0x80:
        return 2 + first == len(der)
    count = first & 0x7F
    if count == 0 or count > 4 or len(der) < 2 + count:
        return False
    length = int.from_bytes(der[2 : 2 + count], "big")
    return 2 + count + length == len(der)


# --------------------------------------------------------------------------- security


@dataclass(frozen=True)
class ExtAuthSpec:
    """An extAuth (HTTP, or gRPC when ``grpc``) whose backend the IR builder still resolves."""

    backend_ref: Mapping[str, Any]
    path_prefix: str = ""
    path_override: str | None = None
    headers_to_backend: tuple[str, ...] = ()
    headers_to_ext_auth: tuple[str, ...] = ()
    timeout_seconds: float = 10.0
    fail_open: bool = False
    grpc: bool = False
    status_on_error: int | None = None
    body_bytes: int | None = None


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
    grpc = _map(spec.get("grpc"))
    if bool(http) == bool(grpc):
        problems.append(f"{who}: extAuth needs exactly one of http and grpc")
        return None
    service = http or grpc
    where = "http" if http else "grpc"
    refs = [r for r in _list(service.get("backendRefs")) if isinstance(r, Mapping)]
    if isinstance(service.get("backendRef"), Mapping):
        refs.insert(0, service["backendRef"])
    known = {
        "http",
        "grpc",
        "failOpen",
        "timeout",
        "headersToExtAuth",
        "statusOnError",
        "bodyToExtAuth",
    }
    for key in sorted(set(spec) - known):
        problems.append(f"{who}: extAuth.{key} not implemented")
    service_keys = {"backendRef", "backendRefs"}
    if http:
        service_keys |= {"path", "pathOverride", "headersToBackend"}
    for key in sorted(set(service) - service_keys):
        problems.append(f"{who}: extAuth.{where}.{key} not implemented")
    if not refs:
        problems.append(f"{who}: extAuth.{where} has no backendRefs")
        return None
    timeout = parse_duration(str(spec["timeout"])) if spec.get("timeout") else None
    status = spec.get("statusOnError")
    if status is not None and not (
        isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599
    ):
        problems.append(f"{who}: extAuth.statusOnError {status!r} is not a 4xx or 5xx code")
        status = None
    body = _map(spec.get("bodyToExtAuth"))
    for key in sorted(set(body) - {"maxRequestBytes"}):
        problems.append(f"{who}: extAuth.bodyToExtAuth.{key} not implemented")
    body_bytes = _int_field(body, "maxRequestBytes") if body else None
    if body and (body_bytes is None or body_bytes <= 0):
        problems.append(f"{who}: extAuth.bodyToExtAuth.maxRequestBytes must be a positive integer")
        body_bytes = None
    override = http.get("pathOverride")
    return ExtAuthSpec(
        backend_ref=refs[0],
        path_prefix=str(http.get("path") or ""),
        path_override=str(override) if override else None,
        headers_to_backend=tuple(str(h) for h in _list(http.get("headersToBackend"))),
        headers_to_ext_auth=tuple(str(h) for h in _list(spec.get("headersToExtAuth"))),
        timeout_seconds=timeout if timeout is not None else 10.0,
        fail_open=spec.get("failOpen") is True,
        grpc=bool(grpc),
        status_on_error=status,
        body_bytes=body_bytes,
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


def backend_h2c(obj: Mapping[str, Any] | None) -> bool:
    """Does the Backend speak HTTP/2 in clear text (appProtocols ``gateway.envoyproxy.io/h2c``)?"""
    return "gateway.envoyproxy.io/h2c" in _strings(_spec(obj or {}).get("appProtocols"))
