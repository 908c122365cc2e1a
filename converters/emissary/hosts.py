"""Hosts and TLSContexts: hostnames, certificates, insecure policy, Mapping association.

A Host becomes Gateway listeners: HTTPS (``tls.mode: Terminate`` with the Host's ``tlsSecret``,
or the TLSContext's ``secret``) and, by ``requestPolicy.insecure.action``, an HTTP listener whose
routes are the Mappings (``Route``), a redirect to https (``Redirect``, the default) or nothing
(``Reject``). A Host without TLS is plain HTTP. TLS parameters (versions, ciphers, curves, ALPN,
client validation) become an Envoy Gateway ClientTrafficPolicy on the HTTPS listener.

Association (Emissary's ``IRHost.matches_httpgroup``): with a ``mappingSelector`` the Mapping's
labels must match (and its hostname too, when it has one); without, the hostname globs must be
compatible; a Mapping with no hostname never associates with a Host without selector;
``host_regex`` Mappings associate with every Host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from converters.emissary.matching import glob_compatible, gw_hostname
from converters.emissary.model import Src
from converters.layout import SecretRef

TLS_VERSIONS = {"v1.0": "1.0", "v1.1": "1.1", "v1.2": "1.2", "v1.3": "1.3"}
TLS_OPTION_KEYS = (
    "min_tls_version",
    "max_tls_version",
    "cipher_suites",
    "ecdh_curves",
    "alpn_protocols",
    "ca_secret",
    "cert_required",
    "crl_secret",
)
ALPN = ("http/1.0", "http/1.1", "h2")


@dataclass
class TLSContextIR:
    src: Src
    secret: SecretRef | None
    options: dict[str, Any]  # the TLS_OPTION_KEYS that are set
    hosts: list[str]
    sni: str | None
    used: bool = False


@dataclass
class HostIR:
    src: Src
    hostname: str  # the glob as written ("*" by default)
    gw_host: str | None  # the listener hostname (None: every hostname)
    selector: dict[str, str] | None
    cert: SecretRef | None
    tls_options: dict[str, Any] = field(default_factory=dict)
    tls_source: Src | None = None  # where tls_options came from
    action: str = "Redirect"
    synthetic: bool = False

    @property
    def tls(self) -> bool:
        return self.cert is not None


def secret_ref(value: Any, namespace: str, namespacing: bool = True) -> SecretRef | None:
    if isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, str) and name:
            return SecretRef(str(value.get("namespace") or namespace), name)
        return None
    if isinstance(value, str) and value:
        if namespacing and "." in value:
            name, _, ns = value.partition(".")
            return SecretRef(ns, name)
        return SecretRef(namespace, value)
    return None


def parse_tlscontext(src: Src) -> TLSContextIR:
    spec = src.spec
    namespacing = spec.get("secret_namespacing") is not False
    secret = secret_ref(spec.get("secret"), src.namespace, namespacing)
    hosts = [h for h in spec.get("hosts") or [] if isinstance(h, str)]
    options = {k: spec[k] for k in TLS_OPTION_KEYS if k in spec}
    sni = spec.get("sni") if isinstance(spec.get("sni"), str) else None
    return TLSContextIR(src, secret, options, hosts, sni)


def parse_host(src: Src, contexts: dict[tuple[str, str], TLSContextIR]) -> HostIR:
    spec = src.spec
    hostname = spec.get("hostname") or "*"
    if not isinstance(hostname, str):
        hostname = "*"
    gw_host, problem = gw_hostname(hostname)
    if "hostname" in spec:
        if problem:
            src.note("hostname", "partial", problem)
        else:
            src.note(
                "hostname",
                "converted",
                f"listener hostname {gw_host}"
                if gw_host
                else "listener without hostname (every host)",
            )
    selector: dict[str, str] | None = None
    sel = spec.get("mappingSelector")
    if isinstance(sel, dict):
        labels = sel.get("matchLabels") or {}
        selector = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
        if sel.get("matchExpressions"):
            src.note(
                "mappingSelector.matchExpressions",
                "ignored",
                "Emissary honours only matchLabels (strict label selectors)",
            )
        src.note(
            "mappingSelector",
            "converted",
            "Mappings whose labels match are attached to this Host's listeners",
        )
    host = HostIR(src, hostname, gw_host, selector, None)
    cert = secret_ref(spec.get("tlsSecret"), src.namespace, namespacing=False)
    if "tlsSecret" in spec:
        if cert is None:
            src.error("tlsSecret", "tlsSecret needs a name")
        else:
            src.note(
                "tlsSecret",
                "converted",
                f"HTTPS listener certificateRefs Secret {cert.namespace}/{cert.name}",
            )
    context: TLSContextIR | None = None
    ctx_name = (
        (spec.get("tlsContext") or {}).get("name")
        if isinstance(spec.get("tlsContext"), dict)
        else None
    )
    if "tlsContext" in spec:
        context = contexts.get((src.namespace, str(ctx_name)))
        if context is None:
            src.note(
                "tlsContext",
                "error",
                f"TLSContext {src.namespace}/{ctx_name} is not in the sources: its "
                "certificate and TLS settings are unknown",
                [],
            )
        else:
            context.used = True
            src.note("tlsContext", "converted", f"TLS settings of TLSContext {ctx_name}")
    elif "tls" not in spec:
        context = contexts.get((src.namespace, f"{src.name}-context"))
        if context is not None:
            context.used = True
    if context is not None:
        if cert is None:
            cert = context.secret
        host.tls_options = dict(context.options)
        host.tls_source = context.src
    if isinstance(spec.get("tls"), dict):
        host.tls_options = {k: v for k, v in spec["tls"].items() if k in TLS_OPTION_KEYS}
        host.tls_source = src
        for key in spec["tls"]:
            if key not in TLS_OPTION_KEYS:
                src.note(f"tls.{key}", "ignored", "no effect on a Host's TLS termination")
    host.cert = cert
    policy = spec.get("requestPolicy")
    action = "Redirect"
    if isinstance(policy, dict):
        insecure = policy.get("insecure") or {}
        action = str(insecure.get("action") or "Redirect")
        if action not in ("Redirect", "Route", "Reject"):
            src.error(
                "requestPolicy.insecure.action",
                f"unknown action {action!r} (Redirect, Route or Reject)",
            )
            action = "Redirect"
        if "additionalPort" in insecure:
            src.note(
                "requestPolicy.insecure.additionalPort",
                "partial",
                "cleartext is served on the Gateway's HTTP listener port; a different "
                "additional port is not kept",
            )
    if cert is None:
        action = "Route"  # a Host without TLS serves cleartext
    host.action = action
    if isinstance(policy, dict):
        what = {
            "Route": "Mappings attach to the HTTP listener as well",
            "Redirect": "an HTTPRoute on the HTTP listener redirects to https (301)",
            "Reject": "nothing attaches to the HTTP listener (Emissary answers 404)",
        }[action]
        src.note(
            "requestPolicy",
            "converted",
            f"insecure.action {action}: {what}"
            if cert is not None
            else "no TLS: the Host is served on the HTTP listener",
        )
    for key, (status, message) in {
        "acmeProvider": (
            "unsupported",
            "ACME works only in Ambassador Edge Stack; use "
            "cert-manager (cert-manager.io/cluster-issuer on the Gateway)",
        ),
        "previewUrl": ("ignored", "Edge Stack preview URLs have no equivalent"),
        "tlsCertificateSource": ("ignored", "informational"),
        "ambassador_id": ("converted", "this installation's Host"),
    }.items():
        if key in spec and not src.claimed(key):
            if key == "acmeProvider" and (spec[key] or {}).get("authority") == "none":
                src.note(key, "ignored", "ACME disabled (authority: none)")
            else:
                src.note(key, status, message)  # type: ignore[arg-type]
    return host


def _exact(glob: str) -> bool:
    """A glob without wildcard (and without a leading dot): compatible only with itself and
    with the Hosts whose hostname has a wildcard."""
    return bool(glob) and glob[0] not in "*." and glob[-1] != "*"


class HostIndex:
    """The Hosts, indexed for association: a Mapping with an exact hostname looks up the Hosts
    of that hostname and checks only the wildcard ones, instead of every Host."""

    def __init__(self, hosts: list[HostIR]) -> None:
        self.hosts = hosts
        self._exact: dict[str, list[int]] = {}
        self._other: list[int] = []  # wildcard, empty or dotted hostnames
        self._selected: list[int] = []  # Hosts with a mappingSelector
        for i, host in enumerate(hosts):
            if _exact(host.hostname):
                self._exact.setdefault(host.hostname, []).append(i)
            else:
                self._other.append(i)
            if host.selector is not None:
                self._selected.append(i)

    def compatible(self, glob: str) -> list[HostIR]:
        """The Hosts whose hostname glob is compatible with ``glob``, in Host order."""
        if not _exact(glob):
            return [h for h in self.hosts if glob_compatible(h.hostname, glob)]
        found = list(self._exact.get(glob, ()))
        found += [i for i in self._other if glob_compatible(self.hosts[i].hostname, glob)]
        return [self.hosts[i] for i in sorted(found)]

    def associated(
        self, glob: str | None, host_regex: bool, labels: dict[str, str]
    ) -> list[HostIR]:
        """The Hosts a Mapping associates with (see the module docstring)."""
        if host_regex:
            candidates = self.hosts  # every hostname matches; selectors still apply
        elif not glob:
            candidates = [self.hosts[i] for i in self._selected]  # only selectors can match
        else:
            candidates = self.compatible(str(glob))
        return [
            h
            for h in candidates
            if h.selector is None or all(labels.get(k) == v for k, v in h.selector.items())
        ]
