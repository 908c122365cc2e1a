"""Policy status: ``status.ancestors`` of the policies the controller implements. Pure.

Gateway API's PolicyAncestorStatus (GEP-713), written the way Envoy Gateway v1.9 writes it
(``internal/gatewayapi/{backendtrafficpolicy,securitypolicy,clienttrafficpolicy,
backendtlspolicy}.go`` and ``internal/gatewayapi/status/policy.go``):

- **Ancestors.** A policy targeting a Gateway (or one of its listeners, ``sectionName``) has that
  Gateway as ancestor, with the ``sectionName``. A policy targeting an xRoute (or a rule of it)
  has the route's parent Gateways as ancestors, each with the parentRef's ``sectionName`` (a
  ListenerSet parent counts as its Gateway). A BackendTLSPolicy's ancestors are the Gateways
  whose routes use the targeted Service (Gateway API v1.4+). Only Gateways of our controller are
  ancestors: every controller writes its own entries, keyed by ``controllerName``.
- **A target that does not exist is not an error here**, as in Envoy Gateway: another
  controller may own it, so nothing is written for it. A target that exists but names a section
  (rule or listener) it does not have is ``Accepted=False/TargetNotFound``.
- **Conflicts.** Policies of one kind are taken oldest first (creationTimestamp, then
  namespace/name); a later one naming exactly the same target (same section) is
  ``Accepted=False/Conflicted``, and the controller uses the first (``egpolicy.Policies``).
- **Invalid.** What the controller cannot enforce and fails closed on (a SecurityPolicy whose
  routes answer 500, a ClientTrafficPolicy whose listener is not served, a BackendTLSPolicy with
  no usable CA) is ``Accepted=False/Invalid`` (``NoValidCACertificate`` for BackendTLSPolicy)
  with the reason as message.
- **Partially.** Fields the controller ignores (they change no security decision) leave the
  policy ``Accepted=True`` with the message ``Policy has been accepted partially; not
  implemented by this controller, ignored: ...``: never silently.
- **Overridden / Merged** (Envoy Gateway's condition types): a policy whose targets are, for some
  routes or rules, taken by a more specific policy of the same kind gets ``Overridden=True``
  naming them (``Merged=True`` instead when the specific policy sets ``mergeType``); a
  route-level policy with ``mergeType`` merged onto a Gateway-level one gets ``Merged=True``.

:func:`compute` returns one :class:`PolicyVerdict` per policy that has at least one ancestor of
ours; ``controller.status`` turns them into ``status.ancestors`` entries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller import attachment as att
from controller import egpolicy as eg
from controller import ir
from kubectl_gw.model import ENVOY_GATEWAY_GROUP, GATEWAY_GROUP, KubeObject, meta_of, spec_of

EG_POLICY_KINDS = ("BackendTrafficPolicy", "SecurityPolicy", "ClientTrafficPolicy")
POLICY_STATUS_KINDS = (*EG_POLICY_KINDS, "BackendTLSPolicy")
"""The policy kinds whose ``status.ancestors`` the controller writes."""

ACCEPTED_MESSAGE = "Policy has been accepted."
PARTIAL_PREFIX = "Policy has been accepted partially; not implemented by this controller, ignored"
ROUTE_TARGET_KINDS = frozenset({"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"})
GATEWAY_TARGET_KINDS = {
    "BackendTrafficPolicy": frozenset({"Gateway", *ROUTE_TARGET_KINDS}),
    "SecurityPolicy": frozenset({"Gateway", "HTTPRoute", "GRPCRoute", "TCPRoute"}),
    "ClientTrafficPolicy": frozenset({"Gateway"}),
}


@dataclass(frozen=True)
class Ancestor:
    ref: dict[str, Any]  # group, kind, namespace, name[, sectionName]
    conditions: tuple[att.Condition, ...]


@dataclass(frozen=True)
class PolicyVerdict:
    api_version: str
    kind: str
    namespace: str
    name: str
    ancestors: tuple[Ancestor, ...]


_Book = dict[int, dict[str, "_Entry"]]


def _entry(book: _Book, policy: Mapping[str, Any], ref: dict[str, Any]) -> _Entry:
    key = repr(sorted(ref.items()))
    found = book.setdefault(id(policy), {}).get(key)
    if found is None:
        found = book[id(policy)][key] = _Entry(ref)
    return found


@dataclass
class _Entry:
    """The conditions of one ancestor while they are computed (first Accepted wins)."""

    ref: dict[str, Any]
    accepted: att.Condition | None = None
    extra: dict[str, att.Condition] = field(default_factory=dict)

    def accept(self, condition: att.Condition) -> None:
        if self.accepted is None:
            self.accepted = condition


def ancestor_ref(namespace: str, name: str, section: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "group": GATEWAY_GROUP,
        "kind": "Gateway",
        "namespace": namespace,
        "name": name,
    }
    if section:
        ref["sectionName"] = section
    return ref


_meta = meta_of
_spec = spec_of


def _order(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = _meta(obj)
    return (
        str(meta.get("creationTimestamp") or "~"),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )


def _target_refs(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = _spec(obj)
    refs = [r for r in spec.get("targetRefs") or [] if isinstance(r, Mapping)]
    if isinstance(spec.get("targetRef"), Mapping):
        refs.append(spec["targetRef"])
    return refs


class _World:
    """Our Gateways and routes, from the attachment engine run for our controller names."""

    def __init__(self, objects: Sequence[KubeObject], result: att.AttachmentResult) -> None:
        self.gateways: dict[tuple[str, str], att.GatewayResult] = {
            (g.key.namespace, g.key.name): g for g in result.gateways
        }
        self.routes: dict[tuple[str, str, str], att.RouteResult] = {}
        self.ancestors: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for route in result.routes:
            refs: list[dict[str, Any]] = []
            for parent in route.parents:
                if not parent.writes_status or parent.gateway is None:
                    continue
                gateway = parent.gateway
                if (gateway.namespace, gateway.name) not in self.gateways:
                    continue
                section = None
                if parent.parent_ref.get("kind") == "Gateway":
                    section = parent.parent_ref.get("sectionName")
                ref = ancestor_ref(gateway.namespace, gateway.name, section)
                if ref not in refs:
                    refs.append(ref)
            if refs:
                key = (route.key.kind, route.key.namespace, route.key.name)
                self.routes[key] = route
                self.ancestors[key] = refs
        self.services: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.config_maps: dict[tuple[str, str], Mapping[str, Any]] = {}
        for obj in objects:
            meta = _meta(obj)
            where = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            if obj.get("kind") == "Service":
                self.services[where] = obj
            elif obj.get("kind") == "ConfigMap":
                self.config_maps[where] = obj


def _problems(
    obj: Mapping[str, Any], built_notes: Iterable[str], extra: Iterable[str]
) -> tuple[list[str], list[str]]:
    """(why it fails closed, what is ignored) for an Envoy Gateway policy."""
    kind = obj.get("kind")
    who = eg.policy_id(obj)
    invalid: list[str] = list(extra)
    ignored: list[str] = []
    if kind == "BackendTrafficPolicy":
        ignored += eg.traffic_policy(obj).notes
    elif kind == "SecurityPolicy":
        parsed = eg.security_policy(obj)
        invalid += parsed.unenforceable
        ignored += parsed.notes
    elif kind == "ClientTrafficPolicy":
        client = eg.client_policy(obj)
        invalid += client.unenforceable
        ignored += client.notes
        # Runtime problems (a CA that cannot be read...): the listener was not served.
        marker = f"is not served: {who}:"
        invalid += [n.split("is not served: ", 1)[1] for n in built_notes if marker in n]
    return _strip(who, invalid), _strip(who, ignored)


def _strip(who: str, items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        for part in item.split("; "):
            text = part[len(who) + 2 :] if part.startswith(f"{who}: ") else part
            if text not in out:
                out.append(text)
    return out


def _accepted(ignored: list[str]) -> att.Condition:
    if ignored:
        return att.Condition(
            "Accepted", "True", "Accepted", f"{PARTIAL_PREFIX}: " + "; ".join(ignored)
        )
    return att.Condition("Accepted", "True", "Accepted", ACCEPTED_MESSAGE)


def _eg_policies(
    world: _World,
    objects: Sequence[KubeObject],
    built_notes: Sequence[str],
    problems: Mapping[tuple[str, str, str], Sequence[str]],
) -> list[PolicyVerdict]:
    out: list[PolicyVerdict] = []
    for kind in EG_POLICY_KINDS:
        policies = sorted(
            (
                o
                for o in objects
                if o.get("kind") == kind
                and str(o.get("apiVersion", "")).startswith(ENVOY_GATEWAY_GROUP + "/")
            ),
            key=_order,
        )
        entries: _Book = {}
        taken: set[tuple[str, str, str, str | None]] = set()
        # (target kind, ns, name) → [(section or None, policy, mergeType set)]
        claims: dict[tuple[str, str, str], list[tuple[str | None, Mapping[str, Any], bool]]]
        claims = defaultdict(list)
        verdicts: dict[int, tuple[list[str], list[str]]] = {}

        def entry(policy: Mapping[str, Any], ref: dict[str, Any], book: _Book = entries) -> _Entry:
            return _entry(book, policy, ref)

        # Envoy Gateway's order: route rules, routes, listeners, Gateways.
        def level(ref: Mapping[str, Any]) -> int:
            is_gateway = ref.get("kind") == "Gateway"
            return (2 if is_gateway else 0) + (0 if ref.get("sectionName") else 1)

        work = [
            (level(ref), index, policy, ref)
            for index, policy in enumerate(policies)
            for ref in _target_refs(policy)
        ]
        work.sort(key=lambda item: (item[0], item[1]))
        for _level, _index, policy, ref in work:
            meta = _meta(policy)
            ns = str(meta.get("namespace", ""))
            target_kind = str(ref.get("kind") or "")
            name = str(ref.get("name") or "")
            section = str(ref.get("sectionName")) if ref.get("sectionName") else None
            if str(ref.get("group") or "") != GATEWAY_GROUP:
                continue
            if target_kind not in GATEWAY_TARGET_KINDS[kind]:
                continue
            if ref.get("namespace") not in (None, "", ns):
                continue
            if id(policy) not in verdicts:
                verdicts[id(policy)] = _problems(
                    policy, built_notes, problems.get((kind, ns, str(meta.get("name", ""))), ())
                )
            invalid, ignored = verdicts[id(policy)]
            if target_kind == "Gateway":
                gateway = world.gateways.get((ns, name))
                if gateway is None:
                    continue  # not ours, or missing: another controller may own it
                ancestors = [ancestor_ref(ns, name, section)]
                missing = section is not None and not any(
                    lis.name == section for lis in gateway.listeners
                )
                where = f"Gateway {ns}/{name}"
                what = f"Listener {ns}/{name}/{section}" if section else f"Gateway {name}"
            else:
                route = world.routes.get((target_kind, ns, name))
                if route is None:
                    continue
                ancestors = world.ancestors[(target_kind, ns, name)]
                missing = section is not None and not any(r.name == section for r in route.rules)
                where = f"{target_kind} {ns}/{name}"
                what = f"RouteRule {name}/{section}" if section else f"{target_kind} {name}"
            if missing:
                condition = att.Condition(
                    "Accepted",
                    "False",
                    "TargetNotFound",
                    f"No section name {section} found for {where}",
                )
            elif (target_kind, ns, name, section) in taken:
                condition = att.Condition(
                    "Accepted",
                    "False",
                    "Conflicted",
                    f"Unable to target {what}, another {kind} has already attached to it",
                )
            else:
                taken.add((target_kind, ns, name, section))
                claims[(target_kind, ns, name)].append(
                    (section, policy, bool(_spec(policy).get("mergeType")))
                )
                if invalid:
                    condition = att.Condition("Accepted", "False", "Invalid", "; ".join(invalid))
                else:
                    condition = _accepted(ignored)
            for ancestor in ancestors:
                entry(policy, ancestor).accept(condition)

        _overrides(kind, world, claims, entries, entry)
        for policy in policies:
            found = entries.get(id(policy))
            if not found:
                continue
            meta = _meta(policy)
            out.append(
                PolicyVerdict(
                    str(policy.get("apiVersion", "")),
                    kind,
                    str(meta.get("namespace", "")),
                    str(meta.get("name", "")),
                    tuple(
                        Ancestor(e.ref, _conditions(e))
                        for e in found.values()
                        if e.accepted is not None
                    ),
                )
            )
    return out


def _conditions(entry: _Entry) -> tuple[att.Condition, ...]:
    assert entry.accepted is not None
    return (entry.accepted, *(entry.extra[k] for k in sorted(entry.extra)))


def _overrides(
    kind: str,
    world: _World,
    claims: Mapping[tuple[str, str, str], list[tuple[str | None, Mapping[str, Any], bool]]],
    entries: Mapping[int, Mapping[str, _Entry]],
    entry: Callable[[Mapping[str, Any], dict[str, Any]], _Entry],
) -> None:
    """Overridden / Merged conditions between the levels of one policy kind."""
    plural = f"{kind[0].lower()}{kind[1:-1]}ies"  # backendTrafficPolicies, as Envoy Gateway

    def accepted_on(policy: Mapping[str, Any]) -> bool:
        return any(
            e.accepted is not None and e.accepted.status == "True"
            for e in entries.get(id(policy), {}).values()
        )

    # Route-level policies whose rules are taken by rule-level ones.
    for (target_kind, ns, name), claimed in sorted(claims.items(), key=lambda kv: kv[0]):
        if target_kind == "Gateway":
            continue
        whole = next((p for s, p, _m in claimed if s is None), None)
        rules = sorted(s for s, _p, _m in claimed if s is not None)
        if whole is not None and rules and accepted_on(whole):
            message = (
                f"This policy is being overridden by other {plural} for these route rules: "
                + ", ".join(f"{ns}/{name}/{r}" for r in rules)
            )
            for ancestor in world.ancestors[(target_kind, ns, name)]:
                entry(whole, ancestor).extra["Overridden"] = att.Condition(
                    "Overridden", "True", "Overridden", message
                )
    # Gateway- and listener-level policies whose routes have their own policy.
    for (target_kind, ns, name), claimed in sorted(claims.items(), key=lambda kv: kv[0]):
        if target_kind != "Gateway":
            continue
        for section, gateway_policy, _merge in claimed:
            if not accepted_on(gateway_policy):
                continue
            overridden: list[str] = []
            merged: list[str] = []
            for (route_kind, route_ns, route_name), route_claims in sorted(claims.items()):
                if route_kind == "Gateway":
                    continue
                refs = world.ancestors.get((route_kind, route_ns, route_name), [])
                if not any(
                    r["namespace"] == ns
                    and r["name"] == name
                    and (section is None or r.get("sectionName") in (None, section))
                    for r in refs
                ):
                    continue
                label = f"{route_ns}/{route_name}"
                for _s, route_policy, merge in route_claims:
                    if not accepted_on(route_policy):
                        continue
                    (merged if merge else overridden).append(label)
                    if merge:
                        meta = _meta(gateway_policy)
                        for ancestor in refs:
                            if ancestor["namespace"] == ns and ancestor["name"] == name:
                                entry(route_policy, ancestor).extra["Merged"] = att.Condition(
                                    "Merged",
                                    "True",
                                    "Merged",
                                    f"Merged with policy {meta.get('namespace', '')}/"
                                    f"{meta.get('name', '')}",
                                )
            gateway_entry = entry(gateway_policy, ancestor_ref(ns, name, section))
            for kind_of, routes in (("Merged", merged), ("Overridden", overridden)):
                if routes:
                    gateway_entry.extra[kind_of] = att.Condition(
                        kind_of,
                        "True",
                        kind_of,
                        f"This policy is being {kind_of.lower()} by other {plural} for these "
                        "routes: " + ", ".join(sorted(set(routes))),
                    )


# --------------------------------------------------------------------------- BackendTLSPolicy


def _service_port_names(service: Mapping[str, Any] | None) -> dict[int, str]:
    ports = _spec(service or {}).get("ports") or []
    return {
        int(p["port"]): str(p.get("name") or "")
        for p in ports
        if isinstance(p, Mapping) and isinstance(p.get("port"), int)
    }


def _backend_tls_policies(world: _World, objects: Sequence[KubeObject]) -> list[PolicyVerdict]:
    policies = sorted(
        (
            o
            for o in objects
            if o.get("kind") == "BackendTLSPolicy"
            and str(o.get("apiVersion", "")).startswith(GATEWAY_GROUP + "/")
        ),
        key=_order,
    )
    # (namespace, Service name) → (port, Gateway ancestor) of our routes using it
    users: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for key, route in world.routes.items():
        for backend in route.backends:
            used = backend.ref
            if not backend.resolved or str(used.get("group") or "") != "":
                continue
            if str(used.get("kind") or "Service") != "Service":
                continue
            port = used.get("port")
            service = (str(used.get("namespace")), str(used.get("name")))
            for ancestor in world.ancestors[key]:
                gateway = ancestor_ref(ancestor["namespace"], ancestor["name"])
                item = (int(port) if isinstance(port, int) else 0, gateway)
                if item not in users[service]:
                    users[service].append(item)
    taken: set[tuple[str, str, str | None]] = set()
    out: list[PolicyVerdict] = []
    for policy in policies:
        meta = _meta(policy)
        ns = str(meta.get("namespace", ""))
        ancestors: list[dict[str, Any]] = []
        conflicted: list[str] = []
        for ref in _target_refs(policy):
            if str(ref.get("group") or "") != "" or ref.get("kind") != "Service":
                continue
            name = str(ref.get("name") or "")
            section = str(ref.get("sectionName")) if ref.get("sectionName") else None
            names = _service_port_names(world.services.get((ns, name)))
            found = [
                gateway
                for port, gateway in users.get((ns, name), [])
                if section is None or names.get(port) == section
            ]
            if not found:
                continue
            for gateway in found:
                if gateway not in ancestors:
                    ancestors.append(gateway)
            if (ns, name, section) in taken:
                conflicted.append(f"Service {ns}/{name}" + (f" port {section}" if section else ""))
            taken.add((ns, name, section))
        if not ancestors:
            continue
        conditions = _backend_tls_conditions(world, policy, conflicted)
        out.append(
            PolicyVerdict(
                str(policy.get("apiVersion", "")),
                "BackendTLSPolicy",
                ns,
                str(meta.get("name", "")),
                tuple(Ancestor(a, conditions) for a in ancestors),
            )
        )
    return out


def _backend_tls_conditions(
    world: _World, policy: Mapping[str, Any], conflicted: list[str]
) -> tuple[att.Condition, ...]:
    """Accepted and ResolvedRefs, as far as the controller implements BackendTLSPolicy: a CA
    from a ConfigMap's ``ca.crt``, or ``wellKnownCACertificates: System`` (the host's bundle);
    the same cases the IR builder fails closed on (a 500) are Accepted=False here."""
    ns = str(_meta(policy).get("namespace", ""))
    raw = _spec(policy).get("validation")
    validation: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    refs_ok = att.Condition("ResolvedRefs", "True", "ResolvedRefs", "All references resolved")
    bad: list[tuple[str, str]] = []
    usable = 0
    for ref in validation.get("caCertificateRefs") or []:
        if not isinstance(ref, Mapping):
            continue
        kind, group = str(ref.get("kind") or ""), str(ref.get("group") or "")
        name = str(ref.get("name") or "")
        if group != "" or kind != "ConfigMap":
            bad.append(("InvalidKind", f"{kind}.{group or 'core'} {name}: only a ConfigMap can do"))
            continue
        config_map = world.config_maps.get((ns, name))
        data = (config_map or {}).get("data")
        ca = str((data if isinstance(data, Mapping) else {}).get("ca.crt") or "")
        if config_map is None:
            bad.append(("InvalidCACertificateRef", f"ConfigMap {ns}/{name} not found"))
        elif not eg.pem_blocks(ca, "CERTIFICATE"):
            bad.append(("InvalidCACertificateRef", f"ConfigMap {ns}/{name} has no PEM ca.crt"))
        else:
            usable += 1
    if bad:
        reason = bad[0][0]
        refs_ok = att.Condition("ResolvedRefs", "False", reason, "; ".join(m for _r, m in bad))
    if conflicted:
        accepted = att.Condition(
            "Accepted",
            "False",
            "Conflicted",
            "another BackendTLSPolicy targets " + ", ".join(conflicted) + " already",
        )
    elif not str(validation.get("hostname") or ""):
        accepted = att.Condition("Accepted", "False", "Invalid", "validation.hostname is not set")
    elif validation.get("wellKnownCACertificates") and not bad and not usable:
        # System: verified against the host's CA bundle (what the IR builder does too)
        well_known = str(validation.get("wellKnownCACertificates"))
        if well_known == "System" and ir.system_ca_bundle() is None:
            accepted = att.Condition(
                "Accepted", "False", "Invalid", "wellKnownCACertificates System: no CA bundle here"
            )
        elif well_known == "System":
            accepted = att.Condition("Accepted", "True", "Accepted", ACCEPTED_MESSAGE)
        else:
            accepted = att.Condition(
                "Accepted",
                "False",
                "Invalid",
                f"wellKnownCACertificates {well_known!r} is not supported",
            )
    elif not usable:
        accepted = att.Condition(
            "Accepted", "False", "NoValidCACertificate", "no usable CA certificate"
        )
    else:
        accepted = att.Condition("Accepted", "True", "Accepted", ACCEPTED_MESSAGE)
    return (accepted, refs_ok)


# --------------------------------------------------------------------------- entry point


def compute(
    objects: Sequence[KubeObject],
    result: att.AttachmentResult,
    built_notes: Sequence[str] = (),
    problems: Mapping[tuple[str, str, str], Sequence[str]] | None = None,
) -> list[PolicyVerdict]:
    """Every policy with at least one ancestor of ours, and its ancestors' conditions.

    ``result`` is the attachment engine run for our controller names; ``built_notes`` and
    ``problems`` come from the IR builder (``BuildResult.notes`` and
    ``BuildResult.policy_problems``: why a policy could not be enforced at run time)."""
    if not any(o.get("kind") in POLICY_STATUS_KINDS for o in objects):
        return []  # the common case: skip indexing every route's ancestors
    world = _World(objects, result)
    return [
        *_eg_policies(world, objects, built_notes, problems or {}),
        *_backend_tls_policies(world, objects),
    ]
