"""Listeners and ports, Hosts' listener outputs and TLS parameters.

- Emissary's Listeners bind *container* ports (the chart's 8080/8443, behind a Service mapping
  80→8080 and 443→8443). Needs ask for those ports and ``converters.layout`` maps them to the
  Gateway listener ports (``LayoutOptions.port_map``: 8080→80 and 8443→443 by default,
  ``EmissaryOptions.port_map`` overrides it).
- With no Host at all, Emissary synthesises a cleartext ``*`` Host (``default_host``).
- Host TLS parameters (versions, ciphers, curves, ALPN, client certificates) → an Envoy Gateway
  ClientTrafficPolicy on each HTTPS listener that serves the Host (``Layout.listeners_for``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from converters import naming
from converters.emissary.hosts import ALPN, TLS_VERSIONS, HostIR, TLSContextIR, secret_ref
from converters.emissary.model import EG_API_VERSION, Src
from converters.layout import GrantNeed, Grants, Layout, ListenerRef
from converters.provenance import stamp
from kubectl_gw.model import ENVOY_GATEWAY_GROUP, KubeObject, ObjectRef


def ports(items: list[Src], listener_port: Callable[[int], int]) -> tuple[int, int]:
    """The (HTTP, HTTPS) ports the needs ask for: the Listeners' container ports (80 and 443
    when there is no such Listener); ``listener_port`` says what the Gateway listens on."""
    http_port, https_port = 80, 443
    seen: dict[str, Src] = {}
    for src in items:
        spec = src.spec
        port = spec.get("port")
        protocol = str(spec.get("protocol") or "")
        if not protocol and isinstance(spec.get("protocolStack"), list):
            stack = [str(p) for p in spec["protocolStack"]]
            protocol = (
                "HTTPS"
                if "TLS" in stack and "HTTP" in stack
                else ("HTTP" if "HTTP" in stack else "TCP")
            )
            src.note("protocolStack", "partial", f"read as {protocol}")
        if not isinstance(port, int):
            src.error("port", "port must be an integer")
            continue
        mapped = listener_port(port)
        family = (
            "https"
            if protocol in ("HTTPS", "HTTPSPROXY")
            else ("http" if protocol in ("HTTP", "HTTPPROXY") else "")
        )
        if family and family in seen:
            src.note(
                "port",
                "partial",
                f"a second {protocol} Listener: Gateway listeners use {seen[family].label}'s port",
                [],
            )
        elif family:
            seen[family] = src
            if family == "http":
                http_port = port
            else:
                https_port = port
            how = (
                f"container port {port} → Gateway listener port {mapped} (the Emissary "
                f"Service maps {mapped}→{port})"
                if mapped != port
                else f"port {port}"
            )
            src.note("port", "converted", how, [])
        else:
            src.note(
                "port", "converted", f"port {port}: TCPMappings on it become TCP listeners", []
            )
        if protocol:
            if protocol in ("HTTPPROXY", "HTTPSPROXY"):
                src.note(
                    "protocol",
                    "unsupported",
                    "PROXY protocol: Envoy Gateway "
                    "ClientTrafficPolicy proxyProtocol; not converted",
                    [],
                )
            elif protocol == "HTTPS":
                src.note(
                    "protocol",
                    "converted",
                    "HTTPS listeners per Host; Emissary also "
                    "accepted cleartext on this port, Gateway API cannot (cleartext is on "
                    "the HTTP listener)",
                    [],
                )
            elif protocol in ("HTTP", "TCP", "TLS"):
                src.note("protocol", "converted", f"{protocol} listeners", [])
            else:
                src.note("protocol", "unsupported", f"{protocol} listeners are not converted", [])
        model = spec.get("securityModel")
        if model is not None:
            if model == "XFP":
                src.note(
                    "securityModel",
                    "converted",
                    "XFP: TLS hosts redirect or route by their insecure action",
                    [],
                )
            else:
                src.note(
                    "securityModel",
                    "partial",
                    f"{model}: Gateway API listeners decide "
                    "security by protocol; requests are secure on HTTPS listeners only",
                    [],
                )
        for key, (status, message) in {
            "hostBinding": (
                "converted",
                "Mappings of every namespace attach; each listener "
                "admits the namespaces that have routes",
            ),
            "l7Depth": (
                "unsupported",
                "ClientTrafficPolicy clientIPDetection.xForwardedFor.numTrustedHops; not converted",
            ),
            "statsPrefix": ("ignored", "statistics naming only"),
            "http2MaxConcurrentStreams": (
                "unsupported",
                "ClientTrafficPolicy http2.maxConcurrentStreams; not converted",
            ),
            "ambassador_id": ("converted", "this installation's Listener"),
        }.items():
            if key in spec:
                src.note(key, status, message, [])  # type: ignore[arg-type]
    return http_port, https_port


def default_host() -> HostIR:
    ref = ObjectRef("getambassador.io/v3alpha1", "Host", "", "default-host")
    src = Src(ref, "Host", "v3alpha1", "", "default-host", {}, {"hostname": "*"})
    return HostIR(src, "*", None, None, None, action="Route", synthetic=True)


def listener_outputs(layout: Layout, ports: Iterable[int]) -> dict[str, list[ObjectRef]]:
    """Hostname ("" = catch-all) → the objects its listeners on ``ports`` became, in planning
    order: built once, so each Host's outputs are a lookup."""
    wanted = set(ports)
    found: dict[str, dict[ObjectRef, None]] = defaultdict(dict)
    for key, refs in layout.outputs.items():
        if key.port in wanted:
            found[key.hostname].update(dict.fromkeys(refs))
    return {host: list(refs) for host, refs in found.items()}


def host_tls_policies(
    hosts: list[HostIR],
    layout: Layout,
    https_port: int,
    eg: bool,
    out: list[KubeObject],
    grants: Grants,
) -> None:
    """One ClientTrafficPolicy per HTTPS listener whose Hosts carry TLS parameters (in the
    per-namespace layout a Host's hostname may have a listener in several Gateways)."""
    by_listener: dict[ListenerRef, list[HostIR]] = defaultdict(list)
    for h in hosts:
        if not h.tls_options or h.tls_source is None:
            continue
        src = h.tls_source
        found = layout.listeners_for(h.gw_host or "", "HTTPS", https_port)
        if not eg:
            for opt in h.tls_options:
                src.note(
                    _opt_key(h, opt),
                    "unsupported",
                    "TLS parameters need Envoy Gateway's "
                    "ClientTrafficPolicy; --target standard: not converted",
                    [],
                )
            continue
        if not found:
            continue
        if any(not lis.section for lis in found):
            for opt in h.tls_options:
                src.note(
                    _opt_key(h, opt),
                    "unsupported",
                    "the existing Gateway's listener must carry these TLS parameters",
                    [],
                )
            continue
        for lis in found:
            by_listener[lis].append(h)
    for lis, items in sorted(by_listener.items()):
        ns, name, section = lis.namespace, lis.name, lis.section
        tls: dict[str, Any] = {}
        client: dict[str, Any] = {}
        first = items[0]
        sources = []
        for h in items:
            h_src = h.tls_source
            assert h_src is not None
            sources.append(h_src.ref)
            if h.tls_options != first.tls_options:
                for opt in h.tls_options:
                    h_src.note(
                        _opt_key(h, opt),
                        "partial",
                        f"listener {section} is shared with "
                        f"{first.src.label}, whose TLS parameters are used",
                        [],
                    )
                continue
        policy_name = naming.allocate_one(name, section, "tls")
        policy_ref = ObjectRef(EG_API_VERSION, "ClientTrafficPolicy", ns, policy_name)
        h = first
        first_src = h.tls_source
        assert first_src is not None
        src = first_src
        for opt, value in h.tls_options.items():
            key = _opt_key(h, opt)
            if opt in ("min_tls_version", "max_tls_version"):
                version = TLS_VERSIONS.get(str(value))
                if version is None:
                    src.note(key, "error", f"unknown TLS version {value!r}", [])
                    continue
                tls["minVersion" if opt.startswith("min") else "maxVersion"] = version
                src.note(key, "converted", "ClientTrafficPolicy tls", [policy_ref])
            elif opt == "cipher_suites":
                tls["ciphers"] = [str(c) for c in value or []]
                src.note(key, "converted", "ClientTrafficPolicy tls.ciphers", [policy_ref])
            elif opt == "ecdh_curves":
                tls["ecdhCurves"] = [str(c) for c in value or []]
                src.note(key, "converted", "ClientTrafficPolicy tls.ecdhCurves", [policy_ref])
            elif opt == "alpn_protocols":
                protos = [p.strip() for p in str(value).split(",") if p.strip()]
                good = [p for p in protos if p in ALPN]
                tls["alpnProtocols"] = good
                src.note(
                    key,
                    "converted" if good == protos else "partial",
                    "ClientTrafficPolicy tls.alpnProtocols",
                    [policy_ref],
                )
            elif opt == "ca_secret":
                ca = secret_ref(value, src.namespace)
                if ca is None:
                    continue
                ref: dict[str, Any] = {"group": "", "kind": "Secret", "name": ca.name}
                if ca.namespace != ns:
                    ref["namespace"] = ca.namespace
                    grants.add(
                        GrantNeed(
                            ENVOY_GATEWAY_GROUP,
                            "ClientTrafficPolicy",
                            ns,
                            "",
                            "Secret",
                            ca.namespace,
                            ca.name,
                        ),
                        [src.ref],
                    )
                client["caCertificateRefs"] = [ref]
                src.note(key, "converted", "ClientTrafficPolicy tls.clientValidation", [policy_ref])
            elif opt == "cert_required":
                src.note(key, "converted", "clientValidation.optional", [policy_ref])
            elif opt == "crl_secret":
                src.note(key, "unsupported", "certificate revocation lists are not converted", [])
        if client:
            client["optional"] = h.tls_options.get("cert_required") is not True
            tls["clientValidation"] = client
        if not tls:
            continue
        obj: KubeObject = {
            "apiVersion": EG_API_VERSION,
            "kind": "ClientTrafficPolicy",
            "metadata": {"name": policy_name, "namespace": ns},
            "spec": {
                "targetRefs": [lis.target_ref()],
                "tls": tls,
            },
        }
        out.append(stamp(obj, sources))
        for h2 in items:
            if h2.tls_source is not None:
                h2.tls_source.outputs.append(policy_ref)


def _opt_key(h: HostIR, opt: str) -> str:
    return opt if h.tls_source is not h.src else f"tls.{opt}"


def report_tlscontext(c: TLSContextIR, eg: bool) -> None:
    src = c.src
    if not c.used:
        for key in src.spec:
            if not src.claimed(key):
                src.note(
                    key,
                    "ignored",
                    "no Host uses this TLSContext (Emissary 2+ terminates TLS only for Hosts)"
                    if key != "sni"
                    else "origination settings are read by the Mappings that name this TLSContext",
                    [],
                )
        return
    for key, message in {
        "hosts": "the Hosts that use this TLSContext decide the listeners",
        "secret": "the HTTPS listener's certificate when the Host has no tlsSecret",
        "secret_namespacing": "applied to secret names",
        "redirect_cleartext_from": "the Host's insecure action decides redirects",
        "sni": "used for TLS origination only",
        "ambassador_id": "this installation's TLSContext",
        "cert_chain_file": "file paths inside Emissary's pod cannot be converted",
        "private_key_file": "file paths inside Emissary's pod cannot be converted",
        "cacert_chain_file": "file paths inside Emissary's pod cannot be converted",
    }.items():
        if key in src.spec and not src.claimed(key):
            status = "unsupported" if key.endswith("_file") else "converted"
            src.note(key, status, message, [] if status != "converted" else None)  # type: ignore[arg-type]
