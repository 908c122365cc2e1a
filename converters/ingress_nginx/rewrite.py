"""use-regex, rewrite-target, x-forwarded-prefix, app-root."""

from __future__ import annotations

import re

from converters.ingress_nginx.annotations import ROUTES, AnnotationValueError
from converters.ingress_nginx.ir import Context, Ingress

_CAPTURE = re.compile(r"\$(\d)")
_VARIABLE = re.compile(r"\$(?!\d)")


def apply(ctx: Context, ing: Ingress) -> None:
    ann, s = ing.ann, ing.settings
    if ann.has("use-regex"):
        try:
            s.use_regex = ann.bool("use-regex")
            ann.claim(
                "use-regex",
                "converted",
                "every path of the host (all its Ingresses) becomes a case-insensitive "
                "prefix regex, as in ingress-nginx"
                if s.use_regex
                else "no regex paths",
                [ROUTES],
            )
        except AnnotationValueError as err:
            ann.claim("use-regex", "error", str(err))
    target = (ann.get("rewrite-target") or "").strip()
    if ann.has("rewrite-target"):
        if not target:
            ann.claim("rewrite-target", "ignored", "empty: no rewrite")
        elif _VARIABLE.search(target):
            ann.claim(
                "rewrite-target",
                "error",
                f"{target!r} uses nginx variables other than $1..$9; not converted",
            )
        else:
            s.rewrite_target = target
            s.rewrite_captures = bool(_CAPTURE.search(target))
            if s.rewrite_captures and not ctx.eg:
                s.rewrite_supported = False
                ann.claim(
                    "rewrite-target",
                    "unsupported",
                    "capture-group references need a regex rewrite, which standard Gateway "
                    "API lacks (use --target envoy-gateway); paths are routed unrewritten",
                    [ROUTES],
                )
            elif s.rewrite_captures:
                ann.claim(
                    "rewrite-target",
                    "converted",
                    "HTTPRouteFilter regex rewrite of the whole path ($n → \\n); the host is "
                    "in regex mode",
                    [ROUTES],
                )
            else:
                ann.claim(
                    "rewrite-target",
                    "converted",
                    f"URLRewrite ReplaceFullPath {target} (nginx replaces the whole URI); the "
                    "host is in regex mode",
                    [ROUTES],
                )
    if ann.has("x-forwarded-prefix"):
        value = (ann.get("x-forwarded-prefix") or "").strip()
        if value:
            s.request_set["X-Forwarded-Prefix"] = value
            ann.claim(
                "x-forwarded-prefix",
                "converted",
                "RequestHeaderModifier set X-Forwarded-Prefix",
                [ROUTES],
            )
        else:
            ann.claim("x-forwarded-prefix", "ignored", "empty value")
    if ann.has("app-root"):
        value = (ann.get("app-root") or "").strip()
        if not value.startswith("/") or " " in value:
            ann.claim("app-root", "error", f"expected an absolute path, got {value!r}")
        else:
            s.app_root = value
            ann.claim("app-root", "converted", f"Exact / → 302 redirect to {value}", [ROUTES])
