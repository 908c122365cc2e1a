"""custom-headers, upstream-vhost, connection-proxy-header, x-forwarded-* differences."""

from __future__ import annotations

import re

from converters.ingress_nginx.annotations import ROUTES
from converters.ingress_nginx.ir import Context, Ingress

_HOST = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_SET = 16  # HTTPHeaderFilter.set
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")


def apply(ctx: Context, ing: Ingress) -> None:
    ann, s = ing.ann, ing.settings
    if ann.has("custom-headers"):
        raw = (ann.get("custom-headers") or "").strip()
        ns, _, name = raw.rpartition("/")
        ns = ns or ing.namespace
        cm = ctx.configmaps.get((ns, name))
        if cm is None:
            ann.claim(
                "custom-headers",
                "error",
                f"ConfigMap {ns}/{name} was not given (pass it with -f or read the cluster)",
            )
        else:
            data = cm.get("data") or {}
            bad = sorted(k for k in data if not _HEADER.match(k))
            good = [k for k in sorted(data) if k not in bad and data[k]]
            for key in good[:MAX_SET]:
                s.response_set[key] = str(data[key])
            message = f"ResponseHeaderModifier set from ConfigMap {ns}/{name}"
            if bad:
                message += f"; not header names, dropped: {', '.join(bad)}"
            if len(good) > MAX_SET:
                message += (
                    f"; a header modifier sets at most {MAX_SET} headers in Gateway API, "
                    f"dropped: {', '.join(good[MAX_SET:])}"
                )
            partial = bool(bad) or len(good) > MAX_SET
            ann.claim("custom-headers", "partial" if partial else "converted", message, [ROUTES])
    if ann.has("upstream-vhost"):
        host = (ann.get("upstream-vhost") or "").strip().lower()
        if "$" in host or not _HOST.match(host):
            ann.claim("upstream-vhost", "error", f"{host!r} is not a hostname")
        else:
            s.host_rewrite = host
            ann.claim("upstream-vhost", "converted", "URLRewrite hostname", [ROUTES])
    ann.claim(
        "connection-proxy-header",
        "unsupported",
        "Envoy manages the hop-by-hop Connection header itself",
    )
    for key in ("proxy-set-headers", "proxy-hide-headers"):
        ann.claim(key, "unsupported", "not an ingress-nginx annotation Gateway API can express")
