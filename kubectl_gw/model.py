"""Typed views of the Kubernetes objects kubectl-gw reads and writes.

Objects travel as plain dicts so that fields we do not model pass through untouched; the
TypedDicts below name the fields our code reads, and ``KINDS`` says what we know of each
kind (its group, plural, scope and family). The registry order is also the output order:
the order in which an apply would want the objects (classes, then Gateways, then routes,
then policies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

# --------------------------------------------------------------------------- metadata


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generation: int
    resourceVersion: str
    uid: str
    creationTimestamp: str
    ownerReferences: list[dict[str, Any]]


class KubeObject(TypedDict):
    """Any Kubernetes object: the fields every kind has, the rest passes through."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: NotRequired[Any]
    status: NotRequired[Any]
    data: NotRequired[dict[str, str]]


# --------------------------------------------------------------------------- core & networking


class ServiceBackendPort(TypedDict, total=False):
    name: str
    number: int


class IngressServiceBackend(TypedDict, total=False):
    name: str
    port: ServiceBackendPort


class IngressBackend(TypedDict, total=False):
    service: IngressServiceBackend
    resource: dict[str, str]


class HTTPIngressPath(TypedDict, total=False):
    path: str
    pathType: Literal["Exact", "Prefix", "ImplementationSpecific"]
    backend: IngressBackend


class IngressRule(TypedDict, total=False):
    host: str
    http: dict[Literal["paths"], list[HTTPIngressPath]]


class IngressTLS(TypedDict, total=False):
    hosts: list[str]
    secretName: str


class IngressSpec(TypedDict, total=False):
    ingressClassName: str
    defaultBackend: IngressBackend
    rules: list[IngressRule]
    tls: list[IngressTLS]


class IngressClassSpec(TypedDict, total=False):
    controller: str
    parameters: dict[str, str]


class ServicePort(TypedDict, total=False):
    name: str
    port: int
    targetPort: int | str
    protocol: str
    appProtocol: str


class ServiceSpec(TypedDict, total=False):
    type: str
    selector: dict[str, str]
    ports: list[ServicePort]
    clusterIP: str
    externalName: str


class EndpointSliceEndpoint(TypedDict, total=False):
    addresses: list[str]
    conditions: dict[str, bool]
    hostname: str
    nodeName: str


class EndpointSlicePort(TypedDict, total=False):
    name: str
    port: int
    protocol: str
    appProtocol: str


# --------------------------------------------------------------------------- Gateway API


class ParentReference(TypedDict, total=False):
    group: str
    kind: str
    namespace: str
    name: str
    sectionName: str
    port: int


class BackendRef(TypedDict, total=False):
    group: str
    kind: str
    namespace: str
    name: str
    port: int
    weight: int
    filters: list[dict[str, Any]]


class SecretObjectReference(TypedDict, total=False):
    group: str
    kind: str
    namespace: str
    name: str


class GatewayTLSConfig(TypedDict, total=False):
    mode: Literal["Terminate", "Passthrough"]
    certificateRefs: list[SecretObjectReference]
    options: dict[str, str]


class RouteGroupKind(TypedDict, total=False):
    group: str
    kind: str


class AllowedRoutes(TypedDict, total=False):
    namespaces: dict[str, Any]  # {"from": All|Same|Selector, "selector": LabelSelector}
    kinds: list[RouteGroupKind]


class Listener(TypedDict, total=False):
    name: str
    hostname: str
    port: int
    protocol: str
    tls: GatewayTLSConfig
    allowedRoutes: AllowedRoutes


class GatewaySpec(TypedDict, total=False):
    gatewayClassName: str
    listeners: list[Listener]
    addresses: list[dict[str, str]]
    infrastructure: dict[str, Any]
    allowedListeners: dict[str, Any]


class ListenerSetSpec(TypedDict, total=False):
    parentRef: ParentReference
    listeners: list[Listener]


class GatewayClassSpec(TypedDict, total=False):
    controllerName: str
    parametersRef: dict[str, str]
    description: str


class HTTPPathMatch(TypedDict, total=False):
    type: Literal["Exact", "PathPrefix", "RegularExpression"]
    value: str


class HTTPHeaderMatch(TypedDict, total=False):
    type: Literal["Exact", "RegularExpression"]
    name: str
    value: str


class HTTPRouteMatch(TypedDict, total=False):
    path: HTTPPathMatch
    headers: list[HTTPHeaderMatch]
    queryParams: list[HTTPHeaderMatch]
    method: str


class HTTPRouteRule(TypedDict, total=False):
    name: str
    matches: list[HTTPRouteMatch]
    filters: list[dict[str, Any]]
    backendRefs: list[BackendRef]
    timeouts: dict[str, str]


class HTTPRouteSpec(TypedDict, total=False):
    parentRefs: list[ParentReference]
    hostnames: list[str]
    rules: list[HTTPRouteRule]


class ReferenceGrantFrom(TypedDict):
    group: str
    kind: str
    namespace: str


class ReferenceGrantTo(TypedDict, total=False):
    group: str
    kind: str
    name: str


class ReferenceGrantSpec(TypedDict):
    to: list[ReferenceGrantTo]


# --------------------------------------------------------------------------- the registry

Family = Literal["core", "ingress", "gateway-api", "envoy-gateway", "emissary"]

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_X_GROUP = "gateway.networking.x-k8s.io"
ENVOY_GATEWAY_GROUP = "gateway.envoyproxy.io"
EMISSARY_GROUP = "getambassador.io"


@dataclass(frozen=True)
class KindInfo:
    """What we know of one kind: enough to list it, address it, and order it."""

    group: str
    kind: str
    plural: str
    namespaced: bool
    family: Family
    versions: tuple[str, ...]  # served versions we accept, preferred first

    @property
    def api_version(self) -> str:
        """The preferred apiVersion string (``v1`` for the core group)."""
        return f"{self.group}/{self.versions[0]}" if self.group else self.versions[0]


def _k(
    group: str, kind: str, plural: str, family: Family, *versions: str, namespaced: bool = True
) -> KindInfo:
    return KindInfo(group, kind, plural, namespaced, family, versions)


_GW = GATEWAY_GROUP
_EG = ENVOY_GATEWAY_GROUP
_AMB = EMISSARY_GROUP

KINDS: tuple[KindInfo, ...] = (
    _k("", "Namespace", "namespaces", "core", "v1", namespaced=False),
    _k(_GW, "GatewayClass", "gatewayclasses", "gateway-api", "v1", namespaced=False),
    _k("", "ConfigMap", "configmaps", "core", "v1"),
    _k("", "Secret", "secrets", "core", "v1"),
    _k("", "Service", "services", "core", "v1"),
    _k("discovery.k8s.io", "EndpointSlice", "endpointslices", "core", "v1"),
    _k("networking.k8s.io", "IngressClass", "ingressclasses", "ingress", "v1", namespaced=False),
    _k("networking.k8s.io", "Ingress", "ingresses", "ingress", "v1"),
    _k(_EG, "EnvoyProxy", "envoyproxies", "envoy-gateway", "v1alpha1"),
    _k(_GW, "Gateway", "gateways", "gateway-api", "v1"),
    _k(_GW, "ListenerSet", "listenersets", "gateway-api", "v1"),
    _k(_GW, "ReferenceGrant", "referencegrants", "gateway-api", "v1beta1", "v1"),
    _k(_GW, "HTTPRoute", "httproutes", "gateway-api", "v1"),
    _k(_GW, "GRPCRoute", "grpcroutes", "gateway-api", "v1"),
    _k(_GW, "TLSRoute", "tlsroutes", "gateway-api", "v1", "v1alpha3", "v1alpha2"),
    _k(_GW, "TCPRoute", "tcproutes", "gateway-api", "v1", "v1alpha2"),
    _k(_GW, "UDPRoute", "udproutes", "gateway-api", "v1", "v1alpha2"),
    _k(_GW, "BackendTLSPolicy", "backendtlspolicies", "gateway-api", "v1", "v1alpha3"),
    _k(_EG, "Backend", "backends", "envoy-gateway", "v1alpha1"),
    _k(_EG, "HTTPRouteFilter", "httproutefilters", "envoy-gateway", "v1alpha1"),
    _k(_EG, "ClientTrafficPolicy", "clienttrafficpolicies", "envoy-gateway", "v1alpha1"),
    _k(_EG, "BackendTrafficPolicy", "backendtrafficpolicies", "envoy-gateway", "v1alpha1"),
    _k(_EG, "SecurityPolicy", "securitypolicies", "envoy-gateway", "v1alpha1"),
    _k(_EG, "EnvoyExtensionPolicy", "envoyextensionpolicies", "envoy-gateway", "v1alpha1"),
    _k(_EG, "EnvoyPatchPolicy", "envoypatchpolicies", "envoy-gateway", "v1alpha1"),
    _k(_AMB, "Module", "modules", "emissary", "v3alpha1", "v2"),
    _k(_AMB, "Listener", "listeners", "emissary", "v3alpha1"),
    _k(_AMB, "Host", "hosts", "emissary", "v3alpha1", "v2"),
    _k(_AMB, "TLSContext", "tlscontexts", "emissary", "v3alpha1", "v2"),
    _k(_AMB, "Mapping", "mappings", "emissary", "v3alpha1", "v2"),
    _k(_AMB, "TCPMapping", "tcpmappings", "emissary", "v3alpha1", "v2"),
    _k(_AMB, "AuthService", "authservices", "emissary", "v3alpha1", "v2"),
    _k(_AMB, "RateLimitService", "ratelimitservices", "emissary", "v3alpha1", "v2"),
)

_BY_GROUP_KIND: dict[tuple[str, str], KindInfo] = {(k.group, k.kind): k for k in KINDS}
_ORDER: dict[tuple[str, str], int] = {(k.group, k.kind): i for i, k in enumerate(KINDS)}


def meta_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """An object's ``metadata`` (empty when missing or not a mapping: input may be anything)."""
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def spec_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """An object's ``spec`` (empty when the object or its spec is missing or not a mapping)."""
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    return spec if isinstance(spec, Mapping) else {}


def split_api_version(api_version: str) -> tuple[str, str]:
    """``group/version`` → (group, version); the core group's ``v1`` → ("", "v1")."""
    group, sep, version = api_version.rpartition("/")
    return (group, version) if sep else ("", api_version)


def kind_info(api_version: str, kind: str) -> KindInfo | None:
    """The registry entry for an object's apiVersion and kind, or None if we do not know it."""
    group, _version = split_api_version(api_version)
    return _BY_GROUP_KIND.get((group, kind))


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Identity of one object, used in reports, notes and output ordering."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: KubeObject) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta.get("name", ""))

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def output_sort_key(obj: KubeObject) -> tuple[int, str, str, str, str]:
    """Kind (registry order, unknown kinds last by name), then namespace, then name."""
    group, _version = split_api_version(obj["apiVersion"])
    rank = _ORDER.get((group, obj["kind"]), len(_ORDER))
    meta = obj.get("metadata") or {}
    return (rank, obj["kind"], group, meta.get("namespace", ""), meta.get("name", ""))
