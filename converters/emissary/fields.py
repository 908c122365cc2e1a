"""Mapping fields that become filters, timeouts and Envoy Gateway policies of a rule.

Only a canary group's *primary* Mapping (the one with the largest share) shapes the rule: the
group-level keys are identical across a group (Emissary rejects a Mapping whose differ), and the
per-Mapping keys of the others are compared with the primary's by the caller. Where Envoy
Gateway's defaults differ from Emissary's (request timeout, retries, redirect code), Emissary's
value is written explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from converters.emissary.matching import HEADER_NAME, METHODS, duration, millis
from converters.emissary.model import Src
from kubectl_gw.model import ObjectRef

DEFAULT_TIMEOUT_MS = 3000
RETRY_TRIGGERS = (
    "5xx",
    "gateway-error",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "reset",
)
# Module keys that are defaults for every Mapping.
MODULE_MAPPING_DEFAULTS = (
    "cors",
    "retry_policy",
    "circuit_breakers",
    "load_balancer",
    "keepalive",
    "cluster_idle_timeout_ms",
    "cluster_max_connection_lifetime_ms",
    "add_linkerd_headers",
)
DROPPED = {
    "docs": "DevPortal metadata; no routing effect",
    "priority": "Envoy cluster priority; no Gateway API equivalent and rarely used",
    "modules": "legacy field; no effect",
    "cluster_tag": "only names Envoy clusters",
    "stats_name": "only names Envoy statistics",
    "bypass_error_response_overrides": "Emissary 4 ignores error_response_overrides",
    "v2ExplicitTLS": "a v2 round-trip artefact",
    "v2BoolHeaders": "a v2 round-trip artefact (presence matches are already regex_headers)",
    "v2BoolQueryParameters": "a v2 round-trip artefact (presence matches are already regex "
    "query parameters)",
}


@dataclass
class Refs:
    route: ObjectRef
    btp: ObjectRef
    hrf: ObjectRef
    sp: ObjectRef


@dataclass
class RuleParts:
    req_add: dict[str, str] = field(default_factory=dict)
    req_set: dict[str, str] = field(default_factory=dict)
    req_remove: list[str] = field(default_factory=list)
    resp_add: dict[str, str] = field(default_factory=dict)
    resp_set: dict[str, str] = field(default_factory=dict)
    resp_remove: list[str] = field(default_factory=list)
    cors: dict[str, Any] | None = None
    host_rewrite: str | None = None
    hrf: dict[str, Any] = field(default_factory=dict)  # HTTPRouteFilter spec.urlRewrite
    btp: dict[str, Any] = field(default_factory=dict)  # BackendTrafficPolicy spec pieces
    bypass_auth: bool = False
    timeout: str | None = None


@dataclass
class FieldContext:
    eg: bool
    grpc_route: bool
    module: Src | None
    module_config: dict[str, Any]
    auth_service: bool
    module_uses: dict[str, int] = field(default_factory=dict)

    def default(self, key: str) -> Any:
        return self.module_config.get(key)


def _set(d: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for p in path[:-1]:
        d = d.setdefault(p, {})
    d[path[-1]] = value


def headers_add(
    m: Src,
    key: str,
    parts: RuleParts,
    request: bool,
    ctx: FieldContext,
    refs: Refs,
    from_module: bool = False,
) -> None:
    value = m.spec.get(key)
    target_add = parts.req_add if request else parts.resp_add
    target_set = parts.req_set if request else parts.resp_set
    if not isinstance(value, dict):
        m.note(key, "error", f"{key} must be a map of header name to value", [])
        return
    bad = []
    envoy_vars = []
    for name, spec in value.items():
        append = True
        text = spec
        if isinstance(spec, dict):
            text = spec.get("value", "")
            append = spec.get("append", True) is not False
        if not HEADER_NAME.match(str(name)) or not isinstance(text, str | int | float):
            bad.append(str(name))
            continue
        text = str(text)
        if "%" in text:
            envoy_vars.append(str(name))
        (target_add if append else target_set)[str(name)] = text
    kind = "Request" if request else "Response"
    if bad:
        m.note(
            key,
            "partial",
            f"headers {', '.join(bad)}: invalid name or value, not converted",
            [refs.route],
        )
    msg = f"{kind}HeaderModifier add (append: true, the default) / set (append: false)"
    if envoy_vars:
        m.note(
            key,
            "partial",
            f"{msg}; values of {', '.join(envoy_vars)} hold Envoy %VAR% "
            "format specifiers, which Envoy Gateway may not pass through untouched",
            [refs.route],
        )
    elif not bad:
        m.note(
            key,
            "converted",
            msg + ("" if not from_module else " (from Module defaults)"),
            [refs.route],
        )


def apply_primary(m: Src, parts: RuleParts, ctx: FieldContext, refs: Refs, redirect: bool) -> None:
    """Every filter/policy field of the group's primary Mapping ``m``."""
    spec = m.spec
    eg = ctx.eg
    value: Any

    def btp(
        path: tuple[str, ...], value: Any, key: str, message: str, status: str = "converted"
    ) -> None:
        if not eg:
            m.note(
                key,
                "unsupported",
                f"{message.split(':')[0]}: needs an Envoy Gateway "
                "BackendTrafficPolicy; --target standard: not converted",
                [],
            )
            return
        _set(parts.btp, path, value)
        m.note(key, status, message, [refs.btp])  # type: ignore[arg-type]

    # Timeouts: always write Emissary's request timeout (Envoy Gateway's default is 15 s).
    t = spec.get("timeout_ms")
    default = millis(ctx.default("cluster_request_timeout_ms"))
    if t is not None:
        ms = millis(t)
        if ms is None:
            m.note("timeout_ms", "error", "timeout_ms must be a non-negative integer", [])
            ms = default if default is not None else DEFAULT_TIMEOUT_MS
        else:
            m.note(
                "timeout_ms",
                "converted" if not ctx.grpc_route or eg else "unsupported",
                f"request timeout {duration(ms)}" + (" (0: disabled)" if ms == 0 else ""),
                [refs.btp] if ctx.grpc_route else [refs.route],
            )
    else:
        ms = default if default is not None else DEFAULT_TIMEOUT_MS
        if default is not None and ctx.module is not None:
            ctx.module_uses["cluster_request_timeout_ms"] = (
                ctx.module_uses.get("cluster_request_timeout_ms", 0) + 1
            )
        else:
            m.note(
                "timeout_ms",
                "converted",
                "not set: Emissary's default 3s is written explicitly (Envoy Gateway's "
                "default is 15s)",
                [refs.btp] if ctx.grpc_route else [refs.route],
            )
    if not redirect:
        if ctx.grpc_route:
            if eg:
                _set(parts.btp, ("timeout", "http", "requestTimeout"), duration(ms))
        else:
            parts.timeout = duration(ms)

    for key, path in (
        ("idle_timeout_ms", ("timeout", "http", "streamIdleTimeout")),
        ("connect_timeout_ms", ("timeout", "tcp", "connectTimeout")),
        ("cluster_idle_timeout_ms", ("timeout", "http", "connectionIdleTimeout")),
        ("cluster_max_connection_lifetime_ms", ("timeout", "http", "maxConnectionDuration")),
    ):
        value = spec.get(key)
        from_module = value is None and ctx.default(key) is not None
        if from_module:
            value = ctx.default(key)
        if value is None:
            continue
        ms2 = millis(value)
        if ms2 is None:
            m.note(key, "error", f"{key} must be a non-negative integer", [])
            continue
        if from_module:
            ctx.module_uses[key] = ctx.module_uses.get(key, 0) + 1
            if eg:
                _set(parts.btp, path, duration(ms2))
        else:
            btp(
                path,
                duration(ms2),
                key,
                f"{key}: BackendTrafficPolicy {'.'.join(path)} {duration(ms2)}",
            )

    # Headers.
    for key, request in (("add_request_headers", True), ("add_response_headers", False)):
        if key in spec:
            headers_add(m, key, parts, request, ctx, refs)
        elif isinstance(ctx.default(key), dict):
            tmp = Src(m.ref, m.kind, m.version, m.namespace, m.name, {}, {key: ctx.default(key)})
            headers_add(tmp, key, parts, request, ctx, refs, from_module=True)
            ctx.module_uses[key] = ctx.module_uses.get(key, 0) + 1
    for key, target in (
        ("remove_request_headers", parts.req_remove),
        ("remove_response_headers", parts.resp_remove),
    ):
        value = spec.get(key, ctx.default(key))
        if value is None:
            continue
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            m.note(key, "error", f"{key} must be a list of header names", [])
            continue
        names = [str(v) for v in value if HEADER_NAME.match(str(v))]
        target.extend(n for n in names if n not in target)
        if key in spec:
            kind = "Request" if key.startswith("remove_request") else "Response"
            m.note(
                key,
                "converted" if len(names) == len(value) else "partial",
                f"{kind}HeaderModifier remove",
                [refs.route],
            )
        else:
            ctx.module_uses[key] = ctx.module_uses.get(key, 0) + 1
    linkerd = spec.get("add_linkerd_headers", ctx.default("add_linkerd_headers"))
    if linkerd is True:
        svc = str(spec.get("service", ""))
        host = svc.split("://")[-1]
        if ":" not in host:
            host += ":80"
        parts.req_set["l5d-dst-override"] = host
        if "add_linkerd_headers" in spec:
            m.note(
                "add_linkerd_headers",
                "converted",
                f"RequestHeaderModifier set l5d-dst-override: {host}",
                [refs.route],
            )
    elif "add_linkerd_headers" in spec:
        m.note("add_linkerd_headers", "converted", "false: nothing to add", [refs.route])

    # Host rewrite.
    if isinstance(spec.get("host_rewrite"), str) and spec["host_rewrite"]:
        parts.host_rewrite = spec["host_rewrite"]
        m.note(
            "host_rewrite", "converted", f"URLRewrite hostname {spec['host_rewrite']}", [refs.route]
        )
    if spec.get("auto_host_rewrite") is True:
        if eg and not ctx.grpc_route:
            parts.hrf["hostname"] = {"type": "Backend"}
            m.note(
                "auto_host_rewrite",
                "converted",
                "HTTPRouteFilter urlRewrite.hostname type Backend",
                [refs.hrf],
            )
        else:
            m.note(
                "auto_host_rewrite",
                "unsupported",
                "needs Envoy Gateway's HTTPRouteFilter (hostname type Backend); not converted",
                [],
            )
    elif "auto_host_rewrite" in spec:
        m.note("auto_host_rewrite", "converted", "false: the Host header is kept", [refs.route])

    # CORS (the standard filter; a route-level SecurityPolicy would cancel a gateway extAuth).
    cors = spec.get("cors")
    from_module = cors is None and isinstance(ctx.default("cors"), dict)
    if from_module:
        cors = ctx.default("cors")
        ctx.module_uses["cors"] = ctx.module_uses.get("cors", 0) + 1
    if isinstance(cors, dict):
        filt, problems = cors_filter(cors)
        if ctx.grpc_route:
            if not from_module:
                m.note("cors", "unsupported", "GRPCRoute has no CORS filter; not converted", [])
        else:
            parts.cors = filt
            if not from_module:
                m.note(
                    "cors",
                    "partial" if problems else "converted",
                    "CORS filter" + (f" ({'; '.join(problems)})" if problems else ""),
                    [refs.route],
                )
    elif "cors" in spec:
        m.note("cors", "error", "cors must be a map", [])

    # Retries: Emissary's num_retries defaults to 1, Envoy Gateway's to 2: always write it.
    retry = spec.get("retry_policy")
    from_module = retry is None and isinstance(ctx.default("retry_policy"), dict)
    if from_module:
        retry = ctx.default("retry_policy")
        ctx.module_uses["retry_policy"] = ctx.module_uses.get("retry_policy", 0) + 1
    if isinstance(retry, dict):
        value = {"numRetries": retry.get("num_retries", 1)}
        status = "converted"
        notes = []
        trigger = retry.get("retry_on")
        if trigger:
            if trigger not in RETRY_TRIGGERS:
                notes.append(f"retry_on {trigger!r} is not an Envoy Gateway trigger; 5xx used")
                trigger, status = "5xx", "partial"
            if trigger == "retriable-status-codes":
                notes.append(
                    "retriable-status-codes took its codes from a request header in "
                    "Emissary; set retryOn.httpStatusCodes"
                )
                status = "partial"
            value["retryOn"] = {"triggers": [trigger]}
        per_try = retry.get("per_try_timeout")
        if per_try:
            value["perRetry"] = {"timeout": str(per_try)}
        message = (
            f"BackendTrafficPolicy retry (numRetries {value['numRetries']} written "
            "explicitly: Envoy Gateway's default is 2)" + (f"; {'; '.join(notes)}" if notes else "")
        )
        if from_module:
            if eg:
                parts.btp["retry"] = value
        else:
            btp(("retry",), value, "retry_policy", message, status)

    cb = spec.get("circuit_breakers")
    from_module = cb is None and isinstance(ctx.default("circuit_breakers"), list)
    if from_module:
        cb = ctx.default("circuit_breakers")
        ctx.module_uses["circuit_breakers"] = ctx.module_uses.get("circuit_breakers", 0) + 1
    if isinstance(cb, list) and cb:
        chosen = next(
            (c for c in cb if isinstance(c, dict) and c.get("priority", "default") == "default"),
            None,
        )
        value = {}
        if chosen:
            for src_key, dst in (
                ("max_connections", "maxConnections"),
                ("max_pending_requests", "maxPendingRequests"),
                ("max_requests", "maxParallelRequests"),
                ("max_retries", "maxParallelRetries"),
            ):
                if src_key in chosen:
                    value[dst] = chosen[src_key]
        dropped_high = any(isinstance(c, dict) and c.get("priority") == "high" for c in cb)
        message = "BackendTrafficPolicy circuitBreaker" + (
            "; the priority: high thresholds are dropped (one priority in Envoy Gateway)"
            if dropped_high
            else ""
        )
        if from_module:
            if eg and value:
                parts.btp["circuitBreaker"] = value
        elif value:
            btp(
                ("circuitBreaker",),
                value,
                "circuit_breakers",
                message,
                "partial" if dropped_high else "converted",
            )
        else:
            m.note(
                "circuit_breakers",
                "partial",
                "only priority: high thresholds, which Envoy Gateway cannot express; not converted",
                [],
            )

    lb = spec.get("load_balancer")
    from_module = lb is None and isinstance(ctx.default("load_balancer"), dict)
    if from_module:
        lb = ctx.default("load_balancer")
        ctx.module_uses["load_balancer"] = ctx.module_uses.get("load_balancer", 0) + 1
    if isinstance(lb, dict):
        value, status, message = load_balancer(lb)
        if from_module:
            if eg and value:
                parts.btp["loadBalancer"] = value
        elif value:
            btp(("loadBalancer",), value, "load_balancer", message, status)
        else:
            m.note("load_balancer", "error", message, [])

    ka = spec.get("keepalive")
    from_module = ka is None and isinstance(ctx.default("keepalive"), dict)
    if from_module:
        ka = ctx.default("keepalive")
        ctx.module_uses["keepalive"] = ctx.module_uses.get("keepalive", 0) + 1
    if isinstance(ka, dict):
        value = {}
        if "probes" in ka:
            value["probes"] = ka["probes"]
        if "idle_time" in ka:
            value["idleTime"] = f"{ka['idle_time']}s"
        if "interval" in ka:
            value["interval"] = f"{ka['interval']}s"
        if from_module:
            if eg:
                parts.btp["tcpKeepalive"] = value
        else:
            btp(("tcpKeepalive",), value, "keepalive", "BackendTrafficPolicy tcpKeepalive")

    hcs = spec.get("health_checks")
    if isinstance(hcs, list) and hcs:
        value, status, message = health_check(hcs)
        if value:
            btp(("healthCheck",), value, "health_checks", message, status)
        else:
            m.note("health_checks", "unsupported", message, [])

    upgrades = list(spec.get("allow_upgrade") or [])
    if spec.get("use_websocket") is True:
        upgrades.append("websocket")
        m.note(
            "use_websocket",
            "converted",
            "WebSocket upgrades: Envoy Gateway allows them on every route",
            [refs.route],
        )
    elif "use_websocket" in spec:
        m.note(
            "use_websocket",
            "partial",
            "false: Envoy Gateway allows WebSocket upgrades on "
            "every route (more permissive than Emissary)",
            [refs.route],
        )
    if "allow_upgrade" in spec:
        others = [u for u in upgrades if str(u).lower() != "websocket"]
        if others and eg:
            parts.btp["httpUpgrade"] = [{"type": "websocket"}] + [{"type": str(u)} for u in others]
            m.note(
                "allow_upgrade",
                "converted",
                "websocket: allowed by Envoy Gateway on every route; other upgrades: "
                "BackendTrafficPolicy httpUpgrade",
                [refs.btp],
            )
        elif others:
            m.note(
                "allow_upgrade",
                "unsupported",
                f"upgrades {', '.join(map(str, others))} "
                "need a BackendTrafficPolicy; --target standard: not converted",
                [],
            )
        else:
            m.note(
                "allow_upgrade",
                "converted",
                "websocket: Envoy Gateway allows WebSocket upgrades on every route",
                [refs.route],
            )

    if spec.get("bypass_auth") is True:
        if ctx.auth_service and eg:
            parts.bypass_auth = True
            m.note(
                "bypass_auth",
                "converted",
                "an empty SecurityPolicy on this rule disables "
                "the Gateway's external authorization",
                [refs.sp],
            )
        elif ctx.auth_service:
            m.note(
                "bypass_auth",
                "unsupported",
                "needs an Envoy Gateway SecurityPolicy; --target standard: not converted",
                [],
            )
        else:
            m.note("bypass_auth", "ignored", "no AuthService in the sources: nothing to bypass", [])
    elif "bypass_auth" in spec:
        m.note("bypass_auth", "converted", "false: external authorization applies", [refs.route])
    if "auth_context_extensions" in spec:
        m.note(
            "auth_context_extensions",
            "unsupported",
            "per-route ext_authz context needs a route-level SecurityPolicy repeating the "
            "whole extAuth (contextExtensions); not converted",
            [],
        )
    if "labels" in spec:
        m.note(
            "labels",
            "unsupported",
            "rate-limit descriptors: the limits live in the RateLimitService's own "
            "configuration; re-express them as BackendTrafficPolicy rateLimit.global rules",
            [],
        )
    if "envoy_override" in spec:
        m.note(
            "envoy_override",
            "unsupported",
            "raw Envoy route configuration: needs an "
            "EnvoyPatchPolicy written by hand; not converted",
            [],
        )
    if "error_response_overrides" in spec:
        m.note(
            "error_response_overrides",
            "unsupported",
            "custom error bodies (ignored by Emissary 4): BackendTrafficPolicy "
            "responseOverride is the closest target; not converted",
            [],
        )
    if "outlier_detection" in spec:
        m.note("outlier_detection", "ignored", "Emissary rejects outlier_detection", [])
    for key in ("dns_type", "respect_dns_ttl", "enable_ipv4", "enable_ipv6"):
        if key in spec:
            m.note(
                key,
                "ignored",
                "DNS settings of Emissary's strict_dns clusters: Envoy "
                "Gateway routes to Service endpoints, not through DNS",
                [],
            )
    if "resolver" in spec:
        name = str(spec["resolver"])
        if "consul" in name.lower():
            m.note(
                "resolver",
                "unsupported",
                f"resolver {name}: Consul discovery has no "
                "equivalent; the backend is the Kubernetes Service",
                [refs.route],
            )
        else:
            m.note(
                "resolver",
                "converted",
                f"resolver {name}: Kubernetes Service backend",
                [refs.route],
            )
    for key, why in DROPPED.items():
        if key in spec:
            m.note(key, "ignored", why, [])


def cors_filter(cors: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    problems: list[str] = []

    def listed(key: str) -> list[str]:
        value = cors.get(key)
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return [str(v) for v in value] if isinstance(value, list) else []

    origins = listed("origins")
    if origins:
        out["allowOrigins"] = origins
    methods = [m.upper() for m in listed("methods")]
    good = [m for m in methods if m in METHODS or m == "*"]
    if len(good) != len(methods):
        problems.append(f"methods {', '.join(set(methods) - set(good))} dropped")
    if good:
        out["allowMethods"] = good
    if listed("headers"):
        out["allowHeaders"] = listed("headers")
    if listed("exposed_headers"):
        out["exposeHeaders"] = listed("exposed_headers")
    if cors.get("credentials") is True:
        out["allowCredentials"] = True
    age = cors.get("max_age")
    if age is not None:
        if str(age).strip().isdigit():
            out["maxAge"] = int(str(age).strip())
        else:
            problems.append(f"max_age {age!r} is not a number of seconds; dropped")
    return out, problems


def load_balancer(lb: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    policy = str(lb.get("policy", ""))
    if policy == "round_robin":
        return {"type": "RoundRobin"}, "converted", "BackendTrafficPolicy loadBalancer RoundRobin"
    if policy == "least_request":
        return (
            {"type": "LeastRequest"},
            "converted",
            "BackendTrafficPolicy loadBalancer LeastRequest",
        )
    if policy in ("ring_hash", "maglev"):
        note = (
            " (ring_hash becomes Maglev: Envoy Gateway hashes with Maglev only)"
            if (policy == "ring_hash")
            else ""
        )
        status = "partial" if note else "converted"
        cookie = lb.get("cookie")
        if isinstance(cookie, dict) and cookie.get("name"):
            c: dict[str, Any] = {"name": str(cookie["name"])}
            if cookie.get("ttl"):
                c["ttl"] = str(cookie["ttl"])
            if cookie.get("path"):
                c["attributes"] = {"Path": str(cookie["path"])}
            return (
                {"type": "ConsistentHash", "consistentHash": {"type": "Cookie", "cookie": c}},
                status,
                "BackendTrafficPolicy consistentHash Cookie" + note,
            )
        if lb.get("header"):
            return (
                {
                    "type": "ConsistentHash",
                    "consistentHash": {"type": "Header", "header": {"name": str(lb["header"])}},
                },
                status,
                "BackendTrafficPolicy consistentHash Header" + note,
            )
        if lb.get("source_ip") is True:
            return (
                {"type": "ConsistentHash", "consistentHash": {"type": "SourceIP"}},
                status,
                "BackendTrafficPolicy consistentHash SourceIP" + note,
            )
        return {}, "error", f"{policy} needs exactly one of cookie, header or source_ip"
    return {}, "error", f"unknown load_balancer policy {policy!r}"


def health_check(hcs: list[Any]) -> tuple[dict[str, Any], str, str]:
    first = hcs[0] if isinstance(hcs[0], dict) else {}
    check = first.get("health_check") or {}
    active: dict[str, Any] = {}
    if isinstance(check.get("http"), dict):
        http = check["http"]
        active["type"] = "HTTP"
        h: dict[str, Any] = {"path": str(http.get("path", "/"))}
        if http.get("hostname"):
            h["hostname"] = str(http["hostname"])
        statuses: list[int] = []
        for r in http.get("expected_statuses") or []:
            lo, hi = int(r.get("min", 200)), int(r.get("max", r.get("min", 200)))
            statuses.extend(range(lo, min(hi, 599) + 1))
        if statuses:
            h["expectedStatuses"] = statuses[:200]
        active["http"] = h
    elif isinstance(check.get("grpc"), dict):
        active["type"] = "GRPC"
        if check["grpc"].get("upstream_name"):
            active["grpc"] = {"service": str(check["grpc"]["upstream_name"])}
    else:
        return {}, "unsupported", "health check without http or grpc: not converted"
    for src_key, dst in (("timeout", "timeout"), ("interval", "interval")):
        if first.get(src_key):
            active[dst] = str(first[src_key])
    for src_key, dst in (
        ("healthy_threshold", "healthyThreshold"),
        ("unhealthy_threshold", "unhealthyThreshold"),
    ):
        if first.get(src_key) is not None:
            active[dst] = first[src_key]
    notes = []
    if len(hcs) > 1:
        notes.append("only the first health check is converted")
    http = check.get("http") or {}
    if http.get("add_request_headers") or http.get("remove_request_headers"):
        notes.append("health-check header changes are not supported")
    return (
        {"active": active},
        "partial" if notes else "converted",
        "BackendTrafficPolicy healthCheck.active" + (f" ({'; '.join(notes)})" if notes else ""),
    )
