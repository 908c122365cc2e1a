"""Ingress backends → Gateway API backendRefs (named ports resolved against Services)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubectl_gw.model import KubeObject


class BackendError(ValueError):
    pass


@dataclass(frozen=True)
class Backend:
    namespace: str
    name: str
    port: int | None  # None for a resource backend
    group: str = ""
    kind: str = "Service"
    external_name: str = ""  # the Service is type ExternalName
    app_protocol: str = ""
    note: str = ""  # something the report should say about this backend

    def ref(self, route_namespace: str, weight: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"group": self.group, "kind": self.kind, "name": self.name}
        if self.namespace != route_namespace:
            out["namespace"] = self.namespace
        if self.port is not None:
            out["port"] = self.port
        if weight is not None:
            out["weight"] = weight
        return out

    def describe(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.kind} {self.namespace}/{self.name}{port}"


@dataclass
class Services:
    by_key: dict[tuple[str, str], KubeObject]

    @property
    def known(self) -> bool:
        return bool(self.by_key)

    def resolve(self, namespace: str, backend: Any) -> Backend:
        """An Ingress backend (``spec.defaultBackend`` or a path's ``backend``)."""
        if not isinstance(backend, dict):
            raise BackendError("backend is missing")
        resource = backend.get("resource")
        if isinstance(resource, dict):
            kind, name = resource.get("kind"), resource.get("name")
            if not kind or not name:
                raise BackendError("backend.resource needs kind and name")
            return Backend(namespace, str(name), None, str(resource.get("apiGroup") or ""), kind)
        service = backend.get("service")
        if not isinstance(service, dict) or not service.get("name"):
            raise BackendError("backend.service.name is missing")
        name = str(service["name"])
        port = service.get("port") or {}
        svc = self.by_key.get((namespace, name))
        if svc is None and self.known:
            raise BackendError(f"Service {namespace}/{name} not found")
        spec: dict[str, Any] = dict(svc.get("spec") or {}) if svc is not None else {}
        ports = spec.get("ports") or []
        external = str(spec.get("externalName") or "") if spec.get("type") == "ExternalName" else ""
        number = port.get("number")
        port_name = port.get("name")
        chosen: dict[str, Any] | None = None
        if number is not None:
            if not isinstance(number, int) or not 1 <= number <= 65535:
                raise BackendError(f"port number {number!r} is not valid")
            chosen = next((p for p in ports if p.get("port") == number), None)
            if svc is not None and ports and chosen is None and not external:
                raise BackendError(f"Service {namespace}/{name} has no port {number}")
        elif port_name:
            if svc is None:
                raise BackendError(
                    f"port name {port_name!r} needs Service {namespace}/{name} to resolve it "
                    "(pass the Service with -f)"
                )
            chosen = next((p for p in ports if p.get("name") == port_name), None)
            if chosen is None:
                raise BackendError(f"Service {namespace}/{name} has no port named {port_name!r}")
            number = chosen.get("port")
        else:
            raise BackendError("backend.service.port needs a number or a name")
        app_protocol = str((chosen or {}).get("appProtocol") or "")
        return Backend(
            namespace, name, int(number), external_name=external, app_protocol=app_protocol
        )
