"""Server-level keys (server-alias, ssl-passthrough), error pages, per-Ingress default backend,
snippets, and every other known key that has no Gateway API equivalent."""

from __future__ import annotations

import re

from converters.ingress_nginx.annotations import ROUTES, AnnotationValueError
from converters.ingress_nginx.ir import Context, Ingress

_HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

SNIPPET_WHY = (
    "raw nginx configuration is never translated (snippets ran arbitrary nginx directives and "
    "were disabled by default since ingress-nginx v1.9, CVE-2021-25742); review it and express "
    "it with Gateway API filters or Envoy Gateway policies by hand"
)
NO_EQUIVALENT = {
    "enable-access-log": "access logging is configured gateway-wide (EnvoyProxy telemetry)",
    "enable-rewrite-log": "nginx debug logging",
    "enable-opentelemetry": "tracing is configured gateway-wide (EnvoyProxy telemetry)",
    "opentelemetry-trust-incoming-span": "tracing is configured gateway-wide",
    "opentelemetry-operation-name": "tracing is configured gateway-wide",
    "enable-modsecurity": "SECURITY: no WAF in Gateway API or Envoy Gateway core; the "
    "protection is lost",
    "enable-owasp-core-rules": "SECURITY: no WAF in Gateway API or Envoy Gateway core; the "
    "protection is lost",
    "modsecurity-transaction-id": "no WAF in Gateway API or Envoy Gateway core",
    "proxy-cookie-domain": "Set-Cookie rewriting has no equivalent",
    "proxy-cookie-path": "Set-Cookie rewriting has no equivalent",
    "http2-push-preload": "HTTP/2 push is gone from browsers and Envoy",
    "fastcgi-index": "FastCGI has no equivalent",
    "fastcgi-params-configmap": "FastCGI has no equivalent",
    "ssl-ciphers": "TLS ciphers are per listener (ClientTrafficPolicy tls.ciphers)",
    "ssl-prefer-server-ciphers": "TLS cipher preference is per listener",
    "custom-http-errors": "error pages from a service cannot be expressed (Envoy Gateway "
    "responseOverride only serves static bodies)",
    "disable-proxy-intercept-errors": "follows custom-http-errors",
    "default-backend": "Gateway API answers 503 when a Service has no endpoints; there is no "
    "fallback Service",
    "client-header-buffer-size": "nginx buffer tuning",
    "large-client-header-buffers": "nginx buffer tuning",
    "client-header-timeout": "per-listener client timeouts (ClientTrafficPolicy)",
    "client-body-timeout": "per-listener client timeouts (ClientTrafficPolicy)",
    "ssl-passthrough-proxy-port": "not needed",
    "stream-snippet": SNIPPET_WHY,
}


def apply(ctx: Context, ing: Ingress) -> None:
    ann, s = ing.ann, ing.settings
    for key in list(ann.values):
        if key.endswith("-snippet") or key == "modsecurity-snippet":
            first = (ann.get(key) or "").strip().splitlines()[:2]
            excerpt = " | ".join(line.strip() for line in first)
            ann.claim(key, "unsupported", f"{SNIPPET_WHY}. Starts with: {excerpt[:160]}")
    for key, why in NO_EQUIVALENT.items():
        ann.claim(key, "unsupported", why)
    if ann.has("server-alias"):
        aliases = [a.lower() for a in ann.csv("server-alias")]
        bad = [a for a in aliases if not _HOST.match(a)]
        good = [a for a in aliases if _HOST.match(a)]
        s.aliases = good
        if bad:
            ann.claim("server-alias", "error", f"not hostnames: {', '.join(bad)}")
        elif good:
            ann.claim(
                "server-alias",
                "converted",
                "extra hostnames on the host's routes and listeners (same certificate)",
                [ROUTES],
            )
    if ann.has("ssl-passthrough"):
        try:
            s.passthrough = ann.bool("ssl-passthrough")
            ann.claim(
                "ssl-passthrough",
                "converted",
                "TLSRoute on a TLS passthrough listener (routing by SNI, the paths and other "
                "annotations of the Ingress do not apply, as in nginx)"
                if s.passthrough
                else "off",
                [ROUTES],
            )
        except AnnotationValueError as err:
            ann.claim("ssl-passthrough", "error", str(err))
