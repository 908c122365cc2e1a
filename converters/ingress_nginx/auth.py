"""Access control: source ranges, basic auth, external auth (auth-url), client certificates.

All of them become one Envoy Gateway SecurityPolicy per Ingress (a route rule accepts a single
SecurityPolicy), targeting the rules the Ingress contributed; standard Gateway API has none.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from converters.ingress_nginx.annotations import AnnotationValueError
from converters.ingress_nginx.ir import EG_API_VERSION, Context, Ingress
from converters.layout import GrantNeed
from kubectl_gw.model import ENVOY_GATEWAY_GROUP, KubeObject, ObjectRef

EXT_AUTH_EXTRA = (
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-request-redirect",
    "auth-proxy-set-headers",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-timeout",
    "auth-keepalive-share-vars",
    "auth-always-set-cookie",
)
TLS_KEYS = (
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-error-page",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-match-cn",
)
STANDARD = "standard Gateway API has no access control; use --target envoy-gateway"


def apply(ctx: Context, ing: Ingress) -> None:
    _source_ranges(ctx, ing)
    _basic(ctx, ing)
    _external(ctx, ing)
    ann = ing.ann
    ann.claim_all(
        TLS_KEYS,
        "unsupported",
        "client-certificate validation is per listener (Gateway tls.frontend or an Envoy "
        "Gateway ClientTrafficPolicy); not converted per Ingress, configure it on the Gateway",
    )
    ann.claim(
        "satisfy",
        "unsupported",
        "Envoy Gateway applies every configured check (like satisfy all); 'any' cannot be "
        "expressed",
    )
    ann.claim(
        "enable-global-auth",
        "unsupported",
        "global auth is gateway-wide; opt a route out with an empty SecurityPolicy by hand",
    )


def _sp_ref(ctx: Context, ing: Ingress) -> list[ObjectRef | str]:
    return [ctx.policy_ref("SecurityPolicy", ing)]


def _cidrs(values: list[str]) -> list[str]:
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            raise AnnotationValueError(f"{value!r} is not an IP address or CIDR") from None
    return out


def _source_ranges(ctx: Context, ing: Ingress) -> None:
    ann = ing.ann
    allow_keys = ann.present(("allowlist-source-range", "whitelist-source-range"))
    deny = ann.present(("denylist-source-range",))
    rules: list[dict[str, Any]] = []
    default = "Allow"
    if allow_keys:
        chosen = allow_keys[0]  # the canonical allowlist wins over its old alias
        for other in allow_keys[1:]:
            ann.claim(other, "ignored", f"{chosen} is set and takes precedence")
        try:
            cidrs = _cidrs(ann.csv(chosen))
            if not ctx.eg:
                ann.claim(chosen, "unsupported", STANDARD)
            elif cidrs:
                rules.append({"action": "Allow", "principal": {"clientCIDRs": cidrs}})
                default = "Deny"
                ann.claim(
                    chosen,
                    "converted",
                    "SecurityPolicy authorization: only these client CIDRs (403 otherwise); "
                    "make sure the gateway sees real client IPs (ClientTrafficPolicy "
                    "clientIPDetection)",
                    _sp_ref(ctx, ing),
                )
            else:
                ann.claim(chosen, "ignored", "empty list")
        except AnnotationValueError as err:
            ann.claim(chosen, "error", f"{err}; no access rule emitted (nginx rejects it too)")
    if deny:
        try:
            cidrs = _cidrs(ann.csv("denylist-source-range"))
            if not ctx.eg:
                ann.claim("denylist-source-range", "unsupported", STANDARD)
            elif cidrs:
                rules.insert(0, {"action": "Deny", "principal": {"clientCIDRs": cidrs}})
                ann.claim(
                    "denylist-source-range",
                    "converted",
                    "SecurityPolicy authorization: these client CIDRs get 403",
                    _sp_ref(ctx, ing),
                )
        except AnnotationValueError as err:
            ann.claim("denylist-source-range", "error", str(err))
    if rules:
        ing.settings.sp["authorization"] = {"defaultAction": default, "rules": rules}


def _basic(ctx: Context, ing: Ingress) -> None:
    ann = ing.ann
    keys = ("auth-type", "auth-secret", "auth-secret-type", "auth-realm")
    if not ann.has("auth-type"):
        ann.claim_all(keys[1:], "ignored", "auth-type is not set")
        return
    kind = (ann.get("auth-type") or "").strip().lower()
    if kind not in ("basic", "digest"):
        ann.claim("auth-type", "error", f"expected basic or digest, got {kind!r}")
        ann.claim_all(keys[1:], "ignored", "auth-type is not usable")
        return
    if kind == "digest":
        ann.claim("auth-type", "unsupported", "digest authentication has no equivalent")
        ann.claim_all(keys[1:], "unsupported", "digest authentication has no equivalent")
        return
    if not ctx.eg:
        ann.claim_all(keys, "unsupported", STANDARD)
        return
    raw = (ann.get("auth-secret") or "").strip()
    if not raw:
        ann.claim("auth-type", "error", "auth-secret is missing")
        ann.claim_all(keys[1:], "ignored", "basic auth is not usable")
        return
    ns, _, name = raw.rpartition("/")
    ns = ns or ing.namespace
    secret = ctx.secrets.get((ns, name))
    if ctx.secrets and secret is None:
        ann.claim("auth-secret", "error", f"Secret {ns}/{name} not found")
        ann.claim("auth-type", "error", "its Secret is missing")
        ann.claim_all(keys[2:], "ignored", "basic auth is not usable")
        return
    secret_type = (ann.get("auth-secret-type") or "auth-file").strip()
    if secret_type not in ("auth-file", "auth-map"):
        ann.claim("auth-secret-type", "error", f"expected auth-file or auth-map: {secret_type!r}")
        secret_type = "auth-file"
    else:
        ann.claim("auth-secret-type", "converted", f"{secret_type} (see auth-secret)")
    new_name = f"{name}-htpasswd"
    users: dict[str, Any] = {"group": "", "kind": "Secret", "name": new_name}
    if ns != ing.namespace:
        users["namespace"] = ns
        ctx.grants.add(
            GrantNeed(
                ENVOY_GATEWAY_GROUP, "SecurityPolicy", ing.namespace, "", "Secret", ns, new_name
            ),
            [ing.ref],
        )
    ing.settings.sp["basicAuth"] = {"users": users}
    source_key = (
        "the htpasswd file in key auth"
        if secret_type == "auth-file"
        else ("one htpasswd line per user key")
    )
    ann.claim("auth-type", "converted", "SecurityPolicy basicAuth", _sp_ref(ctx, ing))
    ann.claim(
        "auth-secret",
        "partial",
        f"Envoy Gateway reads htpasswd from key .htpasswd: create Secret {ns}/{new_name} from "
        f"{source_key} of {ns}/{name} (kubectl-gw never copies Secret data)",
        _sp_ref(ctx, ing),
    )
    ann.claim("auth-realm", "unsupported", "the realm is not configurable in Envoy Gateway")


def _external(ctx: Context, ing: Ingress) -> None:
    ann = ing.ann
    if not ann.has("auth-url"):
        ann.claim_all(("auth-response-headers", *EXT_AUTH_EXTRA), "ignored", "auth-url is not set")
        return
    if not ctx.eg:
        ann.claim_all(
            ("auth-url", "auth-response-headers", *EXT_AUTH_EXTRA), "unsupported", STANDARD
        )
        return
    url = (ann.get("auth-url") or "").strip()
    try:
        backend_ref, path = _auth_backend(ctx, ing, url)
    except AnnotationValueError as err:
        ann.claim("auth-url", "error", str(err))
        ann.claim_all(
            ("auth-response-headers", *EXT_AUTH_EXTRA), "ignored", "auth-url is not usable"
        )
        return
    http: dict[str, Any] = {"backendRefs": [backend_ref]}
    if path and path != "/":
        http["pathOverride"] = path
    headers = ann.csv("auth-response-headers")
    if headers:
        http["headersToBackend"] = headers
        ann.claim(
            "auth-response-headers", "converted", "extAuth headersToBackend", _sp_ref(ctx, ing)
        )
    ing.settings.sp["extAuth"] = {"http": http}
    ann.claim(
        "auth-url",
        "converted",
        "SecurityPolicy extAuth (2xx allows, other statuses are returned to the client); "
        "Envoy Gateway forwards only some request headers to the auth service by default",
        _sp_ref(ctx, ing),
    )
    method = (ann.get("auth-method") or "").strip().upper()
    if method and method != "GET":
        ann.claim("auth-method", "unsupported", "the auth request keeps the client's method")
    else:
        ann.claim("auth-method", "converted", "GET is what Envoy sends for GET requests")
    ann.claim(
        "auth-signin",
        "unsupported",
        "no login redirect on 401 in Envoy Gateway's extAuth (consider its OIDC support)",
    )
    ann.claim("auth-signin-redirect-param", "unsupported", "follows auth-signin")
    ann.claim_all(
        EXT_AUTH_EXTRA,
        "unsupported",
        "no Envoy Gateway equivalent for this ext-auth detail (caching, keepalive, extra "
        "headers, cookies)",
    )


def _auth_backend(ctx: Context, ing: Ingress, url: str) -> tuple[dict[str, Any], str]:
    if "$" in url:
        raise AnnotationValueError(f"{url!r} uses nginx variables; not converted")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AnnotationValueError(f"expected an http(s) URL, got {url!r}")
    host = parts.hostname.lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    labels = host.split(".")
    svc_ns = ""
    if (
        (host.endswith(".svc.cluster.local") and len(labels) == 5)
        or (host.endswith(".svc") and len(labels) == 3)
        or (len(labels) == 2 and ctx.services.by_key.get((labels[1], labels[0])))
    ):
        svc_ns = labels[1]
    elif len(labels) == 1:
        svc_ns = ing.namespace
    if svc_ns:
        ref: dict[str, Any] = {"group": "", "kind": "Service", "name": labels[0], "port": port}
        if svc_ns != ing.namespace:
            ref["namespace"] = svc_ns
            ctx.grants.add(
                GrantNeed(
                    ENVOY_GATEWAY_GROUP,
                    "SecurityPolicy",
                    ing.namespace,
                    "",
                    "Service",
                    svc_ns,
                    labels[0],
                ),
                [ing.ref],
            )
        return ref, parts.path
    backend_name = f"{ing.name}-auth"
    spec: dict[str, Any] = {"endpoints": [{"fqdn": {"hostname": host, "port": port}}]}
    if parts.scheme == "https":
        spec["tls"] = {"wellKnownCACertificates": "System"}
    backend: KubeObject = {
        "apiVersion": EG_API_VERSION,
        "kind": "Backend",
        "metadata": {"name": backend_name, "namespace": ing.namespace},
        "spec": spec,
    }
    ing.settings.objects.append(backend)
    return {"group": ENVOY_GATEWAY_GROUP, "kind": "Backend", "name": backend_name}, parts.path
