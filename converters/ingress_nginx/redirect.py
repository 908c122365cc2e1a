"""ssl-redirect, force-ssl-redirect, permanent/temporal redirects, from-to-www-redirect."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from converters.ingress_nginx.annotations import ROUTES, AnnotationValueError
from converters.ingress_nginx.ir import Context, Ingress

CODES = (301, 302, 303, 307, 308)


def apply(ctx: Context, ing: Ingress) -> None:
    ann, s = ing.ann, ing.settings
    s.redirect_code = _config_code(ctx)
    default_ssl = ctx.config.get("ssl-redirect", "true").strip().lower() != "false"
    try:
        s.ssl_redirect = ann.bool("ssl-redirect", default_ssl)
        if ann.has("ssl-redirect"):
            ann.claim(
                "ssl-redirect",
                "converted",
                f"HTTP listener route redirects to https ({s.redirect_code}) for TLS hosts"
                if s.ssl_redirect
                else "paths are also served over plain HTTP on TLS hosts",
                [ROUTES],
            )
    except AnnotationValueError as err:
        ann.claim("ssl-redirect", "error", str(err))
    try:
        s.force_ssl_redirect = ann.bool("force-ssl-redirect")
        if ann.has("force-ssl-redirect"):
            ann.claim(
                "force-ssl-redirect",
                "converted",
                "redirect to https even without a certificate here; requests carrying "
                "X-Forwarded-Proto: https (TLS ended upstream) are served: trust that header "
                "only from your load balancer"
                if s.force_ssl_redirect
                else "no forced redirect",
                [ROUTES],
            )
    except AnnotationValueError as err:
        ann.claim("force-ssl-redirect", "error", str(err))
    for key in ("preserve-trailing-slash", "use-port-in-redirects"):
        ann.claim(key, "ignored", "Gateway API redirects keep the path and use the listener port")
    ann.claim_all(
        ("proxy-redirect-from", "proxy-redirect-to"),
        "unsupported",
        "rewriting Location headers of upstream responses has no Gateway API equivalent",
    )
    _static_redirect(ing)
    if ann.has("from-to-www-redirect"):
        try:
            s.www_redirect = ann.bool("from-to-www-redirect")
            ann.claim(
                "from-to-www-redirect",
                "converted",
                f"a route for the www/apex counterpart redirects ({s.redirect_code}) to the "
                "host, unless another Ingress defines it",
                [ROUTES],
            )
        except AnnotationValueError as err:
            ann.claim("from-to-www-redirect", "error", str(err))


def _config_code(ctx: Context) -> int:
    raw = ctx.config.get("http-redirect-code", "308").strip()
    return int(raw) if raw.isdigit() and int(raw) in CODES else 308


def _static_redirect(ing: Ingress) -> None:
    ann, s = ing.ann, ing.settings
    chosen = None
    for kind, default_code in (("temporal", 302), ("permanent", 301)):
        key = f"{kind}-redirect"
        code_key = f"{key}-code"
        if not ann.has(key):
            ann.claim(code_key, "ignored", f"{key} is not set")
            continue
        url = (ann.get(key) or "").strip()
        try:
            code = ann.int(code_key, default_code) or default_code
            if code not in CODES:
                raise AnnotationValueError(
                    f"status {code} is not one of {', '.join(map(str, CODES))}"
                )
        except AnnotationValueError as err:
            ann.claim(code_key, "error", f"{err}; {default_code} used")
            code = default_code
        try:
            redirect = redirect_filter(url, code)
        except AnnotationValueError as err:
            ann.claim(key, "error", str(err))
            ann.claim(code_key, "ignored", f"{key} was not converted")
            continue
        if chosen is not None:
            ann.claim(key, "ignored", f"{chosen} wins over {key}, as in ingress-nginx")
            ann.claim(code_key, "ignored", f"{key} is overridden by {chosen}")
            continue
        chosen = key
        s.redirect = redirect
        ann.claim(key, "converted", f"every path of the Ingress redirects ({code})", [ROUTES])
        ann.claim(code_key, "converted", f"status {code}", [ROUTES])


def redirect_filter(url: str, code: int) -> dict[str, Any]:
    """A URL as nginx's ``return <code> <url>`` would send it → RequestRedirect."""
    keep_path = url.endswith("$request_uri")
    if keep_path:
        url = url[: -len("$request_uri")]
    if "$" in url:
        raise AnnotationValueError(
            f"{url!r} uses nginx variables other than a trailing $request_uri"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AnnotationValueError(f"expected an absolute http(s) URL, got {url!r}")
    if parts.query or parts.fragment:
        raise AnnotationValueError(
            f"{url!r}: a query or fragment in the target cannot be expressed"
        )
    out: dict[str, Any] = {"scheme": parts.scheme, "hostname": parts.hostname}
    if parts.port:
        out["port"] = parts.port
    path = parts.path
    if not keep_path:
        out["path"] = {"type": "ReplaceFullPath", "replaceFullPath": path or "/"}
    elif path and path != "/":
        raise AnnotationValueError(f"{url!r}: a path before $request_uri cannot be expressed")
    out["statusCode"] = code
    return out
