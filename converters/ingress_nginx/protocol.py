"""backend-protocol and proxy-ssl-* (TLS to the backend).

GRPC/GRPCS → GRPCRoute; HTTPS/GRPCS → BackendTLSPolicy (standard; it always validates the
backend's certificate, which nginx did only with proxy-ssl-verify: on); H2C → plaintext HTTP/2,
which Envoy Gateway uses when the Service port says ``appProtocol: kubernetes.io/h2c``.
"""

from __future__ import annotations

from converters.ingress_nginx.annotations import ROUTES
from converters.ingress_nginx.ir import Context, Ingress

PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPCS", "H2C", "AUTO_HTTP", "FCGI", "AJP")
SSL_KEYS = (
    "proxy-ssl-secret",
    "proxy-ssl-verify",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
    "proxy-ssl-verify-depth",
    "proxy-ssl-protocols",
    "proxy-ssl-ciphers",
)


def apply(ctx: Context, ing: Ingress) -> None:
    ann, s = ing.ann, ing.settings
    raw = (ann.get("backend-protocol") or "HTTP").strip().upper()
    if raw not in PROTOCOLS:
        ann.claim("backend-protocol", "error", f"unknown protocol {raw!r}; HTTP used")
        raw = "HTTP"
    if raw in ("FCGI", "AJP"):
        ann.claim(
            "backend-protocol",
            "unsupported",
            f"{raw} has no Gateway API equivalent; the paths are routed as HTTP, which the "
            "backend will not understand",
        )
        raw = "HTTP"
    s.protocol = "HTTP" if raw == "AUTO_HTTP" else raw
    if raw in ("GRPC", "GRPCS"):
        ann.claim(
            "backend-protocol",
            "converted" if raw == "GRPC" else "partial",
            "GRPCRoute" + ("" if raw == "GRPC" else " + BackendTLSPolicy (see proxy-ssl-*)"),
            [ROUTES],
        )
    elif raw == "HTTPS":
        ann.claim(
            "backend-protocol",
            "partial",
            "BackendTLSPolicy on the Services: unlike nginx, Gateway API always verifies the "
            "backend certificate (give a CA with proxy-ssl-secret or use publicly trusted "
            "certificates)",
            [ROUTES],
        )
    elif raw == "H2C":
        ann.claim(
            "backend-protocol",
            "partial",
            "plaintext HTTP/2: set appProtocol: kubernetes.io/h2c on the Service port (checked "
            "per path in the report)",
            [ROUTES],
        )
    elif ann.has("backend-protocol") and not ann.claimed("backend-protocol"):
        ann.claim("backend-protocol", "converted", "plain HTTP/1.1, the default", [ROUTES])
    if s.protocol in ("HTTPS", "GRPCS"):
        _backend_tls(ctx, ing)
    else:
        ann.claim_all(SSL_KEYS, "ignored", "the backend protocol is not HTTPS or GRPCS")


def _backend_tls(ctx: Context, ing: Ingress) -> None:
    ann, s = ing.ann, ing.settings
    validation: dict[str, object] = {}
    secret = (ann.get("proxy-ssl-secret") or "").strip()
    if secret:
        ns, _, name = secret.rpartition("/")
        ns = ns or ing.namespace
        if ns != ing.namespace:
            ann.claim(
                "proxy-ssl-secret",
                "error",
                "BackendTLSPolicy CA references are local: the CA must be in the Ingress's "
                "namespace; system CAs used instead",
            )
        else:
            validation["caCertificateRefs"] = [{"group": "", "kind": "ConfigMap", "name": name}]
            ann.claim(
                "proxy-ssl-secret",
                "partial",
                f"BackendTLSPolicy caCertificateRefs ConfigMap {ns}/{name}: create it with the "
                "ca.crt of the Secret; the client certificate (tls.crt/tls.key) is gateway-wide "
                "in Gateway API (spec.tls.backend) and not converted",
                [ROUTES],
            )
    if "caCertificateRefs" not in validation:
        validation["wellKnownCACertificates"] = "System"
    sni = (ann.get("proxy-ssl-name") or "").strip().lower()
    if sni:
        validation["hostname"] = sni
        ann.claim("proxy-ssl-name", "converted", "BackendTLSPolicy hostname (SNI + SAN)", [ROUTES])
    s.backend_tls = validation
    verify = (ann.get("proxy-ssl-verify") or "off").strip().lower()
    ann.claim(
        "proxy-ssl-verify",
        "converted" if verify == "on" else "partial",
        "verification is always on with BackendTLSPolicy"
        if verify == "on"
        else "nginx did not verify; Gateway API always does",
    )
    ann.claim("proxy-ssl-server-name", "converted", "BackendTLSPolicy always sends SNI")
    ann.claim_all(
        ("proxy-ssl-verify-depth", "proxy-ssl-protocols", "proxy-ssl-ciphers"),
        "unsupported",
        "upstream TLS versions, ciphers and depth are gateway-wide (EnvoyProxy backendTLS)",
    )
