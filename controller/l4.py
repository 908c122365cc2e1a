"""TLSRoute, TCPRoute and UDPRoute → the IR (L4 serving). Pure; called by
:mod:`controller.gatewayapi_to_ir`'s builder for the Gateway listeners of protocol TLS, TCP and
UDP.

What attaches where, with which effective hostnames and which route wins, is the attachment
engine's (each listener's ``routing`` table); this module turns it into Envoy terms:

- **TLS, mode Passthrough**: one ``tcp_proxy`` filter chain per (listener, TLSRoute), matched
  by SNI (``server_names`` = the route's effective hostnames on that listener; wildcards as
  Envoy matches them, the most specific name first). An unknown SNI matches no chain: Envoy
  closes the connection.
- **TLS, mode Terminate**: the same chains, with the listener's certificates (SDS, as HTTPS)
  and no ALPN; the backend receives the decrypted bytes.
- **HTTPS and TLS on one port**: one Envoy listener holding both kinds of chains. Every SNI
  name belongs to the most specific Gateway listener on the port whose hostname covers it
  (listener isolation, as for HTTPS), so no two chains claim the same name (Envoy would
  reject the listener); a route hostname taken by another listener is dropped, with a note.
- **TCP**: one chain without a match; when several TCPRoutes attach to one listener only the
  engine's winner (oldest, then namespace/name) is served, and a note names the others.
- **UDP**: one Envoy UDP listener with the ``udp_proxy`` listener filter; one backend is its
  cluster; a split gets a cluster of its own whose endpoints come in one weighted locality
  per backendRef (Envoy's UDP proxy has no weighted clusters).

Backends: core Service backendRefs (the engine checked existence, port and ReferenceGrant);
their clusters are EDS from the EndpointSlices of the Service port whose protocol fits (TCP,
or UDP for UDPRoute), named ``svc/<ns>/<name>/<port>/tcp|udp``, without HTTP protocol
options. A share that cannot be served (unresolved, another backend kind, no such port)
points at the never-defined ``invalid-backend-cluster``: its connections are closed, the
other shares and routes are served as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controller import attachment as att
from controller import hostnames as hn
from controller import ir

L4_PROTOCOLS = frozenset({"TLS", "TCP", "UDP"})
_TLS_FAMILY = frozenset({"HTTPS", "TLS"})

EndpointsOf = Callable[[str, str, Mapping[str, Any]], tuple[ir.Endpoint, ...]]
CertificatesOf = Callable[[att.ListenerResult], tuple[str, ...]]


def transport(protocol: str) -> str:
    """The socket type a Gateway listener protocol binds: ``udp`` or ``tcp``."""
    return "udp" if protocol == "UDP" else "tcp"


def compatible(a: str, b: str) -> bool:
    """May Gateway listeners of protocols ``a`` and ``b`` share one Envoy listener (port)?
    Only the same protocol, or HTTPS with TLS (both TLS, told apart by SNI)."""
    return a == b or (a in _TLS_FAMILY and b in _TLS_FAMILY)


@dataclass
class L4Context:
    """What the L4 building reads from and writes to the builder."""

    services: Mapping[tuple[str, str], Mapping[str, Any]]
    endpoints_of: EndpointsOf
    certificates_of: CertificatesOf
    listen_address: str
    port_offset: int
    clusters: dict[str, ir.Cluster]
    endpoints: dict[str, ir.ClusterEndpoints]
    programmed: dict[att.ListenerKey, tuple[bool, str, str]]
    notes: list[str] = field(default_factory=list)
    _found: dict[str, tuple[ir.Endpoint, ...]] = field(default_factory=dict)
    _sources: dict[str, ir.EndpointSource] = field(default_factory=dict)

    # -------------------------------------------------------------- TLS and TCP

    def tcp_listener(
        self,
        port: int,
        group: list[att.ListenerResult],
        https: ir.Listener | None,
        https_listeners: list[att.ListenerResult],
    ) -> ir.Listener | None:
        """The Envoy listener of ``port`` for TLS or TCP Gateway listeners ``group`` (sorted),
        merged with the HTTPS listener already built for ``https_listeners`` on that port."""
        bind_port = port + self.port_offset
        address = self.listen_address
        chains: list[ir.L4Chain] = []
        tcp = [lis for lis in group if lis.protocol == "TCP"]
        tls = [lis for lis in group if lis.protocol == "TLS"]
        if tcp:
            winner, *others = tcp
            for other in others:
                self._skip(
                    other,
                    f"port {port} already serves TCP listener {winner.key}: one TCP "
                    "listener per port",
                )
            chains += self._tcp_chains(winner)
            self._served(winner, address, bind_port, bool(chains))
        if tls:
            served: list[att.ListenerResult] = [*https_listeners]
            usable: list[tuple[att.ListenerResult, tuple[str, ...] | None]] = []
            for lis in tls:
                if lis.tls_mode == "Terminate":
                    if not lis.is_true("ResolvedRefs"):
                        self._skip(lis, "certificate references are not resolved")
                        continue
                    secrets = self.certificates_of(lis)
                    if not secrets:
                        self._skip(lis, "no usable TLS certificate")
                        continue
                    usable.append((lis, secrets))
                else:
                    usable.append((lis, None))
                served.append(lis)
            for lis, certificates in usable:
                got = self._tls_chains(lis, certificates, served)
                chains += got
                self._served(lis, address, bind_port, bool(got))
        if not chains:
            return https
        protocol: Literal["HTTPS", "TLS", "TCP"] = (
            "HTTPS" if https is not None else "TCP" if tcp else "TLS"
        )
        return ir.Listener(
            ir.listener_name(address, bind_port),
            address,
            bind_port,
            port,
            protocol,
            https.filter_chains if https is not None else (),
            tuple(chains),
        )

    def _tcp_chains(self, lis: att.ListenerResult) -> list[ir.L4Chain]:
        entries = [e for e in lis.routing if e.route.kind == "TCPRoute"]
        winners = [e for e in entries if e.shadowed_by is None]
        for entry in entries:
            if entry.shadowed_by is not None:
                self.notes.append(
                    f"{entry.route} gets no traffic on {lis.key}: only one TCPRoute per listener "
                    f"is served, {entry.shadowed_by.route} ({entry.shadow_reason})"
                )
        if not winners:
            return []
        entry = winners[0]
        owner = lis.key.owner
        name = ir.l4_chain_name(
            "tcp", owner.namespace, owner.name, lis.name, entry.route.namespace, entry.route.name
        )
        return [ir.L4Chain(name, str(entry.route), self._tcp_proxy(entry))]

    def _tls_chains(
        self,
        lis: att.ListenerResult,
        secrets: tuple[str, ...] | None,
        port_listeners: list[att.ListenerResult],
    ) -> list[ir.L4Chain]:
        by_route: dict[att.ObjKey, list[att.RoutingEntry]] = {}
        for entry in lis.routing:
            if entry.route.kind != "TLSRoute":
                continue
            if entry.shadowed_by is not None:
                self.notes.append(
                    f"{entry.route}: hostname {entry.hostname} on {lis.key} is served by "
                    f"{entry.shadowed_by.route} ({entry.shadow_reason})"
                )
                continue
            host = hn.normalize(entry.hostname)
            owner = _owner(host, port_listeners)
            if owner is not None and owner.key != lis.key:
                self.notes.append(
                    f"{entry.route}: hostname {host} on {lis.key} is left to the more specific "
                    f"listener {owner.key} on port {lis.port}"
                )
                continue
            by_route.setdefault(entry.route, []).append(entry)
        tls = ir.TLSTermination(secrets, alpn=()) if secrets is not None else None
        owner_key = lis.key.owner
        chains: list[ir.L4Chain] = []
        for route, entries in by_route.items():
            names = tuple(sorted({hn.normalize(e.hostname) for e in entries}))
            if hn.CATCH_ALL in names:
                names = ()  # a TLSRoute always has hostnames; kept for safety: match any SNI
            chains.append(
                ir.L4Chain(
                    ir.l4_chain_name(
                        "tls",
                        owner_key.namespace,
                        owner_key.name,
                        lis.name,
                        route.namespace,
                        route.name,
                    ),
                    str(route),
                    self._tcp_proxy(entries[0]),
                    server_names=names,
                    tls=tls,
                )
            )
        return chains

    def _tcp_proxy(self, entry: att.RoutingEntry) -> ir.TcpProxy:
        shares: list[ir.WeightedBackend] = []
        for backend in entry.backends:
            cluster = self._backend_cluster(entry.route, backend, "tcp")
            shares.append(ir.WeightedBackend(cluster, backend.weight))
        if not shares:
            self.notes.append(f"{entry.route} has no backendRefs: its connections are closed")
            shares.append(ir.WeightedBackend(None, 1))
        elif any(s.cluster is None and s.weight > 0 for s in shares):
            self.notes.append(
                f"{entry.route}: connections to its unresolved backends' share are closed"
            )
        return ir.TcpProxy(tuple(shares))

    # -------------------------------------------------------------- UDP

    def udp_listeners(self, port: int, group: list[att.ListenerResult]) -> list[ir.UdpListener]:
        """The Envoy UDP listener of ``port`` (one Gateway UDP listener per port is served)."""
        winner, *others = group
        for other in others:
            self._skip(
                other,
                f"port {port} already serves UDP listener {winner.key}: one UDP listener per port",
            )
        bind_port = port + self.port_offset
        address = self.listen_address
        entries = [e for e in winner.routing if e.route.kind == "UDPRoute"]
        for entry in entries:
            if entry.shadowed_by is not None:
                self.notes.append(
                    f"{entry.route} gets no traffic on {winner.key}: only one UDPRoute per "
                    f"listener is served, {entry.shadowed_by.route} ({entry.shadow_reason})"
                )
        best = next((e for e in entries if e.shadowed_by is None), None)
        self._served(winner, address, bind_port, best is not None, "udp ")
        if best is None:
            return []
        return [
            ir.UdpListener(
                ir.udp_listener_name(address, bind_port),
                address,
                bind_port,
                port,
                str(best.route),
                self._udp_cluster(best),
            )
        ]

    def _udp_cluster(self, entry: att.RoutingEntry) -> str | None:
        shares = [
            (self._backend_cluster(entry.route, b, "udp", register=False), b)
            for b in entry.backends
            if b.weight > 0
        ]
        good = [(c, b) for c, b in shares if c is not None]
        if len(good) < len(shares):
            self.notes.append(
                f"{entry.route}: datagrams cannot be dropped by share in Envoy's UDP proxy; the "
                "unresolved backends' share goes to the others"
                if good
                else f"{entry.route}: no usable backend, its datagrams are dropped"
            )
        if not good:
            return None
        if len(good) == 1:
            return self._backend_cluster(entry.route, good[0][1], "udp")
        route = entry.route
        name = ir.l4_route_cluster_name(route.kind, route.namespace, route.name)
        self.clusters[name] = ir.Cluster(name, protocol="udp", locality_weighted=True)
        self.endpoints[name] = ir.ClusterEndpoints(
            name,
            (),
            tuple(ir.Locality(b.weight, self._found[c]) for c, b in good),
            sources=tuple(self._sources[c] for c, _ in good),
        )
        return name

    # -------------------------------------------------------------- backends

    def _backend_cluster(
        self, route: att.ObjKey, backend: att.BackendResult, kind: str, register: bool = True
    ) -> str | None:
        """The L4 cluster of a resolved Service backendRef, or None (a closed share).
        ``register=False``: only its name and endpoints (:attr:`_found`), no cluster (the
        backends of a UDP split, whose endpoints go into the split's own cluster)."""
        ref = backend.ref
        if not backend.resolved:
            return None
        if (ref.get("group"), ref.get("kind")) != ("", "Service"):
            self.notes.append(
                f"{route}: backend {backend.label()} is not a Service; only Services are served "
                "at L4"
            )
            return None
        namespace, name, port = str(ref["namespace"]), str(ref["name"]), int(ref["port"])
        service = self.services.get((namespace, name)) or {}
        wanted = "UDP" if kind == "udp" else "TCP"
        ports = [p for p in (service.get("spec") or {}).get("ports") or [] if p.get("port") == port]
        service_port = next((p for p in ports if str(p.get("protocol") or "TCP") == wanted), None)
        if service_port is None:
            if ports:
                self.notes.append(
                    f"{route}: Service {namespace}/{name} port {port} is not {wanted}; "
                    "that share is not served"
                )
                return None
            service_port = {"port": port, "protocol": wanted}  # ExternalName / no ports listed
        cluster = ir.l4_cluster_name(namespace, name, port, kind)
        if cluster not in self._found:
            self._found[cluster] = self.endpoints_of(namespace, name, service_port)
            self._sources[cluster] = ir.endpoint_source(namespace, name, service_port)
        if register and cluster not in self.clusters:
            self.clusters[cluster] = ir.Cluster(cluster, protocol="udp" if kind == "udp" else "tcp")
            self.endpoints[cluster] = ir.ClusterEndpoints(
                cluster, self._found[cluster], sources=(self._sources[cluster],)
            )
        return cluster

    # -------------------------------------------------------------- status

    def _skip(self, lis: att.ListenerResult, message: str) -> None:
        self.programmed[lis.key] = (False, "Invalid", message)

    def _served(
        self, lis: att.ListenerResult, address: str, port: int, routes: bool, what: str = ""
    ) -> None:
        message = f"served on {what}{address}:{port}"
        if not routes:
            message = f"{message} once a route attaches (none is served yet)"
        self.programmed[lis.key] = (True, "Programmed", message)


def _owner(host: str, listeners: list[att.ListenerResult]) -> att.ListenerResult | None:
    """The Gateway listener a TLS server name belongs to on a shared port: the most specific
    one whose hostname covers it (listener isolation)."""
    covering = [lis for lis in listeners if hn.covers(hn.normalize(lis.hostname), host)]
    if not covering:
        return None
    return max(covering, key=lambda lis: hn.listener_specificity(lis.hostname))
