"""ingress-nginx Ingresses → Gateway API: the orchestration.

1. select the Ingresses of ingress-nginx's classes (``select``);
2. run every annotation family over each Ingress (each claims its keys in the report);
3. collect every path (named ports resolved), decide each host's regex mode, turn paths into
   matches, drop duplicates (the oldest Ingress wins, as in ingress-nginx) and merge canaries;
4. build one HTTPRoute (or GRPCRoute) per namespace and host, split every 16 rules, plus the
   plain-HTTP route that redirects TLS hosts to https;
5. plan Gateways and listeners (``converters.layout``), attach the routes, render the policies;
6. report every path, TLS entry and annotation of every Ingress.
"""

from __future__ import annotations

import copy
import gc
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from converters import naming
from converters.api import MigrateOptions
from converters.ingress_nginx import (
    affinity,
    auth,
    canary,
    cors,
    headers,
    mirror,
    protocol,
    ratelimit,
    redirect,
    rewrite,
    server,
    traffic,
)
from converters.ingress_nginx.annotations import Annotations
from converters.ingress_nginx.backends import Backend, BackendError, Services
from converters.ingress_nginx.ir import EG_API_VERSION, Context, Ingress, PathItem
from converters.ingress_nginx.paths import (
    PathMatch,
    RegexError,
    needs_slash_redirect,
    plain_match,
    regex_mode_match,
    slash_redirect_match,
)
from converters.ingress_nginx.select import CLASS_ANNOTATION, select
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
from converters.report import Conversion, Report, Status
from kubectl_gw.model import ENVOY_GATEWAY_GROUP, GATEWAY_GROUP, KubeObject, ObjectRef

RULE_SOURCES_ANNOTATION = "kubectl-gw.io/rule-sources"
MAX_RULES = 16
MAX_HOSTNAMES = 16  # per route
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GRPC_SERVICE = re.compile(r"^\.?[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$")
_GRPC_METHOD = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")

FAMILIES: tuple[Callable[[Context, Ingress], None], ...] = (
    rewrite.apply,
    redirect.apply,
    cors.apply,
    auth.apply,
    ratelimit.apply,
    affinity.apply,
    headers.apply,
    mirror.apply,
    traffic.apply,
    protocol.apply,
)


def convert(objects: Sequence[KubeObject], options: MigrateOptions) -> Conversion:
    with _gc_paused():
        return _Run(objects, options).run()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while converting. A conversion keeps almost
    everything it allocates until it returns, so each full collection walks the whole heap
    (the sources included) and frees nothing: half the time of 10,000 Ingresses. Reference
    counting still frees the temporaries; the collector resumes afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------- route IR


@dataclass
class Rule:
    want: str  # the readable rule name wanted
    source: str  # "Ingress ns/name <key>"
    ing: Ingress
    item: PathItem | None
    body: dict[str, Any]  # matches, filters, backendRefs, timeouts
    has_backends: bool
    name: str = ""
    extra: list[PathItem] = field(default_factory=list)  # more items this rule stands for


@dataclass
class RouteGroup:
    kind: str  # HTTPRoute | GRPCRoute
    namespace: str
    cls: str
    host: str
    listener: str  # HTTP | HTTPS: what the main route attaches to
    blocks: list[list[Rule]] = field(default_factory=list)
    hostnames: list[str] = field(default_factory=list)
    tls: SecretRef | None = None
    suffix: str = ""  # "" for the main route, "http" for the plain-HTTP redirect route


@dataclass
class RouteOut:
    group: RouteGroup
    part: int
    rules: list[Rule]
    needs: list[ListenerNeed]
    name: str = ""

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(GATEWAY_API_VERSION, self.group.kind, self.group.namespace, self.name)


# --------------------------------------------------------------------------- the run


class _Run:
    def __init__(self, objects: Sequence[KubeObject], options: MigrateOptions) -> None:
        self.options = options
        self.objects = objects
        self.report = Report()
        services: dict[tuple[str, str], KubeObject] = {}
        secrets: dict[tuple[str, str], KubeObject] = {}
        configmaps: dict[tuple[str, str], KubeObject] = {}
        for obj in objects:
            meta = obj.get("metadata") or {}
            key = (meta.get("namespace", "") or "default", meta.get("name", ""))
            if obj.get("kind") == "Service":
                services[key] = obj
            elif obj.get("kind") == "Secret":
                secrets[key] = obj
            elif obj.get("kind") == "ConfigMap":
                configmaps[key] = obj
        config: dict[str, str] = {}
        if options.nginx_configmap is not None:
            config = dict(options.nginx_configmap.get("data") or {})
        self.ctx = Context(options, Services(services), secrets, configmaps, Grants(), config)
        self.ingresses: list[Ingress] = []
        self.out: list[KubeObject] = []
        self.tls: dict[tuple[str, str], tuple[SecretRef, Ingress]] = {}
        self.backend_tls: dict[tuple[str, str], tuple[dict[str, Any], set[ObjectRef]]] = {}
        self.external: dict[tuple[str, str, int], tuple[str, set[ObjectRef]]] = {}
        self.filters: list[KubeObject] = []

    # ------------------------------------------------------------------ steps

    def run(self) -> Conversion:
        for chosen in select(self.objects, self.options, self.report):
            self.ingresses.append(self._parse(chosen.obj, chosen.cls, chosen.how, chosen.message))
        items = self._collect()
        primaries = self._resolve(items)
        self._plan_tls()
        groups = self._groups(primaries)
        routes = self._routes(groups)
        routes += self._www_redirects(groups)
        passthrough = self._passthrough()
        needs = [n for r in routes for n in r.needs] + [n for _o, ns, _i in passthrough for n in ns]
        layout = plan(
            needs,
            LayoutOptions(
                self.options.gateway_class,
                self.options.gateway_namespace,
                self.options.gateway,
                self.options.gateway_per_namespace,
            ),
            self.ctx.grants,
        )
        self.out.extend(layout.objects)
        _name_routes(routes)
        for route in routes:
            self.out.append(self._render_route(route, layout.parents))
        for obj, route_needs, ing in passthrough:
            parents = _unique([layout.parent(n.key) for n in route_needs])
            obj["spec"]["parentRefs"] = parents
            self.out.append(stamp(obj, [ing.ref]))
        self._policies()
        self.out.extend(self.ctx.grants.render())
        emitted = {ObjectRef.of(o) for o in self.out}
        self._finish(emitted, layout.outputs, layout.notes)
        return Conversion(objects=self.out, report=self.report)

    def _parse(self, obj: KubeObject, cls: str, how: str, message: str) -> Ingress:
        ref = ObjectRef.of(obj)
        if not ref.namespace:
            ref = ObjectRef(ref.api_version, ref.kind, "default", ref.name)
        meta = obj.get("metadata") or {}
        ann = Annotations.of(meta.get("annotations"), self.options.annotation_prefix)
        ing = Ingress(obj, ref, cls, str(meta.get("creationTimestamp") or ""), ann)
        self.report.add(ref, how, "converted", message)
        if how != CLASS_ANNOTATION and CLASS_ANNOTATION in ann.other:
            self.report.add(
                ref,
                CLASS_ANNOTATION,
                "ignored",
                "deprecated annotation; spec.ingressClassName takes precedence",
            )
        canary.apply(self.ctx, ing)
        if ing.canary:
            canary.ignore_rest(ing)
            return ing
        server.apply(self.ctx, ing)
        if ing.settings.passthrough:
            for key in ann.values:
                ann.claim(key, "ignored", "ingress-nginx ignores it on an ssl-passthrough Ingress")
            return ing
        for family in FAMILIES:
            family(self.ctx, ing)
        return ing

    def _collect(self) -> list[PathItem]:
        items: list[PathItem] = []
        for ing in self.ingresses:
            if ing.settings.passthrough:
                continue
            spec = ing.obj.get("spec") or {}
            rules = spec.get("rules") or []
            hosts: list[str] = []
            for i, rule in enumerate(rules):
                host = str((rule or {}).get("host") or "").lower()
                paths = (((rule or {}).get("http") or {}).get("paths")) or []
                if host and not _HOST.match(host):
                    for j in range(len(paths)):
                        self._path_error(
                            ing,
                            f"spec.rules[{i}].http.paths[{j}]",
                            f"host {host!r} is not a valid hostname",
                        )
                    if not paths:
                        self.report.add(
                            ing.ref,
                            f"spec.rules[{i}]",
                            "error",
                            f"host {host!r} is not a valid hostname",
                        )
                    continue
                if not paths:
                    self.report.add(
                        ing.ref,
                        f"spec.rules[{i}]",
                        "ignored",
                        "no http paths"
                        + ("; the default backend serves it" if spec.get("defaultBackend") else ""),
                    )
                    if spec.get("defaultBackend"):
                        hosts.append(host)
                    continue
                hosts.append(host)
                for j, path in enumerate(paths):
                    key = f"spec.rules[{i}].http.paths[{j}]"
                    item = self._item(ing, key, host, path or {})
                    if item is not None:
                        items.append(item)
                        ing.items.append(item)
            default = spec.get("defaultBackend")
            if default is not None:
                try:
                    backend = self.ctx.services.resolve(ing.namespace, default)
                except BackendError as err:
                    self._path_error(ing, "spec.defaultBackend", str(err))
                    continue
                for host in sorted(set(hosts)) if rules else [""]:
                    item = PathItem(ing, "spec.defaultBackend", host, "/", "Prefix", backend)
                    items.append(item)
                    ing.items.append(item)
        return items

    def _item(self, ing: Ingress, key: str, host: str, path: dict[str, Any]) -> PathItem | None:
        path_type = str(path.get("pathType") or "")
        value = str(path.get("path") or "")
        if path_type not in ("Exact", "Prefix", "ImplementationSpecific"):
            self._path_error(ing, key, f"pathType {path_type or '(missing)'} is not valid")
            return None
        if not value:
            if path_type != "ImplementationSpecific":
                self._path_error(ing, key, "path is empty")
                return None
            value = "/"
        if not value.startswith("/"):
            self._path_error(ing, key, f"path {value!r} does not start with /")
            return None
        try:
            backend = self.ctx.services.resolve(ing.namespace, path.get("backend"))
        except BackendError as err:
            self._path_error(ing, key, str(err))
            return None
        return PathItem(ing, key, host, value, path_type, backend)

    def _path_error(self, ing: Ingress, key: str, message: str, status: Status = "error") -> None:
        self.report.add(ing.ref, key, status, message)

    # ------------------------------------------------------------------ semantics

    def _resolve(self, items: list[PathItem]) -> list[PathItem]:
        """Regex mode per host, matches, duplicates (oldest wins) and canaries."""
        regex_hosts: dict[tuple[str, str], str] = {}
        for ing in sorted(self.ingresses, key=Ingress.order):
            s = ing.settings
            if ing.canary or not (s.use_regex or s.rewrite_target):
                continue
            for item in ing.items:  # its items, in the order _collect made them
                regex_hosts.setdefault((ing.cls, item.host), ing.name)
        valid: list[PathItem] = []
        for item in items:
            ing = item.ing
            owner = regex_hosts.get((ing.cls, item.host))
            item.regex_mode = owner is not None
            item.grpc = ing.settings.protocol in ("GRPC", "GRPCS") and not ing.canary
            try:
                if item.key == "spec.defaultBackend":
                    item.match = PathMatch("PathPrefix", "/")
                    if item.regex_mode:
                        item.match = regex_mode_match("/")
                elif item.regex_mode and not item.grpc:
                    item.match = regex_mode_match(item.path)
                    item.notes.append(
                        f"host {item.host or '(any)'} is in regex mode (Ingress {owner}): "
                        f"{item.path_type} {item.path} → {item.match.type} {item.match.value}"
                    )
                else:
                    item.match = plain_match(item.path, item.path_type)
                    item.notes.append(
                        f"{item.path_type} {item.path} → {item.match.type} {item.match.value}"
                    )
            except RegexError as err:
                self._path_error(ing, item.key, f"path {item.path!r}: {err}")
                continue
            valid.append(item)
        # duplicates: non-fallback first, then the oldest Ingress
        winners: dict[tuple[str, str, tuple[str, str], bool], PathItem] = {}
        primaries: list[PathItem] = []
        fallback_last = sorted(
            (i for i in valid if not i.ing.canary),
            key=lambda i: (i.key == "spec.defaultBackend", i.order()),
        )
        for item in fallback_last:
            assert item.match is not None
            key = (item.ing.cls, item.host, item.match.key, item.grpc)
            first = winners.get(key)
            if first is None:
                winners[key] = item
                primaries.append(item)
                continue
            if item.key == "spec.defaultBackend":
                item.notes.append(
                    f"host {item.host or '(any)'}: / is already routed by "
                    f"{first.ing.ref} {first.key}"
                )
                continue
            self._path_error(
                item.ing,
                item.key,
                f"duplicate of {first.ing.ref} {first.key} (same host and path); ingress-nginx "
                "keeps the older Ingress's path, and so does this conversion",
            )
        for item in sorted((i for i in valid if i.ing.canary), key=PathItem.order):
            assert item.match is not None
            found = None
            for grpc in (False, True):
                found = found or winners.get((item.ing.cls, item.host, item.match.key, grpc))
            if found is None:
                self._path_error(
                    item.ing,
                    item.key,
                    f"canary without a primary: no non-canary Ingress routes host "
                    f"{item.host or '(any)'} path {item.path}",
                )
            elif found.canary is not None:
                self._path_error(
                    item.ing,
                    item.key,
                    f"{found.ing.ref} {found.key} already has canary {found.canary.ing.ref}; "
                    "ingress-nginx allows one canary per path",
                )
            else:
                found.canary = item
        return primaries

    def _plan_tls(self) -> None:
        """Each host's certificate: from the oldest Ingress that lists it in spec.tls."""
        for ing in sorted(self.ingresses, key=Ingress.order):
            if ing.canary or ing.settings.passthrough:
                continue
            spec = ing.obj.get("spec") or {}
            rule_hosts = sorted(
                {str((r or {}).get("host") or "").lower() for r in spec.get("rules") or []} - {""}
            )
            for k, entry in enumerate(spec.get("tls") or []):
                key = f"spec.tls[{k}]"
                secret = str((entry or {}).get("secretName") or "")
                hosts = [str(h).lower() for h in (entry or {}).get("hosts") or []] or rule_hosts
                if not secret:
                    self.report.add(
                        ing.ref,
                        key,
                        "unsupported",
                        "no secretName: ingress-nginx serves its default certificate",
                    )
                    continue
                if self.ctx.secrets and (ing.namespace, secret) not in self.ctx.secrets:
                    self.report.add(
                        ing.ref,
                        key,
                        "error",
                        f"Secret {ing.namespace}/{secret} not found; no HTTPS for "
                        f"{', '.join(hosts)}",
                    )
                    continue
                ref = SecretRef(ing.namespace, secret)
                for host in hosts:
                    self.tls.setdefault((ing.cls, host), (ref, ing))

    # ------------------------------------------------------------------ routes

    def _groups(self, primaries: list[PathItem]) -> dict[tuple[str, str, str, str], RouteGroup]:
        groups: dict[tuple[str, str, str, str], RouteGroup] = {}
        aliases = self._aliases(primaries)
        for item in sorted(primaries, key=PathItem.order):
            ing = item.ing
            kind = "GRPCRoute" if item.grpc else "HTTPRoute"
            key = (kind, ing.namespace, ing.cls, item.host)
            group = groups.get(key)
            if group is None:
                tls = self.tls.get((ing.cls, item.host))
                hostnames = [item.host] if item.host else []
                hostnames += aliases.get((ing.cls, item.host), [])
                group = groups[key] = RouteGroup(
                    kind,
                    ing.namespace,
                    ing.cls,
                    item.host,
                    "HTTPS" if tls else "HTTP",
                    hostnames=hostnames,
                    tls=tls[0] if tls else None,
                )
            group.blocks.append(self._rules(item, group))
        # app-root: one Exact / redirect per Ingress and host, first in the route
        for group in groups.values():
            seen: list[Ingress] = []
            for block in group.blocks:
                ing = block[0].ing
                if ing.settings.app_root and ing not in seen and group.kind == "HTTPRoute":
                    seen.append(ing)
            for ing in reversed(seen):
                body = {
                    "matches": [{"path": {"type": "Exact", "value": "/"}}],
                    "filters": [
                        _redirect_filter(
                            {
                                "path": {
                                    "type": "ReplaceFullPath",
                                    "replaceFullPath": ing.settings.app_root,
                                },
                                "statusCode": 302,
                            }
                        )
                    ],
                }
                group.blocks.insert(
                    0,
                    [
                        Rule(
                            f"{ing.name}-app-root",
                            f"{ing.ref} {ing.ann.full('app-root')}",
                            ing,
                            None,
                            body,
                            False,
                        )
                    ],
                )
        return groups

    def _aliases(self, primaries: list[PathItem]) -> dict[tuple[str, str], list[str]]:
        """server-alias as ingress-nginx applies it: the (class, host) → the aliases its routes
        and listeners get, and each Ingress's server-alias claim told what it lost.

        - A host takes its aliases from one Ingress: the oldest of the host that has any
          (later ones are skipped: "Aliases already configured for server").
        - An alias that is a real host is dropped.
        - An alias several hosts claim is served by one: nginx's server blocks are sorted by
          hostname and it ignores a server name an earlier block already has ("conflicting
          server name ... ignored"), so the first host by name keeps it, with its routes and
          its certificate. Every alias listener thus gets one host's one certificate.
        - A route has at most 16 hostnames: the host and its first 15 aliases.
        """
        real_hosts = {(i.ing.cls, i.host) for i in primaries}
        chosen: dict[tuple[str, str], Ingress] = {}
        for ing in sorted(self.ingresses, key=Ingress.order):
            if ing.canary or not ing.settings.aliases:
                continue
            for host in sorted({i.host for i in ing.items if i.host}):
                if (ing.cls, host) in real_hosts:
                    chosen.setdefault((ing.cls, host), ing)
        owner: dict[tuple[str, str], str] = {}
        for cls, host in sorted(chosen):
            for alias in chosen[(cls, host)].settings.aliases:
                if alias != host and (cls, alias) not in real_hosts:
                    owner.setdefault((cls, alias), host)
        served: dict[tuple[str, str], list[str]] = {}
        for (cls, host), ing in chosen.items():
            mine = [a for a in dict.fromkeys(ing.settings.aliases) if owner.get((cls, a)) == host]
            served[(cls, host)] = mine[: MAX_HOSTNAMES - 1]
        for ing in self.ingresses:
            claim = ing.ann.claims.get("server-alias")
            if ing.canary or not ing.settings.aliases or claim is None:
                continue
            kept = False
            lost: list[str] = []
            for host in sorted({i.host for i in ing.items if i.host}):
                first = chosen.get((ing.cls, host))
                if first is None:
                    continue
                for alias in dict.fromkeys(ing.settings.aliases):
                    if alias == host or (ing.cls, alias) in real_hosts:
                        continue  # nginx ignores an alias that is a real host
                    if alias in served[(ing.cls, host)]:
                        kept = True
                    elif first is not ing:
                        lost.append(
                            f"{alias} not served for {host}: the host takes its aliases from "
                            f"the older {first.ref} (ingress-nginx uses one Ingress's "
                            "server-alias per host)"
                        )
                    elif owner[(ing.cls, alias)] != host:
                        winner = owner[(ing.cls, alias)]
                        lost.append(
                            f"{alias} not served for {host}: it is already an alias of {winner} "
                            f"({chosen[(ing.cls, winner)].ref}), which comes first in nginx's "
                            "server order (by hostname); nginx ignores the conflicting server "
                            "name, and so does this conversion"
                        )
                    else:
                        lost.append(
                            f"{alias} not served for {host}: Gateway API allows "
                            f"{MAX_HOSTNAMES} hostnames per route (the host and "
                            f"{MAX_HOSTNAMES - 1} aliases)"
                        )
            if lost and claim.status == "converted":
                claim.status = "partial" if kept else "error"
                claim.message = "; ".join([claim.message, *lost]) if kept else "; ".join(lost)
                if not kept:
                    claim.outputs = []
        return served

    def _rules(self, item: PathItem, group: RouteGroup) -> list[Rule]:
        ing, s = item.ing, item.ing.settings
        assert item.match is not None
        base = _rule_want(ing, item.key)
        source = f"{ing.ref} {item.key}"
        if item.grpc:
            return self._grpc_rules(item, group, base, source)
        match: dict[str, Any] = {"path": item.match.to_data()}
        rules: list[Rule] = []
        if s.redirect is not None:
            body = {"matches": [match], "filters": [_redirect_filter(s.redirect)]}
            rules.append(Rule(base, source, ing, item, body, False))
        else:
            filters = self._filters(item)
            primary = self._backend(item.backend, group, item)
            c = item.canary
            refs: list[dict[str, Any]]
            if c is not None and c.ing.settings.canary is not None:
                spec = c.ing.settings.canary
                canary_ref = self._backend(c.backend, group, c)
                total, weight = spec.total, spec.weight
                refs = [dict(primary, weight=total - weight), dict(canary_ref, weight=weight)]
                if not weight:
                    refs = [primary]
                extra: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = []
                if spec.header:
                    if spec.header_value:
                        extra.append(
                            ("canary-header", [_hdr(spec.header, spec.header_value)], canary_ref)
                        )
                    elif spec.header_pattern:
                        extra.append(
                            (
                                "canary-header",
                                [_hdr(spec.header, spec.header_pattern, "RegularExpression")],
                                canary_ref,
                            )
                        )
                    else:
                        extra.append(("canary-header", [_hdr(spec.header, "always")], canary_ref))
                        extra.append(("canary-header-never", [_hdr(spec.header, "never")], primary))
                if spec.cookie:
                    extra.append(
                        ("canary-cookie", [canary.cookie_match(spec.cookie, "always")], canary_ref)
                    )
                    extra.append(
                        (
                            "canary-cookie-never",
                            [canary.cookie_match(spec.cookie, "never")],
                            primary,
                        )
                    )
                for suffix, hdrs, ref in extra:
                    body = _backend_body(dict(match, headers=hdrs), filters, [ref], s.timeouts)
                    rules.append(
                        Rule(f"{base}-{suffix}", f"{c.ing.ref} {c.key}", ing, item, body, True)
                    )
                item.notes.append(f"canary {c.ing.ref} merged")
            else:
                refs = [primary]
            rules.append(
                Rule(base, source, ing, item, _backend_body(match, filters, refs, s.timeouts), True)
            )
        if needs_slash_redirect(item.path, item.path_type, item.regex_mode):
            target = slash_redirect_match(item.path)
            body = {
                "matches": [{"path": target.to_data()}],
                "filters": [
                    _redirect_filter(
                        {
                            "path": {"type": "ReplaceFullPath", "replaceFullPath": item.path},
                            "statusCode": 301,
                        }
                    )
                ],
            }
            rules.append(Rule(f"{base}-slash", source, ing, item, body, False))
            item.notes.append(f"{target.value} redirects (301) to {item.path}, as nginx does")
        return rules

    def _grpc_rules(self, item: PathItem, group: RouteGroup, base: str, source: str) -> list[Rule]:
        ing = item.ing
        path = item.path.strip("/")
        matches: list[dict[str, Any]] = []
        if path:
            parts = path.split("/")
            if (
                len(parts) > 2
                or not _GRPC_SERVICE.match(parts[0])
                or (len(parts) == 2 and not _GRPC_METHOD.match(parts[1]))
            ):
                item.partial = True
                item.notes.append(
                    f"path {item.path} is not /<service>[/<method>]: the GRPCRoute rule matches "
                    "every method"
                )
            else:
                method: dict[str, Any] = {"type": "Exact", "service": parts[0].lstrip(".")}
                if len(parts) == 2:
                    method["method"] = parts[1]
                matches.append({"method": method})
        primary = self._backend(item.backend, group, item)
        refs = [primary]
        c = item.canary
        if c is not None and c.ing.settings.canary is not None:
            spec = c.ing.settings.canary
            if spec.weight:
                refs = [
                    dict(primary, weight=spec.total - spec.weight),
                    dict(self._backend(c.backend, group, c), weight=spec.weight),
                ]
            if spec.header or spec.cookie:
                item.partial = True
                item.notes.append("GRPCRoute canary: only the weight is converted")
        body: dict[str, Any] = {}
        if matches:
            body["matches"] = matches
        filters = [
            f
            for f in self._filters(item)
            if f["type"] in ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror")
        ]
        if filters:
            body["filters"] = filters
        body["backendRefs"] = refs
        return [Rule(base, source, ing, item, body, True)]

    def _filters(self, item: PathItem) -> list[dict[str, Any]]:
        ing, s = item.ing, item.ing.settings
        out: list[dict[str, Any]] = []
        if s.request_set:
            out.append(
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {
                        "set": [{"name": k, "value": v} for k, v in sorted(s.request_set.items())]
                    },
                }
            )
        if s.response_set:
            out.append(
                {
                    "type": "ResponseHeaderModifier",
                    "responseHeaderModifier": {
                        "set": [{"name": k, "value": v} for k, v in sorted(s.response_set.items())]
                    },
                }
            )
        url: dict[str, Any] = {}
        if s.host_rewrite:
            url["hostname"] = s.host_rewrite
        if s.rewrite_target and s.rewrite_supported and not item.grpc:
            if s.rewrite_captures:
                out.append(self._regex_rewrite(item))
            else:
                url["path"] = {"type": "ReplaceFullPath", "replaceFullPath": s.rewrite_target}
        if url:
            out.append({"type": "URLRewrite", "urlRewrite": url})
        if s.cors:
            out.append({"type": "CORS", "cors": s.cors})
        for m in s.mirrors:
            out.append({"type": "RequestMirror", "requestMirror": m})
        _ = ing
        return out

    def _regex_rewrite(self, item: PathItem) -> dict[str, Any]:
        ing = item.ing
        name = naming.allocate_one(ing.name, "rewrite", *re.findall(r"\d+", item.key), limit=253)
        pattern = f"(?i)^(?:{item.path}).*"
        substitution = re.sub(r"\$(\d)", r"\\\1", ing.settings.rewrite_target)
        obj: KubeObject = {
            "apiVersion": EG_API_VERSION,
            "kind": "HTTPRouteFilter",
            "metadata": {"name": name, "namespace": ing.namespace},
            "spec": {
                "urlRewrite": {
                    "path": {
                        "type": "ReplaceRegexMatch",
                        "replaceRegexMatch": {"pattern": pattern, "substitution": substitution},
                    }
                }
            },
        }
        self.filters.append(stamp(obj, [ing.ref]))
        item.outputs.append(ObjectRef.of(obj))
        return {
            "type": "ExtensionRef",
            "extensionRef": {"group": ENVOY_GATEWAY_GROUP, "kind": "HTTPRouteFilter", "name": name},
        }

    def _backend(self, backend: Backend, group: RouteGroup, item: PathItem) -> dict[str, Any]:
        ing = item.ing
        if backend.note:
            item.notes.append(backend.note)
        if backend.external_name:
            if self.ctx.eg and backend.port is not None:
                key = (backend.namespace, backend.name, backend.port)
                name = naming.allocate_one(backend.name, "external", str(backend.port), limit=253)
                entry = self.external.setdefault(key, (name, set()))
                entry[1].add(ing.ref)
                item.notes.append(
                    f"ExternalName Service {backend.name} → Envoy Gateway Backend {name} "
                    f"({backend.external_name}:{backend.port}); needs extensionApis.enableBackend"
                )
                ref: dict[str, Any] = {
                    "group": ENVOY_GATEWAY_GROUP,
                    "kind": "Backend",
                    "name": name,
                }
                if backend.namespace != group.namespace:
                    ref["namespace"] = backend.namespace
                    self.ctx.grants.add(
                        GrantNeed(
                            GATEWAY_GROUP,
                            group.kind,
                            group.namespace,
                            ENVOY_GATEWAY_GROUP,
                            "Backend",
                            backend.namespace,
                            name,
                        ),
                        [ing.ref],
                    )
                return ref
            item.partial = True
            item.notes.append(
                f"Service {backend.name} is ExternalName: Envoy Gateway does not route to "
                "those; use --target envoy-gateway for a Backend"
            )
        if backend.namespace != group.namespace:
            self.ctx.grants.add(
                GrantNeed(
                    GATEWAY_GROUP,
                    group.kind,
                    group.namespace,
                    backend.group,
                    backend.kind,
                    backend.namespace,
                    backend.name,
                ),
                [ing.ref],
            )
        s = ing.settings
        if s.protocol in ("HTTPS", "GRPCS") and backend.kind == "Service":
            validation = dict(s.backend_tls)
            validation.setdefault(
                "hostname", f"{backend.name}.{backend.namespace}.svc.cluster.local"
            )
            entry2 = self.backend_tls.setdefault(
                (backend.namespace, backend.name), (validation, set())
            )
            entry2[1].add(ing.ref)
            if entry2[0] != validation:
                item.partial = True
                item.notes.append(
                    f"Service {backend.name} already has other backend TLS settings; those win"
                )
        if s.protocol == "H2C" and backend.app_protocol != "kubernetes.io/h2c":
            item.partial = True
            item.notes.append(
                f"set appProtocol: kubernetes.io/h2c on Service {backend.name} port "
                f"{backend.port} so Envoy speaks plaintext HTTP/2 to it"
            )
        return backend.ref(group.namespace)

    def _routes(self, groups: dict[tuple[str, str, str, str], RouteGroup]) -> list[RouteOut]:
        routes: list[RouteOut] = []
        for group in groups.values():
            if group.kind == "HTTPRoute" and group.tls is None:
                group.blocks = [self._force_redirect(block) for block in group.blocks]
            for part, rules in enumerate(_chunk(group.blocks)):
                routes.append(RouteOut(group, part, rules, self._needs(group, group.listener)))
            if (
                group.tls is not None
                and self.options.gateway is not None
                and (self.options.gateway.section)
            ):
                continue  # one listener for everything: no separate plain-HTTP route
            if group.tls is not None and group.kind == "GRPCRoute":
                for block in group.blocks:
                    for rule in block:
                        if rule.item is not None:
                            rule.item.notes.append(
                                "gRPC is served on HTTPS only (gRPC clients do not follow "
                                "redirects, so no plain-HTTP redirect route)"
                            )
                continue
            if group.tls is not None:
                http = RouteGroup(
                    group.kind,
                    group.namespace,
                    group.cls,
                    group.host,
                    "HTTP",
                    hostnames=group.hostnames,
                    tls=group.tls,
                    suffix="http",
                )
                http.blocks = [[self._to_http(r) for r in block] for block in group.blocks]
                http.blocks = _collapse_redirects(http.blocks)
                for part, rules in enumerate(_chunk(http.blocks)):
                    routes.append(RouteOut(http, part, rules, self._needs(http, "HTTP")))
        return routes

    def _needs(self, group: RouteGroup, protocol: str) -> list[ListenerNeed]:
        sources = sorted({r.ing.ref for b in group.blocks for r in b})
        certs = [group.tls] if protocol == "HTTPS" and group.tls else []
        return [
            need(
                group.cls,
                group.namespace,
                host,
                "HTTPS" if protocol == "HTTPS" else "HTTP",
                certificates=certs,
                sources=sources,
            )
            for host in (group.hostnames or [""])
        ]

    def _to_http(self, rule: Rule) -> Rule:
        """The plain-HTTP copy of a rule of a TLS host: a redirect to https, or the same rule
        when its Ingress turned ssl-redirect off."""
        s = rule.ing.settings
        if not (s.ssl_redirect or s.force_ssl_redirect):
            return Rule(
                rule.want, rule.source, rule.ing, rule.item, dict(rule.body), rule.has_backends
            )
        body = {
            "matches": rule.body.get("matches", []),
            "filters": [_redirect_filter({"scheme": "https", "statusCode": s.redirect_code})],
        }
        return Rule(rule.want, rule.source, rule.ing, rule.item, body, False)

    def _force_redirect(self, block: list[Rule]) -> list[Rule]:
        """force-ssl-redirect on a host without TLS here: TLS ends upstream, so requests that
        say X-Forwarded-Proto: https are served and the others redirected."""
        new: list[Rule] = []
        for rule in block:
            s = rule.ing.settings
            if not s.force_ssl_redirect or not rule.has_backends:
                new.append(rule)
                continue
            forwarded = dict(rule.body)
            forwarded["matches"] = [
                dict(m, headers=[*m.get("headers", []), _hdr("X-Forwarded-Proto", "https")])
                for m in rule.body.get("matches", [])
            ]
            new.append(
                Rule(
                    f"{rule.want}-forwarded-https",
                    rule.source,
                    rule.ing,
                    rule.item,
                    forwarded,
                    True,
                )
            )
            body = {
                "matches": rule.body.get("matches", []),
                "filters": [_redirect_filter({"scheme": "https", "statusCode": s.redirect_code})],
            }
            new.append(Rule(rule.want, rule.source, rule.ing, rule.item, body, False))
        return new

    def _www_redirects(self, groups: dict[tuple[str, str, str, str], RouteGroup]) -> list[RouteOut]:
        routes: list[RouteOut] = []
        defined = {(g.cls, h) for g in groups.values() for h in g.hostnames}
        done: set[tuple[str, str]] = set()
        for group in list(groups.values()):
            if group.suffix or not group.host or group.host.startswith("*"):
                continue
            owners = [b[0].ing for b in group.blocks if b[0].ing.settings.www_redirect]
            if not owners:
                continue
            ing = owners[0]
            other = group.host[4:] if group.host.startswith("www.") else f"www.{group.host}"
            if (group.cls, other) in defined or (group.cls, other) in done:
                continue
            done.add((group.cls, other))
            body = {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "filters": [
                    _redirect_filter(
                        {"hostname": group.host, "statusCode": ing.settings.redirect_code}
                    )
                ],
            }
            www = RouteGroup(
                "HTTPRoute",
                group.namespace,
                group.cls,
                other,
                "HTTP",
                hostnames=[other],
                tls=group.tls,
                suffix="www-redirect",
            )
            www.blocks = [
                [
                    Rule(
                        f"{ing.name}-www-redirect",
                        f"{ing.ref} {ing.ann.full('from-to-www-redirect')}",
                        ing,
                        None,
                        body,
                        False,
                    )
                ]
            ]
            route_needs = self._needs(www, "HTTP")
            if group.tls is not None:
                route_needs += self._needs(www, "HTTPS")
            routes.append(RouteOut(www, 0, www.blocks[0], route_needs))
        return routes

    def _passthrough(self) -> list[tuple[KubeObject, list[ListenerNeed], Ingress]]:
        out: list[tuple[KubeObject, list[ListenerNeed], Ingress]] = []
        for ing in self.ingresses:
            if not ing.settings.passthrough:
                continue
            for i, rule in enumerate((ing.obj.get("spec") or {}).get("rules") or []):
                host = str((rule or {}).get("host") or "").lower()
                paths = (((rule or {}).get("http") or {}).get("paths")) or []
                if not host or not _HOST.match(host) or not paths:
                    for j in range(len(paths)):
                        self._path_error(
                            ing,
                            f"spec.rules[{i}].http.paths[{j}]",
                            "ssl-passthrough needs a valid host",
                        )
                    continue
                backend = None
                for j, path in enumerate(paths):
                    key = f"spec.rules[{i}].http.paths[{j}]"
                    if backend is not None:
                        self._path_error(
                            ing,
                            key,
                            "ssl-passthrough routes by SNI only: the "
                            "first path's backend serves the host",
                            "unsupported",
                        )
                        continue
                    try:
                        backend = self.ctx.services.resolve(
                            ing.namespace, (path or {}).get("backend")
                        )
                    except BackendError as err:
                        self._path_error(ing, key, str(err))
                        continue
                    if (ing.cls, host) in self.tls:
                        self._path_error(
                            ing,
                            key,
                            f"host {host} also terminates TLS on 443 "
                            "in another Ingress; passthrough not converted",
                        )
                        backend = None
                        break
                    name = naming.allocate_one(ing.name, host, "passthrough", limit=253)
                    obj: KubeObject = {
                        "apiVersion": GATEWAY_API_VERSION,
                        "kind": "TLSRoute",
                        "metadata": {"name": name, "namespace": ing.namespace},
                        "spec": {
                            "hostnames": [host],
                            "rules": [{"backendRefs": [backend.ref(ing.namespace)]}],
                        },
                    }
                    ref = ObjectRef.of(obj)
                    ing.use(ref)
                    self.report.add(
                        ing.ref, key, "converted", f"TLSRoute for {host} (TLS passthrough)", [ref]
                    )
                    out.append(
                        (
                            obj,
                            [
                                need(
                                    ing.cls,
                                    ing.namespace,
                                    host,
                                    "TLS",
                                    passthrough=True,
                                    sources=[ing.ref],
                                )
                            ],
                            ing,
                        )
                    )
        return out

    # ------------------------------------------------------------------ rendering

    def _render_route(self, route: RouteOut, parents: dict[Any, dict[str, Any]]) -> KubeObject:
        group = route.group
        spec: dict[str, Any] = {
            "parentRefs": _unique([parents[n.key] for n in route.needs]),
        }
        if group.hostnames:
            spec["hostnames"] = list(group.hostnames)
        names = naming.allocate({i: r.want for i, r in enumerate(route.rules)}, limit=253)
        rules = []
        lines = []
        for i, rule in enumerate(route.rules):
            rule.name = names[i]
            rules.append({"name": rule.name, **copy.deepcopy(rule.body)})
            lines.append(f"{rule.name}: {rule.source}")
            ing = rule.ing
            ing.use(route.ref)
            for extra_item in rule.extra:
                extra_item.ing.use(route.ref)
                if route.ref not in extra_item.outputs:
                    extra_item.outputs.append(route.ref)
            if rule.item is not None:
                if route.ref not in rule.item.outputs:
                    rule.item.outputs.append(route.ref)
                c = rule.item.canary
                if c is not None:
                    c.ing.use(route.ref)
                    if route.ref not in c.outputs:
                        c.outputs.append(route.ref)
            if rule.has_backends:
                target = (group.kind, route.name, rule.name)
                if target not in ing.targets:
                    ing.targets.append(target)
        spec["rules"] = rules
        obj: KubeObject = {
            "apiVersion": GATEWAY_API_VERSION,
            "kind": group.kind,
            "metadata": {
                "name": route.name,
                "namespace": group.namespace,
                "annotations": {RULE_SOURCES_ANNOTATION: "\n".join(lines)},
            },
            "spec": spec,
        }
        sources = {r.ing.ref for r in route.rules} | {
            e.ing.ref for r in route.rules for e in r.extra
        }
        sources |= {r.item.canary.ing.ref for r in route.rules if r.item and r.item.canary}
        return stamp(obj, sources)

    def _policies(self) -> None:
        self.out.extend(self.filters)
        for ing in sorted(self.ingresses, key=lambda i: (i.namespace, i.name)):
            s = ing.settings
            if not ing.targets:
                continue
            refs = [
                {"group": GATEWAY_GROUP, "kind": kind, "name": route, "sectionName": rule}
                for kind, route, rule in sorted(ing.targets)
            ]
            for kind, spec in (("BackendTrafficPolicy", s.btp), ("SecurityPolicy", s.sp)):
                if spec and self.ctx.eg:
                    obj: KubeObject = {
                        "apiVersion": EG_API_VERSION,
                        "kind": kind,
                        "metadata": {"name": ing.name, "namespace": ing.namespace},
                        "spec": {"targetRefs": refs, **spec},
                    }
                    self.out.append(stamp(obj, [ing.ref]))
            for extra in s.objects:
                self.out.append(stamp(extra, [ing.ref]))
        for (ns, name), (validation, sources) in sorted(self.backend_tls.items()):
            obj = {
                "apiVersion": GATEWAY_API_VERSION,
                "kind": "BackendTLSPolicy",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "targetRefs": [{"group": "", "kind": "Service", "name": name}],
                    "validation": validation,
                },
            }
            self.out.append(stamp(obj, sources))
        for (ns, svc, port), (name, sources) in sorted(self.external.items()):
            target = self.ctx.services.by_key[(ns, svc)]["spec"]["externalName"]
            obj = {
                "apiVersion": EG_API_VERSION,
                "kind": "Backend",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"endpoints": [{"fqdn": {"hostname": target, "port": port}}]},
            }
            self.out.append(stamp(obj, sources))

    # ------------------------------------------------------------------ the report

    def _finish(
        self,
        emitted: set[ObjectRef],
        outputs: dict[Any, list[ObjectRef]],
        notes: dict[Any, list[str]],
    ) -> None:
        by_ing: dict[ObjectRef, dict[str, list[PathItem]]] = defaultdict(lambda: defaultdict(list))
        for ing in self.ingresses:
            for item in ing.items:
                by_ing[ing.ref][item.key].append(item)
        # Indexes built once (not a scan of every entry or listener per Ingress): the spec.tls
        # keys already reported (by _plan_tls; _report_tls adds the ones it reports), and the
        # HTTPS listeners of each class and host.
        tls_reported = {
            (e.source, e.key) for e in self.report.entries if e.key.startswith("spec.tls[")
        }
        https: dict[tuple[str, str], list[ListenerKey]] = defaultdict(list)
        for lkey in outputs:
            if lkey.protocol == "HTTPS":
                https[(lkey.cls, lkey.hostname)].append(lkey)
        for ing in self.ingresses:
            for key, items in by_ing[ing.ref].items():
                done = [i for i in items if i.outputs]
                if not done:
                    why = "; ".join(dict.fromkeys(n for i in items for n in i.notes))
                    if why and key == "spec.defaultBackend":
                        self.report.add(ing.ref, key, "ignored", why)
                    continue
                outs: list[ObjectRef] = []
                for i in done:
                    outs += [o for o in i.outputs if o not in outs]
                message = "; ".join(dict.fromkeys(n for i in done for n in i.notes))
                status: Status = "partial" if any(i.partial for i in done) else "converted"
                self.report.add(ing.ref, key, status, message or "converted", outs)
            self._report_tls(ing, outputs, notes, tls_reported, https)
            routes = [r for r in ing.route_refs if r in emitted]
            for claim in ing.ann.claims.values():
                claim.outputs = [o for o in claim.outputs if isinstance(o, str) or o in emitted]
                if claim.status in ("converted", "partial") and not routes and claim.outputs:
                    claim.status = "ignored"
                    claim.message = "no path of this Ingress was converted, so neither was this"
                    claim.outputs = []
            ing.ann.finish(self.report, ing.ref, routes)

    def _report_tls(
        self,
        ing: Ingress,
        outputs: dict[Any, list[ObjectRef]],
        notes: dict[Any, list[str]],
        reported: set[tuple[ObjectRef, str]],
        https: dict[tuple[str, str], list[ListenerKey]],
    ) -> None:
        spec = ing.obj.get("spec") or {}
        if ing.canary:
            for k, _entry in enumerate(spec.get("tls") or []):
                self.report.add(
                    ing.ref,
                    f"spec.tls[{k}]",
                    "ignored",
                    "ingress-nginx takes TLS from the primary Ingress",
                )
                reported.add((ing.ref, f"spec.tls[{k}]"))
            return
        if ing.settings.passthrough:
            for k, _entry in enumerate(spec.get("tls") or []):
                self.report.add(
                    ing.ref,
                    f"spec.tls[{k}]",
                    "ignored",
                    "ssl-passthrough: the backend terminates TLS",
                )
                reported.add((ing.ref, f"spec.tls[{k}]"))
            return
        rule_hosts = sorted(
            {str((r or {}).get("host") or "").lower() for r in spec.get("rules") or []} - {""}
        )
        for k, entry in enumerate(spec.get("tls") or []):
            key = f"spec.tls[{k}]"
            if (ing.ref, key) in reported:
                continue
            secret = str((entry or {}).get("secretName") or "")
            hosts = [str(h).lower() for h in (entry or {}).get("hosts") or []] or rule_hosts
            used: list[str] = []
            elsewhere: list[str] = []
            unused: list[str] = []
            outs: list[ObjectRef] = []
            extra: list[str] = []
            for host in hosts:
                chosen = self.tls.get((ing.cls, host))
                if chosen is None:
                    unused.append(host)
                    continue
                if chosen[0] != SecretRef(ing.namespace, secret):
                    elsewhere.append(
                        f"{host} (uses {chosen[0].namespace}/{chosen[0].name} "
                        f"from the older {chosen[1].ref})"
                    )
                    continue
                found = False
                for lkey in https.get((ing.cls, host), ()):
                    outs += [r for r in outputs[lkey] if r not in outs]
                    extra += [n for n in notes.get(lkey, []) if n not in extra]
                    found = True
                (used if found else unused).append(host)
            parts = []
            if used:
                parts.append(
                    f"HTTPS listeners for {', '.join(used)} with Secret {ing.namespace}/{secret}"
                )
            if elsewhere:
                parts.append("not used for " + ", ".join(elsewhere))
            if unused:
                parts.append(f"no routed paths for {', '.join(unused)}: no listener")
            parts += extra
            tls_status: Status = (
                "converted"
                if used and not elsewhere and not extra
                else ("partial" if used or elsewhere else "ignored")
            )
            self.report.add(ing.ref, key, tls_status, "; ".join(parts), outs)
            reported.add((ing.ref, key))


# --------------------------------------------------------------------------- helpers


def _collapse_redirects(blocks: list[list[Rule]]) -> list[list[Rule]]:
    """When every rule of a plain-HTTP route redirects to https the same way, one catch-all
    rule says it (the more specific rules of other routes for the host still win)."""
    rules = [r for b in blocks for r in b]
    redirects = {
        repr(r.body.get("filters"))
        for r in rules
        if not r.has_backends and "scheme" in str(r.body.get("filters"))
    }
    if len(redirects) != 1 or any(
        r.has_backends or "scheme" not in str(r.body.get("filters")) for r in rules
    ):
        return blocks
    first = rules[0]
    body = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        **{"filters": first.body["filters"]},
    }
    sources = ", ".join(dict.fromkeys(str(r.ing.ref) for r in rules))
    return [
        [
            Rule(
                "https-redirect",
                f"{sources} (ssl-redirect)",
                first.ing,
                None,
                body,
                False,
                extra=[r.item for r in rules if r.item is not None],
            )
        ]
    ]


def _name_routes(routes: list[RouteOut]) -> None:
    by_ns: dict[tuple[str, str], dict[Any, str]] = defaultdict(dict)
    for index, route in enumerate(routes):
        g = route.group
        parts = [g.host or "catch-all", g.suffix]
        if route.part:
            parts.append(str(route.part + 1))
        by_ns[(g.kind, g.namespace)][(g.cls, g.host, g.suffix, route.part, index)] = (
            naming.readable(*parts)
        )
    for wanted in by_ns.values():
        names = naming.allocate(wanted, limit=253)
        for key, name in names.items():
            routes[key[-1]].name = name  # type: ignore[index]


def _rule_want(ing: Ingress, key: str) -> str:
    if key == "spec.defaultBackend":
        return f"{ing.name}-default-backend"
    nums = re.findall(r"\d+", key)
    return f"{ing.name}-{'-'.join(nums)}"


def _hdr(name: str, value: str, kind: str = "Exact") -> dict[str, Any]:
    return {"type": kind, "name": name, "value": value}


def _redirect_filter(spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RequestRedirect", "requestRedirect": spec}


def _backend_body(
    match: dict[str, Any],
    filters: list[dict[str, Any]],
    refs: list[dict[str, Any]],
    timeouts: dict[str, str],
) -> dict[str, Any]:
    body: dict[str, Any] = {"matches": [match]}
    if filters:
        body["filters"] = filters
    body["backendRefs"] = refs
    if timeouts:
        body["timeouts"] = dict(timeouts)
    return body


def _chunk(blocks: list[list[Rule]]) -> list[list[Rule]]:
    """Split rule blocks into routes of at most 16 rules; a block (a path with its canary and
    redirect rules) stays in one route so that rule order keeps deciding between them."""
    parts: list[list[Rule]] = [[]]
    for block in blocks:
        if parts[-1] and len(parts[-1]) + len(block) > MAX_RULES:
            parts.append([])
        parts[-1].extend(block)
    return parts if parts[0] else []


def _unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out
