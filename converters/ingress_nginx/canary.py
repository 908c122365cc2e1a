"""canary, canary-weight(-total), canary-by-header(-value/-pattern), canary-by-cookie.

A canary Ingress adds an alternative backend to the primary rule with the same host and path
(``convert`` does the matching). ingress-nginx evaluates header, then cookie, then weight; the
Gateway API rules mirror that: header rules come first in the route, then cookie rules (equal
match counts → rule order decides), then the weighted base rule.
"""

from __future__ import annotations

import re
from typing import Any

from converters.ingress_nginx.annotations import ROUTES, AnnotationValueError
from converters.ingress_nginx.ir import Canary, Context, Ingress
from converters.ingress_nginx.paths import RegexError, check_re2, re2_escape

# What ingress-nginx still honours on a canary Ingress.
KEPT_ON_CANARY = ("load-balance", "upstream-hash-by", "affinity", "session-cookie")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")


def apply(ctx: Context, ing: Ingress) -> None:
    ann = ing.ann
    keys = [k for k in ann.values if k.startswith("canary")]
    try:
        on = ann.bool("canary")
    except AnnotationValueError as err:
        ann.claim("canary", "error", f"{err}; the Ingress is treated as a primary")
        on = False
    if not on:
        ann.claim("canary", "ignored", "not a canary")
        ann.claim_all(keys, "ignored", "canary is not enabled on this Ingress")
        return
    canary = Canary()
    try:
        canary.total = ann.int("canary-weight-total", 100, minimum=1) or 100
        ann.claim("canary-weight-total", "converted", f"weights out of {canary.total}", [ROUTES])
    except AnnotationValueError as err:
        ann.claim("canary-weight-total", "error", f"{err}; 100 used")
    try:
        weight = ann.int("canary-weight", 0) or 0
        if weight > canary.total:
            raise AnnotationValueError(f"weight {weight} exceeds the total {canary.total}")
        canary.weight = weight
        ann.claim(
            "canary-weight",
            "converted",
            f"backendRef weights {canary.total - weight}/{weight} (primary/canary)",
            [ROUTES],
        )
    except AnnotationValueError as err:
        ann.claim("canary-weight", "error", f"{err}; weight 0 used")
    header = (ann.get("canary-by-header") or "").strip()
    if header and not _HEADER_NAME.match(header):
        ann.claim("canary-by-header", "error", f"{header!r} is not a header name")
        header = ""
    canary.header = header
    value = (ann.get("canary-by-header-value") or "").strip()
    pattern = (ann.get("canary-by-header-pattern") or "").strip()
    if header:
        if value:
            canary.header_value = value
            ann.claim(
                "canary-by-header",
                "converted",
                f"rule matching header {header}: {value} → canary",
                [ROUTES],
            )
            ann.claim("canary-by-header-value", "converted", "exact header match", [ROUTES])
            if pattern:
                ann.claim(
                    "canary-by-header-pattern",
                    "ignored",
                    "canary-by-header-value is set, so ingress-nginx ignores the pattern",
                )
        elif pattern:
            try:
                check_re2(pattern)
                canary.header_pattern = pattern
                ann.claim(
                    "canary-by-header",
                    "converted",
                    f"rule matching header {header} by regex → canary",
                    [ROUTES],
                )
                ann.claim(
                    "canary-by-header-pattern",
                    "converted",
                    "RegularExpression header match (full match, RE2)",
                    [ROUTES],
                )
            except RegexError as err:
                ann.claim("canary-by-header-pattern", "error", str(err))
                ann.claim("canary-by-header", "error", "its pattern is not usable")
                canary.header = ""
        else:
            ann.claim(
                "canary-by-header",
                "converted",
                f"rules matching {header}: always → canary, {header}: never → primary",
                [ROUTES],
            )
    else:
        for key in ("canary-by-header-value", "canary-by-header-pattern"):
            ann.claim(key, "ignored", "canary-by-header is not set")
    cookie = (ann.get("canary-by-cookie") or "").strip()
    if cookie and not _COOKIE_NAME.match(cookie):
        ann.claim("canary-by-cookie", "error", f"{cookie!r} is not a cookie name")
    elif cookie:
        canary.cookie = cookie
        ann.claim(
            "canary-by-cookie",
            "converted",
            f"rules matching the Cookie header by regex: {cookie}=always → canary, "
            f"{cookie}=never → primary",
            [ROUTES],
        )
    ann.claim(
        "affinity-canary-behavior", "unsupported", "no Gateway API equivalent for sticky canaries"
    )
    ann.claim("canary", "converted", "merged into the primary Ingress's rule", [ROUTES])
    ing.settings.canary = canary


def ignore_rest(ing: Ingress) -> None:
    """ingress-nginx ignores most annotations on a canary Ingress: say so for each."""
    ann = ing.ann
    for key in ann.values:
        if key.startswith("canary") or ann.claimed(key):
            continue
        if key.startswith(KEPT_ON_CANARY):
            ann.claim(
                key,
                "unsupported",
                "applies to the canary backend only in ingress-nginx; Gateway API policies "
                "apply to whole rules, so the primary Ingress's settings win",
            )
        else:
            ann.claim(key, "ignored", "ingress-nginx ignores this annotation on a canary Ingress")


def cookie_match(name: str, value: str) -> dict[str, Any]:
    cookie = re2_escape(name)
    return {
        "type": "RegularExpression",
        "name": "Cookie",
        "value": rf"(.*;\s*)?{cookie}={value}(;.*)?",
    }
