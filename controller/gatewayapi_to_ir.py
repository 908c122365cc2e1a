"""Gateway API objects + the attachment engine's verdicts → the IR. Pure.

The attachment engine (``controller.attachment.compute``) decides what attaches where, which
backends resolve and in which order matches take precedence (each listener's ``routing`` table);
this module only turns those decisions into Envoy terms, reading from the objects what the
engine does not carry (filters, timeouts, Service ports, EndpointSlices, Secret data,
BackendTLSPolicies).

One Envoy serves every Gateway of our GatewayClasses (merged, like Envoy Gateway's
``mergeGateways``): Envoy listeners are per port on one listen address; Gateway listeners on
the same port share the plain-HTTP route configuration or get one HTTPS filter chain each.
``port_offset`` moves every port (80 → 80 + offset) so that the controller needs no root.

Virtual hosts follow the spec's hostname rules, which Envoy's single virtual-host choice does not
give by itself: the virtual host for ``a.example.com`` also carries, after its own routes, the
routes of every less specific hostname of the same Gateway listener that covers it
(``*.example.com``, ``*``), in precedence order; and on a shared port a hostname belongs to the
most specific Gateway listener that matches it (listener isolation).

An Envoy Gateway ClientTrafficPolicy on a Gateway listener sets its filter chain's TLS (versions,
ciphers, ALPN, client certificate validation with the CAs sent over SDS). Whatever in the policy
cannot be enforced and would weaken security (a CA that cannot be read, a value Envoy would
reject, a protective setting not implemented) fails closed: the listener gets no filter chain and
reports Programmed=False with the reason, and a note says so.
"""

from __future__ import annotations

import base64
import bisect
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from controller import attachment as att
from controller import egpolicy as eg
from controller import hostnames as hn
from controller import ir, l4
from controller import precedence as prec
from controller.egpolicy import parse_duration
from kubectl_gw.model import ENVOY_GATEWAY_GROUP, KubeObject

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
H2C_APP_PROTOCOLS = frozenset({"kubernetes.io/h2c", "h2c", "grpc"})
SERVE_DNS_BACKENDS = True
"""Envoy Gateway Backends with fqdn endpoints become STRICT_DNS clusters, which Envoy never
asks EDS for (``controller.xds`` waits for the endpoints of EDS clusters only). Off, such
Backends answer 500 with a note: a switch to turn the DNS path off, not a missing piece."""
__all__ = ["BuildOptions", "BuildResult", "build", "compute_and_build", "parse_duration"]


@dataclass(frozen=True)
class BuildOptions:
    listen_address: str = "0.0.0.0"
    port_offset: int = 0


@dataclass
class BuildResult:
    ir: ir.IR
    programmed: dict[att.ListenerKey, tuple[bool, str, str]] = field(default_factory=dict)
    """Per Gateway listener: (programmed?, reason, message) as far as the IR can tell."""
    notes: list[str] = field(default_factory=list)
    policy_problems: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    """Per Envoy Gateway policy (kind, namespace, name): why the routes it covers could not
    be served as it asks (they answer 500), for its status (``controller.policy_status``)."""


class _Index:
    def __init__(self, objects: Iterable[KubeObject]) -> None:
        self.services = att.ReadRecording()
        self.slices: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
        self.secrets = att.ReadRecording()
        self.config_maps = att.ReadRecording()
        self.routes: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        self.tls_policies: list[Mapping[str, Any]] = []
        self.grants: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        objects = list(objects)
        self.policies = eg.Policies(objects)
        for obj in objects:
            meta = obj.get("metadata") or {}
            key = (meta.get("namespace", ""), meta.get("name", ""))
            kind = obj.get("kind")
            if kind == "Service":
                self.services.put(key, obj)
            elif kind == "EndpointSlice":
                service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
                if service:
                    self.slices[(key[0], service)].append(obj)
            elif kind == "Secret":
                self.secrets.put(key, obj)
            elif kind == "ConfigMap":
                self.config_maps.put(key, obj)
            elif kind in ("HTTPRoute", "GRPCRoute"):
                self.routes[(kind, *key)] = obj
            elif kind == "BackendTLSPolicy":
                self.tls_policies.append(obj)
            elif kind == "ReferenceGrant":
                self.grants[key[0]].append(obj)
        for items in self.slices.values():
            items.sort(key=_name_of)

    def replace_slice(
        self, namespace: str, name: str, obj: Mapping[str, Any] | None
    ) -> set[tuple[str, str]]:
        """Put a changed EndpointSlice in (None: deleted); return the Services whose slices
        changed (the one it left, the one it joined)."""
        services: set[tuple[str, str]] = set()
        for key, items in list(self.slices.items()):
            if key[0] == namespace and any(_name_of(s) == name for s in items):
                items[:] = [s for s in items if _name_of(s) != name]
                services.add(key)
                if not items:
                    del self.slices[key]
        service = ((obj or {}).get("metadata") or {}).get("labels", {}).get(SERVICE_NAME_LABEL)
        if obj is not None and service:
            items = self.slices[(namespace, service)]
            items.append(obj)
            items.sort(key=_name_of)
            services.add((namespace, service))
        return services

    def granted(self, source: tuple[str, str, str], target: tuple[str, str, str, str]) -> bool:
        """May an object (group, kind, namespace) refer to (group, kind, namespace, name)?"""
        from_group, from_kind, from_ns = source
        to_group, to_kind, to_ns, to_name = target
        if from_ns == to_ns:
            return True
        for grant in self.grants.get(to_ns, []):
            spec = grant.get("spec") or {}
            if not any(
                str(f.get("group") or "") == from_group
                and f.get("kind") == from_kind
                and f.get("namespace") == from_ns
                for f in spec.get("from") or []
            ):
                continue
            if any(
                str(t.get("group") or "") == to_group
                and t.get("kind") == to_kind
                and (not t.get("name") or t.get("name") == to_name)
                for t in spec.get("to") or []
            ):
                return True
        return False


class _Builder:
    def __init__(
        self,
        index: _Index,
        result: att.AttachmentResult,
        options: BuildOptions,
        memo: BuildMemo | None = None,
    ) -> None:
        self.index = index
        self.result = result
        self.options = options
        self.memo = memo
        # While a listener group's virtual hosts are built through the memo: the routing
        # entries its previous build made, and those this build made or reused.
        self._memo_before: Mapping[_MemoKey, _MemoEntry] = {}
        self._memo_kept: dict[_MemoKey, _MemoEntry] = {}
        self._vhosts_kept: dict[Any, _VhostsEntry] = {}
        self._hostnames_kept: dict[Any, tuple[set[str], list[str]]] = {}
        # While a listener group is built through the memo: its hostnames' entries of last
        # time, those of this time, and the group's counted outputs.
        self._hosts_building: (
            tuple[
                Mapping[tuple[str, att.ListenerKey], _HostEntry],
                dict[tuple[str, att.ListenerKey], _HostEntry],
                _Counted,
            ]
            | None
        ) = None
        self._route_results: dict[att.ObjKey, att.RouteResult] | None = None
        self.clusters: _Recording[ir.Cluster] = _Recording()
        self.endpoints: dict[str, ir.ClusterEndpoints] = {}
        self._endpoint_cache: dict[ir.EndpointSource, tuple[ir.Endpoint, ...]] = {}
        self.secrets: _Recording[ir.Secret] = _Recording()
        self.out = BuildResult(ir.IR())
        self._traffic: dict[int, eg.TrafficPolicy] = {}
        self._security: dict[int, eg.SecurityPolicy] = {}
        self._client: dict[int, eg.ClientPolicy] = {}
        self._downstream_tls: dict[att.ListenerKey, ir.TLSTermination] = {}
        self._l4_context: l4.L4Context | None = None

    # -------------------------------------------------------------- listeners

    def build(self) -> BuildResult:
        by_port: dict[int, list[att.ListenerResult]] = defaultdict(list)
        for gateway in self.result.gateways:
            accepted = gateway.condition("Accepted")
            own = [lis for lis in self.result.all_listeners() if lis.gateway == gateway.key]
            for lis in own:
                if accepted is None or accepted.status != "True":
                    self._skip(lis, "Invalid", f"{gateway.key} is not accepted")
                elif not lis.is_true("Accepted"):
                    self._skip(lis, "Invalid", "the listener is not accepted")
                elif lis.protocol not in ("HTTP", "HTTPS", *l4.L4_PROTOCOLS):
                    self._skip(lis, "Invalid", f"protocol {lis.protocol} is not served")
                elif lis.protocol == "HTTPS" and (lis.tls_mode or "Terminate") != "Terminate":
                    self._skip(
                        lis, "Invalid", "HTTPS listeners terminate TLS; use protocol TLS to pass it"
                    )
                elif (problem := self._client_traffic(lis)) is not None:
                    # Fail closed: never serve a listener without the protection asked for.
                    self._skip(lis, "Invalid", problem)
                    self.out.notes.append(f"{lis.key} is not served: {problem}")
                else:
                    by_port[lis.port].append(lis)
        self._unmatched_sections()
        listeners: list[ir.Listener] = []
        udp_listeners: list[ir.UdpListener] = []
        for port, group in sorted(by_port.items()):
            group.sort(key=lambda lis: lis.key)
            udp = [lis for lis in group if l4.transport(lis.protocol) == "udp"]
            if udp:
                udp_listeners += self._l4().udp_listeners(port, udp)
            group = [lis for lis in group if l4.transport(lis.protocol) == "tcp"]
            if not group:
                continue
            protocol = group[0].protocol
            same = [lis for lis in group if l4.compatible(lis.protocol, protocol)]
            for other in group:
                if not l4.compatible(other.protocol, protocol):
                    self._skip(other, "Invalid", f"port {port} already serves {protocol}")
            built = self._listener(port, protocol, same)
            if built is not None:
                listeners.append(built)
        self._refresh_endpoints()
        self.out.notes[:] = list(dict.fromkeys(self.out.notes))
        self.out.ir = ir.normalize(
            ir.IR(
                listeners=tuple(listeners),
                clusters=tuple(self.clusters.values()),
                endpoints=tuple(self.endpoints.values()),
                secrets=tuple(self.secrets.values()),
                udp_listeners=tuple(udp_listeners),
            )
        )
        return self.out

    def _skip(self, lis: att.ListenerResult, reason: str, message: str) -> None:
        self.out.programmed[lis.key] = (False, reason, message)

    def _l4(self) -> l4.L4Context:
        """The L4 (TLS, TCP, UDP) builder, sharing this builder's clusters and status."""
        if self._l4_context is None:
            self._l4_context = l4.L4Context(
                services=self.index.services,
                endpoints_of=self._endpoints,
                certificates_of=self._certificates,
                listen_address=self.options.listen_address,
                port_offset=self.options.port_offset,
                clusters=self.clusters,
                endpoints=self.endpoints,
                programmed=self.out.programmed,
                notes=self.out.notes,
            )
        return self._l4_context

    def _listener(
        self, port: int, protocol: str, group: list[att.ListenerResult]
    ) -> ir.Listener | None:
        if any(lis.protocol in l4.L4_PROTOCOLS for lis in group):
            https = [lis for lis in group if lis.protocol == "HTTPS"]
            served = self._listener(port, "HTTPS", https) if https else None
            rest = [lis for lis in group if lis.protocol in l4.L4_PROTOCOLS]
            return self._l4().tcp_listener(port, rest, served, https)
        bind_port = port + self.options.port_offset
        address = self.options.listen_address
        chains: list[ir.FilterChain] = []
        if protocol == "HTTP":
            name = ir.http_route_config_name(port)
            vhosts = self._memo_virtual_hosts(group)
            chains.append(ir.FilterChain(name, ir.RouteConfig(name, vhosts)))
            for lis in group:
                self.out.programmed[lis.key] = (
                    True,
                    "Programmed",
                    f"served on {address}:{bind_port}",
                )
        else:
            for lis in group:
                if not lis.is_true("ResolvedRefs"):
                    # The engine checked every certificateRef (existence, kind, ReferenceGrant).
                    self._skip(lis, "Invalid", "certificate references are not resolved")
                    continue
                secrets = self._certificates(lis)
                if not secrets:
                    self._skip(lis, "Invalid", "no usable TLS certificate")
                    continue
                owner = lis.key.owner
                name = ir.https_route_config_name(owner.namespace, owner.name, lis.name)
                server_names = (hn.normalize(lis.hostname),) if lis.hostname else ()
                chains.append(
                    ir.FilterChain(
                        name,
                        ir.RouteConfig(name, self._memo_virtual_hosts([lis])),
                        server_names=server_names,
                        tls=replace(
                            self._downstream_tls.get(lis.key, ir.TLSTermination(())),
                            secrets=secrets,
                        ),
                    )
                )
                self.out.programmed[lis.key] = (
                    True,
                    "Programmed",
                    f"served on {address}:{bind_port}",
                )
            if not chains:
                return None
        return ir.Listener(
            ir.listener_name(address, bind_port),
            address,
            bind_port,
            port,
            "HTTP" if protocol == "HTTP" else "HTTPS",
            tuple(chains),
        )

    # -------------------------------------------------------------- ClientTrafficPolicy

    def _client_traffic(self, lis: att.ListenerResult) -> str | None:
        """Apply the listener's ClientTrafficPolicy; why it cannot be served, if it cannot."""
        owner = lis.key.owner
        gateway = (lis.gateway.namespace, lis.gateway.name) if lis.gateway else None
        found = self.index.policies.listener_policy(
            "ClientTrafficPolicy", (owner.kind, owner.namespace, owner.name), lis.name, gateway
        )
        if found is None:
            return None
        policy = self._client.get(id(found))
        if policy is None:
            policy = self._client[id(found)] = eg.client_policy(found)
            self.out.notes.extend(policy.notes)
        if policy.unenforceable:
            return "; ".join(policy.unenforceable)
        tls = policy.tls
        if tls is None:
            return None
        who = eg.policy_id(found)
        if lis.protocol != "HTTPS":
            self.out.notes.append(f"{who}: tls has no effect on {lis.key} ({lis.protocol})")
            return None
        validation: ir.ClientValidation | None = None
        if tls.validation is not None:
            validation, problem = self._client_validation(policy, tls.validation)
            if problem is not None:
                return f"{who}: tls.clientValidation: {problem}"
        self._downstream_tls[lis.key] = ir.TLSTermination(
            (),
            alpn=tls.alpn if tls.alpn is not None else ir.TLSTermination(()).alpn,
            min_version=tls.min_version,
            max_version=tls.max_version,
            ciphers=tls.ciphers,
            ecdh_curves=tls.ecdh_curves,
            signature_algorithms=tls.signature_algorithms,
            session_resumption=(tls.stateless_resumption, tls.stateful_resumption),
            client_validation=validation,
        )
        return None

    def _unmatched_sections(self) -> None:
        """Note ClientTrafficPolicies naming a listener our Gateways do not have: they apply
        nowhere (as in Envoy Gateway), which a typo would make easy to miss."""
        ours = {(k.owner.kind, k.owner.namespace, k.owner.name) for k in self._all_listener_keys()}
        names = {
            (k.owner.kind, k.owner.namespace, k.owner.name, k.name)
            for k in self._all_listener_keys()
        }
        for kind, ns, name, section, policy in self.index.policies.section_targets(
            "ClientTrafficPolicy"
        ):
            if (kind, ns, name) in ours and (kind, ns, name, section) not in names:
                self.out.notes.append(
                    f"ClientTrafficPolicy {ns}/{policy}: {kind} {ns}/{name} has no listener "
                    f"{section!r}; the policy applies nowhere"
                )

    def _all_listener_keys(self) -> list[att.ListenerKey]:
        return [lis.key for lis in self.result.all_listeners()]

    def _client_validation(
        self, policy: eg.ClientPolicy, spec: eg.ClientValidationSpec
    ) -> tuple[ir.ClientValidation | None, str | None]:
        source = (ENVOY_GATEWAY_GROUP, "ClientTrafficPolicy", policy.namespace)
        cas, problem = self._pem_refs(source, spec.ca_refs, "ca.crt", "CERTIFICATE")
        if problem is not None:
            return None, problem
        crls, problem = self._pem_refs(source, spec.crl_refs, "ca.crl", "X509 CRL")
        if problem is not None:
            return None, problem
        ca_secret: str | None = None
        if cas:
            ca_secret = ir.client_ca_secret_name(policy.namespace, policy.name)
            self.secrets[ca_secret] = ir.Secret(
                ca_secret,
                ca="".join(dict.fromkeys(cas)),
                crl="".join(dict.fromkeys(crls)),
                only_verify_leaf_crl=spec.only_verify_leaf_crl,
            )
        elif crls:
            return None, "a crl needs caCertificateRefs"
        return (
            ir.ClientValidation(
                ca_secret=ca_secret,
                require_certificate=spec.require_certificate,
                accept_untrusted=spec.accept_untrusted,
                spki_hashes=spec.spki_hashes,
                certificate_hashes=spec.certificate_hashes,
                subject_alt_names=spec.subject_alt_names,
                allow_expired=spec.allow_expired,
            ),
            None,
        )

    def _pem_refs(
        self,
        source: tuple[str, str, str],
        refs: tuple[Mapping[str, Any], ...],
        key: str,
        label: str,
    ) -> tuple[list[str], str | None]:
        """The PEM blocks under ``key`` of the Secrets/ConfigMaps ``refs`` name, or a problem
        (a reference that is not allowed, missing, or holds nothing usable)."""
        blocks: list[str] = []
        for ref in refs:
            group, kind = str(ref.get("group") or ""), str(ref.get("kind") or "Secret")
            ns, name = str(ref.get("namespace") or source[2]), str(ref.get("name") or "")
            where = f"{kind} {ns}/{name}"
            if group != "" or kind not in ("Secret", "ConfigMap"):
                return [], f"{kind}.{group or 'core'} {name}: only a Secret or ConfigMap can do"
            if not self.index.granted(source, ("", kind, ns, name)):
                return [], f"no ReferenceGrant in {ns} allows a reference to {where}"
            found = (self.index.secrets if kind == "Secret" else self.index.config_maps).get(
                (ns, name)
            )
            if found is None:
                return [], f"{where} not found"
            raw = (found.get("data") or {}).get(key)
            text = ""
            if kind == "ConfigMap":
                text = str(raw or "")
            elif raw:
                try:
                    text = base64.b64decode(str(raw), validate=True).decode()
                except (ValueError, UnicodeDecodeError):
                    text = ""
            got = eg.pem_blocks(text, label)
            if not got:
                return [], f"{where} has no PEM {label} under {key}"
            if len(got) < text.count(f"-----BEGIN {label}-----"):
                self.out.notes.append(f"{where}: {key}: unusable {label} blocks dropped")
            blocks += got
        return blocks, None

    def _certificates(self, lis: att.ListenerResult) -> tuple[str, ...]:
        owner = lis.key.owner
        names: list[str] = []
        for ref in lis.certificate_refs:
            if (ref.get("group") or "") != "" or (ref.get("kind") or "Secret") != "Secret":
                continue
            key = (str(ref.get("namespace") or owner.namespace), str(ref.get("name", "")))
            secret = self.index.secrets.get(key)
            if secret is None:
                continue
            data = secret.get("data") or {}
            try:
                chain = base64.b64decode(data.get("tls.crt", "")).decode()
                private = base64.b64decode(data.get("tls.key", "")).decode()
            except ValueError:
                continue
            if "-----BEGIN" not in chain or "-----BEGIN" not in private:
                # Envoy would reject it, and one rejected secret blocks every SDS update.
                self.out.notes.append(f"Secret {key[0]}/{key[1]}: tls.crt/tls.key are not PEM")
                continue
            name = ir.secret_name(*key)
            self.secrets[name] = ir.Secret(name, certificate_chain=chain, private_key=private)
            names.append(name)
        return tuple(names)

    # -------------------------------------------------------------- virtual hosts

    def _memo_virtual_hosts(self, group: list[att.ListenerResult]) -> tuple[ir.VirtualHost, ...]:
        """:meth:`_virtual_hosts` through the memo. Listeners whose routing tables are the very
        same lists as last time (the engine's memo keeps the table of a listener no route of
        which changed) get the same virtual hosts, and what building them added to the build
        (clusters, endpoints, secrets, notes, policy problems) is added again in one step.
        Otherwise a hostname whose live entries are the same lists as last time keeps its
        virtual host, and the group's outputs are updated by what the other hostnames add and
        drop (counted: a cluster stays while one hostname still needs it)."""
        if self.memo is None:
            return self._virtual_hosts(group, None)
        key = tuple((lis.key, lis.hostname) for lis in group)
        found = self.memo.vhosts.get(key)
        if found is not None and all(
            lis.routing is table for lis, table in zip(group, found.tables, strict=True)
        ):
            self.memo.hits += found.entry_count
            self._add_outputs(found.outputs.outputs())
            self.out.notes.extend(found.notes)
            self._vhosts_kept[key] = found
            order_key = tuple(lis.key for lis in group)
            if order_key in self.memo.hostnames:  # for the group's next change
                self._hostnames_kept[order_key] = self.memo.hostnames[order_key]
            return found.vhosts
        if found is not None and len(group) == 1:
            vhosts = self._changed_hostnames(key, group[0], found)
            if vhosts is not None:
                return vhosts
        before = found.hosts if found is not None else {}
        hosts: dict[tuple[str, att.ListenerKey], _HostEntry] = {}
        outputs = found.outputs.copy() if found is not None else _Counted()
        self._hosts_building = (before, hosts, outputs)
        notes_before = len(self.out.notes)
        try:
            vhosts = self._virtual_hosts(group, before)
        finally:
            self._hosts_building = None
        notes = tuple(self.out.notes[notes_before:])  # the group's own (its hosts' are counted)
        for host_key, gone in before.items():
            if host_key not in hosts:
                outputs.add(gone.outputs, -1)
        self._add_outputs(outputs.outputs())
        self._vhosts_kept[key] = _VhostsEntry(
            tuple(lis.routing for lis in group),
            vhosts,
            hosts,
            outputs,
            notes,
            sum(len(h.entries) for h in hosts.values()),
            tuple(lis.live for lis in group),
            {host: entry.vhost for (host, _), entry in hosts.items()} if len(group) == 1 else {},
        )
        return vhosts

    def _changed_hostnames(
        self, key: Any, lis: att.ListenerResult, found: _VhostsEntry
    ) -> tuple[ir.VirtualHost, ...] | None:
        """A one-listener group's virtual hosts from last time's, with those of the hostnames
        whose live entries changed built again: the cost of a change is its hostnames', not
        every hostname's. None when a wildcard hostname's entries changed (they are part of
        the hostnames they cover): then every hostname is looked at."""
        live, before = lis.live, found.lives[0]
        changed = [h for h in live.keys() | before.keys() if live.get(h) is not before.get(h)]
        if any(hn.is_wildcard(h) for h in changed):
            return None
        hostnames = set(live)
        if lis.hostname:
            hostnames.add(hn.normalize(lis.hostname))
        order = self._sorted_hostnames([lis], hostnames)
        hosts = dict(found.hosts)
        outputs = found.outputs.copy()
        count = found.entry_count
        misses = self.memo.misses  # type: ignore[union-attr]
        wild = [n for n in live if hn.is_wildcard(n)]
        self._hosts_building = (found.hosts, hosts, outputs)
        try:
            for host in sorted(changed):
                gone = hosts.pop((host, lis.key), None)
                if gone is not None:
                    count -= len(gone.entries)
                listener_host = hn.normalize(lis.hostname)
                if host not in hostnames or (lis.hostname and not hn.covers(listener_host, host)):
                    if gone is not None:
                        outputs.add(gone.outputs, -1)
                    continue
                self._memo_host(host, lis, _host_lists(host, live, wild), found.hosts)
                count += len(hosts[host, lis.key].entries)
        finally:
            self._hosts_building = None
        assert self.memo is not None
        self.memo.hits = self.memo.hits + count - (self.memo.misses - misses)
        by_host = dict(found.by_host)
        for host in changed:
            entry = hosts.get((host, lis.key))
            if entry is None:
                by_host.pop(host, None)
            else:
                by_host[host] = entry.vhost
        try:  # every hostname of a one-listener group has its virtual host
            vhosts = tuple(map(by_host.__getitem__, order))
        except KeyError:
            vhosts = tuple(by_host[h] for h in order if h in by_host)
        self._add_outputs(outputs.outputs())
        self._vhosts_kept[key] = _VhostsEntry(
            (lis.routing,), vhosts, hosts, outputs, (), count, (live,), by_host
        )
        return vhosts

    def _add_outputs(self, found: _Outputs) -> None:
        """What building memoised routes added to the build, added again."""
        for name, cluster in found.clusters.items():
            self.clusters.setdefault(name, cluster)
        for name, endpoints in found.endpoints.items():
            self.endpoints.setdefault(name, endpoints)
        for name, secret in found.secrets.items():
            self.secrets.setdefault(name, secret)
        self.out.notes.extend(found.notes)
        _merge_problems(self.out.policy_problems, found.policy_problems)

    def _virtual_hosts(
        self,
        group: list[att.ListenerResult],
        before: Mapping[tuple[str, att.ListenerKey], _HostEntry] | None,
    ) -> tuple[ir.VirtualHost, ...]:
        hostnames: set[str] = set()
        for lis in group:
            if lis.hostname:
                hostnames.add(hn.normalize(lis.hostname))
            hostnames.update(lis.live)
        vhosts: list[ir.VirtualHost] = []
        wildcards: dict[int, list[str]] = {}
        for host in self._sorted_hostnames(group, hostnames):
            if len(group) == 1:  # the common case, and the one with thousands of hostnames
                owner = group[0]
                if owner.hostname and not hn.covers(hn.normalize(owner.hostname), host):
                    continue
            else:
                owners = [lis for lis in group if hn.covers(hn.normalize(lis.hostname), host)]
                if not owners:
                    continue
                owner = max(owners, key=lambda lis: hn.listener_specificity(lis.hostname))
                rivals = [
                    lis
                    for lis in owners
                    if lis is not owner
                    and hn.listener_specificity(lis.hostname)
                    == hn.listener_specificity(owner.hostname)
                ]
                if rivals:
                    self.out.notes.append(
                        f"hostname {host} on port {owner.port}: {owner.key} serves it; "
                        + ", ".join(str(r.key) for r in rivals)
                        + " share the port and hostname and are not reached for it"
                    )
            live = owner.live
            found = wildcards.get(id(owner))
            if found is None:
                found = wildcards[id(owner)] = [n for n in live if hn.is_wildcard(n)]
            lists = _host_lists(host, live, found)
            if before is None:
                routes = tuple(r for items in lists for e in items for r in self._route(e, owner))
                vhosts.append(ir.VirtualHost(host, (host,), routes))
            else:
                vhosts.append(self._memo_host(host, owner, lists, before))
        return tuple(vhosts)

    def _sorted_hostnames(
        self, group: list[att.ListenerResult], hostnames: set[str]
    ) -> Iterable[str]:
        """Most specific first (then by name): the order of the virtual hosts. Through the memo
        the last build's order is updated by the hostnames added and dropped since."""
        if self.memo is None:
            return sorted(hostnames, key=_hostname_order, reverse=True)
        key = tuple(lis.key for lis in group)
        found = self.memo.hostnames.get(key)
        if found is None:
            found = (hostnames, sorted(hostnames, key=_hostname_order))
        elif found[0] != hostnames:
            ordered = list(found[1])
            for gone in found[0] - hostnames:
                del ordered[bisect.bisect_left(ordered, _hostname_order(gone), key=_hostname_order)]
            for new in hostnames - found[0]:
                bisect.insort(ordered, new, key=_hostname_order)
            found = (hostnames, ordered)
        self._hostnames_kept[key] = found
        return reversed(found[1])

    def _memo_host(
        self,
        host: str,
        owner: att.ListenerResult,
        lists: tuple[list[att.RoutingEntry], ...],
        before: Mapping[tuple[str, att.ListenerKey], _HostEntry],
    ) -> ir.VirtualHost:
        """One virtual host through the memo (see :meth:`_memo_virtual_hosts`)."""
        assert self.memo is not None and self._hosts_building is not None
        _, hosts, outputs = self._hosts_building
        key = (host, owner.key)
        found = before.get(key)
        if (
            found is not None
            and len(found.lists) == len(lists)
            and all(a is b for a, b in zip(found.lists, lists, strict=True))
        ):
            self.memo.hits += len(found.entries)
            hosts[key] = found
            return found.vhost
        notes_before = len(self.out.notes)
        self._memo_before = found.entries if found is not None else {}
        self._memo_kept = {}
        try:
            routes = tuple(r for items in lists for e in items for r in self._memo_route(e, owner))
            entries = self._memo_kept
        finally:
            self._memo_before, self._memo_kept = {}, {}
        clusters: dict[str, ir.Cluster] = {}
        endpoints: dict[str, ir.ClusterEndpoints] = {}
        secrets: dict[str, ir.Secret] = {}
        problems: dict[tuple[str, str, str], list[str]] = {}
        for entry in entries.values():
            for name, cluster in entry.clusters.items():
                clusters.setdefault(name, cluster)
            for name, assignment in entry.endpoints.items():
                endpoints.setdefault(name, assignment)
            for name, secret in entry.secrets.items():
                secrets.setdefault(name, secret)
            _merge_problems(problems, entry.policy_problems)
        mine = _Outputs(
            clusters,
            endpoints,
            secrets,
            tuple(self.out.notes[notes_before:]),
            tuple((policy, tuple(items)) for policy, items in problems.items()),
        )
        del self.out.notes[notes_before:]  # the group's outputs add them, counted
        if found is not None:
            outputs.add(found.outputs, -1)
        outputs.add(mine, 1)
        vhost = ir.VirtualHost(host, (host,), routes)
        hosts[key] = _HostEntry(lists, vhost, entries, mine)
        return vhost

    # -------------------------------------------------------------- routes

    def _memo_route(self, entry: att.RoutingEntry, lis: att.ListenerResult) -> list[ir.Route]:
        """:meth:`_route` through the memo: an entry of an unchanged route (the same
        ``RouteResult`` object) on the same listener reuses its IR routes and replays what
        building them added (clusters, endpoints, secrets, notes)."""
        if self.memo is None:
            return self._route(entry, lis)
        if self._route_results is None:
            self._route_results = {r.key: r for r in self.result.routes}
        verdict = self._route_results.get(entry.route)
        key: _MemoKey = (entry.route, entry.rule, entry.match_index, entry.hostname, lis.key)
        found = self._memo_kept.get(key)  # the same entry twice in one build (wildcard vhosts)
        if found is None:
            found = self._memo_before.get(key)
        if found is not None and found.verdict is verdict:
            self.memo.hits += 1
            self._add_outputs(found)
            self._memo_kept[key] = found
            return found.routes
        self.memo.misses += 1
        notes = len(self.out.notes)
        # Record every cluster and secret the call looked at or made: a cluster another route
        # made first in this build is still one this route would make without it. Likewise the
        # policy problems it finds, even those another route found first.
        self.clusters.touched, self.secrets.touched = set(), set()
        problems, self.out.policy_problems = self.out.policy_problems, {}
        try:
            routes = self._route(entry, lis)
            names = self.clusters.touched
            secret_names = self.secrets.touched
        finally:
            self.clusters.touched = self.secrets.touched = None
            found_problems = tuple((k, tuple(v)) for k, v in self.out.policy_problems.items())
            self.out.policy_problems = problems
        _merge_problems(problems, found_problems)
        for route in routes:
            names.update(_route_clusters(route))
        have = self.clusters
        clusters = {
            n: dict.__getitem__(have, n) for n in sorted(names) if dict.__contains__(have, n)
        }
        for cluster in clusters.values():
            if cluster.tls is not None and cluster.tls.ca_secret:
                secret_names.add(cluster.tls.ca_secret)
        secrets = {
            n: dict.__getitem__(self.secrets, n)
            for n in sorted(secret_names)
            if dict.__contains__(self.secrets, n)
        }
        self._memo_kept[key] = _MemoEntry(
            clusters=clusters,
            endpoints={n: self.endpoints[n] for n in clusters if n in self.endpoints},
            secrets=secrets,
            notes=tuple(self.out.notes[notes:]),
            policy_problems=found_problems,
            verdict=verdict,
            routes=routes,
        )
        return routes

    def _route(self, entry: att.RoutingEntry, lis: att.ListenerResult) -> list[ir.Route]:
        key = entry.route
        obj = self.index.routes.get((key.kind, key.namespace, key.name))
        if obj is None or entry.match is None:
            return []
        rules = (obj.get("spec") or {}).get("rules") or []
        rule: Mapping[str, Any] = rules[entry.rule] if entry.rule < len(rules) else {}
        rule_id = entry.rule_name or str(entry.rule)
        name = f"{key.kind}/{key.namespace}/{key.name}/rule/{rule_id}/match/{entry.match_index}"
        match = _match(entry.match)
        request_headers = ir.HeaderModifier()
        response_headers = ir.HeaderModifier()
        redirect: ir.Redirect | None = None
        direct: ir.DirectResponse | None = None
        host_rewrite: str | None = None
        path_rewrite: ir.PathRewrite | None = None
        mirrors: list[ir.Mirror] = []
        cors: ir.Cors | None = None
        problems: list[str] = []
        prefix = match.path.value if match.path.kind == "PathPrefix" else ""
        for raw in rule.get("filters") or []:
            kind = raw.get("type")
            if kind == "RequestHeaderModifier":
                request_headers = _header_modifier(raw.get("requestHeaderModifier"))
            elif kind == "ResponseHeaderModifier":
                response_headers = _header_modifier(raw.get("responseHeaderModifier"))
            elif kind == "RequestRedirect":
                spec = raw.get("requestRedirect") or {}
                redirect = ir.Redirect(
                    scheme=spec.get("scheme"),
                    hostname=spec.get("hostname"),
                    port=spec.get("port"),
                    path=_path_rewrite(spec.get("path"), prefix),
                    status_code=int(spec.get("statusCode") or 302),  # type: ignore[arg-type]
                )
            elif kind == "URLRewrite":
                spec = raw.get("urlRewrite") or {}
                host_rewrite = spec.get("hostname")
                path_rewrite = _path_rewrite(spec.get("path"), prefix)
            elif kind == "RequestMirror":
                mirror = self._mirror(entry, raw.get("requestMirror") or {})
                if mirror is not None:
                    mirrors.append(mirror)
            elif kind == "CORS":
                cors = _cors(raw.get("cors") or {})
            elif kind == "ExtensionRef":
                ref = raw.get("extensionRef") or {}
                if ref.get("group") != ENVOY_GATEWAY_GROUP or ref.get("kind") != "HTTPRouteFilter":
                    problems.append(f"extensionRef {ref.get('kind')}.{ref.get('group')} unknown")
                    continue
                found = self.index.policies.filters.get((key.namespace, str(ref.get("name"))))
                extension = eg.route_filter(found)
                problems += [f"{p} ({key.namespace}/{ref.get('name')})" for p in extension.problems]
                if extension.path_rewrite is not None:
                    path_rewrite = extension.path_rewrite
                if extension.direct_response is not None:
                    direct = extension.direct_response
                    if extension.content_type:
                        response_headers = ir.HeaderModifier(
                            set=(
                                *response_headers.set,
                                ir.HeaderValue("Content-Type", extension.content_type),
                            ),
                            add=response_headers.add,
                            remove=response_headers.remove,
                        )
        where = eg.RouteTarget(
            key.kind,
            key.namespace,
            key.name,
            entry.rule_name,
            lis.gateway.namespace if lis.gateway else "",
            lis.gateway.name if lis.gateway else "",
            lis.name,
        )
        traffic = self._traffic_policy(where)
        security, security_problems = self._security_policy(where)
        problems += security_problems
        action: ir.RouteAction
        if problems:
            self.out.notes.append(f"{name} answers 500: " + "; ".join(problems))
            action = ir.DirectResponse(500)
        elif redirect is not None:
            action = redirect
        elif direct is not None:
            action = direct
        else:
            backends = tuple(self._backend(b, traffic, key) for b in entry.backends)
            live = [b for b in backends if b.weight > 0]
            if not live or all(b.cluster is None for b in live):
                action = ir.DirectResponse(500)
            else:
                timeouts = _timeouts(rule.get("timeouts") or {})
                if timeouts.request is None and traffic and traffic.request_timeout_seconds:
                    timeouts = ir.Timeouts(
                        traffic.request_timeout_seconds, timeouts.backend_request
                    )
                retry = _retry(rule.get("retry"))
                if retry is None and traffic is not None:
                    retry = traffic.retry
                action = ir.Forward(
                    backends,
                    host_rewrite=host_rewrite,
                    path_rewrite=path_rewrite,
                    timeouts=timeouts,
                    retry=retry,
                    mirrors=tuple(mirrors),
                    hash_policies=traffic.hash_policies if traffic else (),
                    idle_timeout_seconds=traffic.stream_idle_timeout_seconds if traffic else None,
                )
        return [
            ir.Route(
                name,
                match,
                action,
                request_headers,
                response_headers,
                cors,
                security=security,
                rate_limit=traffic.rate_limit if traffic else None,
                request_buffer_bytes=traffic.request_buffer_bytes if traffic else None,
            )
        ]

    # -------------------------------------------------------------- Envoy Gateway policies

    def _traffic_policy(self, where: eg.RouteTarget) -> eg.TrafficPolicy | None:
        found = self.index.policies.find("BackendTrafficPolicy", where)
        if found is None:
            return None
        parsed = self._traffic.get(id(found))
        if parsed is None:
            parsed = self._traffic[id(found)] = eg.traffic_policy(found)
            self.out.notes.extend(parsed.notes)
        return parsed

    def _security_policy(self, where: eg.RouteTarget) -> tuple[ir.Security | None, list[str]]:
        found = self.index.policies.find("SecurityPolicy", where)
        if found is None:
            return None, []
        policy = self._security.get(id(found))
        if policy is None:
            policy = self._security[id(found)] = eg.security_policy(found)
            self.out.notes.extend(policy.notes)
        problems: list[str] = []
        source = (ENVOY_GATEWAY_GROUP, "SecurityPolicy", policy.namespace)
        basic: ir.BasicAuth | None = None
        if policy.basic_auth_users is not None:
            ref = policy.basic_auth_users
            ns = str(ref.get("namespace") or policy.namespace)
            name = str(ref.get("name") or "")
            secret = self.index.secrets.get((ns, name))
            if (ref.get("group") or "") != "" or (ref.get("kind") or "Secret") != "Secret":
                problems.append("basicAuth.users must be a Secret")
            elif not self.index.granted(source, ("", "Secret", ns, name)):
                problems.append(f"no ReferenceGrant allows it to read Secret {ns}/{name}")
            else:
                users, notes = eg.htpasswd_users(secret)
                self.out.notes += [f"{eg.policy_id(found)}: Secret {ns}/{name}: {n}" for n in notes]
                if users:
                    basic = ir.BasicAuth(users)
                else:
                    problems.append(f"Secret {ns}/{name} gives no usable basic-auth user")
        ext: ir.ExtAuth | None = None
        if policy.ext_auth is not None:
            spec = policy.ext_auth
            cluster, authority, problem = self._policy_backend(
                source, spec.backend_ref, http2=spec.grpc
            )
            if cluster is None:
                problems.append(f"extAuth: {problem}")
            else:
                ext = ir.ExtAuth(
                    name=policy.filter_name,
                    cluster=cluster,
                    authority=authority,
                    path_prefix=spec.path_prefix,
                    path_override=spec.path_override,
                    headers_to_backend=spec.headers_to_backend,
                    headers_to_ext_auth=spec.headers_to_ext_auth,
                    timeout_seconds=spec.timeout_seconds,
                    fail_open=spec.fail_open,
                    grpc=spec.grpc,
                    status_on_error=spec.status_on_error,
                    body_bytes=spec.body_bytes,
                )
        if problems:
            key = ("SecurityPolicy", policy.namespace, policy.name)
            known = self.out.policy_problems.setdefault(key, [])
            known += [p for p in problems if p not in known]
        if problems or policy.unenforceable:
            return None, [*policy.unenforceable, *(f"{eg.policy_id(found)}: {p}" for p in problems)]
        return ir.Security(policy.authorization, basic, ext), []

    def _policy_backend(
        self, source: tuple[str, str, str], ref: Mapping[str, Any], *, http2: bool = False
    ) -> tuple[str | None, str, str]:
        """(cluster, authority, problem) for a backendRef inside a policy; ``http2``: the
        cluster must speak HTTP/2 (cleartext), as a gRPC service needs."""
        group, kind = str(ref.get("group") or ""), str(ref.get("kind") or "Service")
        ns, name = str(ref.get("namespace") or source[2]), str(ref.get("name") or "")
        port = ref.get("port")
        if not self.index.granted(source, (group, kind, ns, name)):
            return None, "", f"no ReferenceGrant allows a reference to {kind} {ns}/{name}"
        cluster: str | None
        if (group, kind) == ("", "Service"):
            service = self.index.services.get((ns, name))
            if service is None or not isinstance(port, int):
                return None, "", f"Service {ns}/{name} (port {port}) not found"
            if not any(
                p.get("port") == port for p in (service.get("spec") or {}).get("ports") or []
            ):
                return None, "", f"Service {ns}/{name} has no port {port}"
            cluster, authority, problem = (
                self._service_cluster(ns, name, port, None),
                f"{name}.{ns}:{port}",
                "",
            )
            if cluster is None:
                problem = f"Service {ns}/{name} port {port}: its BackendTLSPolicy is unusable"
        elif (group, kind) == (ENVOY_GATEWAY_GROUP, "Backend"):
            cluster, problem = self._eg_backend_cluster(
                ns, name, port if isinstance(port, int) else None, None
            )
            authority = f"{name}.{ns}:{port or ''}".rstrip(":")
        else:
            return None, "", f"{kind}.{group} is not a supported backend kind"
        if cluster is not None and http2:
            cluster = self._http2_variant(cluster)
        return cluster, authority, problem

    def _http2_variant(self, base: str) -> str:
        """``base`` if it already speaks HTTP/2 in clear text, else a twin cluster that does."""
        plain = self.clusters[base]
        if plain.protocol == "h2c" or plain.tls is not None:
            return base  # a TLS cluster negotiates by ALPN: not made h2c here
        name = ir.h2_cluster_name(base)
        if name not in self.clusters:
            self.clusters[name] = replace(plain, name=name, protocol="h2c")
            if base in self.endpoints:
                self.endpoints[name] = replace(self.endpoints[base], cluster=name)
        return name

    def _eg_backend_cluster(
        self, ns: str, name: str, port: int | None, traffic: eg.TrafficPolicy | None
    ) -> tuple[str | None, str]:
        obj = self.index.policies.backends.get((ns, name))
        ips, dns, problem = eg.backend_endpoints(obj, port)
        if problem is not None:
            return None, f"Backend {ns}/{name}: {problem}"
        if dns and not SERVE_DNS_BACKENDS:
            return None, (
                f"Backend {ns}/{name}: fqdn endpoints (a DNS cluster) are switched off "
                "(SERVE_DNS_BACKENDS)"
            )
        ports = {e.port for e in ips} | {p for _, p in dns}
        if len(ports) != 1 or 0 in ports:
            return None, f"Backend {ns}/{name}: give one port (in the backendRef or the endpoints)"
        cluster = ir.backend_cluster_name(ns, name, ports.pop())
        if cluster not in self.clusters:
            tls = None
            if eg.backend_tls(obj):
                sni = dns[0][0] if dns else ips[0].address
                tls = ir.UpstreamTLS(sni=sni)
            protocol: ir.UpstreamProtocol = "h2c" if eg.backend_h2c(obj) else "http1"
            self.clusters[cluster] = ir.Cluster(cluster, protocol=protocol, tls=tls, dns_hosts=dns)
            self.endpoints[cluster] = ir.ClusterEndpoints(cluster, ips)
        return self._with_traffic(cluster, traffic, None), ""

    def _mirror(self, entry: att.RoutingEntry, spec: Mapping[str, Any]) -> ir.Mirror | None:
        route = next((r for r in self.result.routes if r.key == entry.route), None)
        if route is None:
            return None
        ref = spec.get("backendRef") or {}
        for backend in route.backends:
            if (
                backend.mirror
                and backend.rule == entry.rule
                and backend.ref.get("name") == ref.get("name")
                and backend.ref.get("port") == ref.get("port")
            ):
                cluster = self._backend(backend, None, entry.route).cluster
                if cluster is None:
                    return None
                percent = 100.0
                if spec.get("percent") is not None:
                    percent = float(spec["percent"])
                elif isinstance(spec.get("fraction"), Mapping):
                    fraction = spec["fraction"]
                    percent = (
                        100.0
                        * float(fraction.get("numerator", 0))
                        / float(fraction.get("denominator") or 100)
                    )
                return ir.Mirror(cluster, percent)
        return None

    # -------------------------------------------------------------- backends

    def _backend(
        self,
        backend: att.BackendResult,
        traffic: eg.TrafficPolicy | None,
        route: att.ObjKey,
    ) -> ir.WeightedBackend:
        ref = backend.ref
        if not backend.resolved:
            return ir.WeightedBackend(None, backend.weight)
        if (ref.get("group"), ref.get("kind")) == (ENVOY_GATEWAY_GROUP, "Backend"):
            # The engine checked the kind, the ReferenceGrant and that the Backend exists.
            port_ref = ref.get("port")
            cluster, problem = self._eg_backend_cluster(
                str(ref["namespace"]),
                str(ref["name"]),
                port_ref if isinstance(port_ref, int) else None,
                traffic,
            )
            if cluster is None:
                self.out.notes.append(f"{route}: {problem}")
            elif route.kind == "GRPCRoute":
                cluster = self._http2_variant(cluster)
            return ir.WeightedBackend(cluster, backend.weight)
        namespace, name, port = str(ref["namespace"]), str(ref["name"]), int(ref["port"])
        cluster = self._service_cluster(namespace, name, port, traffic)
        if cluster is None:
            return ir.WeightedBackend(None, backend.weight)  # fails closed: 500 for its share
        if route.kind == "GRPCRoute":
            # gRPC is HTTP/2: a GRPCRoute's backends are spoken to in h2c (TLS ones by ALPN)
            # whatever the Service's appProtocol says, as Envoy Gateway does.
            cluster = self._http2_variant(cluster)
        return ir.WeightedBackend(cluster, backend.weight)

    def _service_cluster(
        self, namespace: str, name: str, port: int, traffic: eg.TrafficPolicy | None
    ) -> str | None:
        """The cluster of a Service port (with a BackendTrafficPolicy's cluster settings);
        None when a BackendTLSPolicy asks for TLS that cannot be verified as it says (no
        usable CA): no traffic goes there, its share answers 500 (the spec's "connections
        using an invalid CACertificateRef MUST fail" with a 5xx)."""
        base = ir.service_cluster_name(namespace, name, port)
        service = self.index.services.get((namespace, name)) or {}
        service_port: Mapping[str, Any] = next(
            (p for p in (service.get("spec") or {}).get("ports") or [] if p.get("port") == port),
            {},
        )
        if base not in self.clusters:
            app = str(service_port.get("appProtocol") or "").lower()
            protocol: ir.UpstreamProtocol = "h2c" if app in H2C_APP_PROTOCOLS else "http1"
            tls = self._backend_tls(namespace, name, service_port)
            if isinstance(tls, str):
                self.out.notes.append(
                    f"Service {namespace}/{name} port {port}: {tls}; requests to it answer 500"
                )
                return None
            self.clusters[base] = ir.Cluster(base, protocol=protocol, tls=tls)
            self.endpoints[base] = ir.ClusterEndpoints(
                base,
                self._endpoints(namespace, name, service_port),
                sources=(ir.endpoint_source(namespace, name, service_port),),
            )
        cluster_ip = str((service.get("spec") or {}).get("clusterIP") or "")
        service_endpoints = (
            (ir.Endpoint(cluster_ip, port),) if cluster_ip and cluster_ip != "None" else ()
        )
        return self._with_traffic(base, traffic, service_endpoints)

    def _with_traffic(
        self,
        base: str,
        traffic: eg.TrafficPolicy | None,
        service_endpoints: tuple[ir.Endpoint, ...] | None,
    ) -> str:
        """``base`` with a BackendTrafficPolicy's cluster settings: a cluster of its own
        (:func:`~controller.ir.policy_cluster_name`). ``service_endpoints``: the Service's
        cluster IP, for ``routingType: Service`` (None: not a Service, the setting is moot)."""
        if traffic is None or traffic.cluster.empty:
            return base
        settings = traffic.cluster
        cluster = ir.policy_cluster_name(base, traffic.namespace, traffic.name)
        if cluster not in self.clusters:
            plain = self.clusters[base]
            self.clusters[cluster] = replace(
                plain,
                name=cluster,
                connect_timeout_seconds=settings.connect_timeout_seconds
                if settings.connect_timeout_seconds is not None
                else plain.connect_timeout_seconds,
                lb_policy=settings.lb_policy or plain.lb_policy,
                hash_table_size=settings.hash_table_size,
                circuit_breaker=settings.circuit_breaker,
                idle_timeout_seconds=settings.idle_timeout_seconds,
                max_connection_duration_seconds=settings.max_connection_duration_seconds,
            )
            from_base = self.endpoints[base]
            if settings.routing_to_service and service_endpoints is not None:
                self.endpoints[cluster] = ir.ClusterEndpoints(cluster, service_endpoints)
            else:
                self.endpoints[cluster] = replace(from_base, cluster=cluster)
        return cluster

    def _endpoints(
        self, namespace: str, service: str, service_port: Mapping[str, Any]
    ) -> tuple[ir.Endpoint, ...]:
        return self._endpoints_of(ir.endpoint_source(namespace, service, service_port))

    def _endpoints_of(self, source: ir.EndpointSource) -> tuple[ir.Endpoint, ...]:
        """The ready or serving endpoints of a Service port, from its EndpointSlices (kept per
        source in the memo until one of the Service's slices changes)."""
        cache = self.memo.endpoints if self.memo is not None else self._endpoint_cache
        found = cache.get(source)
        if found is None:
            found = cache[source] = _slice_endpoints(self.index.slices, source)
        return found

    def _refresh_endpoints(self) -> None:
        """Endpoints reused from the memo as they were when their routes were built: those of
        EndpointSlice sources are taken from the current slices."""
        for name, held in self.endpoints.items():
            if not held.sources:
                continue
            if held.localities:
                localities = tuple(
                    replace(locality, endpoints=self._endpoints_of(source))
                    for locality, source in zip(held.localities, held.sources, strict=True)
                )
                if localities != held.localities:
                    self.endpoints[name] = replace(held, localities=localities)
            else:
                endpoints = self._endpoints_of(held.sources[0])
                if endpoints != held.endpoints:
                    self.endpoints[name] = replace(held, endpoints=endpoints)

    def _backend_tls(
        self, namespace: str, service: str, service_port: Mapping[str, Any]
    ) -> ir.UpstreamTLS | str | None:
        """The BackendTLSPolicy of a Service port: None when none targets it, else the TLS to
        originate, or why it cannot be (a string: the backend must then get no traffic).

        The policy that applies is the oldest (then first by name) targeting the Service, or
        the port by its name (``sectionName``), as ``policy_status`` decides the conflicts. It
        verifies the backend against the PEM certificates of its first usable CA reference (a
        ConfigMap's ``ca.crt``); with no usable reference at all (missing ConfigMap, no PEM,
        another kind) it fails closed, never falling back to other CAs or to no verification
        (``Accepted=False/NoValidCACertificate``). ``wellKnownCACertificates: System`` (and no
        references) verifies against the host's CA bundle; any other value fails closed
        (``Accepted=False/Invalid``)."""
        for policy in sorted(
            self.index.tls_policies,
            key=lambda p: (
                str((p.get("metadata") or {}).get("creationTimestamp", "")),
                str((p.get("metadata") or {}).get("name", "")),
            ),
        ):
            meta = policy.get("metadata") or {}
            if meta.get("namespace") != namespace:
                continue
            spec = policy.get("spec") or {}
            targets = spec.get("targetRefs") or []
            if not any(
                t.get("kind") == "Service"
                and (t.get("group") or "") == ""
                and t.get("name") == service
                and (not t.get("sectionName") or t.get("sectionName") == service_port.get("name"))
                for t in targets
            ):
                continue
            who = f"BackendTLSPolicy {namespace}/{meta.get('name')}"
            raw = spec.get("validation")
            validation: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
            sni = str(validation.get("hostname") or "")
            if not sni:
                return f"{who} has no validation.hostname"
            refs = [r for r in validation.get("caCertificateRefs") or [] if isinstance(r, Mapping)]
            well_known = str(validation.get("wellKnownCACertificates") or "")
            ca_secret: str | None = None
            if refs:
                for ref in refs:
                    if ref.get("kind") != "ConfigMap" or (ref.get("group") or "") != "":
                        continue
                    name = str(ref.get("name") or "")
                    config_map = self.index.config_maps.get((namespace, name)) or {}
                    data = config_map.get("data")
                    ca = str((data if isinstance(data, Mapping) else {}).get("ca.crt") or "")
                    blocks = eg.pem_blocks(ca, "CERTIFICATE")
                    if blocks:
                        ca_secret = f"configmap/{namespace}/{name}"
                        self.secrets[ca_secret] = ir.Secret(ca_secret, ca="".join(blocks))
                        break
                if ca_secret is None:
                    return f"{who} has no valid CA certificate"
            elif well_known != "System":
                return f"{who}: wellKnownCACertificates {well_known!r} is not supported"
            elif ir.system_ca_bundle() is None:
                return f"{who}: wellKnownCACertificates System, but this host has no CA bundle"
            sans = tuple(
                str(s.get("hostname") or s.get("uri") or "")
                for s in validation.get("subjectAltNames") or []
                if isinstance(s, Mapping) and (s.get("hostname") or s.get("uri"))
            )
            return ir.UpstreamTLS(sni=sni, ca_secret=ca_secret, subject_alt_names=sans)
        return None


# --------------------------------------------------------------------------- small converters


def _match(match: prec.Match) -> ir.RouteMatch:
    if isinstance(match, prec.HTTPMatch):
        return ir.RouteMatch(
            path=ir.PathMatch(match.path_type, match.path),  # type: ignore[arg-type]
            headers=tuple(ir.HeaderMatch(n, v, k) for k, n, v in match.headers),  # type: ignore[arg-type]
            query_params=tuple(ir.QueryParamMatch(n, v, k) for k, n, v in match.query),  # type: ignore[arg-type]
            method=match.method,
        )
    service, method = match.service, match.method
    if match.method_type == "Exact":
        if service and method:
            path = ir.PathMatch("Exact", f"/{service}/{method}")
        elif service:
            path = ir.PathMatch("PathPrefix", f"/{service}")
        elif method:
            path = ir.PathMatch("RegularExpression", f"/[^/]+/{re.escape(method)}")
        else:
            path = ir.PathMatch("PathPrefix", "/")
    else:
        path = ir.PathMatch("RegularExpression", f"/{service or '[^/]+'}/{method or '[^/]+'}")
    return ir.RouteMatch(
        path=path,
        headers=tuple(ir.HeaderMatch(n, v, k) for k, n, v in match.headers),  # type: ignore[arg-type]
    )


def _header_modifier(spec: Any) -> ir.HeaderModifier:
    spec = spec if isinstance(spec, Mapping) else {}
    return ir.HeaderModifier(
        set=tuple(
            ir.HeaderValue(h["name"], str(h.get("value", ""))) for h in spec.get("set") or []
        ),
        add=tuple(
            ir.HeaderValue(h["name"], str(h.get("value", ""))) for h in spec.get("add") or []
        ),
        remove=tuple(str(n) for n in spec.get("remove") or []),
    )


def _path_rewrite(spec: Any, prefix: str) -> ir.PathRewrite | None:
    if not isinstance(spec, Mapping):
        return None
    if spec.get("type") == "ReplaceFullPath":
        return ir.PathRewrite("ReplaceFullPath", str(spec.get("replaceFullPath") or "/"))
    if spec.get("type") == "ReplacePrefixMatch":
        return ir.PathRewrite(
            "ReplacePrefixMatch", str(spec.get("replacePrefixMatch") or "/"), prefix or "/"
        )
    return None


def _timeouts(spec: Mapping[str, Any]) -> ir.Timeouts:
    request = parse_duration(str(spec["request"])) if spec.get("request") else None
    backend = parse_duration(str(spec["backendRequest"])) if spec.get("backendRequest") else None
    return ir.Timeouts(request=request, backend_request=backend)


def _retry(spec: Any) -> ir.Retry | None:
    if not isinstance(spec, Mapping):
        return None
    backoff = parse_duration(str(spec["backoff"])) if spec.get("backoff") else None
    return ir.Retry(
        attempts=int(spec.get("attempts") or 1),
        codes=tuple(int(c) for c in spec.get("codes") or []),
        backoff_seconds=backoff,
    )


def _cors(spec: Mapping[str, Any]) -> ir.Cors:
    max_age = spec.get("maxAge")
    return ir.Cors(
        allow_origins=tuple(str(o) for o in spec.get("allowOrigins") or []),
        allow_methods=tuple(str(m) for m in spec.get("allowMethods") or []),
        allow_headers=tuple(str(h) for h in spec.get("allowHeaders") or []),
        expose_headers=tuple(str(h) for h in spec.get("exposeHeaders") or []),
        max_age_seconds=int(max_age) if max_age is not None else None,
        allow_credentials=bool(spec.get("allowCredentials")),
    )


# --------------------------------------------------------------------------- entry point


_MemoKey = tuple[att.ObjKey, int, int, str, att.ListenerKey]
_V = TypeVar("_V")


class _Recording(dict[str, _V]):
    """A dict that, while ``touched`` is a set, records every key looked up or stored."""

    touched: set[str] | None = None

    def __contains__(self, key: object) -> bool:
        if self.touched is not None and isinstance(key, str):
            self.touched.add(key)
        return dict.__contains__(self, key)

    def __getitem__(self, key: str) -> _V:
        if self.touched is not None:
            self.touched.add(key)
        return dict.__getitem__(self, key)

    def __setitem__(self, key: str, value: _V) -> None:
        if self.touched is not None:
            self.touched.add(key)
        dict.__setitem__(self, key, value)

    def get(self, key: str, default: Any = None) -> Any:
        if self.touched is not None:
            self.touched.add(key)
        return dict.get(self, key, default)


@dataclass(frozen=True)
class _Outputs:
    """What building routes added to the build besides them (clusters, endpoints, secrets,
    notes, policy problems): of one routing entry, one virtual host or a listener group."""

    clusters: dict[str, ir.Cluster]
    endpoints: dict[str, ir.ClusterEndpoints]
    secrets: dict[str, ir.Secret]
    notes: tuple[str, ...]
    policy_problems: tuple[tuple[tuple[str, str, str], tuple[str, ...]], ...]


@dataclass(frozen=True)
class _MemoEntry(_Outputs):
    """A routing entry's IR routes, built from ``verdict``, and what building them added."""

    verdict: att.RouteResult | None
    routes: list[ir.Route]


@dataclass(frozen=True)
class _HostEntry:
    lists: tuple[list[att.RoutingEntry], ...]  # the live entries it was built from (identity)
    vhost: ir.VirtualHost
    entries: dict[_MemoKey, _MemoEntry]  # the routing entries built for it
    outputs: _Outputs


class _Counted:
    """Outputs of several virtual hosts, each counted by how many of them add it."""

    def __init__(self) -> None:
        self.clusters: dict[str, list[Any]] = {}  # name → [object, count]
        self.endpoints: dict[str, list[Any]] = {}
        self.secrets: dict[str, list[Any]] = {}
        self.notes: dict[str, int] = {}
        self.problems: dict[tuple[tuple[str, str, str], str], int] = {}

    def copy(self) -> _Counted:
        out = _Counted()
        out.clusters = {k: list(v) for k, v in self.clusters.items()}
        out.endpoints = {k: list(v) for k, v in self.endpoints.items()}
        out.secrets = {k: list(v) for k, v in self.secrets.items()}
        out.notes = dict(self.notes)
        out.problems = dict(self.problems)
        return out

    def add(self, found: _Outputs, step: int) -> None:
        for mine, theirs in (
            (self.clusters, found.clusters),
            (self.endpoints, found.endpoints),
            (self.secrets, found.secrets),
        ):
            for name, obj in theirs.items():
                held = mine.get(name)
                if held is None:
                    mine[name] = [obj, step]
                else:
                    held[1] += step
                    if held[1] <= 0:
                        del mine[name]
        for note in found.notes:
            self.notes[note] = self.notes.get(note, 0) + step
            if self.notes[note] <= 0:
                del self.notes[note]
        for policy, items in found.policy_problems:
            for item in items:
                self.problems[policy, item] = self.problems.get((policy, item), 0) + step
                if self.problems[policy, item] <= 0:
                    del self.problems[policy, item]

    def outputs(self) -> _Outputs:
        problems: dict[tuple[str, str, str], list[str]] = {}
        for policy, item in self.problems:
            problems.setdefault(policy, []).append(item)
        return _Outputs(
            {k: v[0] for k, v in self.clusters.items()},
            {k: v[0] for k, v in self.endpoints.items()},
            {k: v[0] for k, v in self.secrets.items()},
            tuple(self.notes),
            tuple((policy, tuple(items)) for policy, items in problems.items()),
        )


@dataclass(frozen=True)
class _VhostsEntry:
    tables: tuple[list[att.RoutingEntry], ...]  # the listeners' routing tables (identity)
    vhosts: tuple[ir.VirtualHost, ...]
    hosts: dict[tuple[str, att.ListenerKey], _HostEntry]
    outputs: _Counted
    notes: tuple[str, ...]  # notes of the group itself (hostnames two listeners share)
    entry_count: int  # routing entries in its virtual hosts (for the memo's hit count)
    lives: tuple[dict[str, list[att.RoutingEntry]], ...]  # the listeners' live entries
    by_host: dict[str, ir.VirtualHost]  # one-listener groups: the virtual host of each hostname


def _slice_endpoints(
    slices: Mapping[tuple[str, str], list[Mapping[str, Any]]], source: ir.EndpointSource
) -> tuple[ir.Endpoint, ...]:
    namespace, service, port_name, protocol = source
    found: dict[tuple[str, int], ir.Endpoint] = {}
    for slice_ in slices.get((namespace, service), []):
        if slice_.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        number = next(
            (
                p.get("port")
                for p in slice_.get("ports") or []
                if str(p.get("name") or "") == port_name
                and str(p.get("protocol") or "TCP") == protocol
            ),
            None,
        )
        if not isinstance(number, int):
            continue
        for endpoint in slice_.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            ready = conditions.get("ready") is not False
            serving = conditions.get("serving", ready) is not False
            terminating = conditions.get("terminating") is True
            if not serving:
                continue
            for address in endpoint.get("addresses") or []:
                found[(address, number)] = ir.Endpoint(address, number, draining=terminating)
    return tuple(found[k] for k in sorted(found))


def _name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _host_lists(
    host: str, live: Mapping[str, list[att.RoutingEntry]], wildcards: Sequence[str]
) -> tuple[list[att.RoutingEntry], ...]:
    """The live entry lists a hostname's virtual host is made of, in order: the hostname part
    of the precedence first (a wildcard covering it is less specific); within one hostname
    GRPCRoute entries first, each kind in rank order, as the engine keeps them."""
    if not wildcards:
        one = live.get(host)
        return (one,) if one is not None else ()
    names = [host] + [n for n in wildcards if n != host and hn.covers(n, host)]
    names.sort(key=lambda n: tuple(-x for x in hn.specificity(n)))
    return tuple(live[n] for n in names if n in live)


def _hostname_order(hostname: str) -> tuple[tuple[int, int], str]:
    return (hn.specificity(hostname), hostname)


def _merge_problems(
    into: dict[tuple[str, str, str], list[str]],
    problems: Iterable[tuple[tuple[str, str, str], Sequence[str]]],
) -> None:
    for policy, found in problems:
        known = into.setdefault(policy, [])
        known += [p for p in found if p not in known]


class BuildMemo:
    """IR routes kept from one :func:`build` to the next (the controller's incremental path).

    Valid while nothing but routes changed: the caller calls :meth:`invalidate` when any other
    input did (Services, EndpointSlices, policies, Gateways...). A routing entry is reused when its
    route's verdict is the very same ``RouteResult`` object, which the engine's
    :class:`~controller.attachment.RouteMemo` guarantees for an unchanged route; a listener
    group's virtual hosts are reused whole when its listeners' routing tables are the same.
    """

    def __init__(self) -> None:
        self.vhosts: dict[Any, _VhostsEntry] = {}  # per listener group (see _memo_virtual_hosts)
        self.hostnames: dict[Any, tuple[set[str], list[str]]] = {}  # per group, sorted
        self.index: _Index | None = None  # the last build's, patched by route changes
        # the endpoints of each EndpointSlice source, until one of its Service's slices changes
        self.endpoints: dict[ir.EndpointSource, tuple[ir.Endpoint, ...]] = {}
        self.hits = 0
        self.misses = 0

    def invalidate(self) -> None:
        self.vhosts.clear()
        self.hostnames.clear()
        self.index = None
        self.endpoints.clear()


def _route_clusters(route: ir.Route) -> set[str]:
    found: set[str] = set()
    if isinstance(route.action, ir.Forward):
        found.update(b.cluster for b in route.action.backends if b.cluster is not None)
        found.update(m.cluster for m in route.action.mirrors)
    if route.security is not None and route.security.ext_auth is not None:
        found.add(route.security.ext_auth.cluster)
    return found


def build(
    objects: Sequence[KubeObject],
    result: att.AttachmentResult,
    options: BuildOptions,
    memo: BuildMemo | None = None,
    changed_routes: Mapping[tuple[str, str, str], KubeObject | None] | None = None,
) -> BuildResult:
    """The IR for every Gateway in ``result`` (the engine run for our controller names).
    ``memo``: reuse the IR routes of unchanged routes (see :class:`BuildMemo`).
    ``changed_routes``: with a memo, the routes and EndpointSlices (kind, namespace, name)
    changed since its last build when nothing else did (None: deleted); ``objects`` is then
    unused."""
    if memo is not None and memo.index is not None and changed_routes is not None:
        index = memo.index
        for key, obj in changed_routes.items():
            if key[0] in ("HTTPRoute", "GRPCRoute"):
                if obj is None:
                    index.routes.pop(key, None)
                else:
                    index.routes[key] = obj
            elif key[0] == "EndpointSlice":
                for service in index.replace_slice(key[1], key[2], obj):
                    for source in [s for s in memo.endpoints if s[:2] == service]:
                        del memo.endpoints[source]
    else:
        index = _Index(objects)
        if memo is not None:
            memo.endpoints.clear()
            if memo.index is not None:  # routes reused below were built by the old index
                for mine, theirs in (
                    (index.secrets, memo.index.secrets),
                    (index.config_maps, memo.index.config_maps),
                    (index.services, memo.index.services),
                ):
                    mine.read |= theirs.read
    builder = _Builder(index, result, options, memo)
    out = builder.build()
    if memo is not None:
        memo.vhosts = builder._vhosts_kept  # groups not built this time are dropped
        memo.hostnames = builder._hostnames_kept
        memo.index = index
    return out


def compute_and_build(
    objects: Sequence[KubeObject],
    controller_names: frozenset[str],
    options: BuildOptions,
    *,
    route_memo: att.RouteMemo | None = None,
    build_memo: BuildMemo | None = None,
    changed_routes: Mapping[tuple[str, str, str], KubeObject | None] | None = None,
) -> tuple[att.AttachmentResult, BuildResult]:
    """Run the attachment engine for ``controller_names``, then build the IR from its verdicts.
    ``changed_routes``: see :func:`attachment.compute` and :func:`build`."""
    result = att.compute(
        objects,
        controller_names=controller_names,
        memo=route_memo,
        changed_routes=_obj_keys(changed_routes),
    )
    return result, build(objects, result, options, build_memo, changed_routes)


def _obj_keys(
    changed: Mapping[tuple[str, str, str], KubeObject | None] | None,
) -> dict[att.ObjKey, KubeObject | None] | None:
    """The changed routes, for the engine (which reads no EndpointSlice)."""
    if changed is None:
        return None
    return {att.ObjKey(*key): obj for key, obj in changed.items() if key[0] in att.ROUTE_KINDS}
