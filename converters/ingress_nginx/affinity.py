"""affinity/session-cookie-*, upstream-hash-by, load-balance → BackendTrafficPolicy loadBalancer.

Envoy Gateway's cookie affinity is a consistent hash on a cookie it sets: stickiness holds while
endpoints are stable (nginx's ``balanced`` mode rebalances similarly on scale events).
"""

from __future__ import annotations

import re
from typing import Any

from converters.ingress_nginx.annotations import AnnotationValueError, duration, parse_seconds
from converters.ingress_nginx.ir import Context, Ingress

_VAR = re.compile(
    r"^\$(remote_addr|binary_remote_addr|http_([a-z0-9_]+)|cookie_([A-Za-z0-9_\-]+)|arg_([A-Za-z0-9_\-]+))$"
)
STANDARD = "standard Gateway API has no load-balancing policy (sessionPersistence is "
STANDARD += "experimental); use --target envoy-gateway"


def apply(ctx: Context, ing: Ingress) -> None:
    ann = ing.ann
    lb: dict[str, Any] | None = None
    owner = ""
    cookie_keys = [k for k in ann.values if k.startswith("session-cookie-")]
    if ann.has("affinity"):
        kind = (ann.get("affinity") or "").strip().lower()
        if kind != "cookie":
            ann.claim("affinity", "error", f"only 'cookie' is supported by nginx, got {kind!r}")
            ann.claim_all(cookie_keys, "ignored", "affinity is not usable")
        elif not ctx.eg:
            ann.claim_all(["affinity", "affinity-mode", *cookie_keys], "unsupported", STANDARD)
        else:
            lb, owner = _cookie(ctx, ing, cookie_keys), "affinity"
    else:
        ann.claim_all(cookie_keys, "ignored", "affinity is not set")
        ann.claim("affinity-mode", "ignored", "affinity is not set")
    hash_by = (ann.get("upstream-hash-by") or "").strip()
    if ann.has("upstream-hash-by"):
        if lb is not None:
            ann.claim("upstream-hash-by", "ignored", "affinity: cookie takes precedence")
        elif not ctx.eg:
            ann.claim("upstream-hash-by", "unsupported", STANDARD)
        else:
            try:
                lb, owner = _hash(hash_by), "upstream-hash-by"
                ann.claim(
                    "upstream-hash-by",
                    "converted",
                    "BackendTrafficPolicy consistent hash",
                    [ctx.policy_ref("BackendTrafficPolicy", ing)],
                )
            except AnnotationValueError as err:
                ann.claim("upstream-hash-by", "error", str(err))
    for key in ("upstream-hash-by-subset", "upstream-hash-by-subset-size"):
        ann.claim(key, "unsupported", "hash subsets have no Envoy Gateway equivalent")
    if ann.has("load-balance"):
        algo = (ann.get("load-balance") or "").strip().lower()
        types = {"round_robin": "RoundRobin", "ewma": "LeastRequest"}
        if algo not in types:
            ann.claim("load-balance", "error", f"expected round_robin or ewma, got {algo!r}")
        elif lb is not None:
            ann.claim("load-balance", "ignored", f"{owner} decides the balancing")
        elif not ctx.eg:
            ann.claim("load-balance", "unsupported", STANDARD)
        else:
            lb = {"type": types[algo]}
            ann.claim(
                "load-balance",
                "converted" if algo == "round_robin" else "partial",
                "BackendTrafficPolicy RoundRobin"
                if algo == "round_robin"
                else "BackendTrafficPolicy LeastRequest (closest to nginx's EWMA)",
                [ctx.policy_ref("BackendTrafficPolicy", ing)],
            )
    if lb is not None:
        ing.settings.btp["loadBalancer"] = lb


def _cookie(ctx: Context, ing: Ingress, keys: list[str]) -> dict[str, Any]:
    ann = ing.ann
    ref = [ctx.policy_ref("BackendTrafficPolicy", ing)]
    name = (ann.get("session-cookie-name") or "INGRESSCOOKIE").strip()
    cookie: dict[str, Any] = {"name": name}
    attributes: dict[str, str] = {}
    ttl = None
    for key in ("session-cookie-max-age", "session-cookie-expires"):
        if ann.has(key):
            try:
                seconds = parse_seconds(ann.get(key) or "")
                if ttl is None:
                    ttl = seconds
                    ann.claim(key, "converted", f"cookie ttl {duration(seconds)}", ref)
                else:
                    ann.claim(key, "ignored", "session-cookie-max-age sets the ttl")
            except AnnotationValueError as err:
                ann.claim(key, "error", str(err))
    # nginx always sets its cookie (a session cookie without max-age/expires); Envoy sets one
    # only when a ttl is given, and ttl 0s means a session cookie.
    cookie["ttl"] = duration(ttl) if ttl else "0s"
    path = (ann.get("session-cookie-path") or "").strip()
    if path:
        attributes["Path"] = path
    domain = (ann.get("session-cookie-domain") or "").strip()
    if domain:
        attributes["Domain"] = domain
    samesite = (ann.get("session-cookie-samesite") or "").strip()
    if samesite:
        attributes["SameSite"] = samesite
    for key, attr in (
        ("session-cookie-secure", "Secure"),
        ("session-cookie-partitioned", "Partitioned"),
    ):
        try:
            if ann.bool(key):
                attributes[attr] = ""
        except AnnotationValueError as err:
            ann.claim(key, "error", str(err))
    if attributes:
        cookie["attributes"] = attributes
    for key in (
        "session-cookie-name",
        "session-cookie-path",
        "session-cookie-domain",
        "session-cookie-samesite",
        "session-cookie-secure",
        "session-cookie-partitioned",
    ):
        ann.claim(key, "converted", "cookie attribute of the consistent hash", ref)
    ann.claim_all(
        keys,
        "unsupported",
        "no Envoy Gateway equivalent (conditional SameSite, change-on-failure and the like)",
    )
    mode = (ann.get("affinity-mode") or "balanced").strip()
    ann.claim(
        "affinity-mode",
        "partial" if mode == "persistent" else "converted",
        "consistent hashing keeps sessions while endpoints are stable; 'persistent' (never "
        "rebalance) cannot be expressed"
        if mode == "persistent"
        else "balanced: consistent hashing rebalances on scale events, like nginx",
        ref,
    )
    ann.claim(
        "affinity",
        "converted",
        f"BackendTrafficPolicy consistent hash on cookie {name} (set by Envoy when missing)",
        ref,
    )
    return {"type": "ConsistentHash", "consistentHash": {"type": "Cookie", "cookie": cookie}}


def _hash(expr: str) -> dict[str, Any]:
    match = _VAR.match(expr)
    if not match:
        raise AnnotationValueError(
            f"{expr!r}: only one of $remote_addr, $http_<name>, $cookie_<name>, $arg_<name> "
            "can be expressed"
        )
    if match.group(2):
        header = match.group(2).replace("_", "-")
        return {
            "type": "ConsistentHash",
            "consistentHash": {"type": "Header", "header": {"name": header}},
        }
    if match.group(3):
        return {
            "type": "ConsistentHash",
            "consistentHash": {"type": "Cookie", "cookie": {"name": match.group(3)}},
        }
    if match.group(4):
        return {
            "type": "ConsistentHash",
            "consistentHash": {"type": "QueryParams", "queryParams": [{"name": match.group(4)}]},
        }
    return {"type": "ConsistentHash", "consistentHash": {"type": "SourceIP"}}
