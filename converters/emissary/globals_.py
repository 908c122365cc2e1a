"""Installation-wide resources: the ``ambassador`` Module, AuthService, RateLimitService.

- Module ``config``: the keys that are defaults of every Mapping (request timeout, cors,
  retry_policy, circuit breakers, load balancer, keepalive, cluster timeouts, header defaults)
  are applied to each rule, as Emissary does; ``use_ambassador_namespace_for_service_resolution``
  steers service resolution; the rest is reported with its closest target.
- Envoy Gateway's 10 s connect timeout differs from Emissary's 3 s: a Gateway-level
  BackendTrafficPolicy writes Emissary's value (route-level policies merge into it).
- AuthService → a Gateway-level SecurityPolicy ``extAuth`` (Envoy Gateway), with Emissary's
  built-in forwarded headers listed explicitly; rules with ``bypass_auth`` and redirect rules get
  an empty route-level SecurityPolicy, which disables it there.
- RateLimitService: the limits live in the RLS's own configuration → reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from converters import naming
from converters.api import MigrateOptions
from converters.emissary.matching import duration, millis
from converters.emissary.model import EG_API_VERSION, Src
from converters.emissary.service import ServiceError, Target
from converters.layout import GrantNeed, Grants
from converters.provenance import stamp
from kubectl_gw.model import ENVOY_GATEWAY_GROUP, GATEWAY_GROUP, KubeObject, ObjectRef

CONNECT_TIMEOUT_MS = 3000
AUTH_REQUEST_HEADERS = (
    "Authorization",
    "Cookie",
    "From",
    "Proxy-Authorization",
    "User-Agent",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
)
AUTH_RESPONSE_HEADERS = (
    "Authorization",
    "Location",
    "Proxy-Authenticate",
    "Set-cookie",
    "WWW-Authenticate",
)
STATUS_ON_ERROR = {
    400,
    401,
    402,
    403,
    404,
    405,
    406,
    407,
    408,
    409,
    410,
    411,
    412,
    413,
    414,
    415,
    416,
    417,
    421,
    422,
    423,
    424,
    426,
    428,
    429,
    431,
    500,
    501,
    502,
    503,
    504,
    505,
    506,
    507,
    508,
    510,
    511,
}
APPLIED = (
    "cluster_request_timeout_ms",
    "cors",
    "retry_policy",
    "circuit_breakers",
    "load_balancer",
    "keepalive",
    "cluster_idle_timeout_ms",
    "cluster_max_connection_lifetime_ms",
    "add_linkerd_headers",
    "add_request_headers",
    "add_response_headers",
    "remove_request_headers",
    "remove_response_headers",
)
MODULE_HINTS: dict[str, tuple[str, str]] = {
    "use_remote_address": ("converted", "Envoy Gateway uses the client's address too"),
    "use_ambassador_namespace_for_service_resolution": (
        "converted",
        "applied to service resolution",
    ),
    "xff_num_trusted_hops": (
        "unsupported",
        "ClientTrafficPolicy clientIPDetection.xForwardedFor.numTrustedHops",
    ),
    "use_proxy_proto": ("unsupported", "ClientTrafficPolicy proxyProtocol"),
    "enable_http10": ("unsupported", "ClientTrafficPolicy http1.http10"),
    "merge_slashes": ("unsupported", "ClientTrafficPolicy path.disableMergeSlashes"),
    "reject_requests_with_escaped_slashes": (
        "unsupported",
        "ClientTrafficPolicy path.escapedSlashesAction",
    ),
    "headers_with_underscores_action": (
        "unsupported",
        "ClientTrafficPolicy headers.withUnderscoresAction",
    ),
    "preserve_external_request_id": ("unsupported", "ClientTrafficPolicy headers.requestID"),
    "max_request_headers_kb": ("unsupported", "ClientTrafficPolicy headers.maxRequestHeaderLimit"),
    "listener_idle_timeout_ms": ("unsupported", "ClientTrafficPolicy timeout.http.idleTimeout"),
    "forward_client_cert_details": (
        "unsupported",
        "ClientTrafficPolicy headers.xForwardedClientCert",
    ),
    "suppress_envoy_headers": ("unsupported", "ClientTrafficPolicy headers.enableEnvoyHeaders"),
    "enable_grpc_web": ("unsupported", "ClientTrafficPolicy grpc.enableWeb"),
    "gzip": ("unsupported", "BackendTrafficPolicy compressor"),
    "buffer": ("unsupported", "BackendTrafficPolicy requestBuffer"),
    "lua_scripts": ("unsupported", "EnvoyExtensionPolicy lua"),
    "ip_allow": ("unsupported", "SecurityPolicy authorization (client CIDRs)"),
    "ip_deny": ("unsupported", "SecurityPolicy authorization (client CIDRs)"),
    "server_name": ("unsupported", "EnvoyPatchPolicy"),
    "envoy_log_type": ("unsupported", "EnvoyProxy access-log format"),
    "envoy_log_path": ("unsupported", "EnvoyProxy access-log sinks"),
    "envoy_log_format": ("unsupported", "EnvoyProxy access-log format"),
    "diagnostics": ("ignored", "Emissary's own diagnostics"),
    "resolver": ("converted", "backends are Kubernetes Services"),
    "enable_ipv6": ("ignored", "Envoy Gateway routes to endpoints"),
    "enable_ipv4": ("ignored", "Envoy Gateway routes to endpoints"),
}


def module(modules: list[Src]) -> tuple[Src | None, dict[str, Any]]:
    chosen: Src | None = None
    for m in modules:
        if m.name == "ambassador" and chosen is None:
            chosen = m
            continue
        if m.name == "ambassador":
            m.note(
                "config",
                "ignored",
                f"a second ambassador Module; {chosen.label if chosen else ''} is used",
                [],
            )
        elif m.name == "tls":
            m.note("config", "unsupported", "the legacy tls Module: express TLS with Hosts", [])
        else:
            m.note("config", "ignored", "only the Module named ambassador configures Emissary", [])
        m.dropped = True
    config = chosen.spec.get("config") if chosen else None
    return chosen, dict(config) if isinstance(config, dict) else {}


def report_module(m: Src, config: dict[str, Any], eg: bool) -> None:
    defaults = config.get("defaults")
    for key in config:
        path = f"config.{key}"
        if key in APPLIED:
            m.note(
                path,
                "converted",
                "applied to every Mapping's rule that does not set it, as "
                "Emissary does"
                + (
                    ""
                    if eg
                    or key
                    in (
                        "cluster_request_timeout_ms",
                        "cors",
                        "add_request_headers",
                        "add_response_headers",
                        "remove_request_headers",
                        "remove_response_headers",
                        "add_linkerd_headers",
                    )
                    else " (--target standard: not converted)"
                ),
            )
        elif key == "defaults":
            if isinstance(defaults, dict):
                m.note(path, "converted", "Mapping header defaults applied to every rule")
        elif key == "connect_timeout_ms":
            m.note(
                path,
                "converted" if eg else "unsupported",
                "the Gateway-level BackendTrafficPolicy connect timeout",
            )
        elif key in MODULE_HINTS:
            status, hint = MODULE_HINTS[key]
            if status == "unsupported":
                hint = f"no Gateway API field; Envoy Gateway target: {hint}; not converted"
            m.note(path, status, hint, [] if status != "converted" else None)  # type: ignore[arg-type]
        else:
            m.note(path, "unsupported", f"Module setting {key} is not converted", [])
    if "config" not in m.spec:
        return
    m.note("config", "converted", "see the config.<key> entries", None)


def gateway_defaults(
    gateways: list[KubeObject],
    module_src: Src | None,
    config: dict[str, Any],
    out: list[KubeObject],
) -> None:
    """Emissary's 3 s connect timeout for every route of the Gateway (Envoy Gateway: 10 s)."""
    ms = millis(config.get("connect_timeout_ms"))
    value = ms if ms is not None else CONNECT_TIMEOUT_MS
    for gw in gateways:
        meta = gw["metadata"]
        obj: KubeObject = {
            "apiVersion": EG_API_VERSION,
            "kind": "BackendTrafficPolicy",
            "metadata": {
                "name": naming.allocate_one(meta["name"], "emissary-defaults"),
                "namespace": meta.get("namespace", ""),
            },
            "spec": {
                "targetRefs": [{"group": GATEWAY_GROUP, "kind": "Gateway", "name": meta["name"]}],
                "timeout": {"tcp": {"connectTimeout": duration(value)}},
            },
        }
        out.append(stamp(obj, [module_src.ref] if module_src else []))


# --------------------------------------------------------------------------- AuthService


@dataclass
class AuthPlan:
    src: Src
    # (namespace, route, rule name, source) that must bypass external authorization.
    bypass: list[tuple[str, ObjectRef, str, ObjectRef]] = field(default_factory=list)


def auth_plan(services: list[Src], eg: bool) -> AuthPlan | None:
    if not services:
        return None
    first = services[0]
    for other in services[1:]:
        other.note(
            "auth_service",
            "partial",
            f"Emissary round-robins between AuthServices; only {first.label} is converted",
            [],
        )
        other.dropped = True
    if not eg:
        first.note(
            "auth_service",
            "unsupported",
            "external authorization needs Envoy "
            "Gateway's SecurityPolicy extAuth; --target standard: not converted",
            [],
        )
        first.dropped = True
        return None
    return AuthPlan(first)


def render_auth(
    plan: AuthPlan,
    gateways: list[KubeObject],
    options: MigrateOptions,
    grants: Grants,
    out: list[KubeObject],
    service: Callable[[Src, object, bool], Target],
) -> None:
    src = plan.src
    spec = src.spec
    try:
        target = service(src, spec.get("auth_service"), False)
    except ServiceError as err:
        src.error("auth_service", str(err))
        return
    if target.kind != "service":
        src.error("auth_service", f"{target.text} is not a Kubernetes Service; not converted")
        return
    proto = str(spec.get("proto", "http"))
    ext: dict[str, Any] = {}
    backend = {"name": target.name, "namespace": target.namespace, "port": target.port}
    if proto == "grpc":
        ext["grpc"] = {"backendRefs": [backend]}
        src.note("proto", "converted", "extAuth grpc")
    else:
        http: dict[str, Any] = {"backendRefs": [backend]}
        if spec.get("path_prefix"):
            http["path"] = str(spec["path_prefix"])
            src.note("path_prefix", "converted", "extAuth http path")
        allowed = [str(h) for h in spec.get("allowed_authorization_headers") or []]
        http["headersToBackend"] = sorted(set(AUTH_RESPONSE_HEADERS) | set(allowed))
        ext["http"] = http
        if "allowed_authorization_headers" in spec:
            src.note(
                "allowed_authorization_headers",
                "converted",
                "headersToBackend (with Emissary's built-ins)",
            )
        if "proto" in spec:
            src.note("proto", "converted", "extAuth http")
    allowed_req = [str(h) for h in spec.get("allowed_request_headers") or []]
    ext["headersToExtAuth"] = sorted(set(AUTH_REQUEST_HEADERS) | set(allowed_req))
    if "allowed_request_headers" in spec:
        src.note(
            "allowed_request_headers",
            "converted",
            "headersToExtAuth (with Emissary's 8 built-ins written explicitly)",
        )
    ms = millis(spec.get("timeout_ms", 5000))
    ext["timeout"] = duration(ms if ms is not None else 5000)
    src.note(
        "timeout_ms",
        "converted",
        f"extAuth timeout {ext['timeout']}"
        + ("" if "timeout_ms" in spec else " (Emissary's default 5s)"),
    )
    if spec.get("failure_mode_allow") is True:
        ext["failOpen"] = True
    if "failure_mode_allow" in spec:
        src.note("failure_mode_allow", "converted", "extAuth failOpen")
    code = (spec.get("status_on_error") or {}).get("code")
    if code is not None:
        if code in STATUS_ON_ERROR:
            ext["statusOnError"] = code
            src.note("status_on_error", "converted", "extAuth statusOnError")
        else:
            src.note("status_on_error", "unsupported", f"status {code} is not allowed", [])
    body = spec.get("include_body")
    if isinstance(body, dict):
        if body.get("max_bytes") is not None:
            ext["bodyToExtAuth"] = {"maxRequestBytes": int(body["max_bytes"])}
        src.note(
            "include_body",
            "partial" if body.get("allow_partial") is not None else "converted",
            "bodyToExtAuth.maxRequestBytes"
            + (
                "; allow_partial has no equivalent" if body.get("allow_partial") is not None else ""
            ),
        )
    for key, (status, message) in {
        "add_auth_headers": ("unsupported", "no Envoy Gateway equivalent"),
        "allow_request_body": ("partial", "use include_body"),
        "add_linkerd_headers": ("ignored", "not needed for the auth backend"),
        "protocol_version": ("ignored", "Envoy Gateway picks the protocol"),
        "stats_name": ("ignored", "statistics naming only"),
        "circuit_breakers": ("unsupported", "a BackendTrafficPolicy on the auth Service"),
        "tls": ("unsupported", "TLS to the auth service: a BackendTLSPolicy on its Service"),
        "auth_service": (
            "converted",
            f"extAuth backend Service {target.namespace}/{target.name}:{target.port}",
        ),
        "ambassador_id": ("converted", "this installation's AuthService"),
    }.items():
        if key in spec and not src.claimed(key):
            src.note(key, status, message, [] if status != "converted" else None)  # type: ignore[arg-type]
    if options.gateway is not None:
        targets = [(options.gateway.namespace, options.gateway.name)]
    else:
        targets = [(g["metadata"].get("namespace", ""), g["metadata"]["name"]) for g in gateways]
    by_ns: dict[str, list[str]] = defaultdict(list)
    for ns, name in targets:
        by_ns[ns].append(name)
    for ns, names in sorted(by_ns.items()):
        sp_name = naming.allocate_one(src.name, "ext-auth")
        refs = {"extAuth": ext}
        obj: KubeObject = {
            "apiVersion": EG_API_VERSION,
            "kind": "SecurityPolicy",
            "metadata": {"name": sp_name, "namespace": ns},
            "spec": {
                "targetRefs": [
                    {"group": GATEWAY_GROUP, "kind": "Gateway", "name": n} for n in sorted(names)
                ],
                **refs,
            },
        }
        ext_copy = obj["spec"]["extAuth"]
        for proto_key in ("http", "grpc"):
            if proto_key in ext_copy:
                ext_copy[proto_key] = {
                    **ext_copy[proto_key],
                    "backendRefs": [
                        {k: v for k, v in backend.items() if k != "namespace" or v != ns}
                    ],
                }
        grant = GrantNeed(
            ENVOY_GATEWAY_GROUP, "SecurityPolicy", ns, "", "Service", target.namespace, target.name
        )
        grants.add(grant, [src.ref])
        out.append(stamp(obj, [src.ref]))
        src.outputs.append(ObjectRef(EG_API_VERSION, "SecurityPolicy", ns, sp_name))
        grant_ref = grants.ref_for(grant)
        if grant_ref:
            src.outputs.append(grant_ref)
    # Empty route-level SecurityPolicies: bypass_auth rules and redirect rules.
    by_route: dict[tuple[str, ObjectRef], list[tuple[str, ObjectRef]]] = defaultdict(list)
    for ns, route, rule, source in plan.bypass:
        by_route[(ns, route)].append((rule, source))
    for (ns, route), rules in sorted(by_route.items()):
        name = naming.allocate_one(route.name, "no-ext-auth")
        obj = {
            "apiVersion": EG_API_VERSION,
            "kind": "SecurityPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "targetRefs": [
                    {
                        "group": GATEWAY_GROUP,
                        "kind": route.kind,
                        "name": route.name,
                        "sectionName": rule,
                    }
                    for rule, _s in sorted(rules)
                ]
            },
        }
        out.append(stamp(obj, [s for _r, s in rules]))


def ratelimit(services: list[Src]) -> None:
    for src in services:
        src.note(
            "service",
            "unsupported",
            "Envoy Gateway runs its own rate-limit service configured from "
            "BackendTrafficPolicy rules and cannot point at this one; the limits live in "
            "this service's configuration: re-express them as BackendTrafficPolicy "
            "rateLimit.global rules",
            [],
        )
        for key in src.spec:
            if key not in ("service", "ambassador_id"):
                src.note(key, "unsupported", "see service", [])
        if "ambassador_id" in src.spec:
            src.note("ambassador_id", "converted", "this installation's RateLimitService", [])
        src.dropped = True
