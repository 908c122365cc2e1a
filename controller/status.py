"""Status of GatewayClasses, Gateways and routes, from the attachment engine's conditions.

:func:`desired` is pure: the engine's verdicts (conditions and reasons per the spec), what the
IR builder could program, whether Envoy ACKed it and where Envoy listens → the ``status`` each
object should have. ``observedGeneration`` is the object's ``metadata.generation`` on every
condition; ``lastTransitionTime`` is kept from the current status when a condition's status did
not change. Route ``status.parents`` entries of other controllers are kept untouched; ours are
replaced.

:class:`StatusWriter` writes a status only when it differs from the object's current one (and
from what it wrote last), ignoring ``lastTransitionTime``, with a merge patch on the ``status``
subresource carrying the ``resourceVersion`` it was computed from (a conflict is retried by the
next reconcile).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller import attachment as att
from controller.gatewayapi_to_ir import BuildResult
from kubectl_gw.errors import ClusterError
from kubectl_gw.kube import Cluster
from kubectl_gw.model import KubeObject, kind_info

log = logging.getLogger("kubectl_gw.controller.status")


@dataclass(frozen=True)
class StatusUpdate:
    api_version: str
    kind: str
    namespace: str
    name: str
    resource_version: str
    status: dict[str, Any]


@dataclass(frozen=True)
class Programming:
    """What happened downstream of the engine."""

    envoy_synced: bool  # Envoy ACKed the configuration built from these objects
    addresses: tuple[str, ...]  # where Envoy listens (Gateway status.addresses)
    message: str = ""  # why not synced (NACK text or "waiting for Envoy")


def _index(objects: Sequence[KubeObject]) -> dict[tuple[str, str, str], KubeObject]:
    out: dict[tuple[str, str, str], KubeObject] = {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        out[(obj["kind"], meta.get("namespace", ""), meta.get("name", ""))] = obj
    return out


def _conditions(
    conditions: Sequence[att.Condition],
    previous: Sequence[Mapping[str, Any]] | None,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    before = {str(c.get("type")): c for c in previous or [] if isinstance(c, Mapping)}
    out = []
    for cond in conditions:
        old = before.get(cond.type)
        since = now
        if old is not None and old.get("status") == cond.status and old.get("lastTransitionTime"):
            since = str(old["lastTransitionTime"])
        out.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "observedGeneration": generation,
                "lastTransitionTime": since,
            }
        )
    return out


def _replace(conditions: Sequence[att.Condition], new: att.Condition) -> list[att.Condition]:
    out = [c for c in conditions if c.type != new.type]
    out.append(new)
    return sorted(out, key=lambda c: c.type)


def desired(
    objects: Sequence[KubeObject],
    result: att.AttachmentResult,
    built: BuildResult,
    programming: Programming,
    controller_name: str,
    now: str,
) -> list[StatusUpdate]:
    """The status every object we own should have (see the module docstring)."""
    index = _index(objects)
    updates: list[StatusUpdate] = []

    def update(kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        obj = index.get((kind, namespace, name))
        if obj is not None:
            meta = obj.get("metadata") or {}
            updates.append(
                StatusUpdate(
                    obj["apiVersion"],
                    kind,
                    namespace,
                    name,
                    str(meta.get("resourceVersion", "")),
                    status,
                )
            )

    def current(kind: str, namespace: str, name: str) -> tuple[int, dict[str, Any]]:
        obj: Mapping[str, Any] = index.get((kind, namespace, name)) or {}
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        return generation, dict(obj.get("status") or {})

    for gc in result.gateway_classes:
        if gc.controller_name != controller_name:
            continue
        generation, old = current("GatewayClass", "", gc.name)
        status = dict(old)
        status["conditions"] = _conditions(gc.conditions, old.get("conditions"), generation, now)
        update("GatewayClass", "", gc.name, status)

    for gw in result.gateways:
        if gw.controller_name != controller_name:
            continue
        generation, old = current("Gateway", gw.key.namespace, gw.key.name)
        old_listeners = {
            str(item.get("name")): item
            for item in old.get("listeners") or []
            if isinstance(item, Mapping)
        }
        listeners = []
        any_programmed = False
        for lis in gw.listeners:
            conditions = list(lis.conditions)
            engine_ok = lis.is_true("Programmed") or lis.condition("Programmed") is None
            built_ok, reason, message = built.programmed.get(
                lis.key, (False, "Invalid", "not served")
            )
            if engine_ok:
                if not built_ok:
                    new = att.Condition("Programmed", "False", reason, message)
                elif not programming.envoy_synced:
                    new = att.Condition(
                        "Programmed", "False", "Pending", programming.message or "waiting for Envoy"
                    )
                else:
                    new = att.Condition("Programmed", "True", "Programmed", message)
                    any_programmed = True
                conditions = _replace(conditions, new)
            listeners.append(
                {
                    "name": lis.name,
                    "supportedKinds": [
                        {"group": group, "kind": kind} for group, kind in lis.supported_kinds
                    ],
                    "attachedRoutes": lis.attached_routes,
                    "conditions": _conditions(
                        conditions,
                        (old_listeners.get(lis.name) or {}).get("conditions"),
                        generation,
                        now,
                    ),
                }
            )
        gw_conditions = list(gw.conditions)
        engine_programmed = gw.condition("Programmed")
        if engine_programmed is None or engine_programmed.status == "True":
            if any_programmed:
                new = att.Condition("Programmed", "True", "Programmed", "served by Envoy")
            elif not programming.addresses:
                new = att.Condition("Programmed", "False", "AddressNotAssigned", "no address")
            else:
                new = att.Condition(
                    "Programmed", "False", "Pending", programming.message or "waiting for Envoy"
                )
            gw_conditions = _replace(gw_conditions, new)
        status = dict(old)
        status["conditions"] = _conditions(gw_conditions, old.get("conditions"), generation, now)
        status["listeners"] = listeners
        status["addresses"] = [{"type": "IPAddress", "value": a} for a in programming.addresses]
        update("Gateway", gw.key.namespace, gw.key.name, status)

    for route in result.routes:
        obj = index.get((route.kind, route.key.namespace, route.key.name))
        if obj is None:
            continue
        generation, old = current(route.kind, route.key.namespace, route.key.name)
        spec_refs = list((obj.get("spec") or {}).get("parentRefs") or [])
        theirs = [
            p
            for p in old.get("parents") or []
            if isinstance(p, Mapping) and p.get("controllerName") != controller_name
        ]
        ours_before = [
            p
            for p in old.get("parents") or []
            if isinstance(p, Mapping) and p.get("controllerName") == controller_name
        ]
        ours = []
        for parent in route.parents:
            if not parent.writes_status:
                continue
            ref = spec_refs[parent.index] if parent.index < len(spec_refs) else parent.parent_ref
            previous = next(
                (p.get("conditions") for p in ours_before if p.get("parentRef") == ref), None
            )
            ours.append(
                {
                    "parentRef": ref,
                    "controllerName": controller_name,
                    "conditions": _conditions(parent.conditions, previous, generation, now),
                }
            )
        status = dict(old)
        status["parents"] = [*theirs, *ours]
        update(route.kind, route.key.namespace, route.key.name, status)
    return updates


def _comparable(value: Any) -> Any:
    """The status without ``lastTransitionTime`` (what decides whether to write)."""
    if isinstance(value, Mapping):
        return {k: _comparable(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


class StatusWriter:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.writes = 0
        self.conflicts = 0
        self._written: dict[tuple[str, str, str], Any] = {}

    def write(
        self, updates: Sequence[StatusUpdate], current: Mapping[tuple[str, str, str], Any]
    ) -> int:
        """Write the updates that change something; return how many failed (to retry)."""
        failed = 0
        for item in updates:
            key = (item.kind, item.namespace, item.name)
            wanted = _comparable(item.status)
            if wanted == _comparable(current.get(key) or {}) or self._written.get(key) == (
                item.resource_version,
                wanted,
            ):
                continue
            info = kind_info(item.api_version, item.kind)
            if info is None:
                continue
            version = item.api_version.rsplit("/", 1)[-1]
            base = self.cluster.collection_path(info, item.namespace or None, version)
            path = f"{base}/{item.name}/status"
            body = {"metadata": {"resourceVersion": item.resource_version}, "status": item.status}
            try:
                self.cluster.request(
                    "PATCH", path, body=body, content_type="application/merge-patch+json"
                )
            except ClusterError as err:
                failed += 1
                if err.status == 409:
                    self.conflicts += 1
                    log.debug("status of %s %s: conflict, retrying", item.kind, item.name)
                elif err.status != 404:
                    log.warning("status of %s %s/%s: %s", item.kind, item.namespace, item.name, err)
                continue
            self.writes += 1
            self._written[key] = (item.resource_version, wanted)
        return failed
