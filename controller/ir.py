"""The controller's intermediate representation: what Envoy should do, without Envoy's types.

The IR sits between the Gateway API objects (plus the attachment engine's verdicts) and the
Envoy v3 protobufs. It is made of frozen dataclasses holding tuples, so two IRs built from the
same input compare equal and hash the same, and the translator is a pure function of it.

Naming is by identity, never by position (reference §2.3), so that reordering rules or adding a
Gateway listener never renames an Envoy object and never drains a listener:

- Listener: ``<address>:<port>`` of the socket Envoy binds (:func:`listener_name`);
- plain-HTTP RouteConfiguration: ``http-<port>``, shared by every Gateway listener on the port
  (:func:`http_route_config_name`);
- HTTPS filter chain and its RouteConfiguration: ``<gwNs>/<gw>/<listener>``
  (:func:`https_route_config_name`);
- VirtualHost: its hostname (``*`` for the catch-all);
- Cluster: backend identity ``svc/<ns>/<name>/<port>`` (:func:`service_cluster_name`), and the
  EDS ``service_name`` is the cluster name; forwarded to at L4: ``svc/<ns>/<name>/<port>/tcp``
  or ``/udp`` (:func:`l4_cluster_name`); a UDPRoute split: ``udproute/<ns>/<name>``;
- TLSRoute / TCPRoute filter chain: ``<tls|tcp>/<gwNs>/<gw>/<listener>/<routeNs>/<route>``
  (:func:`l4_chain_name`); UDP listener: ``udp/<address>:<port>`` (:func:`udp_listener_name`);
- Secret: ``<ns>/<name>`` (:func:`secret_name`); the trusted CAs (and CRLs) of a
  ClientTrafficPolicy's client validation: ``clienttrafficpolicy/<ns>/<name>/ca``
  (:func:`client_ca_secret_name`).

Order inside the IR is meaningful only for routes within a virtual host (Gateway API
precedence, decided by the builder); every other collection is kept sorted by name by
:func:`normalize`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

PathKind = Literal["Exact", "PathPrefix", "RegularExpression"]
MatchKind = Literal["Exact", "RegularExpression"]
UpstreamProtocol = Literal["http1", "h2c", "auto", "tcp", "udp"]
"""``tcp``/``udp``: an L4 cluster (TCPRoute, TLSRoute, UDPRoute): no HTTP protocol options."""
RedirectCode = Literal[301, 302, 303, 307, 308]
LbPolicy = Literal["LeastRequest", "RoundRobin", "Random", "Maglev", "RingHash"]
HashKind = Literal["SourceIP", "Header", "Cookie", "QueryParam"]
TlsVersion = Literal["Auto", "1.0", "1.1", "1.2", "1.3"]
SanType = Literal["DNS", "EMAIL", "URI", "IP_ADDRESS", "OTHER_NAME"]
StringMatchKind = Literal["Exact", "Prefix", "Suffix", "RegularExpression"]

# The host's CA bundle, for upstream TLS with the system CAs (Debian/Ubuntu, Fedora/RHEL,
# Alpine, macOS with Homebrew OpenSSL); Envoy reads the file itself. The first that exists.
CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/opt/homebrew/etc/openssl@3/cert.pem",
)


@functools.cache
def system_ca_bundle() -> str | None:
    return next((p for p in CA_BUNDLES if Path(p).is_file()), None)


INVALID_BACKEND_CLUSTER = "invalid-backend-cluster"
"""Deliberately never defined: a weighted share pointing here answers 500 (reference §2.2)."""


# --------------------------------------------------------------------------- names


def listener_name(address: str, port: int) -> str:
    return f"{address}:{port}"


def http_route_config_name(port: int) -> str:
    return f"http-{port}"


def https_route_config_name(gateway_namespace: str, gateway_name: str, listener: str) -> str:
    return f"{gateway_namespace}/{gateway_name}/{listener}"


def service_cluster_name(namespace: str, name: str, port: int) -> str:
    return f"svc/{namespace}/{name}/{port}"


def l4_cluster_name(namespace: str, name: str, port: int, transport: str) -> str:
    """A Service port forwarded to at L4 (``transport`` ``tcp`` or ``udp``): kept apart from
    the HTTP cluster of the same port, which carries HTTP protocol options."""
    return f"{service_cluster_name(namespace, name, port)}/{transport}"


def l4_route_cluster_name(kind: str, namespace: str, name: str) -> str:
    """The cluster of a UDPRoute splitting its datagrams across several backends (one
    locality per backendRef, weighted): Envoy's UDP proxy has no weighted clusters."""
    return f"{kind.lower()}/{namespace}/{name}"


def l4_chain_name(
    protocol: str, gateway_namespace: str, gateway: str, listener: str, namespace: str, route: str
) -> str:
    """An L4 filter chain: ``<tls|tcp>/<gwNs>/<gw>/<listener>/<routeNs>/<route>``."""
    return f"{protocol.lower()}/{gateway_namespace}/{gateway}/{listener}/{namespace}/{route}"


def udp_listener_name(address: str, port: int) -> str:
    return f"udp/{address}:{port}"


def secret_name(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def client_ca_secret_name(policy_namespace: str, policy_name: str) -> str:
    return f"clienttrafficpolicy/{policy_namespace}/{policy_name}/ca"


def h2_cluster_name(base: str) -> str:
    """A backend's cluster spoken to over HTTP/2 (cleartext), for gRPC ext_authz."""
    return f"{base}/h2c"


def backend_cluster_name(namespace: str, name: str, port: int) -> str:
    """An Envoy Gateway ``Backend`` (endpoints by address or DNS name)."""
    return f"backend/{namespace}/{name}/{port}"


def policy_cluster_name(base: str, policy_namespace: str, policy_name: str) -> str:
    """A backend's cluster with the settings of one BackendTrafficPolicy."""
    return f"{base}/btp/{policy_namespace}/{policy_name}"


# --------------------------------------------------------------------------- matches


@dataclass(frozen=True)
class PathMatch:
    kind: PathKind
    value: str


@dataclass(frozen=True)
class HeaderMatch:
    name: str
    value: str
    kind: MatchKind = "Exact"


@dataclass(frozen=True)
class QueryParamMatch:
    name: str
    value: str
    kind: MatchKind = "Exact"


@dataclass(frozen=True)
class RouteMatch:
    path: PathMatch = PathMatch("PathPrefix", "/")
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    method: str | None = None


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class HeaderValue:
    name: str
    value: str


@dataclass(frozen=True)
class HeaderModifier:
    """Gateway API's HTTPHeaderFilter: ``set`` overwrites, ``add`` appends, ``remove`` drops."""

    set: tuple[HeaderValue, ...] = ()
    add: tuple[HeaderValue, ...] = ()
    remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.set or self.add or self.remove)


@dataclass(frozen=True)
class PathRewrite:
    """URLRewrite / RequestRedirect path: ``ReplaceFullPath``, ``ReplacePrefixMatch`` or (Envoy
    Gateway's HTTPRouteFilter) ``ReplaceRegexMatch``.

    For ``ReplacePrefixMatch`` the route's match must be a ``PathPrefix``; ``prefix`` is that
    match value (normalised), ``value`` the replacement. For ``ReplaceRegexMatch`` ``prefix``
    holds the RE2 pattern and ``value`` the substitution (``\\1`` for a capture group).
    """

    kind: Literal["ReplaceFullPath", "ReplacePrefixMatch", "ReplaceRegexMatch"]
    value: str
    prefix: str = ""


@dataclass(frozen=True)
class Redirect:
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    path: PathRewrite | None = None
    status_code: RedirectCode = 302


@dataclass(frozen=True)
class Mirror:
    cluster: str
    percent: float = 100.0


@dataclass(frozen=True)
class Cors:
    allow_origins: tuple[str, ...] = ()  # exact origins, ``*`` or ``scheme://*.domain`` forms
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    allow_credentials: bool = False


@dataclass(frozen=True)
class Timeouts:
    """Gateway API durations already converted to seconds; ``0`` disables a timeout."""

    request: float | None = None
    backend_request: float | None = None


@dataclass(frozen=True)
class Retry:
    """``triggers`` (Envoy ``retry_on`` conditions) replaces the default connection-error set
    when given (Envoy Gateway BackendTrafficPolicy ``retry.retryOn.triggers``)."""

    attempts: int
    codes: tuple[int, ...] = ()
    backoff_seconds: float | None = None
    on_connection_error: bool = True
    triggers: tuple[str, ...] | None = None
    per_try_timeout_seconds: float | None = None
    max_backoff_seconds: float | None = None


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class HashPolicy:
    """What a consistent-hash load balancer hashes (Envoy Gateway ``consistentHash``).

    ``Cookie``: ``name``; Envoy sets the cookie when it is missing only if ``ttl_seconds`` is
    given (0 = a session cookie), with ``attributes`` (sorted ``(name, value)``).
    """

    kind: HashKind
    name: str = ""
    ttl_seconds: float | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CircuitBreaker:
    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_parallel_requests: int | None = None
    max_parallel_retries: int | None = None
    max_requests_per_connection: int | None = None


@dataclass(frozen=True)
class RateLimitRule:
    """One bucket of ``requests`` per ``fill_seconds``, for the requests the selectors match.

    ``client_cidr``: only clients in this CIDR; ``distinct``: one bucket per client address.
    ``headers``: (name, kind, value) with kind ``Exact``/``RegularExpression``, or ``Distinct``
    (one bucket per header value; ``value`` empty).
    """

    requests: int
    fill_seconds: float
    client_cidr: str | None = None
    distinct_client: bool = False
    headers: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class LocalRateLimit:
    rules: tuple[RateLimitRule, ...]


@dataclass(frozen=True)
class AuthorizationRule:
    allow: bool
    client_cidrs: tuple[str, ...]


@dataclass(frozen=True)
class Authorization:
    """SecurityPolicy ``authorization``: the first rule whose principal matches decides."""

    default_allow: bool
    rules: tuple[AuthorizationRule, ...] = ()


@dataclass(frozen=True)
class BasicAuth:
    users: str = field(repr=False)  # htpasswd lines Envoy accepts ({SHA} hashes)


@dataclass(frozen=True)
class ExtAuth:
    """An external authorization service; ``name`` (``<ns>/<policy>``) names its filter.

    ``grpc``: Envoy's ext_authz gRPC protocol (``cluster`` speaks HTTP/2); else plain HTTP,
    where ``path_override`` replaces the request's path in the check, or ``path_prefix`` is put
    in front of it. ``status_on_error``: the answer when the service fails (Envoy: 403).
    ``body_bytes``: buffer up to this much of the request body and send it along.
    """

    name: str
    cluster: str
    authority: str
    path_prefix: str = ""
    path_override: str | None = None
    headers_to_backend: tuple[str, ...] = ()
    headers_to_ext_auth: tuple[str, ...] = ()  # request headers sent to the service (all: ())
    timeout_seconds: float = 10.0
    fail_open: bool = False
    grpc: bool = False
    status_on_error: int | None = None
    body_bytes: int | None = None


@dataclass(frozen=True)
class Security:
    authorization: Authorization | None = None
    basic_auth: BasicAuth | None = None
    ext_auth: ExtAuth | None = None


# --------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class WeightedBackend:
    """One share of a rule's traffic. ``cluster=None`` marks an invalid backend (500)."""

    cluster: str | None
    weight: int = 1


@dataclass(frozen=True)
class Forward:
    backends: tuple[WeightedBackend, ...]
    host_rewrite: str | None = None
    path_rewrite: PathRewrite | None = None
    timeouts: Timeouts = Timeouts()
    retry: Retry | None = None
    mirrors: tuple[Mirror, ...] = ()
    websocket: bool = True
    hash_policies: tuple[HashPolicy, ...] = ()
    idle_timeout_seconds: float | None = None  # the stream idle timeout of this route


@dataclass(frozen=True)
class DirectResponse:
    status: int
    body: str = ""


RouteAction = Forward | Redirect | DirectResponse


@dataclass(frozen=True)
class Route:
    """One Envoy route: one (rule, match) of one xRoute, under one virtual host.

    ``name`` is informative (``<kind>/<ns>/<name>/rule/<i>/match/<j>``, or the rule's name in
    place of ``<i>`` when the rule has one); Envoy does not key anything on it.
    """

    name: str
    match: RouteMatch
    action: RouteAction
    request_headers: HeaderModifier = HeaderModifier()
    response_headers: HeaderModifier = HeaderModifier()
    cors: Cors | None = None
    security: Security | None = None
    rate_limit: LocalRateLimit | None = None
    request_buffer_bytes: int | None = None  # buffer whole requests up to this size (413)


@dataclass(frozen=True)
class VirtualHost:
    name: str  # the hostname (``*`` for the catch-all)
    domains: tuple[str, ...]
    routes: tuple[Route, ...]

    @functools.cached_property
    def ext_auths(self) -> dict[str, ExtAuth]:
        """The external authorization services its routes use, by name (computed once: the
        translator asks on every change, and an unchanged virtual host is the same object)."""
        return {
            r.security.ext_auth.name: r.security.ext_auth
            for r in self.routes
            if r.security is not None and r.security.ext_auth is not None
        }


@dataclass(frozen=True)
class RouteConfig:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


# --------------------------------------------------------------------------- listeners


@dataclass(frozen=True)
class SanMatch:
    """A subject alternative name the client certificate must carry (one of them)."""

    san_type: SanType
    kind: StringMatchKind
    value: str
    oid: str = ""  # OTHER_NAME only


@dataclass(frozen=True)
class ClientValidation:
    """mTLS on a Gateway listener (Envoy Gateway ClientTrafficPolicy ``tls.clientValidation``).

    ``ca_secret``: the SDS validation context with the trusted CAs (and CRLs); None only when
    untrusted certificates are accepted. ``require_certificate``: a client without a
    certificate is refused during the handshake.
    """

    ca_secret: str | None
    require_certificate: bool = True
    accept_untrusted: bool = False
    spki_hashes: tuple[str, ...] = ()
    certificate_hashes: tuple[str, ...] = ()
    subject_alt_names: tuple[SanMatch, ...] = ()
    allow_expired: bool = False


@dataclass(frozen=True)
class TLSTermination:
    """Downstream TLS of one filter chain. The fields after ``alpn`` come from a
    ClientTrafficPolicy; their defaults leave Envoy's own (TLS 1.2-1.3, its cipher and curve
    lists, session resumption on) when no policy applies. ``session_resumption``:
    (stateless, stateful) when a policy decides."""

    secrets: tuple[str, ...]  # SDS secret names, first is the default certificate
    alpn: tuple[str, ...] = ("h2", "http/1.1")
    min_version: TlsVersion | None = None
    max_version: TlsVersion | None = None
    ciphers: tuple[str, ...] = ()
    ecdh_curves: tuple[str, ...] = ()
    signature_algorithms: tuple[str, ...] = ()
    session_resumption: tuple[bool, bool] | None = None
    client_validation: ClientValidation | None = None


@dataclass(frozen=True)
class FilterChain:
    """One HCM. Plain HTTP: the single default chain (``server_names`` empty, ``tls`` None)."""

    name: str
    route_config: RouteConfig
    server_names: tuple[str, ...] = ()
    tls: TLSTermination | None = None


@dataclass(frozen=True)
class TcpProxy:
    """Forward a connection's bytes to one of ``backends`` (weighted; ``cluster=None`` marks a
    share that cannot be served: such connections are closed)."""

    backends: tuple[WeightedBackend, ...]


@dataclass(frozen=True)
class L4Chain:
    """One TLSRoute or TCPRoute on one Gateway listener: a ``tcp_proxy`` filter chain.

    ``server_names``: the SNI names it answers (TLS listeners; empty for TCP). ``tls``: set
    when the Gateway listener terminates TLS (TLS mode Terminate); None passes TLS through.
    ``route`` is informative (``<kind>/<ns>/<name>``).
    """

    name: str
    route: str
    action: TcpProxy
    server_names: tuple[str, ...] = ()
    tls: TLSTermination | None = None


@dataclass(frozen=True)
class Listener:
    """One Envoy listener on ``address:port`` (``port`` is where Envoy binds, after any offset).

    ``gateway_port`` is the port the Gateway listeners declared; it names the shared HTTP route
    configuration and appears in status. ``l4_chains``: TLSRoute / TCPRoute chains; a port may
    hold HTTPS chains and TLS chains together (``protocol`` HTTPS), told apart by SNI.
    """

    name: str
    address: str
    port: int
    gateway_port: int
    protocol: Literal["HTTP", "HTTPS", "TLS", "TCP"]
    filter_chains: tuple[FilterChain, ...]
    l4_chains: tuple[L4Chain, ...] = ()


@dataclass(frozen=True)
class UdpListener:
    """One Envoy UDP listener (a UDPRoute on a Gateway UDP listener): datagrams to
    ``cluster`` (None: the route cannot be served, datagrams are dropped)."""

    name: str
    address: str
    port: int
    gateway_port: int
    route: str
    cluster: str | None


# --------------------------------------------------------------------------- upstreams


@dataclass(frozen=True)
class UpstreamTLS:
    """BackendTLSPolicy: originate TLS to the backend and verify it."""

    sni: str
    ca_secret: str | None = None  # SDS validation-context secret name; None = system CAs
    subject_alt_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cluster:
    """``lb_policy`` and the knobs below it come from an Envoy Gateway BackendTrafficPolicy;
    a cluster with non-default ones is named after the backend and the policy
    (:func:`policy_cluster_name`), so routes without the policy keep the plain cluster."""

    name: str
    protocol: UpstreamProtocol = "http1"
    connect_timeout_seconds: float = 10.0
    tls: UpstreamTLS | None = None
    lb_policy: LbPolicy = "LeastRequest"
    hash_table_size: int | None = None  # Maglev table size / RingHash minimum ring size
    circuit_breaker: CircuitBreaker | None = None
    idle_timeout_seconds: float | None = None  # upstream connection idle timeout
    max_connection_duration_seconds: float | None = None
    dns_hosts: tuple[tuple[str, int], ...] = ()  # set: a STRICT_DNS cluster on these names
    locality_weighted: bool = False  # endpoints come in weighted localities (a UDP split)


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    draining: bool = False


@dataclass(frozen=True)
class Locality:
    """A group of endpoints with a load-balancing weight (one backendRef of a split)."""

    weight: int
    endpoints: tuple[Endpoint, ...]


EndpointSource = tuple[str, str, str, str]
"""The EndpointSlices endpoints come from: (namespace, Service name, port name, protocol)."""


def endpoint_source(
    namespace: str, service: str, service_port: Mapping[str, Any]
) -> EndpointSource:
    """The source of a Service port's endpoints (``service_port``: its ``spec.ports`` item)."""
    return (
        namespace,
        service,
        str(service_port.get("name") or ""),
        str(service_port.get("protocol") or "TCP"),
    )


@dataclass(frozen=True)
class ClusterEndpoints:
    """``localities``: when set, the endpoints grouped by weighted locality (``endpoints`` is
    then empty). ``sources``: where the endpoints (or each locality's) come from, so that an
    EndpointSlice change can refresh them without building the rest again; empty for
    endpoints that come from elsewhere (a Backend's addresses, a Service's cluster IP)."""

    cluster: str
    endpoints: tuple[Endpoint, ...]
    localities: tuple[Locality, ...] = ()
    sources: tuple[EndpointSource, ...] = ()


@dataclass(frozen=True)
class Secret:
    """A TLS certificate (``certificate_chain`` + ``private_key``) or a validation context: a CA
    bundle (``ca``) with optional revocation lists (``crl``, PEM)."""

    name: str
    certificate_chain: str = field(default="", repr=False)
    private_key: str = field(default="", repr=False)
    ca: str = field(default="", repr=False)
    crl: str = field(default="", repr=False)
    only_verify_leaf_crl: bool = False


# --------------------------------------------------------------------------- the whole


@dataclass(frozen=True)
class IR:
    listeners: tuple[Listener, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    endpoints: tuple[ClusterEndpoints, ...] = ()
    secrets: tuple[Secret, ...] = ()
    udp_listeners: tuple[UdpListener, ...] = ()

    def referenced_clusters(self) -> frozenset[str]:
        """Cluster names that routes forward or mirror to (the invalid marker excluded)."""
        found: set[str] = set()
        for listener in self.listeners:
            for chain in listener.filter_chains:
                for vhost in chain.route_config.virtual_hosts:
                    for route in vhost.routes:
                        if isinstance(route.action, Forward):
                            found.update(
                                b.cluster for b in route.action.backends if b.cluster is not None
                            )
                            found.update(m.cluster for m in route.action.mirrors)
                        if route.security is not None and route.security.ext_auth is not None:
                            found.add(route.security.ext_auth.cluster)
            for l4 in listener.l4_chains:
                found.update(b.cluster for b in l4.action.backends if b.cluster is not None)
        found.update(u.cluster for u in self.udp_listeners if u.cluster is not None)
        return frozenset(found)


def normalize(ir: IR) -> IR:
    """Sort every collection whose order carries no meaning, and check names are unique."""
    listeners = tuple(sorted(ir.listeners, key=lambda item: (item.port, item.address)))
    for listener in listeners:
        _unique(
            "filter chain",
            [c.name for c in listener.filter_chains] + [c.name for c in listener.l4_chains],
        )
    udp = tuple(sorted(ir.udp_listeners, key=lambda item: (item.port, item.address)))
    _unique("listener", [item.name for item in listeners] + [item.name for item in udp])
    clusters = tuple(sorted(ir.clusters, key=lambda item: item.name))
    _unique("cluster", [c.name for c in clusters])
    endpoints = tuple(sorted(ir.endpoints, key=lambda item: item.cluster))
    _unique("cluster endpoints", [e.cluster for e in endpoints])
    secrets = tuple(sorted(ir.secrets, key=lambda item: item.name))
    _unique("secret", [s.name for s in secrets])
    return replace(
        ir,
        listeners=listeners,
        clusters=clusters,
        endpoints=endpoints,
        secrets=secrets,
        udp_listeners=udp,
    )


def _unique(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} name {name!r} in the IR")
        seen.add(name)
