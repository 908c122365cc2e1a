"""The attachment engine: Gateway API objects in, what a conformant controller concludes out.

Pure: no I/O, no ``kubernetes`` import. ``kubectl gw describe`` runs it on files or on what it
read from a cluster; the controller runs it to write status. Both see the same answer.

API
---
``compute(objects, *, controller_names=None, memo=None) -> AttachmentResult``

``objects`` are plain dicts (``KubeObject``): GatewayClasses, Gateways, ListenerSets (also the
pre-v1.5 ``XListenerSet``), HTTPRoutes, GRPCRoutes, TLSRoutes, TCPRoutes, UDPRoutes,
ReferenceGrants, Services, Envoy Gateway Backends (``gateway.envoyproxy.io``, a backendRef
kind Envoy Gateway and the controller serve), Namespaces (for their labels) and Secrets (metadata
and ``type`` are enough). Other kinds are ignored. The inputs are taken as the whole world: a
Service or Backend that is not among them does not exist. Every Namespace gets the
``kubernetes.io/metadata.name`` label the API server sets, also when the Namespace object itself
is missing.

``controller_names``: the GatewayClass ``controllerName`` values to act for. ``None`` (describe)
evaluates every Gateway as if a conformant controller owned its class; a set (the controller)
ignores Gateways of other classes, and the routes' parentRefs to them.

The result (all lists in a deterministic order):

- ``gateway_classes``: ``GatewayClassResult`` (name, controllerName, conditions).
- ``gateways``: ``GatewayResult`` with conditions (Accepted, Programmed), its own
  ``listeners`` and the ListenerSets attached to it; ``attached_listener_sets`` count.
- ``listener_sets``: ``ListenerSetResult`` with conditions (Accepted, Programmed) and listeners.
- Every listener (``ListenerResult``) carries conditions (Accepted, ResolvedRefs, Programmed,
  Conflicted), ``supported_kinds``, ``attached_routes`` and ``routing``: its effective routing
  table, one ``RoutingEntry`` per (route, rule, match, hostname) with its precedence ``rank``
  and, when another entry takes all its traffic, ``shadowed_by`` and the deciding reason.
- ``routes``: ``RouteResult`` per route with one ``ParentResult`` per parentRef (``accepted``,
  ``reason``, ``message``, the conditions a controller writes — Accepted, ResolvedRefs,
  PartiallyInvalid — the listeners it attaches to with their effective hostnames, and every
  failing step in ``problems``, each with a hint of what to change) and one ``BackendResult`` per
  backendRef (also RequestMirror backends) with ``resolved``/``reason``.

Reasons are the Gateway API v1.6 constants. Where the spec leaves no status at all (the parent
does not exist, its GatewayClass does not exist, a parent kind no controller handles)
``ParentResult.writes_status`` is False and the reason says what a user would see instead:
``NoMatchingParent`` for a missing or unattached parent, ``Pending`` (Accepted=Unknown) for a
Gateway whose GatewayClass does not exist, ``UnsupportedValue`` for a parent kind kubectl-gw does
not evaluate (mesh Service parents).

Choices where the spec leaves room (kept in one place so describe and the controller agree):
listener conflicts give the conflicted listener Accepted=False with the conflict reason and
Programmed=False/Invalid; HTTP and HTTPS (or TCP and anything) on one port conflict, HTTPS and
TLS do not; TLS listeners support TLSRoute only; a route still attaches to (and is counted on) a
conflicted or unprogrammed listener, as the spec asks, and describe warns about it.
"""

from __future__ import annotations

import bisect
import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from controller import hostnames as hn
from controller import precedence as prec
from kubectl_gw.model import (
    ENVOY_GATEWAY_GROUP,
    GATEWAY_GROUP,
    GATEWAY_X_GROUP,
    KubeObject,
    meta_of,
    spec_of,
    split_api_version,
)

# --------------------------------------------------------------------------- constants

ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute")
PROTOCOL_KINDS: dict[str, tuple[str, ...]] = {
    "HTTP": ("HTTPRoute", "GRPCRoute"),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
    "TLS": ("TLSRoute",),
    "TCP": ("TCPRoute",),
    "UDP": ("UDPRoute",),
}
HOSTNAME_PROTOCOLS = frozenset({"HTTP", "HTTPS", "TLS"})
HOSTNAME_KINDS = frozenset({"HTTPRoute", "GRPCRoute", "TLSRoute"})
NAME_LABEL = "kubernetes.io/metadata.name"
HTTP_FILTERS = frozenset(
    {
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestMirror",
        "RequestRedirect",
        "URLRewrite",
        "ExtensionRef",
        "CORS",
        "ExternalAuth",
    }
)
GRPC_FILTERS = frozenset(
    {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef"}
)
BACKEND_KIND = (ENVOY_GATEWAY_GROUP, "Backend")
"""Envoy Gateway's Backend: a backendRef kind besides core Services (endpoints by IP or DNS)."""
HTTP_APP_PROTOCOLS = frozenset(
    {"http", "https", "h2c", "grpc", "kubernetes.io/h2c", "kubernetes.io/ws", "kubernetes.io/wss"}
)

# Route parent reasons (Accepted), in the order the steps run.
NO_MATCHING_PARENT = "NoMatchingParent"
NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
UNSUPPORTED_VALUE = "UnsupportedValue"
INCOMPATIBLE_FILTERS = "IncompatibleFilters"
PENDING = "Pending"

# --------------------------------------------------------------------------- result shapes


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
        }


def _cond(type_: str, ok: bool | None, reason: str, message: str = "") -> Condition:
    status = "Unknown" if ok is None else ("True" if ok else "False")
    return Condition(type_, status, reason, message)


class ObjKey(NamedTuple):
    """A namespaced (or cluster-scoped, namespace "") object of a known kind. (A tuple, not a
    dataclass: keys are hashed and compared on every lookup, and a tuple does that in C.)"""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.namespace}/{self.name}"
            if self.namespace
            else (f"{self.kind} {self.name}")
        )

    @property
    def nsname(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


class ListenerKey(NamedTuple):
    """A listener: its owner (Gateway or ListenerSet) and its name within that owner."""

    owner: ObjKey
    name: str

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class RoutingEntry:
    """One line of a listener's routing table."""

    rank: int  # 1 = highest precedence, per route kind on the listener
    route: ObjKey
    rule: int
    rule_name: str | None
    match_index: int  # -1 for kinds without matches (TLS/TCP/UDP)
    hostname: str  # the effective hostname this entry serves ("*" for any)
    match: prec.Match | None
    backends: list[BackendResult]
    shadowed_by: RoutingEntry | None = None
    shadow_reason: str = ""
    key: tuple[Any, ...] = ()

    def label(self) -> str:
        rule = f"rule {self.rule}" + (f" ({self.rule_name})" if self.rule_name else "")
        return f"{self.route} {rule}"

    def match_text(self) -> str:
        return self.match.describe() if self.match is not None else "any"


@dataclass
class ListenerResult:
    key: ListenerKey
    gateway: ObjKey | None  # the Gateway the listener merges into (None: unattached set)
    port: int
    protocol: str
    hostname: str | None
    tls_mode: str | None
    certificate_refs: list[dict[str, Any]]
    allowed_from: str
    allowed_selector: dict[str, Any] | None
    allowed_kinds: list[tuple[str, str]]  # as written in the spec
    supported_kinds: list[tuple[str, str]] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    attached_routes: int = 0
    attached: list[ObjKey] = field(default_factory=list)  # routes counted in attached_routes
    routing: list[RoutingEntry] = field(default_factory=list)
    live: dict[str, list[RoutingEntry]] = field(default_factory=dict)
    """Per hostname (normalised): its HTTPRoute and GRPCRoute entries that receive traffic
    (not shadowed), GRPCRoute first, each kind in rank order. A hostname whose entries did not
    change keeps the very same list from one pass of the controller to the next."""
    conflict: Condition | None = None
    no_valid_certificate: bool = False

    @property
    def name(self) -> str:
        return self.key.name

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def is_true(self, type_: str) -> bool:
        found = self.condition(type_)
        return found is not None and found.status == "True"


@dataclass
class GatewayClassResult:
    name: str
    controller_name: str
    conditions: list[Condition]


@dataclass
class ListenerSetResult:
    key: ObjKey
    parent: ObjKey  # the Gateway its parentRef names
    attached: bool
    conditions: list[Condition] = field(default_factory=list)
    listeners: list[ListenerResult] = field(default_factory=list)
    created: str = ""
    writes_status: bool = True


@dataclass
class GatewayResult:
    key: ObjKey
    class_name: str
    controller_name: str | None  # None: the GatewayClass does not exist
    conditions: list[Condition] = field(default_factory=list)
    listeners: list[ListenerResult] = field(default_factory=list)
    listener_sets: list[ObjKey] = field(default_factory=list)  # attached, in merge order
    allowed_listeners_from: str = "None"
    allowed_listeners_selector: dict[str, Any] | None = None

    @property
    def attached_listener_sets(self) -> int:
        return len(self.listener_sets)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


@dataclass(frozen=True)
class Problem:
    """One failing step of a parentRef's verdict chain."""

    step: str  # parent | listeners | allowedRoutes | hostnames | rules
    reason: str
    message: str
    hint: str = ""
    listener: str | None = None


@dataclass
class ListenerAttachment:
    listener: ListenerKey
    hostnames: list[str]


@dataclass
class ParentResult:
    index: int
    parent_ref: dict[str, Any]  # normalised: group, kind, namespace, name[, sectionName][, port]
    accepted: bool
    reason: str
    message: str
    conditions: list[Condition]
    listeners: list[ListenerAttachment]
    problems: list[Problem]
    parent: ObjKey | None  # the resolved Gateway or ListenerSet
    gateway: ObjKey | None  # the Gateway traffic goes through
    writes_status: bool = True


@dataclass
class BackendResult:
    rule: int
    index: int  # position in rules[rule].backendRefs; -1 for a RequestMirror filter
    ref: dict[str, Any]  # normalised: group, kind, namespace, name[, port]
    weight: int
    resolved: bool
    reason: str  # ResolvedRefs, BackendNotFound, RefNotPermitted, InvalidKind, UnsupportedProtocol
    message: str
    mirror: bool = False

    def label(self) -> str:
        kind = (
            self.ref["kind"] if not self.ref["group"] else f"{self.ref['kind']}.{self.ref['group']}"
        )
        port = f":{self.ref['port']}" if "port" in self.ref else ""
        return f"{kind} {self.ref['namespace']}/{self.ref['name']}{port}"


@dataclass
class RuleResult:
    index: int
    name: str | None
    valid: bool
    reason: str  # "" when valid
    message: str
    matches: list[prec.Match]


@dataclass
class RouteResult:
    key: ObjKey
    group: str
    hostnames: list[str]
    created: str
    parents: list[ParentResult] = field(default_factory=list)
    backends: list[BackendResult] = field(default_factory=list)
    rules: list[RuleResult] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.key.kind


@dataclass
class AttachmentResult:
    gateway_classes: list[GatewayClassResult]
    gateways: list[GatewayResult]
    listener_sets: list[ListenerSetResult]
    routes: list[RouteResult]
    notes: list[str]

    def gateway(self, namespace: str, name: str) -> GatewayResult | None:
        return next((g for g in self.gateways if g.key == ObjKey("Gateway", namespace, name)), None)

    def route(self, kind: str, namespace: str, name: str) -> RouteResult | None:
        return next((r for r in self.routes if r.key == ObjKey(kind, namespace, name)), None)

    def listener_set(self, namespace: str, name: str) -> ListenerSetResult | None:
        return next((s for s in self.listener_sets if s.key.nsname == f"{namespace}/{name}"), None)

    def all_listeners(self) -> list[ListenerResult]:
        out = [lis for g in self.gateways for lis in g.listeners]
        out += [lis for s in self.listener_sets for lis in s.listeners]
        return out

    def listener(self, key: ListenerKey) -> ListenerResult | None:
        return next((lis for lis in self.all_listeners() if lis.key == key), None)


# --------------------------------------------------------------------------- the world


_meta = meta_of
_spec = spec_of


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


class ReadRecording(dict[tuple[str, str], Mapping[str, Any]]):
    """A dict of objects by (namespace, name) that remembers every key asked for, present or
    not: a Secret or ConfigMap nothing asked for cannot have changed a result."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[tuple[str, str]] = set()

    def __contains__(self, key: object) -> bool:
        if isinstance(key, tuple):
            self.read.add(key)
        return dict.__contains__(self, key)

    def __getitem__(self, key: tuple[str, str]) -> Mapping[str, Any]:
        self.read.add(key)
        return dict.__getitem__(self, key)

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        self.read.add(key)
        return dict.get(self, key, default)

    def put(self, key: tuple[str, str], obj: Mapping[str, Any] | None) -> None:
        """Set (None: remove) without counting as a read."""
        if obj is None:
            dict.pop(self, key, None)
        else:
            dict.__setitem__(self, key, obj)


class _World:
    """The inputs indexed by what the steps look up."""

    def __init__(self, objects: Iterable[KubeObject]) -> None:
        self.classes: dict[str, Mapping[str, Any]] = {}
        self.gateways: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.listener_sets: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.routes: dict[ObjKey, Mapping[str, Any]] = {}
        self.route_groups: dict[ObjKey, str] = {}
        self.grants: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        self.services = ReadRecording()
        self.backends: dict[tuple[str, str], Mapping[str, Any]] = {}  # Envoy Gateway Backends
        self.secrets = ReadRecording()
        self.ns_labels: dict[str, dict[str, str]] = {}
        self.ns_known: set[str] = set()
        self.ns_read: set[str] = set()  # the Namespaces whose labels a step asked for
        for obj in objects:
            self._add(obj)

    def _add(self, obj: Mapping[str, Any]) -> None:
        group, _version = split_api_version(_str(obj.get("apiVersion")))
        kind = _str(obj.get("kind"))
        meta = _meta(obj)
        name = _str(meta.get("name"))
        ns = _str(meta.get("namespace"), "default")
        if not name:
            return
        if group == "" and kind == "Namespace":
            labels = meta.get("labels")
            self.ns_labels[name] = dict(labels) if isinstance(labels, Mapping) else {}
            self.ns_known.add(name)
        elif group == "" and kind == "Service":
            self.services.put((ns, name), obj)
        elif (group, kind) == BACKEND_KIND:
            self.backends[(ns, name)] = obj
        elif group == "" and kind == "Secret":
            self.secrets.put((ns, name), obj)
        elif group == GATEWAY_GROUP and kind == "GatewayClass":
            self.classes[name] = obj
        elif group == GATEWAY_GROUP and kind == "Gateway":
            self.gateways[(ns, name)] = obj
        elif (group, kind) in ((GATEWAY_GROUP, "ListenerSet"), (GATEWAY_X_GROUP, "XListenerSet")):
            self.listener_sets[(ns, name)] = obj
        elif group == GATEWAY_GROUP and kind == "ReferenceGrant":
            self.grants[ns].append(obj)
        elif group == GATEWAY_GROUP and kind in ROUTE_KINDS:
            key = ObjKey(kind, ns, name)
            self.routes[key] = obj
            self.route_groups[key] = group

    def set_route(self, key: ObjKey, obj: Mapping[str, Any] | None) -> None:
        """Put a changed route in (None: it was deleted)."""
        self.routes.pop(key, None)
        self.route_groups.pop(key, None)
        if obj is not None:
            self._add(obj)

    def carry_reads(self, other: _World) -> None:
        """Count what ``other`` was asked for as asked of this one."""
        self.secrets.read |= other.secrets.read
        self.services.read |= other.services.read
        self.ns_read |= other.ns_read

    def set_namespace(self, name: str, obj: Mapping[str, Any] | None) -> None:
        """Put a changed Namespace in (None: it was deleted)."""
        self.ns_labels.pop(name, None)
        self.ns_known.discard(name)
        if obj is not None:
            self._add(obj)

    def labels(self, namespace: str) -> dict[str, str] | None:
        """The Namespace's labels, or None when the Namespace is not among the inputs."""
        self.ns_read.add(namespace)
        if namespace in self.ns_labels:
            return {**self.ns_labels[namespace], NAME_LABEL: namespace}
        return None

    def granted(
        self,
        from_group: str,
        from_kind: str,
        from_ns: str,
        to_kind: str,
        to_ns: str,
        name: str,
        to_group: str = "",
    ) -> bool:
        """Is a reference from (group, kind, ns) to ``to_kind`` (of ``to_group``, core by
        default) ns/name allowed?"""
        if from_ns == to_ns:
            return True
        for grant in self.grants.get(to_ns, []):
            spec = _spec(grant)
            froms = _list(spec.get("from"))
            tos = _list(spec.get("to"))
            ok_from = any(
                isinstance(f, Mapping)
                and _str(f.get("group")) == from_group
                and f.get("kind") == from_kind
                and f.get("namespace") == from_ns
                for f in froms
            )
            ok_to = any(
                isinstance(t, Mapping)
                and _str(t.get("group")) == to_group
                and t.get("kind") == to_kind
                and (not t.get("name") or t.get("name") == name)
                for t in tos
            )
            if ok_from and ok_to:
                return True
        return False


# --------------------------------------------------------------------------- label selectors


def selector_matches(selector: Any, labels: Mapping[str, str]) -> bool | str:
    """A metav1.LabelSelector against labels; a string explains an invalid selector."""
    if not isinstance(selector, Mapping):
        return "selector is missing"
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in _list(selector.get("matchExpressions")):
        if not isinstance(expr, Mapping):
            return "matchExpressions entries must be objects"
        key, op = _str(expr.get("key")), expr.get("operator")
        values = [str(v) for v in _list(expr.get("values"))]
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            return f'operator "{op}" is not a label selector operator'
        if not ok:
            return False
    return True


def selector_text(selector: Any) -> str:
    if not isinstance(selector, Mapping):
        return "{}"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in _list(selector.get("matchExpressions")):
        if isinstance(expr, Mapping):
            values = ",".join(str(v) for v in _list(expr.get("values")))
            parts.append(f"{expr.get('key')} {expr.get('operator')} ({values})".replace(" ()", ""))
    return ", ".join(parts) or "{} (everything)"


def _namespace_allowed(
    world: _World, from_: str, selector: Any, owner_ns: str, namespace: str
) -> tuple[bool, str]:
    """(allowed, why-not) for ``allowedRoutes.namespaces`` / ``allowedListeners.namespaces``."""
    if from_ == "All":
        return True, ""
    if from_ == "Same":
        if namespace == owner_ns:
            return True, ""
        return False, f"from: Same admits only namespace {owner_ns}"
    if from_ == "Selector":
        labels = world.labels(namespace)
        known = labels is not None
        labels = labels if labels is not None else {NAME_LABEL: namespace}
        got = selector_matches(selector, labels)
        if got is True:
            return True, ""
        if isinstance(got, str):
            return False, f"from: Selector is invalid: {got}"
        extra = "" if known else f" (Namespace {namespace} is not among the inputs: labels unknown)"
        return (
            False,
            f"namespace {namespace} does not match selector {selector_text(selector)}{extra}",
        )
    if from_ == "None":
        return False, "from: None admits no namespace"
    return False, f'from: "{from_}" is not a supported value'


# --------------------------------------------------------------------------- listeners


def _listener(
    world: _World, raw: Mapping[str, Any], owner: ObjKey, gateway: ObjKey | None
) -> ListenerResult:
    allowed = raw.get("allowedRoutes")
    allowed = allowed if isinstance(allowed, Mapping) else {}
    namespaces = allowed.get("namespaces")
    namespaces = namespaces if isinstance(namespaces, Mapping) else {}
    kinds = []
    for item in _list(allowed.get("kinds")):
        if isinstance(item, Mapping):
            kinds.append((_str(item.get("group"), GATEWAY_GROUP), _str(item.get("kind"))))
    tls = raw.get("tls")
    tls = tls if isinstance(tls, Mapping) else {}
    protocol = _str(raw.get("protocol"))
    hostname = raw.get("hostname") or None
    return ListenerResult(
        key=ListenerKey(owner, _str(raw.get("name"))),
        gateway=gateway,
        port=int(raw.get("port") or 0),
        protocol=protocol,
        hostname=str(hostname).lower() if hostname else None,
        tls_mode=(_str(tls.get("mode"), "Terminate") if tls or protocol == "HTTPS" else None),
        certificate_refs=[
            dict(r) for r in _list(tls.get("certificateRefs")) if isinstance(r, Mapping)
        ],
        allowed_from=_str(namespaces.get("from"), "Same"),
        allowed_selector=dict(namespaces["selector"])
        if isinstance(namespaces.get("selector"), Mapping)
        else None,
        allowed_kinds=kinds,
    )


def _validate_listener(world: _World, lis: ListenerResult) -> None:
    """Accepted (protocol), ResolvedRefs (kinds, certificates); Conflicted set later."""
    owner = lis.key.owner
    protocol_kinds = PROTOCOL_KINDS.get(lis.protocol)
    resolved: list[tuple[str, str]] = []  # (reason, message)
    if protocol_kinds is None:
        lis.supported_kinds = []
    elif lis.allowed_kinds:
        good = [(g, k) for g, k in lis.allowed_kinds if g == GATEWAY_GROUP and k in protocol_kinds]
        bad = [(g, k) for g, k in lis.allowed_kinds if (g, k) not in good]
        lis.supported_kinds = list(dict.fromkeys(good))
        if bad:
            names = ", ".join(f"{k}.{g}" if g else k for g, k in bad)
            resolved.append(("InvalidRouteKinds", f"{lis.protocol} listeners cannot serve {names}"))
    else:
        lis.supported_kinds = [(GATEWAY_GROUP, k) for k in protocol_kinds]
    valid_certs = 0
    if lis.tls_mode == "Terminate" and lis.protocol in ("HTTPS", "TLS"):
        if not lis.certificate_refs:
            resolved.append(("InvalidCertificateRef", "tls.certificateRefs is empty"))
        for ref in lis.certificate_refs:
            group, kind = _str(ref.get("group")), _str(ref.get("kind"), "Secret")
            ns, name = _str(ref.get("namespace"), owner.namespace), _str(ref.get("name"))
            where = f"{kind} {ns}/{name}"
            if (group, kind) != ("", "Secret"):
                resolved.append(
                    ("InvalidCertificateRef", f"{where}: only core Secrets are supported")
                )
            elif not world.granted(GATEWAY_GROUP, owner.kind, owner.namespace, "Secret", ns, name):
                resolved.append(
                    (
                        "RefNotPermitted",
                        f"{where}: no ReferenceGrant in {ns} allows {owner.kind}s from "
                        f"{owner.namespace} to use it",
                    )
                )
            elif (ns, name) not in world.secrets:
                resolved.append(("InvalidCertificateRef", f"{where} not found"))
            elif _str(world.secrets[(ns, name)].get("type"), "kubernetes.io/tls") != (
                "kubernetes.io/tls"
            ):
                resolved.append(
                    ("InvalidCertificateRef", f"{where} is not of type kubernetes.io/tls")
                )
            else:
                valid_certs += 1
    if protocol_kinds is None:
        accepted = _cond(
            "Accepted", False, "UnsupportedProtocol", f'protocol "{lis.protocol}" is not supported'
        )
    else:
        accepted = _cond("Accepted", True, "Accepted", "Listener is accepted")
    if resolved:
        order = ("RefNotPermitted", "InvalidCertificateRef", "InvalidRouteKinds")
        reason = min((r for r, _ in resolved), key=order.index)
        refs = _cond("ResolvedRefs", False, reason, "; ".join(m for _, m in resolved))
    else:
        refs = _cond("ResolvedRefs", True, "ResolvedRefs", "All references resolved")
    lis.conditions = [accepted, refs]
    lis.no_valid_certificate = (
        lis.tls_mode == "Terminate" and lis.protocol in ("HTTPS", "TLS") and valid_certs == 0
    )


_TLS_FAMILY = frozenset({"HTTPS", "TLS"})


def _conflict(a: ListenerResult, b: ListenerResult) -> str | None:
    """Why two listeners on the same port are indistinct: ProtocolConflict, HostnameConflict."""
    if a.port != b.port:
        return None
    pa, pb = a.protocol, b.protocol
    if pa not in PROTOCOL_KINDS or pb not in PROTOCOL_KINDS:
        return None
    if (pa == "UDP") != (pb == "UDP"):
        return None  # UDP and TCP-based listeners can share a port number
    if pa == "TCP" or pb == "TCP":
        return "ProtocolConflict" if pa != pb else "HostnameConflict"
    if pa != pb and not (pa in _TLS_FAMILY and pb in _TLS_FAMILY):
        return "ProtocolConflict"
    if pa == "UDP" or hn.normalize(a.hostname) == hn.normalize(b.hostname):
        return "HostnameConflict"
    return None


def _resolve_conflicts(groups: list[list[ListenerResult]]) -> None:
    """Listeners merged into one Gateway, in precedence order (Gateway first, then ListenerSets
    oldest first, then by namespace/name). Within one object no conflicted listener wins; a
    listener that conflicts with an un-conflicted listener of an earlier object loses."""
    winners: list[ListenerResult] = []
    for group in groups:
        lost: dict[int, tuple[str, ListenerResult]] = {}
        for i, lis in enumerate(group):
            for other in winners:
                why = _conflict(lis, other)
                if why is not None:
                    lost.setdefault(i, (why, other))
                    break
        inside: dict[int, tuple[str, ListenerResult]] = {}
        for i, lis in enumerate(group):
            if i in lost:
                continue
            for j, other in enumerate(group):
                if i != j and j not in lost:
                    why = _conflict(lis, other)
                    if why is not None:
                        inside[i] = (why, other)
                        break
        lost.update(inside)  # no winner among indistinct listeners of one object
        for i, lis in enumerate(group):
            if i not in lost:
                winners.append(lis)
                continue
            why, other = lost[i]
            same_host = hn.normalize(lis.hostname) == hn.normalize(other.hostname)
            if lis.key.owner.kind != "Gateway" and (
                (why == "HostnameConflict") or (same_host and lis.hostname is not None)
            ):
                why = "ListenerConflict"
            message = (
                f"conflicts with listener {other.key.name} of {other.key.owner} on port "
                f"{lis.port} ({other.protocol}"
                + (
                    f", hostname {hn.normalize(other.hostname)}"
                    if why != "ProtocolConflict"
                    else ""
                )
                + ")"
            )
            lis.conflict = _cond("Conflicted", True, why, message)


def _finish_listener(lis: ListenerResult) -> None:
    accepted = lis.conditions[0]
    if lis.conflict is not None and accepted.status == "True":
        accepted = _cond("Accepted", False, lis.conflict.reason, lis.conflict.message)
    refs = lis.conditions[1]
    if accepted.status != "True":
        programmed = _cond("Programmed", False, "Invalid", accepted.message)
    elif lis.no_valid_certificate:
        programmed = _cond("Programmed", False, "Invalid", f"no valid certificate: {refs.message}")
    else:
        programmed = _cond("Programmed", True, "Programmed", "Listener is programmed")
    conflicted = lis.conflict or _cond("Conflicted", False, "NoConflicts", "No conflicts")
    lis.conditions = [accepted, refs, programmed, conflicted]


# --------------------------------------------------------------------------- gateways & sets


def _created(obj: Mapping[str, Any]) -> str:
    return _str(_meta(obj).get("creationTimestamp"))


def _summary(kind: str, listeners: list[ListenerResult], unknown: bool) -> list[Condition]:
    """Accepted and Programmed of a Gateway or ListenerSet from its listeners."""
    if unknown:
        return []
    bad = [lis.name for lis in listeners if not lis.is_true("Accepted")]
    if not listeners:
        acc = _cond("Accepted", False, "ListenersNotValid", "no listeners")
    elif len(bad) == len(listeners):
        acc = _cond("Accepted", False, "ListenersNotValid", f"no valid listener ({', '.join(bad)})")
    elif bad:
        acc = _cond("Accepted", True, "ListenersNotValid", f"listeners not valid: {', '.join(bad)}")
    else:
        acc = _cond("Accepted", True, "Accepted", f"{kind} is accepted")
    if acc.status != "True":
        prog = _cond("Programmed", False, "Invalid", acc.message)
    elif not any(lis.is_true("Programmed") for lis in listeners):
        prog = _cond("Programmed", False, "Invalid", "no listener can be programmed")
    else:
        prog = _cond("Programmed", True, "Programmed", f"{kind} is programmed")
    return [acc, prog]


def _parent_gateway_key(ref: Any, default_ns: str) -> tuple[ObjKey | None, str]:
    if not isinstance(ref, Mapping) or not _str(ref.get("name")):
        return None, "parentRef has no name"
    group = _str(ref.get("group"), GATEWAY_GROUP)
    kind = _str(ref.get("kind"), "Gateway")
    if (group, kind) != (GATEWAY_GROUP, "Gateway"):
        return None, f"parentRef must be a Gateway, not {kind}.{group}"
    return ObjKey("Gateway", _str(ref.get("namespace"), default_ns), _str(ref.get("name"))), ""


# --------------------------------------------------------------------------- routes


def _norm_parent_ref(raw: Mapping[str, Any], route_ns: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "group": _str(raw.get("group"), GATEWAY_GROUP) if "group" in raw else GATEWAY_GROUP,
        "kind": _str(raw.get("kind"), "Gateway"),
        "namespace": _str(raw.get("namespace"), route_ns),
        "name": _str(raw.get("name")),
    }
    if raw.get("sectionName"):
        out["sectionName"] = str(raw["sectionName"])
    if raw.get("port") is not None:
        out["port"] = raw["port"]
    return out


def _rule_results(kind: str, spec: Mapping[str, Any]) -> list[RuleResult]:
    raw_rules = spec.get("rules")
    if kind == "HTTPRoute" and not raw_rules:
        raw_rules = [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]
    out: list[RuleResult] = []
    for index, rule in enumerate(_list(raw_rules)):
        rule = rule if isinstance(rule, Mapping) else {}
        name = rule.get("name") if isinstance(rule.get("name"), str) else None
        reason, message = "", ""
        matches: list[prec.Match] = []
        if kind in ("HTTPRoute", "GRPCRoute"):
            raw_matches = _list(rule.get("matches")) or [{}]
            for raw in raw_matches:
                got = prec.http_match(raw) if kind == "HTTPRoute" else prec.grpc_match(raw)
                if isinstance(got, str):
                    reason, message = UNSUPPORTED_VALUE, got
                    break
                matches.append(got)
            if not reason:
                reason, message = _filters_problem(kind, rule)
        out.append(RuleResult(index, name, not reason, reason, message, matches))
    return out


def _all_filters(rule: Mapping[str, Any]) -> list[tuple[list[Any], bool]]:
    """(filter list, rule-level?) for the rule and each of its backendRefs."""
    lists = [(_list(rule.get("filters")), True)]
    for ref in _list(rule.get("backendRefs")):
        if isinstance(ref, Mapping):
            lists.append((_list(ref.get("filters")), False))
    return lists


def _filters_problem(kind: str, rule: Mapping[str, Any]) -> tuple[str, str]:
    known = HTTP_FILTERS if kind == "HTTPRoute" else GRPC_FILTERS
    for filters, rule_level in _all_filters(rule):
        types = [_str(f.get("type")) for f in filters if isinstance(f, Mapping)]
        for type_ in types:
            if type_ not in known:
                return UNSUPPORTED_VALUE, f'filter type "{type_}" is not supported on {kind}'
        if "RequestRedirect" in types and "URLRewrite" in types:
            return INCOMPATIBLE_FILTERS, "RequestRedirect and URLRewrite cannot be used together"
        repeated = sorted(
            {t for t in types if types.count(t) > 1 and t not in ("RequestMirror", "ExtensionRef")}
        )
        if repeated:
            return INCOMPATIBLE_FILTERS, f"filter {repeated[0]} appears more than once"
        if rule_level and "RequestRedirect" in types and _list(rule.get("backendRefs")):
            continue  # allowed: the redirect wins, backends unused
    return "", ""


def _backends(world: _World, key: ObjKey, spec: Mapping[str, Any]) -> list[BackendResult]:
    out: list[BackendResult] = []
    for r_index, rule in enumerate(_list(spec.get("rules"))):
        if not isinstance(rule, Mapping):
            continue
        refs: list[tuple[int, Mapping[str, Any], bool]] = []
        for b_index, ref in enumerate(_list(rule.get("backendRefs"))):
            if isinstance(ref, Mapping):
                refs.append((b_index, ref, False))
        for filters, _rule_level in _all_filters(rule):
            for f in filters:
                if isinstance(f, Mapping) and f.get("type") == "RequestMirror":
                    mirror = f.get("requestMirror")
                    if isinstance(mirror, Mapping) and isinstance(
                        mirror.get("backendRef"), Mapping
                    ):
                        refs.append((-1, mirror["backendRef"], True))
        for b_index, ref, is_mirror in refs:
            out.append(_backend(world, key, r_index, b_index, ref, is_mirror))
    return out


def _backend(
    world: _World, route: ObjKey, rule: int, index: int, raw: Mapping[str, Any], mirror: bool
) -> BackendResult:
    ref: dict[str, Any] = {
        "group": _str(raw.get("group")),
        "kind": _str(raw.get("kind"), "Service"),
        "namespace": _str(raw.get("namespace"), route.namespace),
        "name": _str(raw.get("name")),
    }
    if raw.get("port") is not None:
        ref["port"] = raw["port"]
    weight = raw.get("weight", 1)
    weight = weight if isinstance(weight, int) else 1

    def result(ok: bool, reason: str, message: str) -> BackendResult:
        return BackendResult(rule, index, ref, weight, ok, reason, message, mirror)

    where = f"{ref['kind']} {ref['namespace']}/{ref['name']}"
    if (ref["group"], ref["kind"]) == BACKEND_KIND:
        return _eg_backend(world, route, ref, result)
    if (ref["group"], ref["kind"]) != ("", "Service"):
        return result(
            False,
            "InvalidKind",
            f"{ref['kind']}.{ref['group'] or 'core'} is not a supported backend kind",
        )
    if not world.granted(
        GATEWAY_GROUP, route.kind, route.namespace, "Service", ref["namespace"], ref["name"]
    ):
        return result(
            False,
            "RefNotPermitted",
            f"{where}: no ReferenceGrant in {ref['namespace']} allows {route.kind}s from "
            f"{route.namespace} to reference it",
        )
    svc = world.services.get((ref["namespace"], ref["name"]))
    if svc is None:
        return result(False, "BackendNotFound", f"{where} not found")
    if "port" not in ref:
        return result(False, "BackendNotFound", f"{where}: a Service backendRef needs a port")
    ports = [p for p in _list(_spec(svc).get("ports")) if isinstance(p, Mapping)]
    if _str(_spec(svc).get("type")) != "ExternalName" and ports:
        port = next((p for p in ports if p.get("port") == ref["port"]), None)
        if port is None:
            have = ", ".join(str(p.get("port")) for p in ports)
            return result(
                False, "BackendNotFound", f"{where} has no port {ref['port']} (has {have})"
            )
        app = _str(port.get("appProtocol")).lower()
        if (
            route.kind in ("HTTPRoute", "GRPCRoute")
            and app
            and "/" not in app.replace("kubernetes.io/", "")
            and app not in HTTP_APP_PROTOCOLS
        ):
            return result(
                False,
                "UnsupportedProtocol",
                f"{where} port {ref['port']} has appProtocol {app}, not usable by {route.kind}",
            )
    return result(True, "ResolvedRefs", f"{where} resolved")


def _eg_backend(
    world: _World,
    route: ObjKey,
    ref: dict[str, Any],
    result: Callable[[bool, str, str], BackendResult],
) -> BackendResult:
    """An Envoy Gateway Backend: allowed (same namespace or a ReferenceGrant) and present. Its
    endpoints and port are the controller's business (a Backend it cannot serve answers 500)."""
    where = f"Backend {ref['namespace']}/{ref['name']}"
    if not world.granted(
        GATEWAY_GROUP,
        route.kind,
        route.namespace,
        "Backend",
        ref["namespace"],
        ref["name"],
        to_group=ENVOY_GATEWAY_GROUP,
    ):
        return result(
            False,
            "RefNotPermitted",
            f"{where}: no ReferenceGrant in {ref['namespace']} allows {route.kind}s from "
            f"{route.namespace} to reference it",
        )
    if (ref["namespace"], ref["name"]) not in world.backends:
        return result(False, "BackendNotFound", f"{where} not found")
    return result(True, "ResolvedRefs", f"{where} resolved")


# --------------------------------------------------------------------------- the engine


class RouteMemo:
    """Route verdicts kept from one :func:`compute` to the next (the controller's incremental
    path). A route's verdict reads only the route and the rest of the world, never other routes,
    so while nothing but routes changed an unchanged route's ``RouteResult`` is reused as is.

    The caller says when the rest changed (:meth:`invalidate`); the memo knows a route is
    unchanged by identity, or by ``uid`` and ``generation`` (a status write bumps neither), or,
    when the caller passes the changed routes to :func:`compute`, by not being among them: then
    the pass costs what the changed routes and their listeners cost, not what every route does.
    Reused results are shared between runs, so nothing may mutate a ``RouteResult`` after
    :func:`compute` returned it.
    """

    def __init__(self) -> None:
        self._entries: dict[ObjKey, tuple[Mapping[str, Any], object, RouteResult]] = {}
        self.world: _World | None = None  # the last pass's inputs, patched by route changes
        # The routes in the result (those with a parent of ours), sorted by key, and how many
        # of them refer to backends of each (group, kind).
        self.shown: list[ObjKey] = []
        self.shown_routes: list[RouteResult] = []
        self.ref_counts: dict[tuple[str, str], int] = {}
        # Per listener: the routes attached to it (with the attachment their first accepted
        # parent gives); per route: the listeners it is attached to.
        self.members: dict[ListenerKey, dict[ObjKey, tuple[RouteResult, ListenerAttachment]]] = {}
        self.route_listeners: dict[ObjKey, tuple[ListenerKey, ...]] = {}
        # Per listener: the (route, attachment) pairs its routing table was built from, the
        # table, and the attached route keys. The same pairs (the very same objects) give the
        # same table.
        self.tables: dict[ListenerKey, _Table] = {}
        self.hits = 0
        self.misses = 0

    def invalidate(self) -> None:
        self._entries.clear()
        self.world = None
        self.shown, self.shown_routes, self.ref_counts = [], [], {}
        self.members = {}
        self.route_listeners = {}
        self.tables.clear()

    def get(self, key: ObjKey, obj: Mapping[str, Any]) -> RouteResult | None:
        found = self._entries.get(key)
        if found is None:
            return None
        cached_obj, fingerprint, result = found
        if cached_obj is obj or (fingerprint is not None and fingerprint == _fingerprint(obj)):
            return result
        return None

    def keep(self, entries: dict[ObjKey, tuple[Mapping[str, Any], object, RouteResult]]) -> None:
        self._entries = entries

    def verdict(self, key: ObjKey) -> RouteResult | None:
        found = self._entries.get(key)
        return found[2] if found is not None else None


class _Table(NamedTuple):
    members: dict[ObjKey, tuple[RouteResult, ListenerAttachment]]  # what it was built from
    routing: list[RoutingEntry]
    attached: list[ObjKey]
    by_kind: dict[str, list[RoutingEntry]]  # the routing entries of each kind, in rank order
    live: dict[str, list[RoutingEntry]]


def _fingerprint(obj: Mapping[str, Any]) -> object:
    """What identifies a route's spec across cache refreshes: uid + generation, when both are
    there (objects read from the API server); None otherwise (identity decides)."""
    meta = _meta(obj)
    uid, generation = meta.get("uid"), meta.get("generation")
    if isinstance(uid, str) and uid and isinstance(generation, int):
        return (uid, generation)
    return None


@dataclass
class _GatewayCtx:
    obj: Mapping[str, Any]
    result: GatewayResult
    merged: list[ListenerResult] = field(default_factory=list)


def compute(
    objects: Sequence[KubeObject],
    *,
    controller_names: frozenset[str] | None = None,
    memo: RouteMemo | None = None,
    changed_routes: Mapping[ObjKey, Mapping[str, Any] | None] | None = None,
) -> AttachmentResult:
    """Evaluate every Gateway, ListenerSet and route in ``objects`` (see the module doc).
    ``memo``: reuse the verdicts of unchanged routes (see :class:`RouteMemo`).
    ``changed_routes``: with a memo, the routes changed since its last pass (None: deleted)
    when nothing else did; the other routes are not looked at (``objects`` is then unused)."""
    fast = memo is not None and memo.world is not None and changed_routes is not None
    if fast:
        assert memo is not None and memo.world is not None and changed_routes is not None
        world = memo.world
        for key, obj in changed_routes.items():
            world.set_route(key, obj)
    else:
        world = _World(objects)
        if memo is not None and memo.world is not None:
            # verdicts reused below were computed by the old world: what they read counts
            world.carry_reads(memo.world)
    notes: list[str] = []

    classes = [
        GatewayClassResult(
            name=name,
            controller_name=_str(_spec(obj).get("controllerName")),
            conditions=[_cond("Accepted", True, "Accepted", "GatewayClass is accepted")],
        )
        for name, obj in sorted(world.classes.items())
        if controller_names is None or _str(_spec(obj).get("controllerName")) in controller_names
    ]

    # Gateways and their own listeners
    gateways: dict[ObjKey, _GatewayCtx] = {}
    for (ns, name), obj in sorted(world.gateways.items()):
        spec = _spec(obj)
        class_name = _str(spec.get("gatewayClassName"))
        gc = world.classes.get(class_name)
        controller = _str(_spec(gc).get("controllerName")) if gc is not None else None
        if controller_names is not None and controller not in controller_names:
            continue
        key = ObjKey("Gateway", ns, name)
        allowed = spec.get("allowedListeners")
        allowed_ns = allowed.get("namespaces") if isinstance(allowed, Mapping) else None
        from_ = _str(allowed_ns.get("from"), "None") if isinstance(allowed_ns, Mapping) else "None"
        selector = allowed_ns.get("selector") if isinstance(allowed_ns, Mapping) else None
        result = GatewayResult(
            key,
            class_name,
            controller,
            allowed_listeners_from=from_,
            allowed_listeners_selector=dict(selector) if isinstance(selector, Mapping) else None,
        )
        for raw in _list(spec.get("listeners")):
            if isinstance(raw, Mapping):
                result.listeners.append(_listener(world, raw, key, key))
        gateways[key] = _GatewayCtx(obj, result)

    # ListenerSets: attach to their Gateway when allowed
    sets: list[ListenerSetResult] = []
    attached_sets: dict[ObjKey, list[ListenerSetResult]] = defaultdict(list)
    for (ns, name), obj in sorted(world.listener_sets.items()):
        kind = _str(obj.get("kind"))
        key = ObjKey(kind, ns, name)
        parent, why = _parent_gateway_key(_spec(obj).get("parentRef"), ns)
        ls = ListenerSetResult(
            key, parent or ObjKey("Gateway", ns, ""), False, created=_created(obj)
        )
        ctx = gateways.get(parent) if parent is not None else None
        for raw in _list(_spec(obj).get("listeners")):
            if isinstance(raw, Mapping):
                ls.listeners.append(_listener(world, raw, key, parent if ctx else None))
        if parent is None:
            ls.conditions = [_cond("Accepted", False, "Invalid", why)]
        elif ctx is None:
            if controller_names is not None and parent in [
                ObjKey("Gateway", *k) for k in world.gateways
            ]:
                continue  # another controller's Gateway
            ls.writes_status = False
            ls.conditions = [
                _cond(
                    "Accepted",
                    False,
                    "Invalid",
                    f"parent {parent} not found; no controller will write status for this "
                    "ListenerSet",
                )
            ]
        else:
            gw = ctx.result
            ok, why_not = _namespace_allowed(
                world,
                gw.allowed_listeners_from,
                (ctx.obj.get("spec") or {})
                .get("allowedListeners", {})
                .get("namespaces", {})
                .get("selector"),
                gw.key.namespace,
                ns,
            )
            if not ok:
                ls.conditions = [
                    _cond(
                        "Accepted",
                        False,
                        "NotAllowed",
                        f"{gw.key} does not allow this ListenerSet: allowedListeners {why_not}",
                    )
                ]
                for lis in ls.listeners:
                    lis.gateway = None
            else:
                ls.attached = True
                attached_sets[gw.key].append(ls)
        sets.append(ls)

    # Validate and resolve conflicts per Gateway (own listeners, then sets in merge order)
    for key, ctx in gateways.items():
        order = sorted(
            attached_sets[key],
            key=lambda s: ((0, s.created) if s.created else (1, ""), s.key.nsname),
        )
        ctx.result.listener_sets = [s.key for s in order]
        groups = [ctx.result.listeners] + [s.listeners for s in order]
        for group in groups:
            for lis in group:
                _validate_listener(world, lis)
        _resolve_conflicts(groups)
        for group in groups:
            for lis in group:
                _finish_listener(lis)
        unknown = ctx.result.controller_name is None
        if unknown:
            msg = (
                f'GatewayClass "{ctx.result.class_name}" not found: no controller will reconcile '
                "this Gateway"
            )
            ctx.result.conditions = [
                _cond("Accepted", None, PENDING, msg),
                _cond("Programmed", None, PENDING, msg),
            ]
        else:
            ctx.result.conditions = _summary("Gateway", ctx.result.listeners, False)
        gw_accepted = ctx.result.condition("Accepted")
        for ls in order:
            conds = _summary("ListenerSet", ls.listeners, False)
            if gw_accepted is None or gw_accepted.status != "True":
                conds = [
                    _cond("Accepted", False, "ParentNotAccepted", f"{key} is not accepted"),
                    _cond("Programmed", False, "ParentNotProgrammed", f"{key} is not accepted"),
                ]
            ls.conditions = conds
    for ls in sets:
        if not ls.attached:
            for lis in ls.listeners:
                if not lis.conditions:
                    _validate_listener(world, lis)
                    _finish_listener(lis)

    # Routes
    set_by_key = {(s.key.namespace, s.key.name): s for s in sets}
    listeners = {lis.key: lis for ctx in gateways.values() for lis in ctx.result.listeners}
    for ls in sets:
        for lis in ls.listeners:
            listeners[lis.key] = lis
    dirty: set[ListenerKey] | None = None
    changed_keys: set[ObjKey] | None = None
    if fast:
        assert memo is not None and changed_routes is not None
        routes, dirty = _changed_routes(
            world, memo, changed_routes, gateways, set_by_key, controller_names, listeners
        )
        changed_keys = {ObjKey(*key) for key in changed_routes}
    else:
        routes = []
        kept: dict[ObjKey, tuple[Mapping[str, Any], object, RouteResult]] = {}
        for key, obj in sorted(world.routes.items()):
            verdict = memo.get(key, obj) if memo is not None else None
            if verdict is None:
                verdict = _route(world, key, obj, gateways, set_by_key, controller_names)
                if memo is not None:
                    memo.misses += 1
            elif memo is not None:
                memo.hits += 1
            if memo is not None:
                kept[key] = (obj, _fingerprint(obj), verdict)
            routes.append(verdict)
        routes = [r for r in routes if r.parents or controller_names is None]
        members: dict[ListenerKey, dict[ObjKey, tuple[RouteResult, ListenerAttachment]]] = {}
        route_listeners: dict[ObjKey, tuple[ListenerKey, ...]] = {}
        for route in routes:
            route_listeners[route.key] = _add_member(members, route, listeners)
        if memo is not None:
            memo.keep(kept)  # routes gone from the world leave the memo
            memo.world = world
            memo.shown = [r.key for r in routes]
            memo.shown_routes = list(routes)
            memo.ref_counts = {}
            for route in routes:
                _count_refs(memo.ref_counts, route, 1)
            memo.members, memo.route_listeners = members, route_listeners
        else:
            memo = RouteMemo()  # this pass's bookkeeping only
            memo.members = members
            for route in routes:
                _count_refs(memo.ref_counts, route, 1)

    # Attached route counts and routing tables
    _routing_tables(listeners, memo, dirty, changed_keys)

    if not world.services and memo.ref_counts.get(("", "Service")):
        notes.append("no Services among the inputs: every Service backendRef is BackendNotFound")
    if not world.backends and memo.ref_counts.get(BACKEND_KIND):
        notes.append(
            "no Backends (gateway.envoyproxy.io) among the inputs: every Backend backendRef is "
            "BackendNotFound"
        )
    return AttachmentResult(
        gateway_classes=classes,
        gateways=[ctx.result for _, ctx in sorted(gateways.items())],
        listener_sets=sets,
        routes=routes,
        notes=notes,
    )


def _route(
    world: _World,
    key: ObjKey,
    obj: Mapping[str, Any],
    gateways: Mapping[ObjKey, _GatewayCtx],
    sets: Mapping[tuple[str, str], ListenerSetResult],
    controller_names: frozenset[str] | None,
) -> RouteResult:
    spec = _spec(obj)
    raw_hosts = (
        [str(h).lower() for h in _list(spec.get("hostnames"))] if key.kind in HOSTNAME_KINDS else []
    )
    result = RouteResult(key, world.route_groups[key], raw_hosts, _created(obj))
    result.rules = _rule_results(key.kind, spec)
    result.backends = _backends(world, key, spec)

    invalid = [r for r in result.rules if not r.valid]
    route_problem: Problem | None = None
    partial: Condition | None = None
    if key.kind == "TLSRoute" and not raw_hosts:
        route_problem = Problem(
            "rules",
            UNSUPPORTED_VALUE,
            "a TLSRoute needs at least one hostname",
            "add spec.hostnames",
        )
    elif result.rules and len(invalid) == len(result.rules):
        first = invalid[0]
        route_problem = Problem(
            "rules",
            first.reason,
            f"no valid rule: rule {first.index}: {first.message}",
            "fix the rule (see the message); an invalid rule is dropped",
        )
    elif invalid:
        partial = _cond(
            "PartiallyInvalid",
            True,
            UNSUPPORTED_VALUE,
            "Dropped Rule " + "; ".join(f"{r.index}: {r.message}" for r in invalid),
        )
    unresolved = [b for b in result.backends if not b.resolved]
    if unresolved:
        refs = _cond(
            "ResolvedRefs",
            False,
            unresolved[0].reason,
            "; ".join(b.message for b in unresolved),
        )
    else:
        refs = _cond("ResolvedRefs", True, "ResolvedRefs", "All references resolved")

    for index, raw in enumerate(_list(spec.get("parentRefs"))):
        if not isinstance(raw, Mapping):
            raw = {}
        parent = _parent(world, key, raw, index, raw_hosts, gateways, sets, controller_names)
        if parent is None:
            continue
        if route_problem is not None:
            parent.problems.append(route_problem)
        if parent.problems:
            top = parent.problems[0]
            parent.accepted = False
            parent.reason, parent.message = top.reason, top.message
            parent.listeners = []
        status: bool | None = parent.accepted
        if parent.reason == PENDING:
            status = None
        conds = [_cond("Accepted", status, parent.reason, parent.message), refs]
        if partial is not None and parent.accepted:
            conds.append(partial)
        parent.conditions = conds
        result.parents.append(parent)
    return result


def _parent(
    world: _World,
    route: ObjKey,
    raw: Mapping[str, Any],
    index: int,
    route_hosts: list[str],
    gateways: Mapping[ObjKey, _GatewayCtx],
    sets: Mapping[tuple[str, str], ListenerSetResult],
    controller_names: frozenset[str] | None,
) -> ParentResult | None:
    ref = _norm_parent_ref(raw, route.namespace)
    out = ParentResult(index, ref, True, "Accepted", "Route is accepted", [], [], [], None, None)
    group, kind, ns, name = ref["group"], ref["kind"], ref["namespace"], ref["name"]
    candidates: list[ListenerResult] = []
    if not name:
        out.problems.append(
            Problem("parent", NO_MATCHING_PARENT, "parentRef has no name", "set parentRefs[].name")
        )
        out.writes_status = False
        return out
    if (group, kind) == (GATEWAY_GROUP, "Gateway"):
        gkey = ObjKey("Gateway", ns, name)
        ctx = gateways.get(gkey)
        if ctx is None:
            if controller_names is not None:
                return None  # not ours (or missing): a controller writes nothing
            out.writes_status = False
            out.problems.append(
                Problem(
                    "parent",
                    NO_MATCHING_PARENT,
                    f"Gateway {ns}/{name} not found; no controller writes status for this "
                    "parentRef",
                    "check parentRefs[].name and .namespace (the namespace defaults to the "
                    "route's)",
                )
            )
            return out
        out.parent = out.gateway = gkey
        if ctx.result.controller_name is None:
            out.writes_status = False
            out.problems.append(
                Problem(
                    "parent",
                    PENDING,
                    f'Gateway {ns}/{name} uses GatewayClass "{ctx.result.class_name}", which does '
                    "not exist: no controller reconciles it",
                    "create the GatewayClass or fix spec.gatewayClassName",
                )
            )
        candidates = list(ctx.result.listeners)
        owner_desc = f"Gateway {ns}/{name}"
    elif (group, kind) in ((GATEWAY_GROUP, "ListenerSet"), (GATEWAY_X_GROUP, "XListenerSet")):
        ls = sets.get((ns, name))
        if ls is None or ls.key.kind != kind:
            if controller_names is not None:
                return None
            out.writes_status = False
            out.problems.append(
                Problem(
                    "parent",
                    NO_MATCHING_PARENT,
                    f"{kind} {ns}/{name} not found; no controller writes status for this parentRef",
                    "check parentRefs[].name, .namespace and .kind",
                )
            )
            return out
        out.parent = ls.key
        out.gateway = ls.parent if ls.attached else None
        if not ls.attached:
            cond = ls.conditions[0] if ls.conditions else None
            out.writes_status = ls.writes_status
            out.problems.append(
                Problem(
                    "parent",
                    NO_MATCHING_PARENT,
                    f"{kind} {ns}/{name} is not attached to a Gateway"
                    + (f" ({cond.reason}: {cond.message})" if cond else ""),
                    "let the Gateway accept it: spec.allowedListeners.namespaces on the Gateway",
                )
            )
            return out
        gw_ctx = gateways.get(ls.parent)
        if gw_ctx is not None and gw_ctx.result.controller_name is None:
            out.writes_status = False
            out.problems.append(
                Problem(
                    "parent",
                    PENDING,
                    f"its Gateway {ls.parent.nsname} uses GatewayClass "
                    f'"{gw_ctx.result.class_name}", which does not exist',
                    "create the GatewayClass or fix spec.gatewayClassName",
                )
            )
        candidates = list(ls.listeners)
        owner_desc = f"{kind} {ns}/{name}"
    elif group == "" and kind == "Service":
        out.writes_status = False
        out.problems.append(
            Problem(
                "parent",
                UNSUPPORTED_VALUE,
                "Service parents (GAMMA mesh) are not evaluated by kubectl-gw",
            )
        )
        return out
    else:
        out.writes_status = False
        out.problems.append(
            Problem(
                "parent",
                UNSUPPORTED_VALUE,
                f"parent kind {kind}.{group or 'core'} is not a Gateway or ListenerSet; no "
                "controller writes status for it",
                "use kind Gateway (group gateway.networking.k8s.io) or ListenerSet",
            )
        )
        return out

    # step 2: sectionName / port
    section, port = ref.get("sectionName"), ref.get("port")
    selected = [
        lis
        for lis in candidates
        if (section is None or lis.name == section) and (port is None or lis.port == port)
    ]
    if not selected:
        names = ", ".join(f"{lis.name} (:{lis.port})" for lis in candidates) or "none"
        what = " and ".join(
            x
            for x in (
                f"sectionName {section}" if section else "",
                f"port {port}" if port is not None else "",
            )
            if x
        )
        out.problems.append(
            Problem(
                "listeners",
                NO_MATCHING_PARENT,
                f"{owner_desc} has no listener with {what}; its listeners: {names}",
                "fix parentRefs[].sectionName / .port to name one of those listeners",
            )
        )
        return out

    # step 3: allowedRoutes kinds and namespaces
    allowed: list[ListenerResult] = []
    why: list[tuple[ListenerResult, str, str]] = []
    for lis in selected:
        if (GATEWAY_GROUP, route.kind) not in lis.supported_kinds:
            kinds = ", ".join(k for _, k in lis.supported_kinds) or "none"
            why.append(
                (
                    lis,
                    f"listener {lis.name} ({lis.protocol}) does not allow {route.kind} "
                    f"(allowed: {kinds})",
                    f"attach the {route.kind} to a listener whose protocol serves it"
                    if not lis.allowed_kinds
                    else f"add {route.kind} to allowedRoutes.kinds of listener {lis.name}",
                )
            )
            continue
        ok, why_not = _namespace_allowed(
            world, lis.allowed_from, lis.allowed_selector, lis.key.owner.namespace, route.namespace
        )
        if not ok:
            if lis.allowed_from == "Same":
                hint = (
                    f"set allowedRoutes.namespaces.from: All (or Selector) on listener {lis.name}, "
                    f"or move the route to namespace {lis.key.owner.namespace}"
                )
            elif lis.allowed_from == "Selector":
                hint = f"label namespace {route.namespace} to match, or change the selector"
            else:
                hint = f"change allowedRoutes.namespaces on listener {lis.name}"
            why.append(
                (
                    lis,
                    f"listener {lis.name}: {route.kind} in namespace {route.namespace} not "
                    f"allowed: {why_not}",
                    hint,
                )
            )
            continue
        allowed.append(lis)
    if not allowed:
        first = why[0]
        out.problems.append(
            Problem(
                "allowedRoutes",
                NOT_ALLOWED_BY_LISTENERS,
                "; ".join(w for _, w, _ in why),
                first[2],
                listener=first[0].name,
            )
        )
        return out

    # step 4: hostnames
    attachments: list[ListenerAttachment] = []
    misses: list[str] = []
    for lis in allowed:
        if route.kind in HOSTNAME_KINDS and lis.protocol in HOSTNAME_PROTOCOLS:
            hosts = hn.effective(lis.hostname, route_hosts)
            if not hosts:
                misses.append(f"listener {lis.name} ({hn.normalize(lis.hostname)})")
                continue
        else:
            hosts = [hn.CATCH_ALL]
        attachments.append(ListenerAttachment(lis.key, hosts))
    if not attachments:
        out.problems.append(
            Problem(
                "hostnames",
                NO_MATCHING_LISTENER_HOSTNAME,
                f"route hostnames {', '.join(route_hosts)} do not intersect " + ", ".join(misses),
                "add a hostname the listener covers to spec.hostnames, or change the listener's "
                "hostname",
            )
        )
        return out
    out.listeners = attachments
    return out


# --------------------------------------------------------------------------- routing tables


def _add_member(
    members: dict[ListenerKey, dict[ObjKey, tuple[RouteResult, ListenerAttachment]]],
    route: RouteResult,
    listeners: Mapping[ListenerKey, ListenerResult],
) -> tuple[ListenerKey, ...]:
    """Attach ``route`` to the listeners its accepted parents attach it to (the first such
    attachment per listener); return those listeners."""
    seen: dict[ListenerKey, None] = {}
    for parent in route.parents:
        if not parent.accepted:
            continue
        for att in parent.listeners:
            if att.listener in seen or att.listener not in listeners:
                continue
            seen[att.listener] = None
            on = members.get(att.listener)
            if on is None:  # not setdefault: its default would be built on every call
                on = members[att.listener] = {}
            on[route.key] = (route, att)
    return tuple(seen)


def _changed_routes(
    world: _World,
    memo: RouteMemo,
    changed: Mapping[ObjKey, Mapping[str, Any] | None],
    gateways: Mapping[ObjKey, _GatewayCtx],
    sets: Mapping[tuple[str, str], ListenerSetResult],
    controller_names: frozenset[str] | None,
    listeners: Mapping[ListenerKey, ListenerResult],
) -> tuple[list[RouteResult], set[ListenerKey]]:
    """The memo's verdicts with the changed routes' evaluated again (their keys as the caller
    gives them: the world says which still exist), and the listeners whose routes changed."""
    dirty: set[ListenerKey] = set()
    entries = memo._entries
    shown, shown_routes = memo.shown, memo.shown_routes
    for raw in changed:
        key = ObjKey(*raw)
        for lkey in memo.route_listeners.pop(key, ()):
            dirty.add(lkey)
            del memo.members[lkey][key]
        at = bisect.bisect_left(shown, key)
        if at < len(shown) and shown[at] == key:
            _count_refs(memo.ref_counts, shown_routes[at], -1)
            del shown[at], shown_routes[at]
        obj = world.routes.get(key)
        if obj is None:
            entries.pop(key, None)
            continue
        verdict = _route(world, key, obj, gateways, sets, controller_names)
        memo.misses += 1
        entries[key] = (obj, _fingerprint(obj), verdict)
        if verdict.parents or controller_names is None:
            shown.insert(at, key)
            shown_routes.insert(at, verdict)
            _count_refs(memo.ref_counts, verdict, 1)
            attached_to = _add_member(memo.members, verdict, listeners)
            memo.route_listeners[key] = attached_to
            dirty.update(attached_to)
    memo.hits = len(entries) - memo.misses
    return list(shown_routes), dirty


def _count_refs(counts: dict[tuple[str, str], int], route: RouteResult, step: int) -> None:
    for group_kind in {(b.ref["group"], b.ref["kind"]) for b in route.backends}:
        counts[group_kind] = counts.get(group_kind, 0) + step


def _routing_tables(
    listeners: Mapping[ListenerKey, ListenerResult],
    memo: RouteMemo,
    dirty: set[ListenerKey] | None,
    changed_keys: set[ObjKey] | None = None,
) -> None:
    """Each listener's attached routes and routing table, from ``memo.members``. A listener
    not in ``dirty`` (None: compare its routes by identity) keeps its table from last time; a
    table whose routes changed is updated for those routes only (see :func:`_update_table`):
    those among ``changed_keys`` when given, else those whose verdict object changed."""
    kept: dict[ListenerKey, _Table] = {}
    for lkey, lis in listeners.items():
        on = memo.members.get(lkey)
        if not on:
            continue
        before = memo.tables.get(lkey)
        if before is None:
            found = _new_table(on)
        elif dirty is not None and lkey not in dirty:
            found = before
        else:
            old = before.members
            changed = {
                key
                for key in (on.keys() | old.keys() if changed_keys is None else changed_keys)
                if (a := on.get(key)) is not (b := old.get(key))
                and (a is None or b is None or a[0] is not b[0] or a[1] is not b[1])
            }
            found = _update_table(before, on, changed) if changed else before
        lis.routing = found.routing
        lis.live = found.live
        lis.attached = list(found.attached)
        lis.attached_routes = len(found.attached)
        kept[lkey] = found
    memo.tables = kept


def _new_table(on: Mapping[ObjKey, tuple[RouteResult, ListenerAttachment]]) -> _Table:
    items = [on[key] for key in sorted(on)]
    by_kind: dict[str, list[RoutingEntry]] = {}
    for kind in ROUTE_KINDS:
        entries = [e for route, att in items if route.kind == kind for e in _entries(route, att)]
        entries.sort(key=_entry_key)
        _shadow(kind, entries)
        by_kind[kind] = entries
    return _finish_table(dict(on), [key for key, _ in sorted(on.items())], by_kind, {}, None)


def _update_table(
    before: _Table,
    on: Mapping[ObjKey, tuple[RouteResult, ListenerAttachment]],
    changed: set[ObjKey],
) -> _Table:
    """``before`` with the entries of the ``changed`` routes replaced: the other routes'
    entries are kept (the same objects: their rank is updated in place, so a table is good
    until the next pass), and shadowing is decided again only for the hostnames whose entries
    changed. That is enough: an entry can only be shadowed by one of its own hostname, since a
    wildcard covering a hostname is less specific and sorts after it."""
    by_kind = dict(before.by_kind)
    hosts: set[str] = set()
    kinds = {key.kind for key in changed}
    for kind in kinds:
        old = by_kind.get(kind, [])
        entries = [e for e in old if e.route not in changed]
        hosts.update(hn.normalize(e.hostname) for e in old if e.route in changed)
        for key in sorted(changed):
            if key.kind == kind and key in on:
                for entry in _entries(*on[key]):
                    hosts.add(hn.normalize(entry.hostname))
                    bisect.insort(entries, entry, key=_entry_key)
        by_kind[kind] = entries
    # The entries of the other hostnames neither shadow these nor are shadowed by them.
    of_hosts = {
        kind: [e for e in by_kind.get(kind, ()) if hn.normalize(e.hostname) in hosts]
        for kind in kinds | {"GRPCRoute", "HTTPRoute"}
    }
    for kind in kinds:
        _shadow(kind, of_hosts[kind])
    attached = [key for key in before.attached if key not in changed]
    for key in changed:
        if key in on:
            bisect.insort(attached, key)
    return _finish_table(dict(on), attached, by_kind, before.live, hosts, of_hosts)


def _finish_table(
    members: dict[ObjKey, tuple[RouteResult, ListenerAttachment]],
    attached: list[ObjKey],
    by_kind: dict[str, list[RoutingEntry]],
    live_before: Mapping[str, list[RoutingEntry]],
    hosts: set[str] | None,
    of_hosts: Mapping[str, list[RoutingEntry]] | None = None,
) -> _Table:
    """Ranks, the flat table and the live entries per hostname (of ``hosts`` only, the others'
    lists kept from ``live_before``; None: every hostname). ``of_hosts``: per kind, the
    entries of ``hosts`` (in rank order), when the caller has them."""
    routing: list[RoutingEntry] = []
    for kind in ROUTE_KINDS:
        entries = by_kind.get(kind, [])
        for rank, entry in enumerate(entries, start=1):
            entry.rank = rank
        routing += entries
    live = {} if hosts is None else dict(live_before)
    for host in hosts or ():
        live.pop(host, None)
    for kind in ("GRPCRoute", "HTTPRoute"):
        source = by_kind.get(kind, ()) if of_hosts is None else of_hosts.get(kind, ())
        for entry in source:
            if entry.shadowed_by is not None or entry.match is None:
                continue
            host = hn.normalize(entry.hostname)
            if hosts is not None and host not in hosts:
                continue
            found = live.get(host)
            if found is None:
                found = live[host] = []
            found.append(entry)
    return _Table(members, routing, attached, by_kind, live)


def _entry_key(entry: RoutingEntry) -> tuple[Any, ...]:
    return entry.key


def _entries(route: RouteResult, att: ListenerAttachment) -> list[RoutingEntry]:
    order = prec.RouteOrder(route.created, route.key.namespace, route.key.name)
    out: list[RoutingEntry] = []
    for rule in route.rules if route.kind in ("HTTPRoute", "GRPCRoute") else []:
        if not rule.valid:
            continue
        backends = [b for b in route.backends if b.rule == rule.index and not b.mirror]
        for host in att.hostnames:
            for m_index, match in enumerate(rule.matches):
                if isinstance(match, prec.HTTPMatch):
                    key = prec.http_key(host, match, order, rule.index, m_index)
                else:
                    key = prec.grpc_key(host, match, order, rule.index, m_index)
                out.append(
                    RoutingEntry(
                        0, route.key, rule.index, rule.name, m_index, host, match, backends, key=key
                    )
                )
    if route.kind not in ("HTTPRoute", "GRPCRoute"):
        backends = [b for b in route.backends if not b.mirror]
        for host in att.hostnames:
            key = prec.plain_key(host, order, 0, 0)
            out.append(RoutingEntry(0, route.key, 0, None, -1, host, None, backends, key=key))
    return out


def _shadow(kind: str, entries: list[RoutingEntry]) -> None:
    """Decide which entries (in rank order) are shadowed, and by which."""
    reasons = {
        "HTTPRoute": prec.HTTP_KEY_REASONS,
        "GRPCRoute": prec.GRPC_KEY_REASONS,
    }.get(kind, prec.PLAIN_KEY_REASONS)
    # Only an earlier entry that is not shadowed itself can shadow, and only if its hostname
    # covers this one: the same hostname, or a wildcard. Candidates come from those buckets in
    # entry order (heapq.merge), so the first cover found is the one a full scan finds.
    by_host: dict[str, list[int]] = {}
    wildcards: list[str] = []
    for i, entry in enumerate(entries):
        host = hn.normalize(entry.hostname)
        entry.shadowed_by, entry.shadow_reason = None, ""  # kept entries are decided again
        buckets = [by_host.get(host, [])] + [by_host[w] for w in wildcards if w != host]
        for j in heapq.merge(*buckets):
            earlier = entries[j]
            if not hn.covers(earlier.hostname, entry.hostname):
                continue
            if kind in ("TCPRoute", "UDPRoute"):
                covered = True
            elif kind == "TLSRoute":
                covered = earlier.hostname == entry.hostname
            elif isinstance(earlier.match, prec.HTTPMatch) and isinstance(
                entry.match, prec.HTTPMatch
            ):
                covered = prec.http_covers(earlier.match, entry.match)
            elif isinstance(earlier.match, prec.GRPCMatch) and isinstance(
                entry.match, prec.GRPCMatch
            ):
                covered = prec.grpc_covers(earlier.match, entry.match)
            else:
                covered = False
            if covered:
                entry.shadowed_by = earlier
                why = prec.deciding_reason(earlier.key, entry.key, reasons)
                if kind in ("TCPRoute", "UDPRoute"):
                    why = f"only one {kind} per listener receives traffic; the winner has {why}"
                elif earlier.match == entry.match and earlier.hostname == entry.hostname:
                    why = f"identical match; the winner has {why}"
                else:
                    why = f"the winner covers every request of this match and has {why}"
                entry.shadow_reason = why
                break
        if entry.shadowed_by is None:
            by_host.setdefault(host, []).append(i)
            if hn.is_wildcard(host) and host not in wildcards:
                wildcards.append(host)
