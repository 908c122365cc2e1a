"""TCPMapping → TCPRoute on a TCP listener, or TLSRoute on a TLS (Terminate) listener.

A TCPMapping without ``host`` forwards every connection on its port: a ``TCP`` listener on the
(mapped) port and a TCPRoute. With ``host``, Emissary terminates TLS and picks the Mapping by SNI:
a ``TLS`` listener in ``Terminate`` mode for that hostname, with the certificate of a Host whose
hostname glob matches (else a TLSContext listing the host), and a TLSRoute. TCPMappings that share
port and host form one weighted group (Emissary's weight rule).

``converters.layout`` plans TLS listeners only in Passthrough mode and no TCP listeners, so this
module plans the TLS listener through layout and switches it to Terminate with the certificate,
and adds the TCP listeners itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from converters import naming
from converters.api import MigrateOptions
from converters.emissary import groups
from converters.emissary.hosts import HostIR, TLSContextIR
from converters.emissary.listeners import find_listener, tcp_listener
from converters.emissary.matching import glob_compatible, gw_hostname
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
    host: str | None
    members: list[tuple[Src, Target]]
    cert: SecretRef | None = None
    need: ListenerNeed | None = None
    namespace: str = ""


@dataclass
class TCPPlan:
    groups: list[TCPGroup] = field(default_factory=list)
    tls_needs: list[ListenerNeed] = field(default_factory=list)


def plan_tcp(
    items: list[Src],
    hosts: list[HostIR],
    contexts: dict[tuple[str, str], TLSContextIR],
    port_map: dict[int, int],
    service: Callable[[Src, object, bool], Target],
    options: MigrateOptions,
) -> TCPPlan:
    by_key: dict[tuple[int, str | None], list[tuple[Src, Target]]] = defaultdict(list)
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
        mapped = port_map.get(port, port)
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
    plan = TCPPlan()
    for (port, host), members in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        members.sort(key=lambda st: (st[0].namespace, st[0].name))
        group = TCPGroup(port, host, members, namespace=members[0][0].namespace)
        try:
            split = groups.shares([s.spec.get("weight") for s, _t in members])
        except groups.WeightError as err:
            for s, _t in members:
                s.error("weight", f"TCPMappings on port {port}: {err}")
            continue
        for (s, _t), share in zip(members, split, strict=True):
            if len(members) > 1 or "weight" in s.spec:
                s.note("weight", "converted", f"backendRef weight {share}")
        if host:
            gw_host, problem = gw_hostname(host)
            cert = _cert_for(host, hosts, contexts)
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
                port=port,
                sources=[s.ref for s, _t in members],
            )
            plan.tls_needs.append(group.need)
            for s, _t in members:
                s.note(
                    "host",
                    "converted",
                    f"TLS listener (Terminate, certificate "
                    f"{cert.namespace}/{cert.name}) for {gw_host} and a TLSRoute",
                )
        plan.groups.append(group)
    return plan


def _cert_for(
    host: str, hosts: list[HostIR], contexts: dict[tuple[str, str], TLSContextIR]
) -> SecretRef | None:
    for h in hosts:
        if h.cert is not None and glob_compatible(h.hostname, host):
            return h.cert
    for c in contexts.values():
        if host in c.hosts and c.secret is not None:
            c.used = True
            return c.secret
    return None


def render_tcp(
    plan: TCPPlan, layout: Layout, options: MigrateOptions, grants: Grants, out: list[KubeObject]
) -> None:
    names = naming.allocate({i: g.members[0][0].name for i, g in enumerate(plan.groups)})
    for i, group in enumerate(plan.groups):
        kind = "TLSRoute" if group.host else "TCPRoute"
        parent = _parent(group, layout, options, out, grants)
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


def _parent(
    group: TCPGroup, layout: Layout, options: MigrateOptions, out: list[KubeObject], grants: Grants
) -> dict[str, Any] | None:
    sources = [s for s, _t in group.members]
    if group.need is not None:
        parent = layout.parent(group.need.key)
        lis = find_listener(out, parent)
        if lis is not None and group.cert is not None:
            ref: dict[str, Any] = {"group": "", "kind": "Secret", "name": group.cert.name}
            if group.cert.namespace != parent["namespace"]:
                ref["namespace"] = group.cert.namespace
                grants.add(
                    GrantNeed(
                        GATEWAY_GROUP,
                        parent["kind"],
                        parent["namespace"],
                        "",
                        "Secret",
                        group.cert.namespace,
                        group.cert.name,
                    ),
                    [s.ref for s in sources],
                )
            lis["tls"] = {"mode": "Terminate", "certificateRefs": [ref]}
        return parent
    if options.gateway is not None:
        for s in sources:
            s.note(
                "port",
                "partial",
                f"the existing Gateway {options.gateway.namespace}/"
                f"{options.gateway.name} needs a TCP listener on port {group.port}",
            )
        return {
            "group": GATEWAY_GROUP,
            "kind": "Gateway",
            "namespace": options.gateway.namespace,
            "name": options.gateway.name,
            "port": group.port,
        }
    gw_ns = group.namespace if options.gateway_per_namespace else options.gateway_namespace
    gateway = next(
        (
            o
            for o in out
            if o["kind"] == "Gateway"
            and o["metadata"].get("namespace") == gw_ns
            and o["spec"].get("gatewayClassName") == options.gateway_class
        ),
        None,
    )
    if gateway is None:
        gateway = stamp(
            {
                "apiVersion": GATEWAY_API_VERSION,
                "kind": "Gateway",
                "metadata": {
                    "name": naming.allocate_one(options.gateway_class),
                    "namespace": gw_ns,
                },
                "spec": {"gatewayClassName": options.gateway_class, "listeners": []},
            },
            [s.ref for s in sources],
        )
        out.insert(0, gateway)
    listeners = gateway["spec"]["listeners"]
    clash = [lis for lis in listeners if lis["port"] == group.port]
    if clash and clash[0]["protocol"] != "TCP":
        for s in sources:
            s.error(
                "port",
                f"port {group.port} is already an {clash[0]['protocol']} listener "
                "of the Gateway; Gateway API cannot share a port between TCP and "
                f"{clash[0]['protocol']}",
            )
        return None
    name = f"tcp-{group.port}"
    namespaces = {s.namespace for s in sources}
    if clash:
        found = clash[0]
        found_ns = set(
            found["allowedRoutes"]["namespaces"]
            .get("selector", {})
            .get("matchExpressions", [{}])[0]
            .get("values", [])
        ) or {gw_ns}
        found.update(tcp_listener(name, group.port, "TCP", namespaces | found_ns, gw_ns))
    else:
        listeners.append(tcp_listener(name, group.port, "TCP", namespaces, gw_ns))
    gw_ref = ObjectRef.of(gateway)
    for s in sources:
        s.outputs.append(gw_ref)
    return {
        "group": GATEWAY_GROUP,
        "kind": "Gateway",
        "namespace": gw_ns,
        "name": gateway["metadata"]["name"],
        "sectionName": name,
    }
