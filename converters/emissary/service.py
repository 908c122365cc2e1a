"""``service:`` syntax ``[scheme://]host[.namespace][:port]`` → a backend.

Emissary hands the host to Envoy as a DNS name (the default KubernetesServiceResolver), after
appending ``.<mapping namespace>`` to a bare name. The port is the Service port (explicit, else
80, or 443 for ``https://`` or when the Mapping originates TLS). So:

- ``name`` → Service ``name`` in the Mapping namespace (Emissary's namespace when the Module sets
  ``use_ambassador_namespace_for_service_resolution``);
- ``name.ns``, ``name.ns.svc``, ``name.ns.svc.cluster.local`` → Service ``name`` in ``ns``
  (for ``name.ns``: unless ``ns`` looks like a public top-level domain and is not a namespace
  of the sources, as in ``httpbin.org``);
- anything else with a dot, or an IP → an external host (Envoy Gateway ``Backend``);
- ``localhost`` / ``127.0.0.1`` → Emissary's own diagnostics: nothing to convert.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_HOST = re.compile(
    r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*\.?$"
)
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# ``name.ns`` is a Service unless ``ns`` looks like a public top-level domain and no source lives
# in a namespace of that name (``httpbin.org`` is external, ``quote.default`` is not).
_TLDS = frozenset(
    {
        "com",
        "org",
        "net",
        "io",
        "dev",
        "app",
        "co",
        "cloud",
        "ai",
        "info",
        "biz",
        "edu",
        "gov",
        "us",
        "uk",
        "de",
        "eu",
        "fr",
        "nl",
        "jp",
        "cn",
        "in",
        "me",
        "tv",
        "xyz",
        "local",
        "internal",
        "example",
        "test",
    }
)


class ServiceError(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    kind: str  # "service" | "external" | "local"
    name: str  # Service name, or the external host
    namespace: str  # Service namespace ("" for external)
    port: int
    scheme: str  # "http" | "https" | "" (none written)
    explicit_port: bool
    text: str

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def parse(
    text: object,
    mapping_namespace: str,
    known_namespaces: set[str],
    known_services: set[tuple[str, str]],
    *,
    tls: bool = False,
    ambassador_namespace: str | None = None,
) -> Target:
    if not isinstance(text, str) or not text.strip():
        raise ServiceError(
            "no service: a Mapping needs service: [scheme://]name[.namespace][:port]"
        )
    raw = text.strip()
    scheme = ""
    rest = raw
    if "://" in raw:
        scheme, rest = raw.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ServiceError(f"service {raw!r}: unknown scheme {scheme!r} (http or https)")
    rest = rest.rstrip("/")
    host, port_text = rest, ""
    if rest.startswith("["):
        end = rest.find("]")
        host, port_text = rest[1:end], rest[end + 2 :] if end + 1 < len(rest) else ""
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    if port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536):
        raise ServiceError(f"service {raw!r}: port {port_text!r} is not a port number")
    origin = tls or scheme == "https"
    port = int(port_text) if port_text else (443 if origin else 80)
    effective_scheme = "https" if origin else scheme
    if host in ("localhost", "127.0.0.1", "::1"):
        return Target("local", host, "", port, effective_scheme, bool(port_text), raw)
    try:
        ipaddress.ip_address(host)
        return Target("external", host, "", port, effective_scheme, bool(port_text), raw)
    except ValueError:
        pass
    if not host or not _HOST.match(host):
        raise ServiceError(f"service {raw!r}: {host!r} is not a valid host name")
    labels = host.rstrip(".").split(".")
    if len(labels) == 1:
        if not _LABEL.match(labels[0]):
            raise ServiceError(f"service {raw!r}: {host!r} is not a valid Service name")
        ns = ambassador_namespace or mapping_namespace
        return Target("service", labels[0], ns, port, effective_scheme, bool(port_text), raw)
    name, ns, suffix = labels[0], labels[1], labels[2:]
    in_cluster = suffix in ([], ["svc"], ["svc", "cluster", "local"])
    if (
        in_cluster
        and _LABEL.match(name)
        and _LABEL.match(ns)
        and (suffix or ns in known_namespaces or (ns, name) in known_services or ns not in _TLDS)
    ):
        return Target("service", name, ns, port, effective_scheme, bool(port_text), raw)
    return Target("external", host.rstrip("."), "", port, effective_scheme, bool(port_text), raw)
