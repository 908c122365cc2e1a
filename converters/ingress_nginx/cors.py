"""enable-cors and the cors-* family → the standard CORS filter (standard since v1.5)."""

from __future__ import annotations

import re
from typing import Any

from converters.ingress_nginx.annotations import ROUTES, AnnotationValueError
from converters.ingress_nginx.ir import Context, Ingress

KEYS = (
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
)
DEFAULT_METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]
DEFAULT_HEADERS = [
    "DNT",
    "Keep-Alive",
    "User-Agent",
    "X-Requested-With",
    "If-Modified-Since",
    "Cache-Control",
    "Content-Type",
    "Range",
    "Authorization",
]
ORIGIN = re.compile(
    r"(^\*$)|(^(http(s)?):\/\/(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)$)"
)
HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")
METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "*"}


def apply(ctx: Context, ing: Ingress) -> None:
    ann = ing.ann
    try:
        enabled = ann.bool("enable-cors")
    except AnnotationValueError as err:
        ann.claim("enable-cors", "error", str(err))
        ann.claim_all(KEYS, "ignored", "enable-cors is not usable")
        return
    if not enabled:
        ann.claim("enable-cors", "ignored", "CORS is off")
        ann.claim_all(KEYS, "ignored", "enable-cors is not true: ingress-nginx ignores this")
        return
    cors: dict[str, Any] = {}
    origins = ann.csv("cors-allow-origin") or ["*"]
    bad = [o for o in origins if not ORIGIN.match(o)]
    if bad:
        ann.claim("cors-allow-origin", "error", f"not origins: {', '.join(bad)}; dropped")
        origins = [o for o in origins if o not in bad] or ["*"]
    else:
        ann.claim("cors-allow-origin", "converted", "allowOrigins", [ROUTES])
    cors["allowOrigins"] = ["*"] if "*" in origins else origins[:64]
    methods = [m.upper() for m in ann.csv("cors-allow-methods")] or DEFAULT_METHODS
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ann.claim("cors-allow-methods", "error", f"unknown methods {', '.join(unknown)} dropped")
        methods = [m for m in methods if m in METHODS]
    else:
        ann.claim("cors-allow-methods", "converted", "allowMethods", [ROUTES])
    methods = sorted(set(methods), key=methods.index) or DEFAULT_METHODS
    cors["allowMethods"] = ["*"] if "*" in methods else methods[:9]
    for key, field_name, default in (
        ("cors-allow-headers", "allowHeaders", DEFAULT_HEADERS),
        ("cors-expose-headers", "exposeHeaders", []),
    ):
        names = ann.csv(key) or default
        wrong = [h for h in names if not HEADER.match(h)]
        names = [h for h in names if HEADER.match(h)]
        if wrong:
            ann.claim(key, "error", f"not header names: {', '.join(wrong)}; dropped")
        else:
            ann.claim(key, "converted", field_name, [ROUTES])
        if names:
            cors[field_name] = ["*"] if "*" in names else names[:64]
    try:
        credentials = ann.bool("cors-allow-credentials", True)
        ann.claim("cors-allow-credentials", "converted", "allowCredentials", [ROUTES])
    except AnnotationValueError as err:
        ann.claim("cors-allow-credentials", "error", f"{err}; true used")
        credentials = True
    if credentials:
        cors["allowCredentials"] = True
    try:
        cors["maxAge"] = ann.int("cors-max-age", 1728000, minimum=1)
        ann.claim("cors-max-age", "converted", "maxAge", [ROUTES])
    except AnnotationValueError as err:
        ann.claim("cors-max-age", "error", f"{err}; 1728000 used")
        cors["maxAge"] = 1728000
    ing.settings.cors = cors
    ann.claim(
        "enable-cors",
        "converted",
        "standard CORS filter (the gateway answers preflight requests, as nginx did)",
        [ROUTES],
    )
