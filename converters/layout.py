"""Plan Gateways, listeners, ListenerSets and ReferenceGrants from what the routes need.

Source-neutral: a converter says, for every route it made, which class it belongs to, which
namespace the route lives in, which hostname, protocol and port it must be reachable on and, for
TLS termination, which certificate serves it (a :class:`ListenerNeed`). :func:`plan` turns those
needs into Gateway API objects and tells the converter which ``parentRef`` each route uses
(:attr:`Layout.parents`), which listener serves it (:meth:`Layout.listener`, for policies that
target a listener), what it became (:attr:`Layout.outputs`) and what it could not get
(:attr:`Layout.errors`, :attr:`Layout.notes`).

Protocols: ``HTTP`` and ``HTTPS`` (certificates), ``TLS`` (``passthrough``, or ``Terminate``
with certificates) and ``TCP`` (a port, no hostname). A TCP listener cannot share its port with
a listener of another protocol: such a need gets no listener and an error; the other listener
stays.

Layouts (:class:`LayoutOptions`):

- shared (default): one Gateway per class in ``gateway_namespace``, named after the class;
- per namespace: one Gateway per class in every route namespace (``gateway_per_namespace``);
- existing: routes attach to ``existing`` (``--gateway NS/NAME[/SECTION]``); nothing is planned.

``port_map`` maps the port a need asks for to the Gateway listener's port (a source that binds
container ports behind a Service, such as Emissary's 8080 and 8443, asks for those and gets 80
and 443); ports not in the map are used as they are.

A Gateway holds at most 64 listeners, of every protocol; the rest go into ListenerSets (standard
since Gateway API v1.5) in the Gateway's namespace, 64 listeners each, and the Gateway then
admits ListenerSets of its own namespace. Listeners admit routes only from the namespaces that
need them (a selector on ``kubernetes.io/metadata.name``), and certificates in other namespaces
get ReferenceGrants.

A listener holds at most 64 certificates: when its needs bring more, the first 64 asked for (in
the order of the needs) are kept, and every need that brought a dropped one gets a note
(:attr:`Layout.notes`, and :attr:`Layout.dropped_certificates` by hostname and certificate).
A converter that knows which certificate serves a hostname should ask for that one only.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from converters import naming
from converters.api import ExistingGateway
from converters.provenance import stamp
from kubectl_gw.model import GATEWAY_GROUP, KubeObject, ObjectRef

MAX_LISTENERS = 64
MAX_CERTIFICATES = 64  # certificateRefs per listener
MAX_GRANT_TARGETS = 16
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
GATEWAY_API_VERSION = f"{GATEWAY_GROUP}/v1"
REFERENCE_GRANT_API_VERSION = f"{GATEWAY_GROUP}/v1beta1"

Protocol = Literal["HTTP", "HTTPS", "TLS", "TCP"]
DEFAULT_PORTS: dict[str, int] = {"HTTP": 80, "HTTPS": 443, "TLS": 443}  # TCP: always given


@dataclass(frozen=True, order=True)
class SecretRef:
    namespace: str
    name: str


@dataclass(frozen=True, order=True)
class ListenerKey:
    """What a route must be reachable on: one listener per (class, hostname, protocol, port)
    and, in the per-namespace layout, per route namespace. ``port`` is the port the need asked
    for (before ``LayoutOptions.port_map``)."""

    cls: str
    route_namespace: str
    hostname: str  # "" = every hostname (a catch-all listener); always "" for TCP
    protocol: Protocol
    port: int


@dataclass
class ListenerNeed:
    key: ListenerKey
    certificates: tuple[SecretRef, ...] = ()  # HTTPS, and TLS when it terminates
    passthrough: bool = False  # TLS only
    sources: tuple[ObjectRef, ...] = ()


def need(
    cls: str,
    route_namespace: str,
    hostname: str | None,
    protocol: Protocol,
    *,
    port: int | None = None,
    certificates: Iterable[SecretRef] = (),
    passthrough: bool = False,
    sources: Iterable[ObjectRef] = (),
) -> ListenerNeed:
    """A need; ``ValueError`` for one no listener can satisfy (a converter's mistake): a TCP
    need without a port or with a hostname, a TLS need neither passthrough nor with a
    certificate, passthrough on another protocol."""
    certs = tuple(certificates)
    if protocol == "TCP" and (port is None or hostname):
        raise ValueError("a TCP listener needs a port and has no hostname")
    if protocol == "TLS" and not passthrough and not certs:
        raise ValueError("a TLS listener either passes TLS through or has a certificate")
    if passthrough and protocol != "TLS":
        raise ValueError("only a TLS listener passes TLS through")
    key = ListenerKey(
        cls, route_namespace, hostname or "", protocol, port or DEFAULT_PORTS[protocol]
    )
    return ListenerNeed(key, certs, passthrough, tuple(sources))


@dataclass(frozen=True)
class LayoutOptions:
    gateway_class: str
    gateway_namespace: str
    existing: ExistingGateway | None = None
    per_namespace: bool = False
    # (port a need asks for, Gateway listener port); other ports are used as they are
    port_map: tuple[tuple[int, int], ...] = ()

    def listener_port(self, port: int) -> int:
        """The Gateway listener port for a need that asks for ``port``."""
        for asked, listener in self.port_map:
            if asked == port:
                return listener
        return port


@dataclass(frozen=True, order=True)
class ListenerRef:
    """A planned listener: the object that holds it and its section name ("" when an existing
    Gateway is used by port), for policies that target a listener."""

    kind: str  # Gateway | ListenerSet
    namespace: str
    name: str
    section: str
    port: int  # the listener's port (after the port map)

    def target_ref(self) -> dict[str, Any]:
        """A policy ``targetRef`` (LocalPolicyTargetReferenceWithSectionName)."""
        out: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": self.kind, "name": self.name}
        if self.section:
            out["sectionName"] = self.section
        return out


@dataclass
class Layout:
    objects: list[KubeObject] = field(default_factory=list)
    parents: dict[ListenerKey, dict[str, Any]] = field(default_factory=dict)
    # The objects each need became (its Gateway or ListenerSet, and any ReferenceGrant).
    outputs: dict[ListenerKey, list[ObjectRef]] = field(default_factory=dict)
    # What a converter should tell about a need: certificates an existing Gateway must serve, a
    # TCP listener it must have, a certificate not used on a passthrough listener.
    notes: dict[ListenerKey, list[str]] = field(default_factory=dict)
    pending: dict[ListenerKey, list[GrantNeed]] = field(default_factory=dict)
    # Needs that got no listener (not in ``parents``), and why.
    errors: dict[ListenerKey, str] = field(default_factory=dict)
    # Certificates a listener could not hold (past MAX_CERTIFICATES): (listener hostname,
    # certificate) -> why.
    dropped_certificates: dict[tuple[str, SecretRef], str] = field(default_factory=dict)
    listeners: dict[ListenerKey, ListenerRef] = field(default_factory=dict)
    _by_listener: dict[tuple[str, str, int], list[ListenerRef]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def parent(self, key: ListenerKey) -> dict[str, Any]:
        return dict(self.parents[key])

    def same_parent(self, a: ListenerKey, b: ListenerKey) -> bool:
        return self.parents.get(a) == self.parents.get(b)

    def listener(self, key: ListenerKey) -> ListenerRef | None:
        """The listener that serves ``key`` (None when it got none: see ``errors``)."""
        return self.listeners.get(key)

    def listeners_for(self, hostname: str, protocol: Protocol, port: int) -> list[ListenerRef]:
        """Every listener planned for ``hostname`` ("" = catch-all), ``protocol`` and asked-for
        ``port``, whatever class or route namespace asked (several in the per-namespace layout),
        sorted. Indexed on first use: call it once planning is done."""
        if self._by_listener is None:
            index: dict[tuple[str, str, int], set[ListenerRef]] = defaultdict(set)
            for key, ref in self.listeners.items():
                index[(key.hostname, key.protocol, key.port)].add(ref)
            self._by_listener = {k: sorted(v) for k, v in index.items()}
        return list(self._by_listener.get((hostname, protocol, port), []))


# --------------------------------------------------------------------------- reference grants


@dataclass(frozen=True, order=True)
class GrantNeed:
    from_group: str
    from_kind: str
    from_namespace: str
    to_group: str
    to_kind: str
    to_namespace: str
    to_name: str


GrantGroup = tuple[str, str, str, str]  # (to namespace, from namespace, from group, from kind)


def _group_of(grant: GrantNeed) -> GrantGroup:
    return (grant.to_namespace, grant.from_namespace, grant.from_group, grant.from_kind)


@dataclass
class Grants:
    """Collects the cross-namespace references a conversion makes, and renders the
    ReferenceGrants that allow them (one per target namespace, source namespace and kind, at
    most 16 targets each).

    Every group of grants that share a ReferenceGrant is kept sorted as grants are added, so
    :meth:`ref_for` is a binary search (``add`` and ``ref_for`` may be interleaved: the answer
    is the ReferenceGrant given the grants added so far) and :meth:`render` one pass."""

    needs: dict[GrantNeed, set[ObjectRef]] = field(default_factory=dict)
    _groups: dict[GrantGroup, list[GrantNeed]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for grant in sorted(self.needs):
            self._groups.setdefault(_group_of(grant), []).append(grant)

    def add(self, grant: GrantNeed, sources: Iterable[ObjectRef] = ()) -> None:
        if grant.from_namespace == grant.to_namespace:
            return
        found = self.needs.get(grant)
        if found is None:
            self.needs[grant] = found = set()
            bisect.insort(self._groups.setdefault(_group_of(grant), []), grant)
        found.update(sources)

    @staticmethod
    def name_for(from_namespace: str, from_kind: str) -> str:
        """Namespace names are DNS labels and kinds a fixed set, so this never collides
        within a target namespace; it does not depend on the other grants either."""
        return naming.allocate_one("from", from_namespace, from_kind.lower())

    @classmethod
    def _chunk_name(cls, group: GrantGroup, index: int) -> str:
        """The name of the ``index``-th (from 0) ReferenceGrant of ``group``."""
        _to_ns, from_ns, _from_group, from_kind = group
        base = cls.name_for(from_ns, from_kind)
        return base if index == 0 else naming.allocate_one(base, str(index + 1))

    def _chunks(self) -> Iterable[tuple[str, str, list[GrantNeed]]]:
        """(namespace, name, grants) of every ReferenceGrant, groups in the order of their
        first grant. Within a group every field but the target (group, kind, name) is fixed,
        so its sorted grants are its sorted targets, one grant each."""
        for key in sorted(self._groups, key=lambda k: self._groups[k][0]):
            grants = self._groups[key]
            for index in range(0, len(grants), MAX_GRANT_TARGETS):
                name = self._chunk_name(key, index // MAX_GRANT_TARGETS)
                yield key[0], name, grants[index : index + MAX_GRANT_TARGETS]

    def ref_for(self, grant: GrantNeed) -> ObjectRef | None:
        """The ReferenceGrant that allows ``grant`` (final once every grant is added)."""
        if grant.from_namespace == grant.to_namespace or grant not in self.needs:
            return None
        key = _group_of(grant)
        position = bisect.bisect_left(self._groups[key], grant)
        name = self._chunk_name(key, position // MAX_GRANT_TARGETS)
        return ObjectRef(REFERENCE_GRANT_API_VERSION, "ReferenceGrant", key[0], name)

    def render(self) -> list[KubeObject]:
        out: list[KubeObject] = []
        for to_ns, name, grants in self._chunks():
            first = grants[0]
            from_ns, from_group, from_kind = first.from_namespace, first.from_group, first.from_kind
            targets = sorted({(g.to_group, g.to_kind, g.to_name) for g in grants})
            sources: set[ObjectRef] = set()
            for g in grants:
                sources |= self.needs[g]
            obj: KubeObject = {
                "apiVersion": REFERENCE_GRANT_API_VERSION,
                "kind": "ReferenceGrant",
                "metadata": {"name": name, "namespace": to_ns},
                "spec": {
                    "from": [{"group": from_group, "kind": from_kind, "namespace": from_ns}],
                    "to": [{"group": g, "kind": k, "name": n} for g, k, n in targets],
                },
            }
            out.append(stamp(obj, sources))
        return out


# --------------------------------------------------------------------------- planning


@dataclass
class _Listener:
    hostname: str
    protocol: Protocol
    port: int  # the listener port (after the port map)
    namespaces: set[str] = field(default_factory=set)
    certificates: set[SecretRef] = field(default_factory=set)
    passthrough: bool = False
    sources: set[ObjectRef] = field(default_factory=set)
    keys: list[ListenerKey] = field(default_factory=list)
    with_certificates: set[ListenerKey] = field(default_factory=set)  # keys that brought one
    # every certificate, in the order the needs asked for it, with the keys that did
    asked: dict[SecretRef, list[ListenerKey]] = field(default_factory=dict)

    def sort_key(self) -> tuple[bool, int, str, str, int, str]:
        """Catch-all listeners first, then by hostname (a wildcard next to its apex), port and
        protocol; TCP listeners (L4, by port) after every other."""
        base = self.hostname.removeprefix("*.")
        return (
            self.protocol == "TCP",
            0 if not self.hostname else 1,
            base,
            self.hostname,
            self.port,
            self.protocol,
        )

    @property
    def terminates(self) -> bool:
        return self.protocol == "HTTPS" or (self.protocol == "TLS" and not self.passthrough)


@dataclass
class _Gateway:
    namespace: str
    name: str
    cls: str
    listeners: dict[tuple[str, str, int], _Listener] = field(default_factory=dict)


def plan(needs: Sequence[ListenerNeed], options: LayoutOptions, grants: Grants) -> Layout:
    """Plan the objects that give every need a listener; grants collect certificate grants."""
    layout = Layout(notes={})
    if options.existing is not None:
        _attach_existing(needs, options, options.existing, layout)
        return layout
    gateways: dict[tuple[str, str], _Gateway] = {}
    for item in needs:
        key = item.key
        gw_ns = key.route_namespace if options.per_namespace else options.gateway_namespace
        gw = gateways.get((gw_ns, key.cls))
        if gw is None:
            gw = gateways[(gw_ns, key.cls)] = _Gateway(gw_ns, "", key.cls)
        port = options.listener_port(key.port)
        lkey = (key.hostname, key.protocol, port)
        listener = gw.listeners.get(lkey)
        if listener is None:
            listener = gw.listeners[lkey] = _Listener(key.hostname, key.protocol, port)
        listener.namespaces.add(key.route_namespace)
        listener.certificates.update(item.certificates)
        if item.certificates:
            listener.with_certificates.add(key)
        for cert in item.certificates:
            listener.asked.setdefault(cert, []).append(key)
        listener.passthrough = listener.passthrough or item.passthrough
        listener.sources.update(item.sources)
        listener.keys.append(key)
    # Gateway names: the class name, made valid and unique per namespace.
    by_ns: dict[str, dict[Any, str]] = defaultdict(dict)
    for (ns, cls), _gw in gateways.items():
        by_ns[ns][cls] = cls
    for ns, wanted in by_ns.items():
        for cls_key, name in naming.allocate(wanted).items():
            gateways[(ns, str(cls_key))].name = name
    for gw in sorted(gateways.values(), key=lambda g: (g.namespace, g.name)):
        _refuse_port_clashes(gw, layout)
        _note_passthrough_certificates(gw, layout)
        _cap_certificates(gw, layout)
        if gw.listeners:
            _render_gateway(gw, options, layout, grants)
    # Every key of a listener shares its list of certificate grants: resolve each list once
    # (a listener many namespaces use, each with its own certificate, has many of both).
    resolved: dict[int, list[ObjectRef]] = {}
    for key, pending in layout.pending.items():
        refs = resolved.get(id(pending))
        if refs is None:
            found = dict.fromkeys(grants.ref_for(grant) for grant in pending)
            refs = resolved[id(pending)] = [ref for ref in found if ref is not None]
        layout.outputs[key].extend(refs)  # ReferenceGrants: never the Gateway already there
    return layout


def _refuse_port_clashes(gw: _Gateway, layout: Layout) -> None:
    """A TCP listener on a port that a listener of another protocol uses gets no listener
    (Gateway API cannot tell them apart); the other listener stays, whatever the order."""
    others: dict[int, _Listener] = {}
    for lis in sorted(gw.listeners.values(), key=_Listener.sort_key):
        if lis.protocol != "TCP":
            others.setdefault(lis.port, lis)
    for lkey, lis in list(gw.listeners.items()):
        other = others.get(lis.port)
        if lis.protocol != "TCP" or other is None:
            continue
        del gw.listeners[lkey]
        message = (
            f"port {lis.port} is already an {other.protocol} listener of the Gateway; Gateway "
            f"API cannot share a port between TCP and {other.protocol}"
        )
        for key in lis.keys:
            layout.errors[key] = message
            layout.outputs[key] = []


def _note_passthrough_certificates(gw: _Gateway, layout: Layout) -> None:
    for lis in gw.listeners.values():
        if lis.protocol != "TLS" or not lis.passthrough or not lis.certificates:
            continue
        certs = ", ".join(f"{c.namespace}/{c.name}" for c in sorted(lis.certificates))
        for key in sorted(lis.with_certificates):
            _note(
                layout,
                key,
                f"the TLS listener for {lis.hostname or 'every host'} on port {lis.port} "
                f"passes TLS through (another source asks for that): certificate {certs} is "
                "not used",
            )


def _cap_certificates(gw: _Gateway, layout: Layout) -> None:
    """Gateway API allows 64 certificateRefs per listener: keep the first 64 asked for, and
    tell every need that brought one of the others."""
    for lis in gw.listeners.values():
        if not lis.terminates or len(lis.asked) <= MAX_CERTIFICATES:
            continue
        order = list(lis.asked)
        lis.certificates = set(order[:MAX_CERTIFICATES])
        where = f"{lis.protocol} listener for {lis.hostname or 'every host'} on port {lis.port}"
        for cert in order[MAX_CERTIFICATES:]:
            text = (
                f"certificate {cert.namespace}/{cert.name} is not served: the {where} already "
                f"has {MAX_CERTIFICATES} certificates, the most Gateway API allows on a listener"
            )
            layout.dropped_certificates.setdefault((lis.hostname, cert), text)
            for key in lis.asked[cert]:
                _note(layout, key, text)


def _note(layout: Layout, key: ListenerKey, text: str) -> None:
    found = layout.notes.setdefault(key, [])
    if text not in found:
        found.append(text)


def _attach_existing(
    needs: Sequence[ListenerNeed],
    options: LayoutOptions,
    existing: ExistingGateway,
    layout: Layout,
) -> None:
    """Attach to ``existing``: to its section when one is given (TCP needs always by port, as a
    TCP route cannot use an HTTP or TLS listener), else by port."""
    for item in needs:
        key = item.key
        port = options.listener_port(key.port)
        parent: dict[str, Any] = {
            "group": GATEWAY_GROUP,
            "kind": "Gateway",
            "namespace": existing.namespace,
            "name": existing.name,
        }
        section = existing.section if key.protocol != "TCP" else None
        if section:
            parent["sectionName"] = section
        else:
            parent["port"] = port
        layout.parents[key] = parent
        layout.listeners[key] = ListenerRef(
            "Gateway", existing.namespace, existing.name, section or "", port
        )
        layout.outputs[key] = []  # nothing is produced for an existing Gateway
        if key.protocol == "TCP":
            _note(
                layout,
                key,
                f"the existing Gateway {existing.namespace}/{existing.name} needs a TCP "
                f"listener on port {port}",
            )
        if item.certificates:
            certs = ", ".join(f"{c.namespace}/{c.name}" for c in item.certificates)
            _note(
                layout,
                key,
                f"the existing Gateway {existing.namespace}/{existing.name} must serve "
                f"{key.hostname or 'this host'} with certificate {certs}",
            )


def _listener_name(listener: _Listener) -> str:
    if listener.protocol == "TCP":
        return f"tcp-{listener.port}"  # one TCP listener per port: the port names it
    if not listener.hostname:
        return listener.protocol.lower()
    return naming.readable(listener.protocol.lower(), listener.hostname)


def _render_gateway(gw: _Gateway, options: LayoutOptions, layout: Layout, grants: Grants) -> None:
    listeners = sorted(gw.listeners.values(), key=_Listener.sort_key)
    names = naming.allocate(
        {(lis.hostname, lis.protocol, lis.port): _listener_name(lis) for lis in listeners}
    )
    chunks = [listeners[i : i + MAX_LISTENERS] for i in range(0, len(listeners), MAX_LISTENERS)]
    gw_ref = ObjectRef(GATEWAY_API_VERSION, "Gateway", gw.namespace, gw.name)
    all_sources: set[ObjectRef] = set()
    for lis in listeners:
        all_sources |= lis.sources
    for index, chunk in enumerate(chunks):
        if index == 0:
            owner_kind, owner_name, owner_ref = "Gateway", gw.name, gw_ref
        else:
            owner_kind = "ListenerSet"
            owner_name = naming.allocate_one(gw.name, "listeners", str(index + 1), limit=253)
            owner_ref = ObjectRef(GATEWAY_API_VERSION, "ListenerSet", gw.namespace, owner_name)
        rendered = []
        chunk_sources: set[ObjectRef] = set()
        for lis in chunk:
            section = names[(lis.hostname, lis.protocol, lis.port)]
            rendered.append(_render_listener(lis, section, gw.namespace, owner_kind, grants))
            chunk_sources |= lis.sources
            parent: dict[str, Any] = {
                "group": GATEWAY_GROUP,
                "kind": owner_kind,
                "namespace": gw.namespace,
                "name": owner_name,
                "sectionName": section,
            }
            ref = ListenerRef(owner_kind, gw.namespace, owner_name, section, lis.port)
            certs = sorted(lis.certificates) if lis.terminates else []
            pending = [_cert_grant(gw.namespace, owner_kind, c) for c in certs]
            for key in lis.keys:
                layout.parents[key] = parent
                layout.listeners[key] = ref
                outs = [owner_ref] if owner_kind == "Gateway" else [owner_ref, gw_ref]
                layout.outputs[key] = outs
                layout.pending[key] = pending  # one list per listener (see plan)
        if index == 0:
            spec: dict[str, Any] = {"gatewayClassName": options.gateway_class}
            if len(chunks) > 1:
                spec["allowedListeners"] = {"namespaces": {"from": "Same"}}
            spec["listeners"] = rendered
            obj: KubeObject = {
                "apiVersion": GATEWAY_API_VERSION,
                "kind": "Gateway",
                "metadata": {"name": gw.name, "namespace": gw.namespace},
                "spec": spec,
            }
            layout.objects.append(stamp(obj, all_sources))
        else:
            obj = {
                "apiVersion": GATEWAY_API_VERSION,
                "kind": "ListenerSet",
                "metadata": {"name": owner_name, "namespace": gw.namespace},
                "spec": {
                    "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gw.name},
                    "listeners": rendered,
                },
            }
            layout.objects.append(stamp(obj, chunk_sources))


def _cert_grant(gw_namespace: str, owner_kind: str, cert: SecretRef) -> GrantNeed:
    return GrantNeed(
        GATEWAY_GROUP, owner_kind, gw_namespace, "", "Secret", cert.namespace, cert.name
    )


def _render_listener(
    lis: _Listener, name: str, gw_namespace: str, owner_kind: str, grants: Grants
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if lis.hostname:
        out["hostname"] = lis.hostname
    out["port"] = lis.port
    out["protocol"] = lis.protocol
    if lis.terminates:
        refs = []
        for cert in sorted(lis.certificates):
            ref: dict[str, Any] = {"group": "", "kind": "Secret", "name": cert.name}
            if cert.namespace != gw_namespace:
                ref["namespace"] = cert.namespace
                grants.add(_cert_grant(gw_namespace, owner_kind, cert), lis.sources)
            refs.append(ref)
        out["tls"] = {"mode": "Terminate", "certificateRefs": refs}
    elif lis.protocol == "TLS":
        out["tls"] = {"mode": "Passthrough"}
    if lis.namespaces == {gw_namespace}:
        out["allowedRoutes"] = {"namespaces": {"from": "Same"}}
    else:
        out["allowedRoutes"] = {
            "namespaces": {
                "from": "Selector",
                "selector": {
                    "matchExpressions": [
                        {
                            "key": NAMESPACE_LABEL,
                            "operator": "In",
                            "values": sorted(lis.namespaces),
                        }
                    ]
                },
            }
        }
    return out
