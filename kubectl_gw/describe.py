"""``kubectl gw describe``: the attachment engine's verdicts, printed, and compared with status.

Inputs come from files (``-f``, the loader migrate uses) or from the cluster (every kind the
engine reads, across namespaces, so that cross-namespace parents, grants and backends are seen).
The engine (``controller.attachment``) computes what a conformant controller concludes; this
module selects what was asked for, compares it with the status a controller wrote (stale
``observedGeneration``, no controller for the class, conditions or ``attachedRoutes`` that
disagree), and prints it: ``tree`` (default), ``wide`` (tables), ``json``/``yaml`` (the stable
contract below), ``dot`` (Graphviz) and ``mermaid``.

``describe request URL`` traces one request through the computed routing tables: the Gateway
listener (most specific hostname wins, as listener isolation asks), the winning route rule and
its backends with their share of the weight, and every other rule that matched and lost, with
the precedence rule that decided.

JSON contract (``-o json``; keys in this order, lists sorted, extra keys only ever added)::

    {"gateways": [{"namespace", "name", "class", "conditions": [...],
                   "listeners": [{"name", "port", "protocol", "hostname", "attachedRoutes",
                                  "conditions", "supportedKinds", "routing": [...]}],
                   "listenerSets": [...], "attachedListenerSets"}],
     "routes": [{"kind", "namespace", "name",
                 "parents": [{"parentRef", "accepted", "reason", "message",
                              "listeners": [{"kind", "namespace", "parent", "name",
                                             "hostnames"}],
                              "conditions", "problems", "writesStatus"}],
                 "backends": [{"ref", "resolved", "reason", "message", "rule", "weight"}]}],
     "gatewayClasses": [...], "listenerSets": [...], "status": [...], "notes": [...]}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlsplit

from controller import attachment as at
from controller import hostnames as hn
from controller import precedence as prec
from kubectl_gw.errors import ClusterError, UserError
from kubectl_gw.model import (
    ENVOY_GATEWAY_GROUP,
    GATEWAY_GROUP,
    GATEWAY_X_GROUP,
    KINDS,
    KindInfo,
    KubeObject,
)

if TYPE_CHECKING:
    from kubectl_gw.kube import Cluster, KubeTarget

# --------------------------------------------------------------------------- kinds on the CLI

KIND_ALIASES: dict[str, str] = {}
for _kind, _aliases in {
    "GatewayClass": ("gatewayclass", "gatewayclasses", "gc"),
    "Gateway": ("gateway", "gateways", "gtw"),
    "ListenerSet": ("listenerset", "listenersets", "lset"),
    "HTTPRoute": ("httproute", "httproutes"),
    "GRPCRoute": ("grpcroute", "grpcroutes"),
    "TLSRoute": ("tlsroute", "tlsroutes"),
    "TCPRoute": ("tcproute", "tcproutes"),
    "UDPRoute": ("udproute", "udproutes"),
}.items():
    for _alias in _aliases:
        KIND_ALIASES[_alias] = _kind
    KIND_ALIASES[_kind.lower()] = _kind

OUTPUTS = ("tree", "wide", "yaml", "json", "dot", "mermaid")


@dataclass(frozen=True)
class Selection:
    """What the user asked to see."""

    kind: str | None = None  # canonical kind, None = everything in scope
    name: str | None = None
    namespace: str | None = None  # None = every namespace


def parse_selection(args: Sequence[str], namespace: str | None) -> Selection:
    """``[KIND [NAME]]`` or ``KIND/NAME`` into a Selection; unknown kinds are a UserError."""
    args = list(args)
    if len(args) == 1 and "/" in args[0]:
        args = args[0].split("/", 1)
    if len(args) > 2:
        raise UserError(f"describe takes at most a kind and a name, got: {' '.join(args)}")
    kind = name = None
    if args:
        kind = KIND_ALIASES.get(args[0].lower())
        if kind is None:
            known = ", ".join(sorted({k.lower() for k in KIND_ALIASES.values()}))
            raise UserError(f'unknown kind "{args[0]}" (describe knows: {known}, request)')
    if len(args) == 2:
        name = args[1]
    return Selection(kind, name, namespace)


# --------------------------------------------------------------------------- live reading

_LIVE_KINDS: tuple[tuple[str, str], ...] = (  # (group, kind)
    ("", "Namespace"),
    (GATEWAY_GROUP, "GatewayClass"),
    (GATEWAY_GROUP, "Gateway"),
    (GATEWAY_GROUP, "ListenerSet"),
    (GATEWAY_GROUP, "ReferenceGrant"),
    (GATEWAY_GROUP, "HTTPRoute"),
    (GATEWAY_GROUP, "GRPCRoute"),
    (GATEWAY_GROUP, "TLSRoute"),
    (GATEWAY_GROUP, "TCPRoute"),
    (GATEWAY_GROUP, "UDPRoute"),
    ("", "Service"),
    (ENVOY_GATEWAY_GROUP, "Backend"),  # backendRefs the engine resolves (Envoy Gateway's CRD)
)
_XLISTENERSET = KindInfo(
    GATEWAY_X_GROUP, "XListenerSet", "xlistenersets", True, "gateway-api", ("v1alpha1",)
)


def _info(group: str, kind: str) -> KindInfo:
    return next(k for k in KINDS if k.kind == kind and k.group == group)


def _kind_label(group: str, kind: str) -> str:
    """``Service`` for the core group, ``Backend.gateway.envoyproxy.io`` otherwise."""
    return f"{kind}.{group}" if group else kind


def _list_any_version(cluster: Cluster, info: KindInfo) -> list[KubeObject] | None:
    """Every object of the kind cluster-wide, trying each served version; None if no CRD."""
    for version in info.versions:
        path = cluster.collection_path(info, None, version)
        try:
            found = cluster.request("GET", path)
        except ClusterError as err:
            if err.status == 404:
                continue
            raise
        api_version = f"{info.group}/{version}" if info.group else version
        items = cast(list[dict[str, Any]], (found or {}).get("items") or [])
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", info.kind)
        return cast(list[KubeObject], items)
    return None


def read_cluster(target: KubeTarget) -> tuple[list[KubeObject], list[str], str]:
    """(objects, notes, default namespace) from the cluster the flags point at."""
    from kubectl_gw import kube

    cluster = kube.connect(target)
    objects: list[KubeObject] = []
    notes: list[str] = []
    missing: list[str] = []
    for group, kind in _LIVE_KINDS:
        got = _list_any_version(cluster, _info(group, kind))
        if got is None:
            if group == ENVOY_GATEWAY_GROUP and not _refers_to(objects, group, kind):
                continue  # Envoy Gateway's CRD, and no route (read before it) refers to it
            missing.append(_kind_label(group, kind))
            continue
        objects.extend(got)
    legacy = _list_any_version(cluster, _XLISTENERSET)
    if legacy:
        objects.extend(legacy)
    if missing:
        notes.append(f"not served by this cluster (CRD missing?): {', '.join(missing)}")
    objects.extend(_referenced_secrets(cluster, objects))
    return objects, notes, cluster.namespace


def _refers_to(objects: Iterable[KubeObject], group: str, kind: str) -> bool:
    """Does a route's backendRef (or a mirror filter's) name an object of this kind?"""
    for obj in objects:
        if not str(obj.get("kind", "")).endswith("Route"):
            continue
        for rule in (obj.get("spec") or {}).get("rules") or []:
            refs = list((rule or {}).get("backendRefs") or [])
            refs += [
                ((f or {}).get("requestMirror") or {}).get("backendRef") or {}
                for f in (rule or {}).get("filters") or []
            ]
            if any((r.get("group") or "", r.get("kind")) == (group, kind) for r in refs):
                return True
    return False


def _referenced_secrets(cluster: Cluster, objects: Iterable[KubeObject]) -> list[KubeObject]:
    """The Secrets listeners reference, metadata and type only (never their data)."""
    wanted: set[tuple[str, str]] = set()
    for obj in objects:
        if obj["kind"] not in ("Gateway", "ListenerSet", "XListenerSet"):
            continue
        own_ns = obj["metadata"].get("namespace", "default")
        for lis in (obj.get("spec") or {}).get("listeners") or []:
            for ref in ((lis or {}).get("tls") or {}).get("certificateRefs") or []:
                if (ref.get("group") or "") == "" and (ref.get("kind") or "Secret") == "Secret":
                    wanted.add((ref.get("namespace") or own_ns, ref.get("name") or ""))
    info = _info("", "Secret")
    out: list[KubeObject] = []
    for ns, name in sorted(wanted):
        if not name:
            continue
        secret = cluster.get_object(info, ns, name)
        if secret is None:
            continue
        out.append(
            cast(
                KubeObject,
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": ns},
                    "type": cast(dict[str, Any], secret).get("type", "Opaque"),
                },
            )
        )
    return out


# --------------------------------------------------------------------------- selecting


@dataclass
class View:
    """The part of the result that was asked for, plus the status comparison."""

    result: at.AttachmentResult
    gateways: list[at.GatewayResult]
    listener_sets: list[at.ListenerSetResult]
    routes: list[at.RouteResult]
    classes: list[at.GatewayClassResult]
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _find_one(
    kind: str, name: str, namespace: str | None, keys: Iterable[at.ObjKey], *, namespaced: bool
) -> list[at.ObjKey]:
    found = [
        k for k in keys if k.name == name and (not namespaced or namespace in (None, k.namespace))
    ]
    if not found:
        where = f" in namespace {namespace}" if namespace and namespaced else ""
        raise UserError(f'{kind} "{name}" not found{where}')
    if len(found) > 1:
        spaces = ", ".join(k.namespace for k in found)
        raise UserError(f'{kind} "{name}" exists in several namespaces ({spaces}); pass -n')
    return found


def select(result: at.AttachmentResult, sel: Selection) -> View:
    """Cut the result down to the selection (raises UserError for a missing name)."""
    ns = sel.namespace

    def in_ns(key: at.ObjKey) -> bool:
        return ns is None or key.namespace == ns

    gws = list(result.gateways)
    sets = list(result.listener_sets)
    routes = list(result.routes)
    if sel.kind is None:
        gws = [g for g in gws if in_ns(g.key)]
        sets = [s for s in sets if in_ns(s.key)]
        routes = [r for r in routes if in_ns(r.key)]
    elif sel.kind == "GatewayClass":
        names = [c.name for c in result.gateway_classes]
        if sel.name is not None and sel.name not in names:
            raise UserError(f'GatewayClass "{sel.name}" not found')
        gws = [g for g in gws if sel.name in (None, g.class_name) and (sel.name or in_ns(g.key))]
        routes = _routes_of(result, {g.key for g in gws}, set())
        sets = [s for s in sets if s.parent in {g.key for g in gws}]
    elif sel.kind == "Gateway":
        if sel.name is not None:
            keys = _find_one("Gateway", sel.name, ns, [g.key for g in gws], namespaced=True)
            gws = [g for g in gws if g.key in keys]
        else:
            gws = [g for g in gws if in_ns(g.key)]
        gkeys = {g.key for g in gws}
        sets = [s for s in sets if s.parent in gkeys]
        routes = _routes_of(result, gkeys, {s.key for s in sets})
    elif sel.kind == "ListenerSet":
        keys_all = [s.key for s in sets]
        if sel.name is not None:
            keys = _find_one("ListenerSet", sel.name, ns, keys_all, namespaced=True)
            sets = [s for s in sets if s.key in keys]
        else:
            sets = [s for s in sets if in_ns(s.key)]
        gws = [g for g in gws if g.key in {s.parent for s in sets if s.attached}]
        routes = _routes_of(result, set(), {s.key for s in sets})
    else:
        kind_routes = [r for r in routes if r.kind == sel.kind]
        if sel.name is not None:
            keys = _find_one(sel.kind, sel.name, ns, [r.key for r in kind_routes], namespaced=True)
            routes = [r for r in kind_routes if r.key in keys]
        else:
            routes = [r for r in kind_routes if in_ns(r.key)]
        gkeys = {p.gateway for r in routes for p in r.parents if p.gateway is not None}
        gws = [g for g in gws if g.key in gkeys]
        sets = [s for s in sets if s.key in {p.parent for r in routes for p in r.parents}]
    class_names = {g.class_name for g in gws}
    classes = [c for c in result.gateway_classes if c.name in class_names or sel.kind is None]
    if sel.kind == "GatewayClass" and sel.name is not None:
        classes = [c for c in result.gateway_classes if c.name == sel.name]
    return View(result, gws, sets, routes, classes, notes=list(result.notes))


def _routes_of(
    result: at.AttachmentResult, gateways: set[at.ObjKey], sets: set[at.ObjKey]
) -> list[at.RouteResult]:
    return [
        r
        for r in result.routes
        if any(p.parent in gateways or p.parent in sets or p.gateway in gateways for p in r.parents)
    ]


# --------------------------------------------------------------------------- status comparison


@dataclass(frozen=True)
class Finding:
    """A difference between what the engine computed and what a controller wrote."""

    object: at.ObjKey
    # noController | stale | conditionMismatch | countMismatch | missingStatus | foreignController
    problem: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "object": {
                "kind": self.object.kind,
                "namespace": self.object.namespace,
                "name": self.object.name,
            },
            "problem": self.problem,
            "message": self.message,
        }


def _index(objects: Iterable[KubeObject]) -> dict[at.ObjKey, KubeObject]:
    out: dict[at.ObjKey, KubeObject] = {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace", "") if obj["kind"] not in ("GatewayClass", "Namespace") else ""
        if obj["kind"] not in ("GatewayClass", "Namespace") and not ns:
            ns = "default"
        out[at.ObjKey(obj["kind"], ns, meta.get("name", ""))] = obj
    return out


def _conds(status: Any) -> dict[str, Mapping[str, Any]]:
    items = status.get("conditions") if isinstance(status, Mapping) else None
    return {c.get("type", ""): c for c in items or [] if isinstance(c, Mapping)}


def _waiting(conds: Mapping[str, Mapping[str, Any]]) -> bool:
    accepted = conds.get("Accepted")
    return accepted is None or (
        accepted.get("status") == "Unknown" and accepted.get("reason") in ("Pending", "Waiting")
    )


def _stale(
    key: at.ObjKey, generation: Any, conds: Iterable[Mapping[str, Any]], where: str
) -> list[Finding]:
    if not isinstance(generation, int):
        return []
    behind = sorted(
        {
            (c.get("type", ""), c.get("observedGeneration"))
            for c in conds
            if isinstance(c.get("observedGeneration"), int) and c["observedGeneration"] < generation
        }
    )
    if not behind:
        return []
    types = ", ".join(f"{t} (observedGeneration {g})" for t, g in behind)
    return [
        Finding(
            key,
            "stale",
            f"{where}status is stale: {types} < metadata.generation {generation}; the controller "
            "has not processed the latest spec",
        )
    ]


def _differs(
    key: at.ObjKey, where: str, computed: at.Condition, written: Mapping[str, Any] | None
) -> list[Finding]:
    if written is None:
        return []
    if written.get("status") == computed.status and written.get("reason") == computed.reason:
        return []
    return [
        Finding(
            key,
            "conditionMismatch",
            f"{where}{computed.type}: controller wrote {written.get('status')}/"
            f"{written.get('reason')}, kubectl-gw computes {computed.status}/{computed.reason}",
        )
    ]


def compare_status(objects: Sequence[KubeObject], view: View, *, live: bool) -> list[Finding]:
    """Compare computed verdicts with the status in ``objects`` (what a controller wrote).

    ``live``: the objects come from a cluster, so a missing status entry is itself a finding.
    """
    index = _index(objects)
    findings: list[Finding] = []
    classes_waiting: set[str] = set()
    for gc in view.classes:
        key = at.ObjKey("GatewayClass", "", gc.name)
        obj = index.get(key)
        if obj is None:
            continue
        conds = _conds(obj.get("status"))
        if (live or obj.get("status")) and _waiting(conds):
            classes_waiting.add(gc.name)
            findings.append(
                Finding(
                    key,
                    "noController",
                    f"no controller has accepted GatewayClass {gc.name} (controllerName "
                    f"{gc.controller_name}): its Gateways and routes get no status and no traffic",
                )
            )
    for gw in view.gateways:
        obj = index.get(gw.key)
        if obj is None:
            continue
        status = obj.get("status")
        if not status and not live:
            continue
        conds = _conds(status)
        if gw.class_name in classes_waiting:
            continue
        if _waiting(conds):
            findings.append(
                Finding(gw.key, "noController", "no controller has reconciled this Gateway yet")
            )
            continue
        generation = (obj.get("metadata") or {}).get("generation")
        findings += _stale(gw.key, generation, conds.values(), "")
        for computed in gw.conditions:
            if computed.type == "Accepted":
                findings += _differs(gw.key, "", computed, conds.get("Accepted"))
        written = {
            lis.get("name"): lis
            for lis in (status or {}).get("listeners") or []
            if isinstance(lis, Mapping)
        }
        for lis in gw.listeners:
            entry = written.get(lis.name)
            if entry is None:
                findings.append(
                    Finding(gw.key, "missingStatus", f"listener {lis.name}: no status written")
                )
                continue
            count = entry.get("attachedRoutes")
            if count != lis.attached_routes:
                findings.append(
                    Finding(
                        gw.key,
                        "countMismatch",
                        f"listener {lis.name}: controller counts attachedRoutes {count}, "
                        f"kubectl-gw computes {lis.attached_routes}",
                    )
                )
            lconds = _conds(entry)
            for computed in lis.conditions:
                if computed.type in ("Accepted", "ResolvedRefs"):
                    findings += _differs(
                        gw.key, f"listener {lis.name}: ", computed, lconds.get(computed.type)
                    )
    for ls in view.listener_sets:
        obj = index.get(ls.key)
        if obj is None or not ls.writes_status:
            continue
        status = obj.get("status")
        if not status and not live:
            continue
        conds = _conds(status)
        parent_gw = view.result.gateway(ls.parent.namespace, ls.parent.name)
        if parent_gw is not None and parent_gw.class_name in classes_waiting:
            continue
        if _waiting(conds):
            findings.append(
                Finding(ls.key, "noController", "no controller has reconciled this ListenerSet yet")
            )
            continue
        findings += _stale(
            ls.key, (obj.get("metadata") or {}).get("generation"), conds.values(), ""
        )
        for computed in ls.conditions[:1]:
            findings += _differs(ls.key, "", computed, conds.get("Accepted"))
    for route in view.routes:
        obj = index.get(route.key)
        if obj is None:
            continue
        status = obj.get("status") or {}
        if not status and not live:
            continue
        generation = (obj.get("metadata") or {}).get("generation")
        entries = [p for p in status.get("parents") or [] if isinstance(p, Mapping)]
        used: set[int] = set()
        for parent in route.parents:
            via = (
                view.result.gateway(parent.gateway.namespace, parent.gateway.name)
                if parent.gateway
                else None
            )
            controller = via.controller_name if via is not None else None
            if not parent.writes_status or controller is None:
                continue
            if via is not None and via.class_name in classes_waiting:
                continue
            where = f"parentRef {_ref_text(parent.parent_ref)}: "
            match = None
            for i, entry in enumerate(entries):
                ref = at._norm_parent_ref(entry.get("parentRef") or {}, route.key.namespace)
                if ref == parent.parent_ref and entry.get("controllerName") == controller:
                    match = entry
                    used.add(i)
                    break
            if match is None:
                if live:
                    findings.append(
                        Finding(
                            route.key,
                            "missingStatus",
                            f"{where}no status from controller {controller}",
                        )
                    )
                continue
            conds = _conds(match)
            findings += _stale(route.key, generation, conds.values(), where)
            for computed in parent.conditions:
                if computed.type in ("Accepted", "ResolvedRefs"):
                    findings += _differs(route.key, where, computed, conds.get(computed.type))
        for i, entry in enumerate(entries):
            if i in used:
                continue
            foreign = at._norm_parent_ref(entry.get("parentRef") or {}, route.key.namespace)
            findings.append(
                Finding(
                    route.key,
                    "foreignController",
                    f"status entry for parentRef {_ref_text(foreign)}"
                    f" written by {entry.get('controllerName')}: not this Gateway's controller, "
                    "left alone",
                )
            )
    return findings


def _ref_text(ref: Mapping[str, Any]) -> str:
    kind = ref.get("kind", "Gateway")
    text = f"{kind} {ref.get('namespace')}/{ref.get('name')}"
    if ref.get("sectionName"):
        text += f" sectionName={ref['sectionName']}"
    if ref.get("port") is not None:
        text += f" port={ref['port']}"
    return text


# --------------------------------------------------------------------------- JSON / YAML


def _conditions(conds: Iterable[at.Condition]) -> list[dict[str, str]]:
    return [c.as_dict() for c in conds]


def _kinds(kinds: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"group": g, "kind": k} for g, k in kinds]


def _backend_dict(b: at.BackendResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ref": dict(b.ref),
        "resolved": b.resolved,
        "reason": b.reason,
        "message": b.message,
        "rule": b.rule,
        "weight": b.weight,
    }
    if b.mirror:
        out["mirror"] = True
    return out


def _entry_dict(e: at.RoutingEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rank": e.rank,
        "kind": e.route.kind,
        "namespace": e.route.namespace,
        "name": e.route.name,
        "rule": e.rule,
    }
    if e.rule_name:
        out["ruleName"] = e.rule_name
    out["hostname"] = e.hostname
    if e.match is not None:
        out["matchIndex"] = e.match_index
        out["match"] = e.match.as_dict()
    out["backends"] = [
        {"ref": dict(b.ref), "weight": b.weight, "resolved": b.resolved} for b in e.backends
    ]
    if e.shadowed_by is not None:
        s = e.shadowed_by
        out["shadowedBy"] = {
            "kind": s.route.kind,
            "namespace": s.route.namespace,
            "name": s.route.name,
            "rule": s.rule,
            "rank": s.rank,
        }
        out["shadowReason"] = e.shadow_reason
    return out


def _listener_dict(lis: at.ListenerResult) -> dict[str, Any]:
    return {
        "name": lis.name,
        "port": lis.port,
        "protocol": lis.protocol,
        "hostname": lis.hostname,
        "attachedRoutes": lis.attached_routes,
        "conditions": _conditions(lis.conditions),
        "supportedKinds": _kinds(lis.supported_kinds),
        "routing": [_entry_dict(e) for e in lis.routing],
    }


def _set_dict(s: at.ListenerSetResult) -> dict[str, Any]:
    return {
        "kind": s.key.kind,
        "namespace": s.key.namespace,
        "name": s.key.name,
        "parentRef": {"namespace": s.parent.namespace, "name": s.parent.name},
        "attached": s.attached,
        "conditions": _conditions(s.conditions),
        "listeners": [_listener_dict(lis) for lis in s.listeners],
    }


def to_data(view: View) -> dict[str, Any]:
    """The ``-o json|yaml`` document (see the module doc)."""
    gateways = []
    for g in view.gateways:
        gateways.append(
            {
                "namespace": g.key.namespace,
                "name": g.key.name,
                "class": g.class_name,
                "conditions": _conditions(g.conditions),
                "listeners": [_listener_dict(lis) for lis in g.listeners],
                "attachedListenerSets": g.attached_listener_sets,
                "listenerSets": [
                    {"kind": k.kind, "namespace": k.namespace, "name": k.name}
                    for k in g.listener_sets
                ],
            }
        )
    routes = []
    for r in view.routes:
        parents = []
        for p in r.parents:
            parents.append(
                {
                    "parentRef": dict(p.parent_ref),
                    "accepted": p.accepted,
                    "reason": p.reason,
                    "message": p.message,
                    "listeners": [
                        {
                            "kind": a.listener.owner.kind,
                            "namespace": a.listener.owner.namespace,
                            "parent": a.listener.owner.name,
                            "name": a.listener.name,
                            "hostnames": list(a.hostnames),
                        }
                        for a in p.listeners
                    ],
                    "conditions": _conditions(p.conditions),
                    "problems": [
                        {"step": x.step, "reason": x.reason, "message": x.message, "hint": x.hint}
                        for x in p.problems
                    ],
                    "writesStatus": p.writes_status,
                }
            )
        routes.append(
            {
                "kind": r.kind,
                "namespace": r.key.namespace,
                "name": r.key.name,
                "parents": parents,
                "backends": [_backend_dict(b) for b in r.backends],
            }
        )
    return {
        "gateways": gateways,
        "routes": routes,
        "gatewayClasses": [
            {
                "name": c.name,
                "controllerName": c.controller_name,
                "conditions": _conditions(c.conditions),
            }
            for c in view.classes
        ],
        "listenerSets": [_set_dict(s) for s in view.listener_sets],
        "status": [f.as_dict() for f in view.findings],
        "notes": list(view.notes),
    }


# --------------------------------------------------------------------------- tree

_T, _L, _I, _S = "├── ", "└── ", "│   ", "    "


class _Tree:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, prefix: str, last: bool, text: str) -> str:
        """Add a child line; return the prefix for its own children."""
        first, *rest = text.split("\n")
        self.lines.append(prefix + (_L if last else _T) + first)
        child = prefix + (_S if last else _I)
        for line in rest:
            self.lines.append(child + line)
        return child


def _cond_brief(conds: Iterable[at.Condition]) -> str:
    parts = []
    for c in conds:
        if c.type == "Conflicted":
            if c.status == "True":
                parts.append(f"Conflicted ({c.reason})")
            continue
        parts.append(
            c.type
            if c.status == "True" and c.reason == c.type
            else f"{c.type}={c.status} ({c.reason})"
        )
    return ", ".join(parts)


def _allows(lis: at.ListenerResult) -> str:
    kinds = ", ".join(k for _, k in lis.supported_kinds) or "no route kind"
    owner_ns = lis.key.owner.namespace
    if lis.allowed_from == "Same":
        where = f"namespace {owner_ns} only (from: Same)"
    elif lis.allowed_from == "All":
        where = "all namespaces"
    elif lis.allowed_from == "Selector":
        where = f"namespaces matching {at.selector_text(lis.allowed_selector)}"
    else:
        where = f"from: {lis.allowed_from}"
    return f"allows {kinds} from {where}"


def _backend_text(b: at.BackendResult, total: int) -> str:
    share = f", {b.weight * 100 // total}%" if total and b.weight and total != b.weight else ""
    mark = "" if b.resolved else f"  ✗ {b.reason}: {b.message}"
    return f"→ {b.label()} (weight {b.weight}{share}){mark}"


def _listener_lines(
    tree: _Tree, prefix: str, last: bool, lis: at.ListenerResult, view: View
) -> None:
    host = lis.hostname or "*"
    tls = f", TLS {lis.tls_mode}" if lis.tls_mode else ""
    head = (
        f"listener {lis.name}: {lis.protocol} :{lis.port}, hostname {host}{tls} — "
        f"{_cond_brief(lis.conditions)}; attachedRoutes {lis.attached_routes}"
    )
    child = tree.add(prefix, last, head)
    lines: list[str] = [_allows(lis)]
    bad: dict[str, list[str]] = {}
    for c in lis.conditions:
        if c.status != ("False" if c.type == "Conflicted" else "True"):
            bad.setdefault(c.message, []).append(f"{c.type}={c.status} {c.reason}")
    for message, conds in bad.items():
        lines.append(f"! {', '.join(conds)}: {message}")
    if lis.attached and not lis.is_true("Programmed"):
        lines.append(
            "! the routes attached here get no traffic while the listener is not programmed"
        )
    routes_here: dict[at.ObjKey, list[at.RoutingEntry]] = {}
    for e in lis.routing:
        routes_here.setdefault(e.route, []).append(e)
    for key in lis.attached:
        routes_here.setdefault(key, [])
    items = sorted(routes_here.items())
    for text in lines:
        tree.lines.append(child + ("│   " if items else "    ")[:0] + text)
    for i, (key, entries) in enumerate(items):
        route = view.result.route(key.kind, key.namespace, key.name)
        hosts = sorted({e.hostname for e in entries}) or ["*"]
        rchild = tree.add(child, i == len(items) - 1, f"{key} — hostnames {', '.join(hosts)}")
        entries = sorted(entries, key=lambda e: (e.rule, e.match_index, e.hostname))
        for j, e in enumerate(entries):
            rule = f"rule {e.rule}" + (f" ({e.rule_name})" if e.rule_name else "")
            host = f" [{e.hostname}]" if len(hosts) > 1 else ""
            text = f"#{e.rank} {rule}: {e.match_text()}{host}"
            if e.shadowed_by is not None:
                winner = e.shadowed_by
                text += f"\nSHADOWED by {winner.label()} (#{winner.rank}): {e.shadow_reason}"
            else:
                total = sum(b.weight for b in e.backends)
                if not e.backends:
                    text += "\n(no backendRefs)"
                for b in e.backends:
                    text += "\n" + _backend_text(b, total)
            tree.add(rchild, j == len(entries) - 1, text)
        if route is not None:
            for p in route.parents:
                if (
                    p.accepted
                    and any(a.listener == lis.key for a in p.listeners)
                    and p.conditions
                    and any(c.type == "PartiallyInvalid" for c in p.conditions)
                ):
                    tree.lines.append(
                        rchild
                        + "! "
                        + next(c.message for c in p.conditions if c.type == "PartiallyInvalid")
                    )
                    break


def render_tree(view: View) -> str:
    tree = _Tree()
    out = tree.lines
    for gc in view.classes:
        out.append(f"GatewayClass {gc.name} (controller {gc.controller_name})")
    if view.classes:
        out.append("")
    for g in view.gateways:
        controller = g.controller_name or "none: GatewayClass missing"
        out.append(
            f"Gateway {g.key.nsname} (class {g.class_name}, controller {controller}) — "
            f"{_cond_brief(g.conditions)}"
        )
        for c in g.conditions:
            if c.status != "True" or c.reason != c.type:
                out.append(f"! {c.type}={c.status} {c.reason}: {c.message}")
        sets = [ls for ls in view.result.listener_sets if ls.key in g.listener_sets]
        count = len(g.listeners) + len(sets)
        for i, lis in enumerate(g.listeners):
            _listener_lines(tree, "", i == count - 1, lis, view)
        for j, ls in enumerate(sets):
            last = len(g.listeners) + j == count - 1
            head = f"ListenerSet {ls.key.nsname} — {_cond_brief(ls.conditions)}"
            child = tree.add("", last, head)
            for k, lis in enumerate(ls.listeners):
                _listener_lines(tree, child, k == len(ls.listeners) - 1, lis, view)
        out.append("")
    unattached = [s for s in view.listener_sets if not s.attached]
    for s in unattached:
        cond = s.conditions[0] if s.conditions else None
        out.append(f"ListenerSet {s.key.nsname} → {s.parent}: not attached")
        if cond is not None:
            out.append(f"    {cond.reason}: {cond.message}")
        out.append("")
    problems = [(r, p) for r in view.routes for p in r.parents if not p.accepted]
    if problems:
        out.append("Not attached:")
        for r, p in problems:
            out.append(f"  {r.key} → {_ref_text(p.parent_ref)}")
            status = "" if p.writes_status else " (a controller writes no status for this)"
            out.append(f"    {p.reason}{status}: {p.message}")
            hints = [x.hint for x in p.problems if x.hint]
            for x in p.problems[1:]:
                out.append(f"    also {x.reason}: {x.message}")
            for h in dict.fromkeys(hints):
                out.append(f"    fix: {h}")
        out.append("")
    bad_backends = [(r, b) for r in view.routes for b in r.backends if not b.resolved]
    if bad_backends:
        out.append("Unresolved backendRefs (ResolvedRefs=False):")
        for r, b in bad_backends:
            what = "mirror" if b.mirror else f"rule {b.rule}"
            out.append(f"  {r.key} {what} → {b.label()}: {b.reason}: {b.message}")
            if b.reason == "RefNotPermitted":
                out.append(
                    f"    fix: add a ReferenceGrant in namespace {b.ref['namespace']} from "
                    f"{r.kind} in {r.key.namespace} to "
                    f"{_kind_label(b.ref['group'], b.ref['kind'])} {b.ref['name']}"
                )
        out.append("")
    orphans = [r for r in view.routes if not r.parents]
    for r in orphans:
        out.append(f"{r.key}: no parentRefs, attaches nowhere")
    if view.findings:
        out.append("Status written by controllers vs computed:")
        for f in view.findings:
            out.append(f"  ! {f.object} [{f.problem}] {f.message}")
        out.append("")
    for note in view.notes:
        out.append(f"note: {note}")
    if not view.gateways and not view.routes and not view.listener_sets:
        out.append("nothing to describe in this scope")
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- wide (tables)


def render_wide(view: View) -> str:
    from tabulate import tabulate

    rows = []
    for lis in [lis for g in view.gateways for lis in g.listeners] + [
        lis for s in view.listener_sets for lis in s.listeners
    ]:
        cond = {c.type: c for c in lis.conditions}
        rows.append(
            [
                lis.key.owner.kind,
                lis.key.owner.nsname,
                lis.name,
                lis.port,
                lis.protocol,
                lis.hostname or "*",
                lis.attached_routes,
                f"{cond['Accepted'].status}/{cond['Accepted'].reason}",
                f"{cond['ResolvedRefs'].status}/{cond['ResolvedRefs'].reason}",
                f"{cond['Programmed'].status}",
                cond["Conflicted"].reason if cond["Conflicted"].status == "True" else "-",
            ]
        )
    head = [
        "OWNER",
        "NAME",
        "LISTENER",
        "PORT",
        "PROTOCOL",
        "HOSTNAME",
        "ROUTES",
        "ACCEPTED",
        "RESOLVEDREFS",
        "PROGRAMMED",
        "CONFLICT",
    ]
    parts = [tabulate(rows, headers=head, tablefmt="plain")] if rows else []
    rows = []
    for r in view.routes:
        resolved = sum(1 for b in r.backends if b.resolved)
        for p in r.parents:
            rows.append(
                [
                    r.kind,
                    r.key.nsname,
                    _ref_text(p.parent_ref),
                    "True" if p.accepted else "False",
                    p.reason,
                    ",".join(f"{a.listener.name}" for a in p.listeners) or "-",
                    ",".join(sorted({h for a in p.listeners for h in a.hostnames})) or "-",
                    f"{resolved}/{len(r.backends)}",
                ]
            )
    head = ["KIND", "ROUTE", "PARENT", "ACCEPTED", "REASON", "LISTENERS", "HOSTNAMES", "BACKENDS"]
    if rows:
        parts.append(tabulate(rows, headers=head, tablefmt="plain"))
    if view.findings:
        parts.append(
            tabulate(
                [[str(f.object), f.problem, f.message] for f in view.findings],
                headers=["OBJECT", "STATUS", "MESSAGE"],
                tablefmt="plain",
            )
        )
    return "\n\n".join(parts) + "\n" if parts else "nothing to describe in this scope\n"


# --------------------------------------------------------------------------- graphs


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass
class _Graph:
    """Nodes and edges shared by the DOT and Mermaid printers."""

    clusters: list[tuple[str, str, list[tuple[str, str]]]]  # (id, label, [(node id, label)])
    nodes: list[tuple[str, str, str]]  # (id, label, shape: route|backend)
    edges: list[tuple[str, str, str, bool]]  # (from, to, label, ok)


def _graph(view: View) -> _Graph:
    ids: dict[str, str] = {}

    def nid(key: str) -> str:
        return ids.setdefault(key, f"n{len(ids)}")

    clusters = []
    owners = [(g.key, g.listeners, f"Gateway {g.key.nsname}") for g in view.gateways]
    owners += [(s.key, s.listeners, f"ListenerSet {s.key.nsname}") for s in view.listener_sets]
    for key, listeners, label in owners:
        members = [(nid(f"owner:{key}"), label)]
        members += [
            (
                nid(f"listener:{lis.key}"),
                f"{lis.name}\n{lis.protocol} :{lis.port} {lis.hostname or '*'}",
            )
            for lis in listeners
        ]
        clusters.append((nid(f"cluster:{key}"), label, members))
    nodes: list[tuple[str, str, str]] = []
    edges: list[tuple[str, str, str, bool]] = []
    backends: dict[str, str] = {}
    for r in view.routes:
        rid = nid(f"route:{r.key}")
        nodes.append((rid, f"{r.kind}\n{r.key.nsname}", "route"))
        for p in r.parents:
            if p.accepted:
                for a in p.listeners:
                    edges.append((rid, nid(f"listener:{a.listener}"), ", ".join(a.hostnames), True))
            else:
                target = p.parent
                if target is not None and f"owner:{target}" in ids:
                    to = ids[f"owner:{target}"]
                else:
                    to = nid(f"missing:{_ref_text(p.parent_ref)}")
                    if all(n[0] != to for n in nodes):
                        nodes.append((to, f"{_ref_text(p.parent_ref)}\n(not found)", "missing"))
                edges.append((rid, to, p.reason, False))
        for b in r.backends:
            bkey = f"backend:{b.label()}"
            if bkey not in backends:
                backends[bkey] = nid(bkey)
                nodes.append((backends[bkey], b.label(), "backend"))
            label = (
                ("mirror" if b.mirror else f"rule {b.rule} w{b.weight}") if b.resolved else b.reason
            )
            edges.append((rid, backends[bkey], label, b.resolved))
    # dedupe edges, keep order
    edges = list(dict.fromkeys(edges))
    return _Graph(clusters, nodes, edges)


def render_dot(view: View) -> str:
    g = _graph(view)
    out = [
        "digraph kubectl_gw {",
        "  rankdir=LR;",
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for cid, label, members in g.clusters:
        out.append(f"  subgraph cluster_{cid} {{")
        out.append(f"    label={_dot_quote(label)}; style=rounded;")
        for i, (mid, mlabel) in enumerate(members):
            shape = "house" if i == 0 else "box"
            out.append(f"    {mid} [label={_dot_quote(mlabel)}, shape={shape}];")
        out.append("  }")
    shapes = {"route": "note", "backend": "ellipse", "missing": "octagon"}
    for node_id, label, kind in g.nodes:
        extra = ", color=red, fontcolor=red" if kind == "missing" else ""
        out.append(f"  {node_id} [label={_dot_quote(label)}, shape={shapes[kind]}{extra}];")
    for a, b, label, ok in g.edges:
        style = "" if ok else ", style=dashed, color=red, fontcolor=red"
        out.append(f"  {a} -> {b} [label={_dot_quote(label)}{style}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _mermaid_text(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("\n", "<br/>") + '"'


def render_mermaid(view: View) -> str:
    g = _graph(view)
    out = ["flowchart LR"]
    for cid, label, members in g.clusters:
        out.append(f"  subgraph {cid}[{_mermaid_text(label)}]")
        for i, (mid, mlabel) in enumerate(members):
            out.append(
                f"    {mid}{{{{{_mermaid_text(mlabel)}}}}}"
                if i == 0
                else f"    {mid}[{_mermaid_text(mlabel)}]"
            )
        out.append("  end")
    for node_id, label, kind in g.nodes:
        if kind == "backend":
            out.append(f"  {node_id}([{_mermaid_text(label)}])")
        elif kind == "missing":
            out.append(f"  {node_id}[/{_mermaid_text(label)}/]")
        else:
            out.append(f"  {node_id}[{_mermaid_text(label)}]")
    bad = []
    for i, (a, b, label, ok) in enumerate(g.edges):
        text = f"|{_mermaid_text(label)}|" if label else ""
        out.append(f"  {a} {'-->' if ok else '-.->'}{text} {b}")
        if not ok:
            bad.append(str(i))
    if bad:
        out.append(f"  linkStyle {','.join(bad)} stroke:red,color:red")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- request tracing


_HEADER = re.compile(r"^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*:\s*(.*)$")


def parse_request(url: str, method: str, headers: Sequence[str]) -> prec.Request:
    """``http(s)://host[:port]/path?query`` plus ``-X`` and ``-H`` into a Request."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https"):
        raise UserError(f'request URL scheme must be http or https, not "{parts.scheme}"')
    if not parts.hostname:
        raise UserError(f'request URL "{url}" has no host')
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as err:
        raise UserError(f'request URL "{url}": {err}') from err
    pairs = []
    for raw in headers:
        m = _HEADER.match(raw)
        if m is None:
            raise UserError(f"-H '{raw}': expected 'Name: value'")
        pairs.append((m.group(1).lower(), m.group(2).strip()))
    method = method.upper()
    if method not in prec.HTTP_METHODS:
        raise UserError(f"-X {method}: not an HTTP method")
    return prec.Request(
        scheme=parts.scheme,
        host=parts.hostname.lower(),
        port=port,
        path=parts.path or "/",
        method=method,
        headers=tuple(pairs),
        query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
    )


@dataclass
class Trace:
    """What one Gateway does with the request."""

    gateway: at.GatewayResult
    listener: at.ListenerResult | None
    winner: at.RoutingEntry | None
    losers: list[tuple[at.RoutingEntry, str]]
    note: str


def trace(result: at.AttachmentResult, request: prec.Request, gateway: str | None) -> list[Trace]:
    gws = list(result.gateways)
    if gateway is not None:
        ns, _, name = gateway.rpartition("/")
        gws = [g for g in gws if g.key.name == name and (not ns or g.key.namespace == ns)]
        if not gws:
            raise UserError(f'Gateway "{gateway}" not found')
    protocols = ("HTTP",) if request.scheme == "http" else ("HTTPS", "TLS")
    grpc = any(v.startswith("application/grpc") for v in request.header("content-type"))
    traces: list[Trace] = []
    for g in gws:
        listeners = list(g.listeners) + [
            lis for s in result.listener_sets if s.key in g.listener_sets for lis in s.listeners
        ]
        on_port = [
            lis
            for lis in listeners
            if lis.port == request.port and lis.protocol in protocols and lis.is_true("Accepted")
        ]
        if not on_port:
            continue
        chosen_host = hn.best_listener_hostname(request.host, [lis.hostname for lis in on_port])
        if chosen_host is None:
            traces.append(
                Trace(
                    g,
                    None,
                    None,
                    [],
                    f"no listener on port {request.port} matches host {request.host}: 404",
                )
            )
            continue
        lis = next(x for x in on_port if hn.normalize(x.hostname) == chosen_host)
        candidates = []
        for e in lis.routing:
            if not hn.matches(e.hostname, request.host):
                continue
            if e.route.kind == "HTTPRoute" and not grpc and isinstance(e.match, prec.HTTPMatch):
                ok = prec.http_request_matches(e.match, request)
            elif e.route.kind == "GRPCRoute" and grpc and isinstance(e.match, prec.GRPCMatch):
                ok = prec.grpc_request_matches(e.match, request)
            elif e.route.kind == "TLSRoute" and lis.protocol == "TLS":
                ok = True
            else:
                ok = False
            if ok:
                candidates.append(e)
        candidates.sort(key=lambda e: e.key)
        if not candidates:
            traces.append(
                Trace(
                    g,
                    lis,
                    None,
                    [],
                    "no rule matches: 404"
                    if lis.protocol != "TLS"
                    else "no TLSRoute for this SNI: connection reset",
                )
            )
            continue
        winner = candidates[0]
        reasons = (
            prec.GRPC_KEY_REASONS
            if grpc
            else (prec.HTTP_KEY_REASONS if winner.match is not None else prec.PLAIN_KEY_REASONS)
        )
        losers = [(e, prec.deciding_reason(winner.key, e.key, reasons)) for e in candidates[1:]]
        traces.append(Trace(g, lis, winner, losers, ""))
    return traces


def render_trace(request: prec.Request, traces: list[Trace], fmt: str) -> str:
    if fmt in ("json", "yaml"):
        from kubectl_gw import io as kio

        data = {
            "request": {
                "scheme": request.scheme,
                "host": request.host,
                "port": request.port,
                "method": request.method,
                "path": request.path,
            },
            "gateways": [_trace_dict(t) for t in traces],
        }
        return kio.dump_data(data, fmt)
    out = [f"{request.method} {request.scheme}://{request.host}:{request.port}{request.path}"]
    if not traces:
        out.append(
            f"  no Gateway has an accepted {request.scheme.upper()} listener on port {request.port}"
        )
    for t in traces:
        out.append(f"Gateway {t.gateway.key.nsname}")
        if t.listener is None:
            out.append(f"  {t.note}")
            continue
        lis = t.listener
        out.append(
            f"  listener {lis.name} ({lis.key.owner}): {lis.protocol} :{lis.port}, "
            f"hostname {lis.hostname or '*'}"
        )
        if t.winner is None:
            out.append(f"  {t.note}")
            continue
        w = t.winner
        out.append(f"  served by {w.label()} (#{w.rank}): {w.match_text()} [hostname {w.hostname}]")
        total = sum(b.weight for b in w.backends)
        if not w.backends:
            out.append("    no backendRefs: 500 unless a filter answers (redirect)")
        for b in w.backends:
            out.append(
                "    "
                + _backend_text(b, total)
                + ("" if b.resolved else "  (its share gets HTTP 500)")
            )
        for e, why in t.losers:
            out.append(
                f"  also matched, lost: {e.label()} (#{e.rank}): {e.match_text()} — "
                f"winner has {why}"
            )
    return "\n".join(out) + "\n"


def _trace_dict(t: Trace) -> dict[str, Any]:
    out: dict[str, Any] = {"namespace": t.gateway.key.namespace, "name": t.gateway.key.name}
    if t.listener is not None:
        out["listener"] = {
            "kind": t.listener.key.owner.kind,
            "namespace": t.listener.key.owner.namespace,
            "parent": t.listener.key.owner.name,
            "name": t.listener.name,
        }
    if t.winner is not None:
        out["winner"] = _entry_dict(t.winner)
        out["losers"] = [
            {**_entry_dict(e), "lostBecause": f"winner has {why}"} for e, why in t.losers
        ]
    if t.note:
        out["note"] = t.note
    return out


# --------------------------------------------------------------------------- entry points


def load(
    filenames: Sequence[str], target: KubeTarget
) -> tuple[list[KubeObject], list[str], bool, str | None]:
    """(objects, notes, live?, default namespace or None for 'everything')."""
    if filenames:
        from kubectl_gw import io as kio

        loaded = kio.load_inputs(filenames)
        return [item.obj for item in loaded.objects], list(loaded.notes), False, target.namespace
    objects, notes, default_ns = read_cluster(target)
    return objects, notes, True, None if target.all_namespaces else default_ns


def run_describe(
    args: Sequence[str], filenames: Sequence[str], target: KubeTarget, output: str
) -> tuple[str, list[str]]:
    """Describe objects; return (stdout text, notes for stderr)."""
    objects, notes, live, namespace = load(filenames, target)
    sel = parse_selection(args, namespace)
    result = at.compute(objects)
    view = select(result, sel)
    view.findings = compare_status(objects, view, live=live)
    return render(view, output), notes


def render(view: View, output: str) -> str:
    if output == "tree":
        return render_tree(view)
    if output == "wide":
        return render_wide(view)
    if output in ("json", "yaml"):
        from kubectl_gw import io as kio

        return kio.dump_data(to_data(view), output)
    if output == "dot":
        return render_dot(view)
    if output == "mermaid":
        return render_mermaid(view)
    raise UserError(f"unknown output format {output}")


def run_request(
    url: str,
    method: str,
    headers: Sequence[str],
    gateway: str | None,
    filenames: Sequence[str],
    target: KubeTarget,
    output: str,
) -> tuple[str, list[str]]:
    request = parse_request(url, method, headers)
    if output not in ("tree", "wide", "json", "yaml"):
        raise UserError(f"describe request prints tree, json or yaml, not {output}")
    objects, notes, _live, _ns = load(filenames, target)
    result = at.compute(objects)
    traces = trace(result, request, gateway)
    return render_trace(request, traces, output), notes
