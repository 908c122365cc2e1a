"""limit-rps, limit-rpm, limit-connections and friends → BackendTrafficPolicy local rate limit."""

from __future__ import annotations

from typing import Any

from converters.ingress_nginx.annotations import AnnotationValueError
from converters.ingress_nginx.ir import Context, Ingress

OTHER = {
    "limit-burst-multiplier": "Envoy's token bucket has no burst multiplier: the limit is strict",
    "limit-allowlist": "no exemption list for local rate limits",
    "limit-whitelist": "no exemption list for local rate limits",
    "limit-rate": "per-connection response bandwidth has no route-level equivalent",
    "limit-rate-after": "per-connection response bandwidth has no route-level equivalent",
    "limit-connections": "Envoy Gateway limits connections per listener, not per client IP",
    "global-rate-limit": "memcached-backed limits are not converted (Envoy Gateway's global "
    "rate limit needs its Redis-backed service)",
}


def apply(ctx: Context, ing: Ingress) -> None:
    ann = ing.ann
    rules: list[dict[str, Any]] = []
    for key, unit in (("limit-rps", "Second"), ("limit-rpm", "Minute")):
        if not ann.has(key):
            continue
        try:
            limit = ann.int(key, minimum=1)
        except AnnotationValueError as err:
            ann.claim(key, "error", str(err))
            continue
        if not ctx.eg:
            ann.claim(key, "unsupported", "standard Gateway API has no rate limiting")
            continue
        rules.append(
            {
                "clientSelectors": [{"sourceCIDR": {"type": "Distinct", "value": "0.0.0.0/0"}}],
                "limit": {"requests": limit, "unit": unit},
            }
        )
        ann.claim(
            key,
            "partial",
            f"BackendTrafficPolicy local rate limit: {limit} per {unit.lower()} per client IPv4 "
            "address and per Envoy replica; excess gets 429 (nginx: 503) and there is no "
            "burst allowance",
            [ctx.policy_ref("BackendTrafficPolicy", ing)],
        )
    if rules:
        ing.settings.btp["rateLimit"] = {"type": "Local", "local": {"rules": rules}}
    for key, why in OTHER.items():
        ann.claim(key, "unsupported", why)
    for key in list(ann.values):
        if key.startswith("global-rate-limit"):
            ann.claim(key, "unsupported", OTHER["global-rate-limit"])
