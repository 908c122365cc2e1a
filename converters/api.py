"""The seam between the migrate command and the converters.

A provider is a pure function ``convert(objects, options) -> Conversion``: it gets every source
object the command loaded (from files or the cluster: Ingresses, IngressClasses, Services,
Secret metadata, ConfigMaps, Emissary kinds, ...) and the options, and returns the Gateway API
objects plus a report entry for every source field. It never reads the cluster, never prints,
and never raises for a bad source object (that is an ``error`` entry); it raises ``UserError``
only for bad options.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from converters.report import Conversion
from kubectl_gw.model import KubeObject

Target = Literal["envoy-gateway", "standard"]

DEFAULT_GATEWAY_NAMESPACE = "gateway-system"
DEFAULT_GATEWAY_CLASS = "envoy-gateway"
NGINX_ANNOTATION_PREFIX = "nginx.ingress.kubernetes.io"


@dataclass(frozen=True)
class ExistingGateway:
    """``--gateway NS/NAME[/SECTION]``: attach routes to this Gateway instead of planning one."""

    namespace: str
    name: str
    section: str | None = None


@dataclass(frozen=True)
class MigrateOptions:
    ingress_classes: tuple[str, ...] = ()  # empty: every class the provider's controller owns
    include_classless: bool = False
    gateway_class: str = DEFAULT_GATEWAY_CLASS
    gateway_namespace: str = DEFAULT_GATEWAY_NAMESPACE
    gateway: ExistingGateway | None = None
    gateway_per_namespace: bool = False
    target: Target = "envoy-gateway"
    annotation_prefix: str = NGINX_ANNOTATION_PREFIX
    nginx_configmap: KubeObject | None = None  # the controller ConfigMap: global defaults
    ambassador_id: str | None = None  # Emissary: pick one installation's resources
    # Emissary: container port -> Gateway listener port; empty = the default 8080->80, 8443->443
    listener_ports: tuple[tuple[int, int], ...] = ()


Converter = Callable[[Sequence[KubeObject], MigrateOptions], Conversion]
