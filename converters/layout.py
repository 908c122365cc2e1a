"""Plan Gateways, listeners, ListenerSets and ReferenceGrants from what the routes need.

Source-neutral: a converter says, for every route it made, which class it belongs to, which
namespace the route lives in, which hostname and protocol it must be reachable on and, for TLS
termination, which certificate serves it (a :class:`ListenerNeed`). :func:`plan` turns those
needs into Gateway API objects and tells the converter which ``parentRef`` each route uses.

Layouts (:class:`LayoutOptions`):

- shared (default): one Gateway per class in ``gateway_namespace``, named after the class;
- per namespace: one Gateway per class in every route namespace (``gateway_per_namespace``);
- existing: routes attach to ``existing`` (``--gateway NS/NAME[/SECTION]``); nothing is planned.

A Gateway holds at most 64 listeners; the rest go into ListenerSets (standard since Gateway API
v1.5) in the Gateway's namespace, 64 listeners each, and the Gateway then admits ListenerSets of
its own namespace. Listeners admit routes only from the namespaces that need them (a selector on
``kubernetes.io/metadata.name``), and certificates in other namespaces get ReferenceGrants.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from converters import naming
from converters.api import ExistingGateway
from converters.provenance import stamp
from kubectl_gw.model import GATEWAY_GROUP, KubeObject, ObjectRef

MAX_LISTENERS = 64
MAX_GRANT_TARGETS = 16
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
GATEWAY_API_VERSION = f"{GATEWAY_GROUP}/v1"
REFERENCE_GRANT_API_VERSION = f"{GATEWAY_GROUP}/v1beta1"

Protocol = Literal["HTTP", "HTTPS", "TLS"]
DEFAULT_PORTS: dict[str, int] = {"HTTP": 80, "HTTPS": 443, "TLS": 443}


@dataclass(frozen=True, order=True)
class SecretRef:
    namespace: str
    name: str


@dataclass(frozen=True, order=True)
class ListenerKey:
    """What a route must be reachable on: one listener per (class, hostname, protocol, port)
    and, in the per-namespace layout, per route namespace."""

    cls: str
    route_namespace: str
    hostname: str  # "" = every hostname (a catch-all listener)
    protocol: Protocol
    port: int


@dataclass
class ListenerNeed:
    key: ListenerKey
    certificates: tuple[SecretRef, ...] = ()  # HTTPS only
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
    key = ListenerKey(
        cls, route_namespace, hostname or "", protocol, port or DEFAULT_PORTS[protocol]
    )
    return ListenerNeed(key, tuple(certificates), passthrough, tuple(sources))


@dataclass(frozen=True)
class LayoutOptions:
    gateway_class: str
    gateway_namespace: str
    existing: ExistingGateway | None = None
    per_namespace: bool = False


@dataclass
class Layout:
    objects: list[KubeObject] = field(default_factory=list)
    parents: dict[ListenerKey, dict[str, Any]] = field(default_factory=dict)
    # The objects each need became (its Gateway or ListenerSet, and any ReferenceGrant).
    outputs: dict[ListenerKey, list[ObjectRef]] = field(default_factory=dict)
    # Certificates each need asked for that ended up behind a ReferenceGrant.
    notes: dict[ListenerKey, list[str]] = field(default_factory=dict)
    pending: dict[ListenerKey, list[GrantNeed]] = field(default_factory=dict)

    def parent(self, key: ListenerKey) -> dict[str, Any]:
        return dict(self.parents[key])

    def same_parent(self, a: ListenerKey, b: ListenerKey) -> bool:
        return self.parents.get(a) == self.parents.get(b)


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


@dataclass
class Grants:
    """Collects the cross-namespace references a conversion makes, and renders the
    ReferenceGrants that allow them (one per target namespace, source namespace and kind)."""

    needs: dict[GrantNeed, set[ObjectRef]] = field(default_factory=dict)

    def add(self, grant: GrantNeed, sources: Iterable[ObjectRef] = ()) -> None:
        if grant.from_namespace == grant.to_namespace:
            return
        self.needs.setdefault(grant, set()).update(sources)

    def _groups(self) -> dict[tuple[str, str, str, str], list[GrantNeed]]:
        groups: dict[tuple[str, str, str, str], list[GrantNeed]] = defaultdict(list)
        for g in sorted(self.needs):
            groups[(g.to_namespace, g.from_namespace, g.from_group, g.from_kind)].append(g)
        return groups

    @staticmethod
    def name_for(from_namespace: str, from_kind: str) -> str:
        """Namespace names are DNS labels and kinds a fixed set, so this never collides
        within a target namespace; it does not depend on the other grants either."""
        return naming.allocate_one("from", from_namespace, from_kind.lower())

    def _chunks(self) -> Iterable[tuple[str, str, list[GrantNeed]]]:
        """(namespace, name, grants) of every ReferenceGrant: at most 16 targets each."""
        for key, grants in self._groups().items():
            to_ns, from_ns, _group, from_kind = key
            targets = sorted({(g.to_group, g.to_kind, g.to_name) for g in grants})
            base = self.name_for(from_ns, from_kind)
            for index in range(0, len(targets), MAX_GRANT_TARGETS):
                chunk = set(targets[index : index + MAX_GRANT_TARGETS])
                name = (
                    base
                    if index == 0
                    else naming.allocate_one(base, str(index // MAX_GRANT_TARGETS + 1))
                )
                yield (
                    to_ns,
                    name,
                    [g for g in grants if (g.to_group, g.to_kind, g.to_name) in chunk],
                )

    def ref_for(self, grant: GrantNeed) -> ObjectRef | None:
        """The ReferenceGrant that allows ``grant`` (call once every grant is added)."""
        if grant.from_namespace == grant.to_namespace:
            return None
        for namespace, name, grants in self._chunks():
            if grant in grants:
                return ObjectRef(REFERENCE_GRANT_API_VERSION, "ReferenceGrant", namespace, name)
        return None

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
    port: int
    namespaces: set[str] = field(default_factory=set)
    certificates: set[SecretRef] = field(default_factory=set)
    passthrough: bool = False
    sources: set[ObjectRef] = field(default_factory=set)
    keys: list[ListenerKey] = field(default_factory=list)

    def sort_key(self) -> tuple[int, str, str, int, str]:
        base = self.hostname.removeprefix("*.")
        return (0 if not self.hostname else 1, base, self.hostname, self.port, self.protocol)


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
        _attach_existing(needs, options.existing, layout)
        return layout
    gateways: dict[tuple[str, str], _Gateway] = {}
    for item in needs:
        key = item.key
        gw_ns = key.route_namespace if options.per_namespace else options.gateway_namespace
        gw = gateways.get((gw_ns, key.cls))
        if gw is None:
            gw = gateways[(gw_ns, key.cls)] = _Gateway(gw_ns, "", key.cls)
        lkey = (key.hostname, key.protocol, key.port)
        listener = gw.listeners.get(lkey)
        if listener is None:
            listener = gw.listeners[lkey] = _Listener(key.hostname, key.protocol, key.port)
        listener.namespaces.add(key.route_namespace)
        listener.certificates.update(item.certificates)
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
        _render_gateway(gw, options, layout, grants)
    for key, pending in layout.pending.items():
        for grant in pending:
            ref = grants.ref_for(grant)
            if ref is not None and ref not in layout.outputs[key]:
                layout.outputs[key].append(ref)
    return layout


def _attach_existing(
    needs: Sequence[ListenerNeed], existing: ExistingGateway, layout: Layout
) -> None:
    for item in needs:
        parent: dict[str, Any] = {
            "group": GATEWAY_GROUP,
            "kind": "Gateway",
            "namespace": existing.namespace,
            "name": existing.name,
        }
        if existing.section:
            parent["sectionName"] = existing.section
        else:
            parent["port"] = item.key.port
        layout.parents[item.key] = parent
        layout.outputs[item.key] = []  # nothing is produced for an existing Gateway
        if item.certificates:
            certs = ", ".join(f"{c.namespace}/{c.name}" for c in item.certificates)
            layout.notes.setdefault(item.key, []).append(
                f"the existing Gateway {existing.namespace}/{existing.name} must serve "
                f"{item.key.hostname or 'this host'} with certificate {certs}"
            )


def _listener_name(listener: _Listener) -> str:
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
            for key in lis.keys:
                layout.parents[key] = parent
                outs = [owner_ref] if owner_kind == "Gateway" else [owner_ref, gw_ref]
                layout.outputs[key] = outs
                layout.pending[key] = [
                    _cert_grant(gw.namespace, owner_kind, c) for c in sorted(lis.certificates)
                ]
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
    if lis.protocol == "HTTPS":
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
