"""TCPMapping → TCPRoute on a TCP listener, or TLSRoute on a TLS (Terminate) listener.

A TCPMapping without ``host`` forwards every connection on its port: a ``TCP`` listener on the
(mapped) port and a TCPRoute. With ``host``, Emissary terminates TLS and picks the Mapping by SNI:
a ``TLS`` listener in ``Terminate`` mode for that hostname, with the certificate of a Host whose
hostname glob matches (else a TLSContext listing the host), and a TLSRoute. TCPMappings that share
port and host form one weighted group (Emissary's weight rule).

Both listeners are planned by ``converters.layout`` (``TCP`` needs, and ``TLS`` needs with a
certificate): it maps the container port, counts them toward a Gateway's 64 listeners, refuses a
TCP listener on a port another protocol uses, and says what an existing Gateway must have.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from converters import naming
from converters.api import MigrateOptions
from converters.emissary import groups
from converters.emissary.hosts import HostIndex, TLSContextIR
from converters.emissary.matching import gw_hostname
from converters.emissary.model import Src
from converters.emissary.service import ServiceError, Target
from converters.layout import (
    GATEWAY_API_VERSION,
    GrantNeed,
    Grants,
    Layout,
    ListenerNeed,
    SecretRef,
    need,
)
from converters.provenance import stamp
from kubectl_gw.model import GATEWAY_GROUP, KubeObject, ObjectRef

IGNORED = {
    "enable_ipv4": "Envoy Gateway routes to Service endpoints",
    "enable_ipv6": "Envoy Gateway routes to Service endpoints",
    "cluster_tag": "only names Envoy clusters",
    "stats_name": "only names Envoy statistics",
    "v2ExplicitTLS": "a v2 round-trip artefact",
}


@dataclass
class TCPGroup:
    port: int  # the Gateway listener port
    asked: int  # the (container) port the need asks for; layout maps it to ``port``
    host: str | None
    members: list[tuple[Src, Target]]
    cert: SecretRef | None = None
    need: ListenerNeed | None = None
    namespace: str = ""


@dataclass
class TCPPlan:
    groups: list[TCPGroup] = field(default_factory=list)
    needs: list[ListenerNeed] = field(default_factory=list)  # TCP and TLS (Terminate)


def plan_tcp(
    items: list[Src],
    hosts: HostIndex,
    contexts: dict[tuple[str, str], TLSContextIR],
    listener_port: Callable[[int], int],
    service: Callable[[Src, object, bool], Target],
    options: MigrateOptions,
) -> TCPPlan:
    by_key: dict[tuple[int, str | None], list[tuple[Src, Target]]] = defaultdict(list)
    asked: dict[tuple[int, str | None], int] = {}
    for src in items:
        spec = src.spec
        port = spec.get("port")
        if not isinstance(port, int) or not 0 < port < 65536:
            src.error("port", "port must be a port number")
            continue
        try:
            target = service(src, spec.get("service"), bool(spec.get("tls")))
        except ServiceError as err:
            src.error("service", str(err))
            continue
        if target.kind != "service":
            src.error(
                "service",
                f"{target.text} is not a Kubernetes Service; a TCPRoute can "
                "only forward to Services here",
            )
            continue
        host = spec.get("host")
        if host is not None and not isinstance(host, str):
            src.error("host", "host must be a string")
            continue
        mapped = listener_port(port)
        src.note(
            "port",
            "converted",
            f"listener port {mapped}"
            + (f" (container port {port} mapped)" if mapped != port else ""),
        )
        if target.tls:
            src.note(
                "tls" if "tls" in spec else "service",
                "unsupported",
                "TLS origination for TCP needs Envoy Gateway's Backend tls; the connection "
                "is forwarded without TLS",
                [],
            )
        elif "tls" in spec:
            src.note("tls", "converted", "no TLS origination")
        for key, message in IGNORED.items():
            if key in spec:
                src.note(key, "ignored", message, [])
        if "address" in spec:
            src.note(
                "address",
                "unsupported",
                "binding a listener to an address: set the Gateway's spec.addresses by hand",
                [],
            )
        if "idle_timeout_ms" in spec:
            src.note(
                "idle_timeout_ms",
                "unsupported",
                "Envoy Gateway ClientTrafficPolicy "
                "timeout.tcp.idleTimeout is the closest; not converted",
                [],
            )
        if "circuit_breakers" in spec:
            src.note(
                "circuit_breakers",
                "unsupported",
                "BackendTrafficPolicy circuitBreaker on a TCPRoute; not converted",
                [],
            )
        if "resolver" in spec:
            src.note("resolver", "converted", "Kubernetes Service backend")
        if "ambassador_id" in spec:
            src.note("ambassador_id", "converted", "this installation's TCPMapping")
        by_key[(mapped, host or None)].append((src, target))
        asked.setdefault((mapped, host or None), port)
    plan = TCPPlan()
    certs = _CertFinder(hosts, contexts)
    for (port, host), members in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        members.sort(key=lambda st: (st[0].namespace, st[0].name))
        group = TCPGroup(
            port, asked[(port, host)], host, members, namespace=members[0][0].namespace
        )
        try:
            split = groups.shares([s.spec.get("weight") for s, _t in members])
        except groups.WeightError as err:
            for s, _t in members:
                s.error("weight", f"TCPMappings on port {port}: {err}")
            continue
        for (s, _t), share in zip(members, split, strict=True):
            if len(members) > 1 or "weight" in s.spec:
                s.note("weight", "converted", f"backendRef weight {share}")
        if not host:
            group.need = need(
                options.gateway_class,
                group.namespace,
                None,
                "TCP",
                port=group.asked,
                sources=[s.ref for s, _t in members],
            )
            plan.needs.append(group.need)
        else:
            gw_host, problem = gw_hostname(host)
            cert = certs.find(host)
            if gw_host is None or cert is None:
                for s, _t in members:
                    s.error(
                        "host",
                        problem
                        or f"no Host or TLSContext provides a certificate "
                        f"for {host}: Emissary cannot terminate TLS for it",
                    )
                continue
            group.cert = cert
            group.need = need(
                options.gateway_class,
                group.namespace,
                gw_host,
                "TLS",
                port=group.asked,
                certificates=[cert],
                sources=[s.ref for s, _t in members],
            )
            plan.needs.append(group.need)
            for s, _t in members:
                s.note(
                    "host",
                    "converted",
                    f"TLS listener (Terminate, certificate "
                    f"{cert.namespace}/{cert.name}) for {gw_host} and a TLSRoute",
                )
        plan.groups.append(group)
    return plan


class _CertFinder:
    """The certificate Emissary terminates a TCPMapping's host with: the first Host whose
    hostname glob matches, else the first TLSContext that lists the host."""

    def __init__(self, hosts: HostIndex, contexts: dict[tuple[str, str], TLSContextIR]) -> None:
        self.hosts = hosts
        self.contexts: dict[str, TLSContextIR] = {}
        for c in contexts.values():
            if c.secret is not None:
                for host in c.hosts:
                    self.contexts.setdefault(host, c)

    def find(self, host: str) -> SecretRef | None:
        for h in self.hosts.compatible(host):
            if h.cert is not None:
                return h.cert
        context = self.contexts.get(host)
        if context is None:
            return None
        context.used = True
        return context.secret


def render_tcp(plan: TCPPlan, layout: Layout, grants: Grants, out: list[KubeObject]) -> None:
    names = naming.allocate({i: g.members[0][0].name for i, g in enumerate(plan.groups)})
    for i, group in enumerate(plan.groups):
        kind = "TLSRoute" if group.host else "TCPRoute"
        parent = _parent(group, layout)
        if parent is None:
            continue
        route_ref = ObjectRef(GATEWAY_API_VERSION, kind, group.namespace, str(names[i]))
        refs = []
        for (src, target), share in zip(
            group.members,
            groups.shares([s.spec.get("weight") for s, _t in group.members]),
            strict=True,
        ):
            ref: dict[str, Any] = {"name": target.name}
            outputs = [route_ref]
            if target.namespace != group.namespace:
                ref["namespace"] = target.namespace
                grant = GrantNeed(
                    GATEWAY_GROUP,
                    kind,
                    group.namespace,
                    "",
                    "Service",
                    target.namespace,
                    target.name,
                )
                grants.add(grant, [src.ref])
                grant_ref = grants.ref_for(grant)
                if grant_ref:
                    outputs.append(grant_ref)
            ref["port"] = target.port
            if len(group.members) > 1:
                ref["weight"] = share
            refs.append(ref)
            src.note(
                "service",
                "converted",
                f"backendRef Service {target.namespace}/{target.name} port {target.port}",
                outputs,
            )
            src.outputs.extend(outputs)
        spec: dict[str, Any] = {"parentRefs": [parent]}
        if group.host:
            spec["hostnames"] = [group.host]
        spec["rules"] = [{"backendRefs": refs}]
        obj: KubeObject = {
            "apiVersion": GATEWAY_API_VERSION,
            "kind": kind,
            "metadata": {"name": str(names[i]), "namespace": group.namespace},
            "spec": spec,
        }
        out.append(stamp(obj, [s.ref for s, _t in group.members]))


def _parent(group: TCPGroup, layout: Layout) -> dict[str, Any] | None:
    """The parentRef of the group's route (None, with an error, when layout gave it no
    listener); the listener's outputs and layout's notes go to every member."""
    sources: Sequence[Src] = [s for s, _t in group.members]
    if group.need is None:
        return None
    key = group.need.key
    report_key = "host" if group.host else "port"
    problem = layout.errors.get(key)
    if problem is not None:
        for s in sources:
            s.error(report_key, problem)
        return None
    for message in layout.notes.get(key, []):
        for s in sources:
            s.note(report_key, "partial", message)
    for s in sources:
        s.outputs.extend(layout.outputs[key])
    return layout.parent(key)
