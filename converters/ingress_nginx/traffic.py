"""Timeouts, retries (proxy-next-upstream*), body size, buffering, service-upstream.

nginx has no total request deadline (read/send timeouts are *inactivity* timeouts) while Envoy's
default route timeout is 15 s, so every backend rule gets ``timeouts.request: 0s`` (no
deadline); read/send timeouts become BackendTrafficPolicy stream idle timeouts.
"""

from __future__ import annotations

from typing import Any

from converters.ingress_nginx.annotations import (
    AnnotationValueError,
    duration,
    parse_seconds,
    parse_size,
    quantity,
)
from converters.ingress_nginx.ir import Context, Ingress

BUFFERING = (
    "proxy-buffering",
    "proxy-buffer-size",
    "proxy-buffers-number",
    "proxy-max-temp-file-size",
    "client-body-buffer-size",
    "proxy-request-buffering",
    "proxy-http-version",
)
TRIGGERS = {
    "error": ["connect-failure", "reset"],
    "timeout": ["connect-failure", "reset"],
    "invalid_header": ["reset"],
    "non_idempotent": [],
    "off": [],
}
STATUS_TOKENS = {
    "http_500": 500,
    "http_502": 502,
    "http_503": 503,
    "http_504": 504,
    "http_403": 403,
    "http_404": 404,
    "http_429": 429,
}
STANDARD = "standard Gateway API cannot express this; use --target envoy-gateway"


def apply(ctx: Context, ing: Ingress) -> None:
    ann, s = ing.ann, ing.settings
    btp_ref = [ctx.policy_ref("BackendTrafficPolicy", ing)]
    s.timeouts = {"request": "0s"}
    timeout: dict[str, Any] = {}
    if ann.has("proxy-connect-timeout"):
        try:
            seconds = parse_seconds(ann.get("proxy-connect-timeout") or "")
            if not ctx.eg:
                ann.claim("proxy-connect-timeout", "unsupported", STANDARD)
            else:
                timeout.setdefault("tcp", {})["connectTimeout"] = duration(seconds)
                ann.claim(
                    "proxy-connect-timeout",
                    "converted",
                    "BackendTrafficPolicy timeout.tcp.connectTimeout",
                    btp_ref,
                )
        except AnnotationValueError as err:
            ann.claim("proxy-connect-timeout", "error", str(err))
    idle = []
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        if not ann.has(key):
            continue
        try:
            seconds = parse_seconds(ann.get(key) or "")
            idle.append(seconds)
            if not ctx.eg:
                ann.claim(key, "unsupported", STANDARD + " (the route has no deadline: 0s)")
            else:
                ann.claim(
                    key,
                    "converted",
                    "BackendTrafficPolicy timeout.http.streamIdleTimeout (nginx's timeout is "
                    "between two reads/writes, as is Envoy's stream idle timeout); the route "
                    "has no total deadline",
                    btp_ref,
                )
        except AnnotationValueError as err:
            ann.claim(key, "error", str(err))
    if idle and ctx.eg:
        timeout.setdefault("http", {})["streamIdleTimeout"] = duration(max(idle))
    if timeout:
        s.btp["timeout"] = timeout
    _retries(ctx, ing, btp_ref)
    if ann.has("proxy-body-size"):
        raw = (ann.get("proxy-body-size") or "").strip()
        try:
            size = parse_size(raw)
            if size == 0:
                ann.claim(
                    "proxy-body-size", "converted", "unlimited, as Envoy Gateway is by default"
                )
            elif not ctx.eg:
                ann.claim("proxy-body-size", "unsupported", STANDARD)
            else:
                s.btp["requestBuffer"] = {"limit": quantity(size)}
                ann.claim(
                    "proxy-body-size",
                    "converted",
                    f"BackendTrafficPolicy requestBuffer.limit {quantity(size)} (413 above it; "
                    "bodies are buffered, so avoid it on streaming or WebSocket routes)",
                    btp_ref,
                )
        except AnnotationValueError as err:
            ann.claim("proxy-body-size", "error", str(err))
    ann.claim_all(
        BUFFERING,
        "ignored",
        "nginx buffering internals: Envoy streams and needs no equivalent",
    )
    if ann.has("service-upstream"):
        try:
            if not ann.bool("service-upstream"):
                ann.claim("service-upstream", "ignored", "off")
            elif not ctx.eg:
                ann.claim("service-upstream", "unsupported", STANDARD)
            else:
                s.btp["routingType"] = "Service"
                ann.claim(
                    "service-upstream",
                    "converted",
                    "BackendTrafficPolicy routingType: Service (the ClusterIP)",
                    btp_ref,
                )
        except AnnotationValueError as err:
            ann.claim("service-upstream", "error", str(err))


def _retries(ctx: Context, ing: Ingress, btp_ref: list[Any]) -> None:
    ann = ing.ann
    keys = ("proxy-next-upstream", "proxy-next-upstream-tries", "proxy-next-upstream-timeout")
    if not ann.present(keys):
        return
    if not ctx.eg:
        ann.claim_all(keys, "unsupported", STANDARD)
        return
    tokens = (ann.get("proxy-next-upstream") or "error timeout").split()
    triggers: list[str] = []
    codes: list[int] = []
    unknown = []
    for token in tokens:
        if token in TRIGGERS:
            triggers += [t for t in TRIGGERS[token] if t not in triggers]
        elif token in STATUS_TOKENS:
            codes.append(STATUS_TOKENS[token])
        else:
            unknown.append(token)
    if "off" in tokens:
        ing.settings.btp["retry"] = {"numRetries": 0}
        ann.claim_all(keys, "converted", "retries off", btp_ref)
        return
    try:
        tries = ann.int("proxy-next-upstream-tries", 3, minimum=0)
    except AnnotationValueError as err:
        ann.claim("proxy-next-upstream-tries", "error", f"{err}; 3 used")
        tries = 3
    retry: dict[str, Any] = {"numRetries": max(0, (tries or 0) - 1)}
    retry_on: dict[str, Any] = {}
    if codes:
        triggers.append("retriable-status-codes")
        retry_on["httpStatusCodes"] = codes
    if triggers:
        retry_on["triggers"] = triggers
    if retry_on:
        retry["retryOn"] = retry_on
    try:
        per = parse_seconds(ann.get("proxy-next-upstream-timeout") or "0")
        if per:
            retry["perRetry"] = {"timeout": duration(per)}
    except AnnotationValueError as err:
        ann.claim("proxy-next-upstream-timeout", "error", str(err))
    ing.settings.btp["retry"] = retry
    message = "BackendTrafficPolicy retry"
    if unknown:
        message += f"; not expressible, dropped: {' '.join(unknown)}"
    ann.claim("proxy-next-upstream", "partial" if unknown else "converted", message, btp_ref)
    ann.claim("proxy-next-upstream-tries", "converted", "numRetries = tries - 1", btp_ref)
    ann.claim(
        "proxy-next-upstream-timeout",
        "partial",
        "a per-try timeout (nginx bounds the whole retry sequence)",
        btp_ref,
    )
