"""mirror-target (+ mirror-host, mirror-request-body) → RequestMirror filter."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from converters.ingress_nginx.annotations import ROUTES
from converters.ingress_nginx.ir import EG_API_VERSION, Context, Ingress
from converters.layout import GrantNeed
from kubectl_gw.model import ENVOY_GATEWAY_GROUP, GATEWAY_GROUP


def apply(ctx: Context, ing: Ingress) -> None:
    ann = ing.ann
    if not ann.has("mirror-target"):
        ann.claim_all(("mirror-host", "mirror-request-body"), "ignored", "mirror-target not set")
        return
    url = (ann.get("mirror-target") or "").strip()
    keeps_uri = url.endswith("$request_uri")
    base = url[: -len("$request_uri")] if keeps_uri else url
    parts = urlsplit(base)
    if "$" in base or parts.scheme not in ("http", "https") or not parts.hostname:
        ann.claim(
            "mirror-target", "error", f"{url!r}: expected http(s)://host[:port][$request_uri]"
        )
        ann.claim_all(("mirror-host", "mirror-request-body"), "ignored", "mirror-target unusable")
        return
    host = parts.hostname.lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    labels = host.split(".")
    ref: dict[str, Any]
    if host.endswith(".svc.cluster.local") or host.endswith(".svc") or len(labels) <= 2:
        svc_ns = labels[1] if len(labels) > 1 else ing.namespace
        ref = {"group": "", "kind": "Service", "name": labels[0], "port": port}
        if svc_ns != ing.namespace:
            ref["namespace"] = svc_ns
            ctx.grants.add(
                GrantNeed(
                    GATEWAY_GROUP, "HTTPRoute", ing.namespace, "", "Service", svc_ns, labels[0]
                ),
                [ing.ref],
            )
    elif ctx.eg:
        name = f"{ing.name}-mirror"
        ing.settings.objects.append(
            {
                "apiVersion": EG_API_VERSION,
                "kind": "Backend",
                "metadata": {"name": name, "namespace": ing.namespace},
                "spec": {"endpoints": [{"fqdn": {"hostname": host, "port": port}}]},
            }
        )
        ref = {"group": ENVOY_GATEWAY_GROUP, "kind": "Backend", "name": name}
    else:
        ann.claim(
            "mirror-target",
            "unsupported",
            "an external mirror needs an Envoy Gateway Backend; use --target envoy-gateway",
        )
        ann.claim_all(("mirror-host", "mirror-request-body"), "ignored", "mirror not converted")
        return
    ing.settings.mirrors.append({"backendRef": ref})
    exact = keeps_uri and parts.path in ("", "/")
    ann.claim(
        "mirror-target",
        "converted" if exact else "partial",
        "RequestMirror filter (fire and forget: a slow mirror no longer slows requests)"
        + ("" if exact else "; the mirror receives the original path, not the URL's path"),
        [ROUTES],
    )
    ann.claim("mirror-host", "unsupported", "the mirrored request keeps the original Host")
    ann.claim("mirror-request-body", "ignored", "Envoy always mirrors the body")
