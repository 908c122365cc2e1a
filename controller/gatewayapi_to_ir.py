"""Gateway API objects + the attachment engine's verdicts → the IR. Pure.

The attachment engine (``controller.attachment.compute``) decides what attaches where, which
backends resolve and in which order matches take precedence (each listener's ``routing`` table);
this module only turns those decisions into Envoy terms, reading from the objects what the
engine does not carry (filters, timeouts, Service ports, EndpointSlices, Secret data,
BackendTLSPolicies).

One Envoy serves every Gateway of our GatewayClasses (merged, like Envoy Gateway's
``mergeGateways``): Envoy listeners are per port on one listen address; Gateway listeners on
the same port share the plain-HTTP route configuration or get one HTTPS filter chain each.
``port_offset`` moves every port (80 → 80 + offset) so that the controller needs no root.

Virtual hosts follow the spec's hostname rules, which Envoy's single virtual-host choice does not
give by itself: the virtual host for ``a.example.com`` also carries, after its own routes, the
routes of every less specific hostname of the same Gateway listener that covers it
(``*.example.com``, ``*``), in precedence order; and on a shared port a hostname belongs to the
most specific Gateway listener that matches it (listener isolation).
"""

from __future__ import annotations

import base64
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller import attachment as att
from controller import hostnames as hn
from controller import ir
from controller import precedence as prec
from kubectl_gw.model import KubeObject

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
H2C_APP_PROTOCOLS = frozenset({"kubernetes.io/h2c", "h2c", "grpc"})
_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


@dataclass(frozen=True)
class BuildOptions:
    listen_address: str = "0.0.0.0"
    port_offset: int = 0


@dataclass
class BuildResult:
    ir: ir.IR
    programmed: dict[att.ListenerKey, tuple[bool, str, str]] = field(default_factory=dict)
    """Per Gateway listener: (programmed?, reason, message) as far as the IR can tell."""
    notes: list[str] = field(default_factory=list)


def parse_duration(value: str) -> float | None:
    """Gateway API duration (``1h``, ``10s``, ``500ms``, ``1m30s``) in seconds; None if bad."""
    match = _DURATION_RE.match(value.strip()) if value else None
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (int(g) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


class _Index:
    def __init__(self, objects: Iterable[KubeObject]) -> None:
        self.services: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.slices: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
        self.secrets: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.config_maps: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.routes: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        self.tls_policies: list[Mapping[str, Any]] = []
        for obj in objects:
            meta = obj.get("metadata") or {}
            key = (meta.get("namespace", ""), meta.get("name", ""))
            kind = obj.get("kind")
            if kind == "Service":
                self.services[key] = obj
            elif kind == "EndpointSlice":
                service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
                if service:
                    self.slices[(key[0], service)].append(obj)
            elif kind == "Secret":
                self.secrets[key] = obj
            elif kind == "ConfigMap":
                self.config_maps[key] = obj
            elif kind in ("HTTPRoute", "GRPCRoute"):
                self.routes[(kind, *key)] = obj
            elif kind == "BackendTLSPolicy":
                self.tls_policies.append(obj)
        for items in self.slices.values():
            items.sort(key=lambda s: str((s.get("metadata") or {}).get("name", "")))


class _Builder:
    def __init__(self, index: _Index, result: att.AttachmentResult, options: BuildOptions) -> None:
        self.index = index
        self.result = result
        self.options = options
        self.clusters: dict[str, ir.Cluster] = {}
        self.endpoints: dict[str, ir.ClusterEndpoints] = {}
        self.secrets: dict[str, ir.Secret] = {}
        self.out = BuildResult(ir.IR())

    # -------------------------------------------------------------- listeners

    def build(self) -> BuildResult:
        by_port: dict[int, list[att.ListenerResult]] = defaultdict(list)
        for gateway in self.result.gateways:
            accepted = gateway.condition("Accepted")
            own = [lis for lis in self.result.all_listeners() if lis.gateway == gateway.key]
            for lis in own:
                if accepted is None or accepted.status != "True":
                    self._skip(lis, "Invalid", f"{gateway.key} is not accepted")
                elif not lis.is_true("Accepted"):
                    self._skip(lis, "Invalid", "the listener is not accepted")
                elif lis.protocol not in ("HTTP", "HTTPS"):
                    self._skip(lis, "Invalid", f"protocol {lis.protocol} is not served yet")
                elif lis.protocol == "HTTPS" and (lis.tls_mode or "Terminate") != "Terminate":
                    self._skip(lis, "Invalid", "TLS passthrough is not served yet")
                else:
                    by_port[lis.port].append(lis)
        listeners: list[ir.Listener] = []
        for port, group in sorted(by_port.items()):
            group.sort(key=lambda lis: lis.key)
            protocol = group[0].protocol
            same = [lis for lis in group if lis.protocol == protocol]
            for other in group:
                if other.protocol != protocol:
                    self._skip(other, "Invalid", f"port {port} already serves {protocol}")
            built = self._listener(port, protocol, same)
            if built is not None:
                listeners.append(built)
        self.out.ir = ir.normalize(
            ir.IR(
                listeners=tuple(listeners),
                clusters=tuple(self.clusters.values()),
                endpoints=tuple(self.endpoints.values()),
                secrets=tuple(self.secrets.values()),
            )
        )
        return self.out

    def _skip(self, lis: att.ListenerResult, reason: str, message: str) -> None:
        self.out.programmed[lis.key] = (False, reason, message)

    def _listener(
        self, port: int, protocol: str, group: list[att.ListenerResult]
    ) -> ir.Listener | None:
        bind_port = port + self.options.port_offset
        address = self.options.listen_address
        chains: list[ir.FilterChain] = []
        if protocol == "HTTP":
            name = ir.http_route_config_name(port)
            vhosts = self._virtual_hosts(group)
            chains.append(ir.FilterChain(name, ir.RouteConfig(name, vhosts)))
            for lis in group:
                self.out.programmed[lis.key] = (
                    True,
                    "Programmed",
                    f"served on {address}:{bind_port}",
                )
        else:
            for lis in group:
                if not lis.is_true("ResolvedRefs"):
                    # The engine checked every certificateRef (existence, kind, ReferenceGrant).
                    self._skip(lis, "Invalid", "certificate references are not resolved")
                    continue
                secrets = self._certificates(lis)
                if not secrets:
                    self._skip(lis, "Invalid", "no usable TLS certificate")
                    continue
                owner = lis.key.owner
                name = ir.https_route_config_name(owner.namespace, owner.name, lis.name)
                server_names = (hn.normalize(lis.hostname),) if lis.hostname else ()
                chains.append(
                    ir.FilterChain(
                        name,
                        ir.RouteConfig(name, self._virtual_hosts([lis])),
                        server_names=server_names,
                        tls=ir.TLSTermination(secrets),
                    )
                )
                self.out.programmed[lis.key] = (
                    True,
                    "Programmed",
                    f"served on {address}:{bind_port}",
                )
            if not chains:
                return None
        return ir.Listener(
            ir.listener_name(address, bind_port),
            address,
            bind_port,
            port,
            "HTTP" if protocol == "HTTP" else "HTTPS",
            tuple(chains),
        )

    def _certificates(self, lis: att.ListenerResult) -> tuple[str, ...]:
        owner = lis.key.owner
        names: list[str] = []
        for ref in lis.certificate_refs:
            if (ref.get("group") or "") != "" or (ref.get("kind") or "Secret") != "Secret":
                continue
            key = (str(ref.get("namespace") or owner.namespace), str(ref.get("name", "")))
            secret = self.index.secrets.get(key)
            if secret is None:
                continue
            data = secret.get("data") or {}
            try:
                chain = base64.b64decode(data.get("tls.crt", "")).decode()
                private = base64.b64decode(data.get("tls.key", "")).decode()
            except ValueError:
                continue
            if "-----BEGIN" not in chain or "-----BEGIN" not in private:
                # Envoy would reject it, and one rejected secret blocks every SDS update.
                self.out.notes.append(f"Secret {key[0]}/{key[1]}: tls.crt/tls.key are not PEM")
                continue
            name = ir.secret_name(*key)
            self.secrets[name] = ir.Secret(name, certificate_chain=chain, private_key=private)
            names.append(name)
        return tuple(names)

    # -------------------------------------------------------------- virtual hosts

    def _virtual_hosts(self, group: list[att.ListenerResult]) -> tuple[ir.VirtualHost, ...]:
        hostnames: set[str] = set()
        for lis in group:
            if lis.hostname:
                hostnames.add(hn.normalize(lis.hostname))
            hostnames.update(e.hostname for e in lis.routing if e.shadowed_by is None)
        vhosts: list[ir.VirtualHost] = []
        for host in sorted(hostnames, key=lambda h: (hn.specificity(h), h), reverse=True):
            owners = [lis for lis in group if hn.covers(hn.normalize(lis.hostname), host)]
            if not owners:
                continue
            owner = max(owners, key=lambda lis: hn.listener_specificity(lis.hostname))
            rivals = [
                lis
                for lis in owners
                if lis is not owner
                and hn.listener_specificity(lis.hostname) == hn.listener_specificity(owner.hostname)
            ]
            if rivals:
                self.out.notes.append(
                    f"hostname {host} on port {owner.port}: {owner.key} serves it; "
                    + ", ".join(str(r.key) for r in rivals)
                    + " share the port and hostname and are not reached for it"
                )
            entries = [
                e
                for e in owner.routing
                if e.shadowed_by is None and e.match is not None and hn.covers(e.hostname, host)
            ]
            # GRPCRoute entries first (their paths are specific), each kind in rank order; the
            # hostname part of the precedence comes first.
            entries.sort(
                key=lambda e: (
                    tuple(-x for x in hn.specificity(e.hostname)),
                    0 if e.route.kind == "GRPCRoute" else 1,
                    e.rank,
                )
            )
            routes = tuple(r for e in entries for r in self._route(e))
            vhosts.append(ir.VirtualHost(host, (host,), routes))
        return tuple(vhosts)

    # -------------------------------------------------------------- routes

    def _route(self, entry: att.RoutingEntry) -> list[ir.Route]:
        key = entry.route
        obj = self.index.routes.get((key.kind, key.namespace, key.name))
        if obj is None or entry.match is None:
            return []
        rules = (obj.get("spec") or {}).get("rules") or []
        rule: Mapping[str, Any] = rules[entry.rule] if entry.rule < len(rules) else {}
        rule_id = entry.rule_name or str(entry.rule)
        name = f"{key.kind}/{key.namespace}/{key.name}/rule/{rule_id}/match/{entry.match_index}"
        match = _match(entry.match)
        request_headers = ir.HeaderModifier()
        response_headers = ir.HeaderModifier()
        redirect: ir.Redirect | None = None
        host_rewrite: str | None = None
        path_rewrite: ir.PathRewrite | None = None
        mirrors: list[ir.Mirror] = []
        cors: ir.Cors | None = None
        prefix = match.path.value if match.path.kind == "PathPrefix" else ""
        for raw in rule.get("filters") or []:
            kind = raw.get("type")
            if kind == "RequestHeaderModifier":
                request_headers = _header_modifier(raw.get("requestHeaderModifier"))
            elif kind == "ResponseHeaderModifier":
                response_headers = _header_modifier(raw.get("responseHeaderModifier"))
            elif kind == "RequestRedirect":
                spec = raw.get("requestRedirect") or {}
                redirect = ir.Redirect(
                    scheme=spec.get("scheme"),
                    hostname=spec.get("hostname"),
                    port=spec.get("port"),
                    path=_path_rewrite(spec.get("path"), prefix),
                    status_code=int(spec.get("statusCode") or 302),  # type: ignore[arg-type]
                )
            elif kind == "URLRewrite":
                spec = raw.get("urlRewrite") or {}
                host_rewrite = spec.get("hostname")
                path_rewrite = _path_rewrite(spec.get("path"), prefix)
            elif kind == "RequestMirror":
                mirror = self._mirror(entry, raw.get("requestMirror") or {})
                if mirror is not None:
                    mirrors.append(mirror)
            elif kind == "CORS":
                cors = _cors(raw.get("cors") or {})
        action: ir.RouteAction
        if redirect is not None:
            action = redirect
        else:
            backends = tuple(self._backend(b) for b in entry.backends)
            live = [b for b in backends if b.weight > 0]
            if not live or all(b.cluster is None for b in live):
                action = ir.DirectResponse(500)
            else:
                action = ir.Forward(
                    backends,
                    host_rewrite=host_rewrite,
                    path_rewrite=path_rewrite,
                    timeouts=_timeouts(rule.get("timeouts") or {}),
                    retry=_retry(rule.get("retry")),
                    mirrors=tuple(mirrors),
                )
        return [ir.Route(name, match, action, request_headers, response_headers, cors)]

    def _mirror(self, entry: att.RoutingEntry, spec: Mapping[str, Any]) -> ir.Mirror | None:
        route = next((r for r in self.result.routes if r.key == entry.route), None)
        if route is None:
            return None
        ref = spec.get("backendRef") or {}
        for backend in route.backends:
            if (
                backend.mirror
                and backend.rule == entry.rule
                and backend.ref.get("name") == ref.get("name")
                and backend.ref.get("port") == ref.get("port")
            ):
                cluster = self._backend(backend).cluster
                if cluster is None:
                    return None
                percent = 100.0
                if spec.get("percent") is not None:
                    percent = float(spec["percent"])
                elif isinstance(spec.get("fraction"), Mapping):
                    fraction = spec["fraction"]
                    percent = (
                        100.0
                        * float(fraction.get("numerator", 0))
                        / float(fraction.get("denominator") or 100)
                    )
                return ir.Mirror(cluster, percent)
        return None

    # -------------------------------------------------------------- backends

    def _backend(self, backend: att.BackendResult) -> ir.WeightedBackend:
        if not backend.resolved:
            return ir.WeightedBackend(None, backend.weight)
        ref = backend.ref
        namespace, name, port = str(ref["namespace"]), str(ref["name"]), int(ref["port"])
        cluster = ir.service_cluster_name(namespace, name, port)
        if cluster not in self.clusters:
            service = self.index.services.get((namespace, name)) or {}
            service_port: Mapping[str, Any] = next(
                (
                    p
                    for p in (service.get("spec") or {}).get("ports") or []
                    if p.get("port") == port
                ),
                {},
            )
            app = str(service_port.get("appProtocol") or "").lower()
            protocol: ir.UpstreamProtocol = "h2c" if app in H2C_APP_PROTOCOLS else "http1"
            tls = self._backend_tls(namespace, name, service_port)
            self.clusters[cluster] = ir.Cluster(cluster, protocol=protocol, tls=tls)
            self.endpoints[cluster] = ir.ClusterEndpoints(
                cluster, self._endpoints(namespace, name, service_port)
            )
        return ir.WeightedBackend(cluster, backend.weight)

    def _endpoints(
        self, namespace: str, service: str, service_port: Mapping[str, Any]
    ) -> tuple[ir.Endpoint, ...]:
        port_name = str(service_port.get("name") or "")
        protocol = str(service_port.get("protocol") or "TCP")
        found: dict[tuple[str, int], ir.Endpoint] = {}
        for slice_ in self.index.slices.get((namespace, service), []):
            if slice_.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
                continue
            number = next(
                (
                    p.get("port")
                    for p in slice_.get("ports") or []
                    if str(p.get("name") or "") == port_name
                    and str(p.get("protocol") or "TCP") == protocol
                ),
                None,
            )
            if not isinstance(number, int):
                continue
            for endpoint in slice_.get("endpoints") or []:
                conditions = endpoint.get("conditions") or {}
                ready = conditions.get("ready") is not False
                serving = conditions.get("serving", ready) is not False
                terminating = conditions.get("terminating") is True
                if not serving:
                    continue
                for address in endpoint.get("addresses") or []:
                    found[(address, number)] = ir.Endpoint(address, number, draining=terminating)
        return tuple(found[k] for k in sorted(found))

    def _backend_tls(
        self, namespace: str, service: str, service_port: Mapping[str, Any]
    ) -> ir.UpstreamTLS | None:
        for policy in sorted(
            self.index.tls_policies,
            key=lambda p: (
                str((p.get("metadata") or {}).get("creationTimestamp", "")),
                str((p.get("metadata") or {}).get("name", "")),
            ),
        ):
            meta = policy.get("metadata") or {}
            if meta.get("namespace") != namespace:
                continue
            spec = policy.get("spec") or {}
            targets = spec.get("targetRefs") or []
            if not any(
                t.get("kind") == "Service"
                and (t.get("group") or "") == ""
                and t.get("name") == service
                and (not t.get("sectionName") or t.get("sectionName") == service_port.get("name"))
                for t in targets
            ):
                continue
            validation = spec.get("validation") or {}
            sni = str(validation.get("hostname") or "")
            if not sni:
                continue
            ca_secret: str | None = None
            for ref in validation.get("caCertificateRefs") or []:
                if ref.get("kind") == "ConfigMap" and (ref.get("group") or "") == "":
                    config_map = self.index.config_maps.get((namespace, str(ref.get("name"))))
                    ca = ((config_map or {}).get("data") or {}).get("ca.crt", "")
                    if "-----BEGIN" in ca:
                        ca_secret = f"configmap/{namespace}/{ref.get('name')}"
                        self.secrets[ca_secret] = ir.Secret(ca_secret, ca=ca)
                        break
            sans = tuple(
                str(s.get("hostname") or s.get("uri") or "")
                for s in validation.get("subjectAltNames") or []
                if s.get("hostname") or s.get("uri")
            )
            return ir.UpstreamTLS(sni=sni, ca_secret=ca_secret, subject_alt_names=sans)
        return None


# --------------------------------------------------------------------------- small converters


def _match(match: prec.Match) -> ir.RouteMatch:
    if isinstance(match, prec.HTTPMatch):
        return ir.RouteMatch(
            path=ir.PathMatch(match.path_type, match.path),  # type: ignore[arg-type]
            headers=tuple(ir.HeaderMatch(n, v, k) for k, n, v in match.headers),  # type: ignore[arg-type]
            query_params=tuple(ir.QueryParamMatch(n, v, k) for k, n, v in match.query),  # type: ignore[arg-type]
            method=match.method,
        )
    service, method = match.service, match.method
    if match.method_type == "Exact":
        if service and method:
            path = ir.PathMatch("Exact", f"/{service}/{method}")
        elif service:
            path = ir.PathMatch("PathPrefix", f"/{service}")
        elif method:
            path = ir.PathMatch("RegularExpression", f"/[^/]+/{re.escape(method)}")
        else:
            path = ir.PathMatch("PathPrefix", "/")
    else:
        path = ir.PathMatch("RegularExpression", f"/{service or '[^/]+'}/{method or '[^/]+'}")
    return ir.RouteMatch(
        path=path,
        headers=tuple(ir.HeaderMatch(n, v, k) for k, n, v in match.headers),  # type: ignore[arg-type]
    )


def _header_modifier(spec: Any) -> ir.HeaderModifier:
    spec = spec if isinstance(spec, Mapping) else {}
    return ir.HeaderModifier(
        set=tuple(
            ir.HeaderValue(h["name"], str(h.get("value", ""))) for h in spec.get("set") or []
        ),
        add=tuple(
            ir.HeaderValue(h["name"], str(h.get("value", ""))) for h in spec.get("add") or []
        ),
        remove=tuple(str(n) for n in spec.get("remove") or []),
    )


def _path_rewrite(spec: Any, prefix: str) -> ir.PathRewrite | None:
    if not isinstance(spec, Mapping):
        return None
    if spec.get("type") == "ReplaceFullPath":
        return ir.PathRewrite("ReplaceFullPath", str(spec.get("replaceFullPath") or "/"))
    if spec.get("type") == "ReplacePrefixMatch":
        return ir.PathRewrite(
            "ReplacePrefixMatch", str(spec.get("replacePrefixMatch") or "/"), prefix or "/"
        )
    return None


def _timeouts(spec: Mapping[str, Any]) -> ir.Timeouts:
    request = parse_duration(str(spec["request"])) if spec.get("request") else None
    backend = parse_duration(str(spec["backendRequest"])) if spec.get("backendRequest") else None
    return ir.Timeouts(request=request, backend_request=backend)


def _retry(spec: Any) -> ir.Retry | None:
    if not isinstance(spec, Mapping):
        return None
    backoff = parse_duration(str(spec["backoff"])) if spec.get("backoff") else None
    return ir.Retry(
        attempts=int(spec.get("attempts") or 1),
        codes=tuple(int(c) for c in spec.get("codes") or []),
        backoff_seconds=backoff,
    )


def _cors(spec: Mapping[str, Any]) -> ir.Cors:
    max_age = spec.get("maxAge")
    return ir.Cors(
        allow_origins=tuple(str(o) for o in spec.get("allowOrigins") or []),
        allow_methods=tuple(str(m) for m in spec.get("allowMethods") or []),
        allow_headers=tuple(str(h) for h in spec.get("allowHeaders") or []),
        expose_headers=tuple(str(h) for h in spec.get("exposeHeaders") or []),
        max_age_seconds=int(max_age) if max_age is not None else None,
        allow_credentials=bool(spec.get("allowCredentials")),
    )


# --------------------------------------------------------------------------- entry point


def build(
    objects: Sequence[KubeObject], result: att.AttachmentResult, options: BuildOptions
) -> BuildResult:
    """The IR for every Gateway in ``result`` (the engine run for our controller names)."""
    return _Builder(_Index(objects), result, options).build()


def compute_and_build(
    objects: Sequence[KubeObject], controller_names: frozenset[str], options: BuildOptions
) -> tuple[att.AttachmentResult, BuildResult]:
    """Run the attachment engine for ``controller_names``, then build the IR from its verdicts."""
    result = att.compute(objects, controller_names=controller_names)
    return result, build(objects, result, options)
