"""Emissary-ingress → Gateway API: the orchestration.

1. gather the resources (CRDs of any version, annotation YAML, ``ambassador``-class Ingresses),
   normalise them to v3alpha1 meaning and keep one installation's (``ambassador_id``);
2. read the ``ambassador`` Module's defaults, the Listeners' ports, TLSContexts and Hosts (with
   Emissary's synthetic ``*`` Host when there is none);
3. turn every Mapping into a match, a backend and a set of associated Hosts; bad Mappings are
   ``error`` entries and the rest is converted;
4. form canary groups (one rule each, Emissary's weight rule) and routes (one per namespace,
   hostnames and listeners; 16 rules each), in Emissary's order, and report where Gateway API's
   precedence would order them differently;
5. plan Gateways and listeners (``converters.layout``, which also plans the TCP and TLS
   listeners of TCPMappings and maps container ports), render the routes and the policies, the
   ReferenceGrants, and the report.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from converters import naming
from converters.api import MigrateOptions
from converters.emissary import fields, globals_, groups, listeners, tcp
from converters.emissary.fields import FieldContext, Refs, RuleParts
from converters.emissary.hosts import HostIndex, HostIR, parse_host, parse_tlscontext
from converters.emissary.matching import (
    HEADER_NAME,
    METHODS,
    MatchError,
    PathPlan,
    check_regex,
    gw_hostname,
    millis,
    path_plan,
)
from converters.emissary.model import EG_API_VERSION, Src, flush
from converters.emissary.service import ServiceError, Target, parse
from converters.emissary.sources import gather
from converters.layout import (
    GATEWAY_API_VERSION,
    GrantNeed,
    Grants,
    LayoutOptions,
    ListenerKey,
    ListenerNeed,
    SecretRef,
    need,
    plan,
)
from converters.provenance import stamp
from converters.report import Conversion, Report
from kubectl_gw.model import ENVOY_GATEWAY_GROUP, GATEWAY_GROUP, KubeObject, ObjectRef

MAX_RULES = 16
MAX_PARENTS = 32  # Gateway API: a route's spec.parentRefs has at most 32 items
_GRPC_PATH = re.compile(
    r"^/([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)/([A-Za-z_][A-Za-z0-9_]*)?$"
)
BTLS_API_VERSION = f"{GATEWAY_GROUP}/v1"


@dataclass(frozen=True)
class EmissaryOptions:
    """Emissary-specific knobs: container port → Gateway listener port (``--listener-port``)."""

    port_map: tuple[tuple[int, int], ...] = ((8080, 80), (8443, 443))


@dataclass
class MappingIR:
    src: Src
    plan: PathPlan
    literal: str  # the prefix as written (for overlap checks)
    target: Target | None
    glob: str | None
    route_hosts: tuple[str, ...]  # () = no hostname restriction
    hosts: list[HostIR]
    methods: list[str]
    headers: list[dict[str, str]]
    query: list[dict[str, str]]
    precedence: int
    weight: int | None
    shadow: bool
    redirect: bool
    grpc: bool
    header_len: int
    query_len: int
    share: int = 100


@dataclass
class Group:
    members: list[MappingIR]
    normals: list[MappingIR] = field(default_factory=list)
    shadow: MappingIR | None = None
    redirect: MappingIR | None = None
    primary: MappingIR | None = None
    kind: str = "HTTPRoute"
    namespace: str = ""
    keys: tuple[ListenerKey, ...] = ()
    rule_names: list[str] = field(default_factory=list)

    @property
    def lead(self) -> MappingIR:
        return self.primary or self.redirect or self.members[0]


@dataclass
class Route:
    kind: str
    namespace: str
    hostnames: tuple[str, ...]
    keys: tuple[ListenerKey, ...]
    groups: list[Group]
    part: int = 0
    name: str = ""
    redirect_host: HostIR | None = None
    copy: int = 0  # > 0: a copy for more parentRefs than one route may have
    copies: int = 1  # how many routes the original was split into

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(GATEWAY_API_VERSION, self.kind, self.namespace, self.name)


def convert(objects: Sequence[KubeObject], options: MigrateOptions) -> Conversion:
    defaults = dict(EmissaryOptions().port_map)
    ports = tuple(sorted((defaults | dict(options.listener_ports)).items()))
    return convert_with(objects, options, EmissaryOptions(port_map=ports))


def convert_with(
    objects: Sequence[KubeObject], options: MigrateOptions, extra: EmissaryOptions
) -> Conversion:
    return _Run(objects, options, extra).run()


class _Run:
    def __init__(
        self, objects: Sequence[KubeObject], options: MigrateOptions, extra: EmissaryOptions
    ) -> None:
        self.options = options
        self.eg = options.target == "envoy-gateway"
        self.layout_options = LayoutOptions(
            options.gateway_class,
            options.gateway_namespace,
            options.gateway,
            options.gateway_per_namespace,
            port_map=extra.port_map,
        )
        self.report = Report()
        self.gathered = gather(objects, self.report, options.ambassador_id)
        self.sources = self.gathered.resources
        self.grants = Grants()
        self.out: list[KubeObject] = []
        self.known_services = set(self.gathered.services)
        self.known_namespaces = set(self.gathered.namespaces) | {s.namespace for s in self.sources}
        self.module: Src | None = None
        self.config: dict[str, Any] = {}
        self.amb_ns: str | None = None
        self.http_port = 80  # the ports needs ask for (container ports; layout maps them)
        self.https_port = 443
        self.host_index = HostIndex([])
        self.certs_by_host: dict[str, list[SecretRef]] = {}
        self.backend_tls: dict[tuple[str, str], tuple[dict[str, Any], list[Src]]] = {}
        self.backends: dict[tuple[str, str, int], list[Src]] = {}
        self.auth: globals_.AuthPlan | None = None

    # ------------------------------------------------------------------ the run

    def run(self) -> Conversion:
        by_kind: dict[str, list[Src]] = defaultdict(list)
        for src in sorted(
            self.sources, key=lambda s: (s.namespace, s.name, s.ref.kind, s.single_key)
        ):
            by_kind[src.kind].append(src)
        self.module, self.config = globals_.module(by_kind["Module"])
        if self.module is not None:
            self.amb_ns = self.module.namespace
        self.http_port, self.https_port = listeners.ports(
            by_kind["Listener"], self.layout_options.listener_port
        )
        contexts = {(c.namespace, c.name): parse_tlscontext(c) for c in by_kind["TLSContext"]}
        hosts = [parse_host(h, contexts) for h in by_kind["Host"]]
        if not hosts:
            hosts = [listeners.default_host()]
        self.host_index = HostIndex(hosts)
        by_host: dict[str, set[SecretRef]] = defaultdict(set)
        for h in hosts:
            if h.cert:
                by_host[h.gw_host or ""].add(h.cert)
        self.certs_by_host = {host: sorted(certs) for host, certs in by_host.items()}
        self.auth = globals_.auth_plan(by_kind["AuthService"], self.eg)
        globals_.ratelimit(by_kind["RateLimitService"])
        mappings = [m for m in (self._mapping(s, hosts) for s in by_kind["Mapping"]) if m]
        grouped = self._groups(mappings)
        routes = self._routes(grouped)
        routes += self._redirect_routes(hosts)
        tcp_plan = tcp.plan_tcp(
            by_kind["TCPMapping"],
            self.host_index,
            contexts,
            self.layout_options.listener_port,
            self._service,
            self.options,
        )
        needs: list[ListenerNeed] = []
        for route in routes:
            needs.extend(self._needs_of(route))
        needs.extend(tcp_plan.needs)
        layout = plan(needs, self.layout_options, self.grants)
        self.out.extend(layout.objects)
        routes = [copy for route in routes for copy in _split_parents(route, layout.parents)]
        self._name(routes)
        for route in routes:
            self._render(route, layout.parents)
        self._note_copies(routes)
        tcp.render_tcp(tcp_plan, layout, self.grants, self.out)
        listeners.host_tls_policies(hosts, layout, self.https_port, self.eg, self.out, self.grants)
        gateways = [o for o in self.out if o["kind"] == "Gateway"]
        if self.eg and routes and self.options.gateway is None:
            globals_.gateway_defaults(gateways, self.module, self.config, self.out)
        if self.auth is not None:
            globals_.render_auth(
                self.auth, gateways, self.options, self.grants, self.out, self._service
            )
        self._render_backend_tls()
        self._render_backends()
        self.out.extend(self.grants.render())
        for c in contexts.values():
            listeners.report_tlscontext(c, self.eg)
        for h in hosts:
            why = layout.dropped_certificates.get((h.gw_host or "", h.cert)) if h.cert else None
            if why and not h.synthetic:
                spec = h.src.spec
                key = (
                    "tlsSecret" if "tlsSecret" in spec or "tlsContext" not in spec else "tlsContext"
                )
                h.src.note(key, "error", why)
        host_outputs = listeners.listener_outputs(layout, (self.https_port, self.http_port))
        for h in hosts:
            if not h.synthetic:
                h.src.outputs.extend(host_outputs.get(h.gw_host or "", []))
        if self.module is not None:
            globals_.report_module(self.module, self.config, self.eg)
        emitted = {ObjectRef.of(o) for o in self.out}
        flush(self.sources + self.gathered.parents, self.report, emitted)
        return Conversion(objects=self.out, report=self.report)

    # ------------------------------------------------------------------ services

    def _service(self, src: Src, text: object, tls: bool = False) -> Target:
        return parse(
            text,
            src.namespace,
            self.known_namespaces,
            self.known_services,
            tls=tls,
            ambassador_namespace=self.amb_ns
            if self.config.get("use_ambassador_namespace_for_service_resolution") is True
            else None,
        )

    # ------------------------------------------------------------------ mappings

    def _mapping(self, src: Src, hosts: list[HostIR]) -> MappingIR | None:
        spec = src.spec
        if "_ingress_error" in spec:
            message = str(spec.pop("_ingress_error"))
            src.error("service", message)
            return None
        try:
            path = path_plan(spec, self.eg)
        except MatchError as err:
            key = (
                "regex_rewrite"
                if "regex_rewrite" in str(err)
                else (
                    "rewrite"
                    if "rewrite" in str(err) and "prefix" not in str(err)[:8]
                    else "prefix"
                )
            )
            src.error(key, str(err))
            return None
        redirect = spec.get("host_redirect") is True
        if not redirect:
            for key in (
                "path_redirect",
                "prefix_redirect",
                "regex_redirect",
                "redirect_response_code",
            ):
                if key in spec:
                    src.note(
                        key,
                        "ignored",
                        "Emissary redirects only with host_redirect: true; no effect",
                        [],
                    )
            if "host_redirect" in spec:
                src.note("host_redirect", "converted", "false: the Mapping proxies")
        tls_origination = bool(spec.get("tls"))
        try:
            target = self._service(src, spec.get("service"), tls=tls_origination)
        except ServiceError as err:
            src.error("service", str(err))
            return None
        if target.kind == "local" and not redirect:
            src.note(
                "service",
                "ignored",
                f"{target.text}: Emissary's own local endpoint (diagnostics); nothing to route",
                [],
            )
            src.dropped = True
            return None
        # Hostname and authority.
        glob: str | None = None
        host_regex = False
        route_hosts: tuple[str, ...] = ()
        host_note: tuple[str, str] | None = None
        host_key = "hostname"
        headers: list[dict[str, str]] = []
        header_len = 0
        exact_headers = spec.get("headers") or {}
        if not isinstance(exact_headers, dict):
            src.error("headers", "headers must be a map")
            return None
        authority = exact_headers.get(":authority")
        if isinstance(spec.get("hostname"), str):
            glob = spec["hostname"]
            if "host" in spec:
                src.note("host", "ignored", "hostname wins over host", [])
        elif isinstance(spec.get("host"), str):
            if spec.get("host_regex") is True:
                host_regex = True
                glob = spec["host"]
            else:
                glob = spec["host"]
        elif isinstance(authority, str):
            glob = authority
        if host_regex:
            try:
                check_regex(str(glob), "host")
            except MatchError as err:
                src.error("host", str(err))
                return None
            regex = re.compile(str(glob))
            matched = sorted(
                {
                    h.gw_host
                    for h in hosts
                    if h.gw_host and not h.gw_host.startswith("*") and regex.fullmatch(h.gw_host)
                }
            )
            route_hosts = tuple(matched)
            hosts_for = [h for h in hosts if h.gw_host in matched]
            if not matched:
                src.note(
                    "host_regex",
                    "unsupported",
                    f"host {glob!r} is a regex: Gateway API has no regex hostnames and no "
                    "Host's exact hostname matches it; not converted",
                    [],
                )
                src.dropped = True
                return None
            src.note(
                "host_regex",
                "partial",
                f"host {glob!r} is a regex: Gateway API has no regex hostnames; expanded to "
                f"the Hosts' hostnames it matches ({', '.join(matched)}); other hostnames "
                "(wildcard Hosts, unknown names) are no longer routed",
            )
            src.note("host", "partial", "see host_regex")
            header_len += len(":authority") + len(str(glob))
        else:
            if glob is not None:
                gw_host, problem = gw_hostname(glob)
                route_hosts = (gw_host,) if gw_host else ()
                host_key = (
                    "hostname"
                    if "hostname" in spec
                    else ("host" if "host" in spec else "headers.:authority")
                )
                if problem:
                    host_note = ("partial", problem)
                else:
                    host_note = (
                        "converted",
                        f"route hostnames [{gw_host}]"
                        if gw_host
                        else '"*": no hostname restriction (the listeners of the '
                        "associated Hosts decide)",
                    )
                if glob != "*":
                    header_len += len(":authority") + len(glob)
            hosts_for = self.host_index.associated(glob, False, src.labels)
            if "host_regex" in spec:
                src.note("host_regex", "converted", "false: host is an exact hostname")
        if not hosts_for:
            host_note = None
            why = (
                "a v3alpha1 Mapping without hostname associates only with Hosts whose "
                "mappingSelector matches its labels, and none does"
                if glob is None
                else f"no Host's hostname is compatible with {glob!r}"
            )
            src.note(
                "hostname" if glob is None else ("hostname" if "hostname" in spec else "host"),
                "ignored",
                f"Emissary does not route this Mapping: {why}; not converted",
                [],
            )
            src.dropped = True
            return None
        if not host_regex and glob is not None and host_note and not src.claimed(host_key):
            src.note(host_key, host_note[0], host_note[1])  # type: ignore[arg-type]
        for name, value in exact_headers.items():
            if name == ":authority":
                if glob != value:
                    src.note("headers.:authority", "converted", f"hostname {value}")
                continue
            if str(name).startswith(":") or not HEADER_NAME.match(str(name)):
                src.error(f"headers.{name}", f"header {name!r} cannot be matched in Gateway API")
                return None
            headers.append({"name": str(name), "type": "Exact", "value": str(value)})
            header_len += len(str(name)) + len(str(value))
        if exact_headers:
            src.note("headers", "converted", "header matches (Exact)")
        for name, value in (spec.get("regex_headers") or {}).items():
            if str(name).startswith(":") or not HEADER_NAME.match(str(name)):
                src.error(f"regex_headers.{name}", f"header {name!r} cannot be matched")
                return None
            try:
                check_regex(str(value), f"regex_headers.{name}")
            except MatchError as err:
                src.error("regex_headers", str(err))
                return None
            headers.append({"name": str(name), "type": "RegularExpression", "value": str(value)})
            header_len += len(str(name)) + len(str(value))
        if spec.get("regex_headers"):
            src.note(
                "regex_headers", "converted", 'header matches (RegularExpression; ".*" = present)'
            )
        query: list[dict[str, str]] = []
        query_len = 0
        for key, kind in (
            ("query_parameters", "Exact"),
            ("regex_query_parameters", "RegularExpression"),
        ):
            values = spec.get(key) or {}
            if not isinstance(values, dict):
                src.error(key, f"{key} must be a map")
                return None
            for name, value in values.items():
                if kind == "RegularExpression":
                    try:
                        check_regex(str(value), f"{key}.{name}")
                    except MatchError as err:
                        src.error(key, str(err))
                        return None
                query.append({"name": str(name), "type": kind, "value": str(value)})
                query_len += len(str(name)) + len(str(value))
            if values:
                src.note(key, "converted", f"query parameter matches ({kind})")
        methods: list[str] = []
        method = spec.get("method")
        if method is not None:
            text = str(method)
            if spec.get("method_regex") is True:
                options = text.strip("^$()").split("|")
                if all(o in METHODS for o in options):
                    methods = options
                    src.note(
                        "method_regex",
                        "converted",
                        f"the alternation became {len(options)} matches",
                    )
                else:
                    src.error(
                        "method_regex",
                        f"method regex {text!r} is not a plain alternation "
                        "of HTTP methods; Gateway API matches methods exactly",
                    )
                    return None
            elif text.upper() in METHODS:
                methods = [text.upper()]
            else:
                src.error("method", f"method {text!r} cannot be matched in Gateway API")
                return None
            src.note("method", "converted", "matches[].method")
            header_len += len(":method") + len(text)
        elif "method_regex" in spec:
            src.note("method_regex", "ignored", "no method to match")
        precedence = spec.get("precedence", 0)
        if not isinstance(precedence, int):
            src.error("precedence", "precedence must be an integer")
            return None
        weight = spec.get("weight")
        if weight is not None and (not isinstance(weight, int) or isinstance(weight, bool)):
            src.error("weight", "weight must be an integer")
            return None
        if "case_sensitive" in spec:
            src.note(
                "case_sensitive",
                "converted",
                "false: a case-insensitive regex ((?i))"
                if spec["case_sensitive"] is False
                else "true: the default",
            )
        for key, how, status in (
            ("prefix", path.how, path.status),
            ("prefix_regex", "", "converted"),
            ("prefix_exact", "", "converted"),
        ):
            if key in spec:
                src.note(key, status, how or "see prefix")  # type: ignore[arg-type]
        literal = str(spec.get("prefix"))
        return MappingIR(
            src,
            path,
            literal,
            target,
            glob,
            route_hosts,
            hosts_for,
            methods,
            headers,
            query,
            precedence,
            weight,
            spec.get("shadow") is True,
            redirect,
            spec.get("grpc") is True,
            header_len,
            query_len,
        )

    # ------------------------------------------------------------------ groups

    def _groups(self, mappings: list[MappingIR]) -> list[Group]:
        by_key: dict[tuple[Any, ...], list[MappingIR]] = defaultdict(list)
        for m in mappings:
            key = (
                m.plan.match["type"],
                m.plan.match["value"],
                tuple(m.methods) or ("GET",),
                tuple(sorted((h["name"].lower(), h["type"], h["value"]) for h in m.headers)),
                tuple(sorted((q["name"], q["type"], q["value"]) for q in m.query)),
                m.glob,
                m.route_hosts,
                tuple(sorted((h.src.namespace, h.src.name) for h in m.hosts)),
                m.precedence,
            )
            by_key[key].append(m)
        out: list[Group] = []
        for members in by_key.values():
            members.sort(key=lambda m: (m.src.namespace, m.src.name, m.src.single_key))
            group = self._group(members)
            if group is not None:
                out.append(group)
        return out

    def _group(self, members: list[MappingIR]) -> Group | None:
        group = Group([])
        accepted: list[MappingIR] = []
        for m in members:
            if accepted:
                first = accepted[0]
                differs = [
                    k for k in groups.GROUP_KEYS if m.src.spec.get(k) != first.src.spec.get(k)
                ]
                if differs:
                    m.src.error(
                        differs[0],
                        f"shares its match with {first.src.label}, but "
                        f"{', '.join(differs)} differ: Emissary rejects this Mapping",
                    )
                    continue
            accepted.append(m)
        for m in accepted:
            if m.redirect:
                if group.redirect is not None:
                    m.src.error(
                        "host_redirect",
                        f"a second host_redirect in the group of "
                        f"{group.redirect.src.label}: Emissary rejects it",
                    )
                    continue
                group.redirect = m
            elif m.shadow:
                if group.shadow is not None:
                    m.src.error(
                        "shadow",
                        f"a second shadow in the group of "
                        f"{group.shadow.src.label}: Emissary keeps one",
                    )
                    continue
                group.shadow = m
            else:
                group.normals.append(m)
        if group.redirect is not None and group.normals:
            group.redirect.src.error(
                "host_redirect",
                "host_redirect cannot share its match with "
                "normal Mappings (" + ", ".join(n.src.label for n in group.normals) + ")",
            )
            group.redirect = None
        group.members = group.normals + [x for x in (group.shadow, group.redirect) if x]
        if not group.members:
            return None
        if group.normals:
            try:
                split = groups.shares([m.weight for m in group.normals])
            except groups.WeightError as err:
                for m in group.normals:
                    m.src.error(
                        "weight",
                        f"canary group of {len(group.normals)} Mappings: {err}; "
                        "Emissary drops the whole group",
                    )
                if group.shadow:
                    group.shadow.src.error("shadow", "its group was dropped")
                return None
            for m, share in zip(group.normals, split, strict=True):
                m.share = share
            group.primary = max(group.normals, key=lambda m: m.share)
            self._note_weights(group)
        elif group.shadow is not None and group.redirect is None:
            group.shadow.src.error(
                "shadow",
                "a shadow Mapping without a normal Mapping of the same match mirrors nothing",
            )
            return None
        lead = group.lead
        group.namespace = lead.src.namespace
        group.kind = "GRPCRoute" if self._grpc_ok(group) else "HTTPRoute"
        return group

    def _note_weights(self, group: Group) -> None:
        normals = group.normals
        if len(normals) == 1:
            m = normals[0]
            if "weight" in m.src.spec:
                m.src.note("weight", "converted", "the only Mapping of its match: 100%")
            return
        explicit = [m for m in normals if m.weight is not None]
        split = ", ".join(f"{m.src.label} {m.share}%" for m in normals)
        total = sum(m.share for m in explicit)
        for m in normals:
            others = [n.src.label for n in normals if n is not m]
            message = (
                f"canary group with {', '.join(others)}: backendRef weights {split} "
                "(explicit weights first, the rest shared equally, the last absorbing "
                "rounding)"
            )
            status = "converted"
            if not explicit:
                message += (
                    "; none sets a weight, so traffic is split equally between "
                    "Mappings that share this match, maybe by accident"
                )
            if explicit and len(explicit) == len(normals) and total < 100:
                message += (
                    f"; the weights add up to {total}: Emissary let the other "
                    f"{100 - total}% fall through to later routes, Gateway API weights "
                    "are relative"
                )
                status = "partial"
            m.src.note("weight", status, message)  # type: ignore[arg-type]
        namespaces = {m.src.namespace for m in group.members}
        if len(namespaces) > 1:
            for m in group.members:
                m.src.note(
                    "prefix",
                    "converted",
                    f"its canary group spans namespaces "
                    f"{', '.join(sorted(namespaces))}: the rule lives in "
                    f"{group.lead.src.namespace}",
                )

    def _grpc_ok(self, group: Group) -> bool:
        if group.redirect is not None or not group.normals:
            return False
        if not all(m.grpc for m in group.normals):
            return False
        for m in group.members:
            spec = m.src.spec
            if spec.get("prefix_regex") or spec.get("case_sensitive") is False:
                return False
            if not _GRPC_PATH.match(m.literal):
                return False
            rewrite = spec.get("rewrite", "/")
            if rewrite not in ("", m.literal) or spec.get("regex_rewrite"):
                return False
            if (
                m.query
                or m.methods
                or spec.get("host_rewrite")
                or spec.get("cors")
                or (spec.get("auto_host_rewrite"))
            ):
                return False
            if m.literal.endswith("/") and spec.get("prefix_exact"):
                return False
        return True

    # ------------------------------------------------------------------ routes

    def _keys_for(self, m: MappingIR, namespace: str) -> tuple[ListenerKey, ...]:
        keys: set[ListenerKey] = set()
        cls = self.options.gateway_class
        for h in m.hosts:
            host = h.gw_host or ""
            if h.tls:
                keys.add(ListenerKey(cls, namespace, host, "HTTPS", self.https_port))
                if h.action == "Route":
                    keys.add(ListenerKey(cls, namespace, host, "HTTP", self.http_port))
            else:
                keys.add(ListenerKey(cls, namespace, host, "HTTP", self.http_port))
        return tuple(sorted(keys))

    def _routes(self, grouped: list[Group]) -> list[Route]:
        by_route: dict[tuple[Any, ...], list[Group]] = defaultdict(list)
        for g in grouped:
            g.keys = self._keys_for(g.lead, g.namespace)
            by_route[(g.kind, g.namespace, g.lead.route_hosts, g.keys)].append(g)
        routes: list[Route] = []
        for (kind, ns, hostnames, keys), members in sorted(
            by_route.items(), key=lambda kv: repr(kv[0])
        ):
            members.sort(key=_emissary_order)
            for part, start in enumerate(range(0, len(members), MAX_RULES)):
                routes.append(
                    Route(kind, ns, hostnames, keys, members[start : start + MAX_RULES], part)
                )
        self._order_report(grouped)
        return routes

    def _order_report(self, grouped: list[Group]) -> None:
        """Flag each group that Emissary tries before an overlapping group on a shared
        listener while Gateway API's precedence ranks the other first."""
        by_key: dict[tuple[str, str, str, int], list[Group]] = defaultdict(list)
        for g in grouped:
            for k in g.keys:
                by_key[(k.cls, k.hostname, k.protocol, k.port)].append(g)
        facts = {
            id(g): (_emissary_key(g), groups.gateway_rank(_first_match(g)), _first_match(g))
            for g in grouped
        }
        flagged: dict[int, set[str]] = defaultdict(set)
        checked: set[tuple[int, int]] = set()
        for bucket in by_key.values():
            # Compare only groups whose route hostnames can overlap: index by hostnames.
            by_hosts: dict[tuple[str, ...], list[Group]] = defaultdict(list)
            for g in bucket:
                by_hosts[g.lead.route_hosts].append(g)
            host_sets = list(by_hosts)
            for ha in host_sets:
                for hb in host_sets:
                    if not _hosts_overlap(ha, hb):
                        continue
                    for a in by_hosts[ha]:
                        ea, ra, ma = facts[id(a)]
                        for b in by_hosts[hb]:
                            eb, rb, mb = facts[id(b)]
                            if a is b or not ea > eb or not rb < ra:
                                continue
                            if (id(a), id(b)) in checked:
                                continue
                            checked.add((id(a), id(b)))
                            if groups.may_overlap(ma, a.lead.literal, mb, b.lead.literal):
                                flagged[id(a)].add(b.lead.src.label)
        for g in grouped:
            lost: list[str] = sorted(flagged.get(id(g), set()))
            for m in g.members:
                has = "precedence" in m.src.spec
                if lost:
                    why = (
                        "its precedence"
                        if has and m.precedence
                        else "its longer path or more headers"
                    )
                    m.src.note(
                        "precedence" if has else "prefix",
                        "partial",
                        f"Emissary tries this Mapping before {', '.join(sorted(lost))} "
                        f"({why}); Gateway API ranks Exact > RegularExpression > "
                        "PathPrefix, then length, so requests matching both now go to "
                        f"{'it' if len(lost) == 1 else 'them'}",
                    )
                elif has:
                    m.src.note(
                        "precedence",
                        "converted",
                        f"precedence {m.precedence}: no Gateway API equivalent, and no "
                        "overlapping Mapping on the same listeners is ordered differently "
                        "by Gateway API; rules are listed in Emissary's order",
                    )

    def _redirect_routes(self, hosts: list[HostIR]) -> list[Route]:
        out = []
        for h in hosts:
            if h.tls and h.action == "Redirect":
                key = ListenerKey(
                    self.options.gateway_class,
                    h.src.namespace,
                    h.gw_host or "",
                    "HTTP",
                    self.http_port,
                )
                out.append(
                    Route(
                        "HTTPRoute",
                        h.src.namespace,
                        (h.gw_host,) if h.gw_host else (),
                        (key,),
                        [],
                        0,
                        redirect_host=h,
                    )
                )
        return out

    def _needs_of(self, route: Route) -> list[ListenerNeed]:
        needs = []
        sources = [m.src.ref for g in route.groups for m in g.members]
        if route.redirect_host is not None:
            sources = [route.redirect_host.src.ref]
        for key in route.keys:
            certs: list[SecretRef] = []
            if key.protocol == "HTTPS":
                certs = self.certs_by_host.get(key.hostname, [])
            needs.append(
                need(
                    key.cls,
                    key.route_namespace,
                    key.hostname or None,
                    key.protocol,
                    port=key.port,
                    certificates=certs,
                    sources=sources,
                )
            )
        return needs

    def _name(self, routes: list[Route]) -> None:
        wanted: dict[str, dict[Any, str]] = defaultdict(dict)
        for i, r in enumerate(routes):
            if r.redirect_host is not None:
                base = f"{r.redirect_host.src.name}-redirect-to-https"
            elif r.hostnames:
                base = r.hostnames[0] if len(r.hostnames) == 1 else f"{r.hostnames[0]}-and-more"
            else:
                base = "all-hosts"
            if r.kind == "GRPCRoute":
                base += "-grpc"
            if r.part:
                base += f"-{r.part + 1}"
            if r.copy:
                base += f"-parents-{r.copy + 1}"
            wanted[f"{r.kind}/{r.namespace}"][i] = base
        for bucket in wanted.values():
            for index, name in naming.allocate(bucket).items():
                routes[int(str(index))].name = name
        for r in routes:
            rules = naming.allocate({j: g.lead.src.name for j, g in enumerate(r.groups)})
            for j, g in enumerate(r.groups):
                g.rule_names = [rules[j]]
        # Policy base names: unique per namespace over every rule.
        self.policy_names: dict[tuple[str, str, str], str] = {}
        per_ns: dict[str, dict[Any, str]] = defaultdict(dict)
        for r in routes:
            for g in r.groups:
                per_ns[r.namespace][(f"{r.kind}/{r.name}", g.rule_names[0])] = (
                    f"{r.name}-{g.rule_names[0]}"
                )
        for ns, bucket in per_ns.items():
            for key, name in naming.allocate(bucket).items():
                pair: tuple[str, str] = key  # type: ignore[assignment]
                self.policy_names[(ns, pair[0], pair[1])] = name

    def _note_copies(self, routes: list[Route]) -> None:
        """Tell each Mapping of a route split for its parentRefs which routes carry it."""
        names: dict[int, list[str]] = defaultdict(list)  # copies share their groups list
        for r in routes:
            if r.copies > 1:
                names[id(r.groups)].append(r.name)
        for r in routes:
            if r.copies <= 1 or r.copy:
                continue
            copies = names[id(r.groups)]
            for g in r.groups:
                for m in g.members:
                    m.src.note(
                        "prefix",
                        "converted",
                        f"its {r.kind} attaches to more listeners than Gateway API's "
                        f"{MAX_PARENTS} parentRefs per route: the same rules are written to "
                        f"{len(copies)} {r.kind}s ({', '.join(copies)}), each with its own "
                        "policies",
                    )

    # ------------------------------------------------------------------ rendering

    def _render(self, route: Route, parents: dict[ListenerKey, dict[str, Any]]) -> None:
        parent_refs = []
        for key in route.keys:
            p = parents[key]
            if p not in parent_refs:
                parent_refs.append(p)
        spec: dict[str, Any] = {"parentRefs": parent_refs}
        if route.hostnames:
            spec["hostnames"] = list(route.hostnames)
        rules: list[dict[str, Any]] = []
        sources: list[ObjectRef] = []
        if route.redirect_host is not None:
            h = route.redirect_host
            rules.append(
                {
                    "name": "redirect-to-https",
                    "filters": [
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {"scheme": "https", "statusCode": 301},
                        }
                    ],
                }
            )
            sources.append(h.src.ref)
            if self.auth is not None and self.eg:
                self.auth.bypass.append(
                    (route.namespace, route.ref, "redirect-to-https", h.src.ref)
                )
        for g in route.groups:
            rules.extend(self._rule(route, g))
            sources.extend(m.src.ref for m in g.members)
        spec["rules"] = rules
        obj: KubeObject = {
            "apiVersion": GATEWAY_API_VERSION,
            "kind": route.kind,
            "metadata": {"name": route.name, "namespace": route.namespace},
            "spec": spec,
        }
        self.out.append(stamp(obj, sources))

    def _rule(self, route: Route, g: Group) -> list[dict[str, Any]]:
        base = self.policy_names[(route.namespace, f"{route.kind}/{route.name}", g.rule_names[0])]
        refs = Refs(
            route.ref,
            ObjectRef(EG_API_VERSION, "BackendTrafficPolicy", route.namespace, base),
            ObjectRef(EG_API_VERSION, "HTTPRouteFilter", route.namespace, base),
            ObjectRef(
                EG_API_VERSION,
                "SecurityPolicy",
                route.namespace,
                naming.allocate_one(route.name, "no-ext-auth"),
            ),
        )
        lead = g.lead
        ctx = FieldContext(
            self.eg,
            route.kind == "GRPCRoute",
            self.module,
            self.config,
            self.auth is not None,
            self.config_uses,
        )
        parts = RuleParts()
        fields.apply_primary(lead.src, parts, ctx, refs, redirect=g.redirect is not None)
        for m in g.members:
            m.src.outputs.append(route.ref)
            if m is lead:
                continue
            for key in groups.PER_MAPPING_KEYS:
                if key in m.src.spec or key in lead.src.spec:
                    mine, theirs = (
                        _effective(m.src.spec, key, ctx),
                        _effective(lead.src.spec, key, ctx),
                    )
                    if mine == theirs:
                        if key in m.src.spec:
                            m.src.note(
                                key,
                                "converted",
                                f"the same as {lead.src.label}, whose value the rule uses",
                            )
                    elif key in m.src.spec:
                        m.src.note(
                            key,
                            "partial",
                            f"differs from {lead.src.label} in the same "
                            "canary group: a rule has one value, the rule uses "
                            f"{lead.src.label}'s",
                        )
                    else:
                        # Not set here, so Emissary applied its default to this Mapping's
                        # share of the traffic; the rule carries the lead's value instead.
                        m.src.note(
                            key,
                            "partial",
                            f"not set (Emissary's default {mine!r} applied to this Mapping's "
                            f"share), but {lead.src.label} in the same canary group sets "
                            f"{theirs!r}: a rule has one value, the rule uses "
                            f"{lead.src.label}'s",
                        )
            for key in ("add_request_headers", "add_response_headers"):
                if isinstance(m.src.spec.get(key), dict):
                    fields.headers_add(m.src, key, parts, key.startswith("add_request"), ctx, refs)
            for key in groups.GROUP_KEYS:
                if key in m.src.spec and not m.src.claimed(key):
                    m.src.note(key, "converted", f"the same as {lead.src.label} (group key)")
            for key in m.src.spec:
                if (
                    not m.src.claimed(key)
                    and key in lead.src.notes
                    and key not in ("service", "weight", "shadow", "ambassador_id")
                ):
                    m.src.note(
                        key,
                        lead.src.notes[lead.src.key(key)].status
                        if lead.src.key(key) in lead.src.notes
                        else "converted",
                        "as for the group's rule",
                    )
        if g.kind == "GRPCRoute":
            matches = self._grpc_matches(g)
        else:
            matches = []
            for method in lead.methods or [""]:
                match: dict[str, Any] = {"path": dict(lead.plan.match)}
                if method:
                    match["method"] = method
                if lead.headers:
                    match["headers"] = lead.headers
                if lead.query:
                    match["queryParams"] = lead.query
                matches.append(match)
        rule: dict[str, Any] = {"name": g.rule_names[0], "matches": matches}
        filters: list[dict[str, Any]] = []
        if g.redirect is not None:
            filters.append(self._redirect_filter(g.redirect, lead.plan))
            if self.auth is not None and self.eg:
                self.auth.bypass.append(
                    (route.namespace, route.ref, g.rule_names[0], g.redirect.src.ref)
                )
        else:
            self._path_filters(lead, parts, filters, refs, route)
            self._header_filters(parts, filters)
            if parts.cors:
                filters.append({"type": "CORS", "cors": parts.cors})
            if g.shadow is not None:
                filters.append(self._mirror(route, g.shadow))
            backend_refs = []
            for m in g.normals:
                ref = self._backend_ref(route, m)
                if ref is None:
                    continue
                if len(g.normals) > 1:
                    ref["weight"] = m.share
                backend_refs.append(ref)
            rule["backendRefs"] = backend_refs
            if parts.timeout is not None and route.kind == "HTTPRoute":
                rule["timeouts"] = {"request": parts.timeout}
        if filters:
            rule["filters"] = filters
        for m in g.normals:
            if m.grpc:
                m.src.note(
                    "grpc",
                    "converted" if g.kind == "GRPCRoute" else "partial",
                    "GRPCRoute (the prefix names a gRPC service/method and is not rewritten)"
                    if g.kind == "GRPCRoute"
                    else "HTTPRoute: the prefix or rewrite is not a plain gRPC service path; "
                    "the upstream speaks HTTP/2 cleartext: give the Service port "
                    "appProtocol: kubernetes.io/h2c",
                )
            elif "grpc" in m.src.spec:
                m.src.note("grpc", "converted", "false: HTTP/1.1 upstream")
        out_rules = [rule]
        prefix_rewrite = any(
            f.get("type") in ("URLRewrite", "RequestRedirect")
            and (
                (f.get("urlRewrite") or f.get("requestRedirect") or {}).get("path", {}).get("type")
                == "ReplacePrefixMatch"
            )
            for f in filters
        )
        if prefix_rewrite and len(matches) > 1:
            out_rules = []
            for i, match in enumerate(matches):
                copy_rule = dict(rule)
                copy_rule["matches"] = [match]
                copy_rule["name"] = f"{g.rule_names[0][:58]}-m{i + 1}"
                out_rules.append(copy_rule)
        names = [r["name"] for r in out_rules]
        target = {"group": GATEWAY_GROUP, "kind": route.kind, "name": route.name}
        sources = [m.src.ref for m in g.members]
        if parts.btp and self.eg:
            spec: dict[str, Any] = {"targetRefs": [dict(target, sectionName=n) for n in names]}
            if self.options.gateway is None:
                spec["mergeType"] = "StrategicMerge"
            spec.update(parts.btp)
            self.out.append(
                stamp(
                    {
                        "apiVersion": EG_API_VERSION,
                        "kind": "BackendTrafficPolicy",
                        "metadata": {"name": refs.btp.name, "namespace": route.namespace},
                        "spec": spec,
                    },
                    sources,
                )
            )
            for m in g.members:
                m.src.outputs.append(refs.btp)
        if parts.bypass_auth and self.auth is not None:
            for n in names:
                self.auth.bypass.append((route.namespace, route.ref, n, lead.src.ref))
        return out_rules

    @property
    def config_uses(self) -> dict[str, int]:
        if not hasattr(self, "_uses"):
            self._uses: dict[str, int] = {}
        return self._uses

    def _grpc_matches(self, g: Group) -> list[dict[str, Any]]:
        lead = g.lead
        found = _GRPC_PATH.match(lead.literal)
        assert found is not None
        method: dict[str, Any] = {"type": "Exact", "service": found.group(1)}
        if found.group(2):
            method["method"] = found.group(2)
        match: dict[str, Any] = {"method": method}
        if lead.headers:
            match["headers"] = lead.headers
        lead.src.note(
            "prefix",
            "converted",
            f"GRPCRoute method match service "
            f"{found.group(1)}" + (f" method {found.group(2)}" if found.group(2) else ""),
        )
        if "rewrite" in lead.src.spec:
            lead.src.note("rewrite", "converted", "the path is sent unchanged (gRPC)")
        return [match]

    def _path_filters(
        self,
        m: MappingIR,
        parts: RuleParts,
        filters: list[dict[str, Any]],
        refs: Refs,
        route: Route,
    ) -> None:
        spec = m.src.spec
        plan_ = m.plan
        key = "regex_rewrite" if "regex_rewrite" in spec else "rewrite"
        if route.kind == "GRPCRoute":
            return
        rewrite: dict[str, Any] = {}
        if plan_.rewrite:
            rewrite["path"] = plan_.rewrite
        if parts.host_rewrite:
            rewrite["hostname"] = parts.host_rewrite
        if rewrite:
            filters.append({"type": "URLRewrite", "urlRewrite": rewrite})
        hrf = dict(parts.hrf)
        if plan_.regex_rewrite:
            hrf["path"] = {"type": "ReplaceRegexMatch", "replaceRegexMatch": plan_.regex_rewrite}
        if hrf and self.eg:
            filters.append(
                {
                    "type": "ExtensionRef",
                    "extensionRef": {
                        "group": ENVOY_GATEWAY_GROUP,
                        "kind": "HTTPRouteFilter",
                        "name": refs.hrf.name,
                    },
                }
            )
            self.out.append(
                stamp(
                    {
                        "apiVersion": EG_API_VERSION,
                        "kind": "HTTPRouteFilter",
                        "metadata": {"name": refs.hrf.name, "namespace": route.namespace},
                        "spec": {"urlRewrite": hrf},
                    },
                    [m.src.ref],
                )
            )
            m.src.outputs.append(refs.hrf)
        outputs = [refs.hrf] if plan_.regex_rewrite else [refs.route]
        if key in spec or plan_.rewrite or plan_.regex_rewrite:
            how = plan_.rewrite_how
            if key not in spec:
                how = 'not set: Emissary\'s default rewrite "/" replaces the matched prefix; ' + how
            m.src.note(key, plan_.rewrite_status, how, outputs)  # type: ignore[arg-type]
        if "regex_rewrite" in spec and "rewrite" in spec:
            m.src.note("rewrite", "ignored", "regex_rewrite wins over rewrite", [])

    def _header_filters(self, parts: RuleParts, filters: list[dict[str, Any]]) -> None:
        for kind, key, add, set_, remove in (
            (
                "RequestHeaderModifier",
                "requestHeaderModifier",
                parts.req_add,
                parts.req_set,
                parts.req_remove,
            ),
            (
                "ResponseHeaderModifier",
                "responseHeaderModifier",
                parts.resp_add,
                parts.resp_set,
                parts.resp_remove,
            ),
        ):
            body: dict[str, Any] = {}
            if add:
                body["add"] = [{"name": k, "value": v} for k, v in sorted(add.items())]
            if set_:
                body["set"] = [{"name": k, "value": v} for k, v in sorted(set_.items())]
            if remove:
                body["remove"] = sorted(remove)
            if body:
                filters.append({"type": kind, key: body})

    def _redirect_filter(self, m: MappingIR, plan_: PathPlan) -> dict[str, Any]:
        spec = m.src.spec
        target = m.target
        assert target is not None
        host = (
            target.name
            if target.kind != "service"
            else (
                target.name
                if "." in target.text.split("://")[-1]
                else f"{target.name}.{target.namespace}"
            )
        )
        redirect: dict[str, Any] = {}
        if target.scheme:
            redirect["scheme"] = target.scheme
        redirect["hostname"] = host
        if target.explicit_port:
            redirect["port"] = target.port
        m.src.note("host_redirect", "converted", f"RequestRedirect to {host} (no proxying)")
        m.src.note("service", "converted", f"the redirect hostname {host}")
        if isinstance(spec.get("path_redirect"), str):
            redirect["path"] = {"type": "ReplaceFullPath", "replaceFullPath": spec["path_redirect"]}
            m.src.note("path_redirect", "converted", "RequestRedirect path ReplaceFullPath")
            for k in ("prefix_redirect", "regex_redirect"):
                if k in spec:
                    m.src.note(k, "ignored", "path_redirect wins", [])
        elif isinstance(spec.get("prefix_redirect"), str):
            if plan_.match["type"] == "PathPrefix":
                redirect["path"] = {
                    "type": "ReplacePrefixMatch",
                    "replacePrefixMatch": spec["prefix_redirect"],
                }
                m.src.note(
                    "prefix_redirect",
                    "converted",
                    "RequestRedirect path ReplacePrefixMatch (segment-based)",
                )
            else:
                m.src.note(
                    "prefix_redirect",
                    "unsupported",
                    "Gateway API replaces a prefix only after a PathPrefix match, and this "
                    "Mapping's prefix needs a regex match; the path is kept",
                    [],
                )
            if "regex_redirect" in spec:
                m.src.note("regex_redirect", "ignored", "prefix_redirect wins", [])
        elif "regex_redirect" in spec:
            m.src.note(
                "regex_redirect",
                "unsupported",
                "Gateway API and Envoy Gateway have no "
                "regex redirect (an EnvoyPatchPolicy could); the path is kept",
                [],
            )
        code = spec.get("redirect_response_code", 301)
        if code not in (301, 302, 303, 307, 308):
            m.src.note("redirect_response_code", "error", f"{code} is not a redirect code", [])
            code = 301
        redirect["statusCode"] = code
        m.src.note(
            "redirect_response_code",
            "converted",
            f"statusCode {code}"
            if "redirect_response_code" in spec
            else "not set: Emissary's 301 written explicitly (Gateway API's default is 302)",
        )
        if "rewrite" in spec:
            m.src.note("rewrite", "ignored", "a redirect does not proxy", [])
        return {"type": "RequestRedirect", "requestRedirect": redirect}

    def _backend_ref(self, route: Route, m: MappingIR) -> dict[str, Any] | None:
        t = m.target
        assert t is not None
        src = m.src
        if t.kind == "external":
            if not self.eg:
                src.error(
                    "service",
                    f"{t.text}: an external host needs Envoy Gateway's Backend; "
                    "--target standard cannot route to it",
                )
                return None
            key = (route.namespace, t.name, t.port)
            self.backends.setdefault(key, []).append(src)
            name = naming.allocate_one(t.name, str(t.port))
            backend = ObjectRef(EG_API_VERSION, "Backend", route.namespace, name)
            src.outputs.append(backend)
            src.note(
                "service",
                "partial",
                f"{t.text} is not a Service of a known namespace: an "
                f"Envoy Gateway Backend (fqdn {t.name}:{t.port}); needs "
                "EnvoyGateway extensionApis.enableBackend",
                [route.ref, backend],
            )
            if t.tls:
                src.note(
                    "tls" if "tls" in src.spec else "service",
                    "partial",
                    "TLS to an external Backend: add tls settings to the Backend",
                    [],
                )
            return {"group": ENVOY_GATEWAY_GROUP, "kind": "Backend", "name": name, "port": t.port}
        ref: dict[str, Any] = {"name": t.name}
        outputs = [route.ref]
        if t.namespace != route.namespace:
            ref["namespace"] = t.namespace
            grant = GrantNeed(
                GATEWAY_GROUP, route.kind, route.namespace, "", "Service", t.namespace, t.name
            )
            self.grants.add(grant, [src.ref])
            grant_ref = self.grants.ref_for(grant)
            if grant_ref:
                outputs.append(grant_ref)
                src.outputs.append(grant_ref)
        ref["port"] = t.port
        default = "" if t.explicit_port else f" (default port {t.port})"
        src.note(
            "service",
            "converted",
            f"backendRef Service {t.namespace}/{t.name} port "
            f"{t.port}{default}" + (" with a ReferenceGrant" if len(outputs) > 1 else ""),
            outputs,
        )
        if t.tls:
            self._origination(m, t)
        elif "tls" in src.spec:
            src.note("tls", "converted", "no TLS origination")
        return ref

    def _origination(self, m: MappingIR, t: Target) -> None:
        src = m.src
        key = (t.namespace, t.name)
        name = naming.allocate_one(t.name, "tls")
        ref = ObjectRef(BTLS_API_VERSION, "BackendTLSPolicy", t.namespace, name)
        ctx_name = src.spec.get("tls")
        validation: dict[str, Any] = {"hostname": f"{t.name}.{t.namespace}.svc"}
        status = "partial"
        message = (
            "Emissary originated TLS without verifying the server; BackendTLSPolicy "
            "requires verification: system CAs against the Service's DNS name"
        )
        if isinstance(ctx_name, str):
            contexts = [
                s
                for s in self.sources
                if s.kind == "TLSContext" and s.name == ctx_name and s.namespace == src.namespace
            ]
            if not contexts:
                src.note(
                    "tls",
                    "error",
                    f"TLSContext {src.namespace}/{ctx_name} is not in the sources",
                    [],
                )
            else:
                c = parse_tlscontext(contexts[0])
                if c.sni:
                    validation["hostname"] = c.sni
                if "ca_secret" in c.options:
                    ca = str(c.options["ca_secret"])
                    validation["caCertificateRefs"] = [
                        {"group": "", "kind": "Secret", "name": ca.split(".")[0]}
                    ]
                    status, message = "converted", "BackendTLSPolicy verifying with ca_secret"
                if c.secret is not None:
                    status = "partial"
                    message += (
                        "; the client certificate (secret) needs Envoy Gateway's "
                        "EnvoyProxy backendTLS.clientCertificateRef"
                    )
        if "caCertificateRefs" not in validation:
            validation["wellKnownCACertificates"] = "System"
        spec = {
            "targetRefs": [{"group": "", "kind": "Service", "name": t.name}],
            "validation": validation,
        }
        found = self.backend_tls.get(key)
        if found is not None and found[0] != spec:
            src.note(
                "tls" if "tls" in src.spec else "service",
                "partial",
                f"another Mapping originates TLS to {t.namespace}/{t.name} differently; "
                "the first one's BackendTLSPolicy is kept",
                [ref],
            )
            found[1].append(src)
        else:
            if found is None:
                self.backend_tls[key] = (spec, [src])
            else:
                found[1].append(src)
            src.note(
                "tls" if "tls" in src.spec else "service",
                status,  # type: ignore[arg-type]
                message,
                [ref],
            )
        src.outputs.append(ref)

    def _mirror(self, route: Route, shadow: MappingIR) -> dict[str, Any]:
        ref = self._backend_ref(route, shadow) or {}
        ref.pop("weight", None)
        mirror: dict[str, Any] = {"backendRef": ref}
        weight = shadow.weight if shadow.weight is not None else 100
        if weight != 100:
            mirror["percent"] = weight
        shadow.src.note(
            "shadow",
            "partial",
            f"RequestMirror of {weight}% of the group's traffic; "
            "Emissary appended -shadow to the mirrored Host header, Envoy Gateway "
            "does not",
            [route.ref],
        )
        if "weight" in shadow.src.spec:
            shadow.src.note("weight", "converted", "the mirrored percentage")
        return {"type": "RequestMirror", "requestMirror": mirror}

    def _render_backend_tls(self) -> None:
        for (ns, name), (spec, srcs) in sorted(self.backend_tls.items()):
            obj: KubeObject = {
                "apiVersion": BTLS_API_VERSION,
                "kind": "BackendTLSPolicy",
                "metadata": {"name": naming.allocate_one(name, "tls"), "namespace": ns},
                "spec": spec,
            }
            self.out.append(stamp(obj, [s.ref for s in srcs]))

    def _render_backends(self) -> None:
        for (ns, host, port), srcs in sorted(self.backends.items()):
            endpoint: dict[str, Any]
            try:
                import ipaddress

                ipaddress.ip_address(host)
                endpoint = {"ip": {"address": host, "port": port}}
            except ValueError:
                endpoint = {"fqdn": {"hostname": host, "port": port}}
            obj: KubeObject = {
                "apiVersion": EG_API_VERSION,
                "kind": "Backend",
                "metadata": {"name": naming.allocate_one(host, str(port)), "namespace": ns},
                "spec": {"endpoints": [endpoint]},
            }
            self.out.append(stamp(obj, [s.ref for s in srcs]))


def _split_parents(route: Route, parents: dict[ListenerKey, dict[str, Any]]) -> list[Route]:
    """``route`` as routes of at most :data:`MAX_PARENTS` distinct parentRefs each, in the
    order of its keys; every copy carries the same groups (so the same rules and policies)."""
    chunks: list[list[ListenerKey]] = [[]]
    seen: list[dict[str, Any]] = []
    for key in route.keys:
        parent = parents.get(key)
        if parent is not None and parent not in seen:
            if len(seen) == MAX_PARENTS * len(chunks):
                chunks.append([])
            seen.append(parent)
        if parent is None:
            chunks[0].append(key)
        else:
            chunks[seen.index(parent) // MAX_PARENTS].append(key)
    if len(chunks) == 1:
        return [route]
    return [
        replace(route, keys=tuple(keys), copy=i, copies=len(chunks))
        for i, keys in enumerate(chunks)
    ]


def _emissary_key(g: Group) -> tuple[int, ...]:
    m = g.lead
    return groups.emissary_rank(m.precedence, m.literal, m.header_len, m.query_len)


def _emissary_order(g: Group) -> tuple[Any, ...]:
    key = _emissary_key(g)
    return (
        tuple(-k for k in key),
        g.lead.literal,
        tuple(g.lead.methods),
        g.lead.src.namespace,
        g.lead.src.name,
    )


def _first_match(g: Group) -> dict[str, Any]:
    m = g.lead
    match: dict[str, Any] = {"path": m.plan.match}
    if m.methods:
        match["method"] = m.methods[0]
    if m.headers:
        match["headers"] = m.headers
    if m.query:
        match["queryParams"] = m.query
    return match


def _hosts_overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    if not a or not b:
        return True
    from converters.emissary.matching import glob_compatible

    return any(glob_compatible(x, y) for x in a for y in b)


def _effective(spec: dict[str, Any], key: str, ctx: FieldContext) -> Any:
    """A per-Mapping key's value as Emissary applies it (its default when unset)."""
    if key == "rewrite":
        return spec.get("rewrite", "/")
    if key == "timeout_ms":
        if "timeout_ms" in spec:
            return millis(spec["timeout_ms"])
        default = millis(ctx.default("cluster_request_timeout_ms"))
        return default if default is not None else fields.DEFAULT_TIMEOUT_MS
    return spec.get(key)
