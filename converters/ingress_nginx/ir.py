"""The provider's working state: the Ingresses being converted, what their annotations asked
for, and the paths they contribute. Families fill :class:`Settings`; ``convert`` reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from converters.api import MigrateOptions
from converters.ingress_nginx.annotations import Annotations
from converters.ingress_nginx.backends import Backend, Services
from converters.ingress_nginx.paths import PathMatch
from converters.layout import Grants
from kubectl_gw.model import ENVOY_GATEWAY_GROUP, KubeObject, ObjectRef

EG_API_VERSION = f"{ENVOY_GATEWAY_GROUP}/v1alpha1"


@dataclass
class Canary:
    weight: int = 0
    total: int = 100
    header: str = ""
    header_value: str = ""
    header_pattern: str = ""
    cookie: str = ""


@dataclass
class Settings:
    """What one Ingress's annotations ask of every rule it contributes."""

    use_regex: bool = False
    rewrite_target: str = ""  # "" = none
    rewrite_captures: bool = False
    rewrite_supported: bool = True
    redirect: dict[str, Any] | None = None  # RequestRedirect: the rules redirect instead
    app_root: str = ""
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    redirect_code: int = 308
    protocol: str = "HTTP"  # HTTP, HTTPS, GRPC, GRPCS, H2C
    request_set: dict[str, str] = field(default_factory=dict)
    response_set: dict[str, str] = field(default_factory=dict)
    host_rewrite: str = ""
    cors: dict[str, Any] | None = None
    mirrors: list[dict[str, Any]] = field(default_factory=list)
    timeouts: dict[str, str] = field(default_factory=dict)
    btp: dict[str, Any] = field(default_factory=dict)
    sp: dict[str, Any] = field(default_factory=dict)
    backend_tls: dict[str, Any] = field(default_factory=dict)  # BackendTLSPolicy validation
    aliases: list[str] = field(default_factory=list)
    www_redirect: bool = False
    passthrough: bool = False
    canary: Canary | None = None
    objects: list[KubeObject] = field(default_factory=list)  # Backends and the like


@dataclass
class Ingress:
    obj: KubeObject
    ref: ObjectRef
    cls: str
    created: str
    ann: Annotations
    settings: Settings = field(default_factory=Settings)
    items: list[PathItem] = field(default_factory=list)
    route_refs: list[ObjectRef] = field(default_factory=list)
    # (route kind, route name, rule name) of every rule with backends it contributed
    targets: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.ref.namespace

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def canary(self) -> bool:
        return self.settings.canary is not None

    def order(self) -> tuple[str, str, str]:
        """Oldest first, as ingress-nginx decides between duplicates."""
        return (self.created or "9999", self.namespace, self.name)

    def use(self, ref: ObjectRef) -> None:
        if ref not in self.route_refs:
            self.route_refs.append(ref)


@dataclass
class PathItem:
    ing: Ingress
    key: str  # the report key: spec.rules[i].http.paths[j] or spec.defaultBackend
    host: str
    path: str
    path_type: str
    backend: Backend
    match: PathMatch | None = None
    regex_mode: bool = False
    canary: PathItem | None = None  # the canary Ingress's item merged into this primary
    grpc: bool = False
    outputs: list[ObjectRef] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    partial: bool = False

    def order(self) -> tuple[tuple[str, str, str], str]:
        return (self.ing.order(), self.key)


@dataclass
class Context:
    options: MigrateOptions
    services: Services
    secrets: dict[tuple[str, str], KubeObject]
    configmaps: dict[tuple[str, str], KubeObject]
    grants: Grants
    config: dict[str, str]  # the ingress-nginx controller ConfigMap's data

    @property
    def eg(self) -> bool:
        return self.options.target == "envoy-gateway"

    def policy_ref(self, kind: str, ing: Ingress) -> ObjectRef:
        return ObjectRef(EG_API_VERSION, kind, ing.namespace, ing.name)
