"""Status of GatewayClasses, Gateways and routes, from the attachment engine's conditions.

:func:`desired` is pure: the engine's verdicts (conditions and reasons per the spec), what the
IR builder could program, whether Envoy ACKed it and where Envoy listens → the ``status`` each
object should have. ``observedGeneration`` is the object's ``metadata.generation`` on every
condition; ``lastTransitionTime`` is kept from the current status when a condition's status did
not change. Route ``status.parents`` entries of other controllers are kept untouched; ours are
replaced. Policies (Envoy Gateway's BackendTrafficPolicy, SecurityPolicy, ClientTrafficPolicy and
the standard BackendTLSPolicy) get ``status.ancestors`` from :mod:`controller.policy_status` the
same way: other controllers' entries kept, ours replaced (and removed when the policy no longer
has an ancestor of ours).

:class:`StatusWriter` writes a status only when it differs from the object's current one (and
from what it wrote last), ignoring ``lastTransitionTime``, with a merge patch on the ``status``
subresource carrying the ``resourceVersion`` it was computed from (a conflict is retried by the
next reconcile); it can write from a few worker threads, keeping only the latest wanted status
per object.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller import attachment as att
from controller import egpolicy as eg
from controller import policy_status
from controller.gatewayapi_to_ir import BuildResult
from controller.policy_status import POLICY_STATUS_KINDS
from kubectl_gw.errors import ClusterError
from kubectl_gw.kube import Cluster
from kubectl_gw.model import KubeObject, kind_info

log = logging.getLogger("kubectl_gw.controller.status")

STATUS_KINDS = (
    "GatewayClass",
    "Gateway",
    "HTTPRoute",
    "GRPCRoute",
    "TLSRoute",
    "TCPRoute",
    "UDPRoute",
    *POLICY_STATUS_KINDS,
    "Backend",
)
"""The kinds whose ``status`` :func:`desired` computes (the installer's RBAC grants exactly
these ``status`` subresources)."""
MAX_ANCESTORS = 16  # the PolicyStatus CRD limit on status.ancestors


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
    routes: Sequence[att.RouteResult] | None = None,
    lookup: Callable[[str, str, str], KubeObject | None] | None = None,
    policies: Sequence[KubeObject] | None = None,
    backends: Sequence[KubeObject] | None = None,
) -> list[StatusUpdate]:
    """The status every object we own should have (see the module docstring). ``routes``: the
    routes whose status to compute (default: all; the controller passes those that changed).
    ``lookup`` (kind, namespace, name), ``policies`` (the objects of the policy kinds) and
    ``backends`` (the Envoy Gateway Backends): what ``objects`` would give, from a cache that
    has them at hand."""
    if lookup is None:
        index = _index(objects)

        def lookup(kind: str, namespace: str, name: str) -> KubeObject | None:
            return index.get((kind, namespace, name))

    if policies is None:
        policies = [o for o in objects if o.get("kind") in POLICY_STATUS_KINDS]
    if backends is None:
        backends = [o for o in objects if o.get("kind") == "Backend"]
    updates: list[StatusUpdate] = []

    def update(kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        obj = lookup(kind, namespace, name)
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
        obj: Mapping[str, Any] = lookup(kind, namespace, name) or {}
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

    for route in result.routes if routes is None else routes:
        obj = lookup(route.kind, route.key.namespace, route.key.name)
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

    if backends:
        for (namespace, name), problem in _backend_verdicts(result, lookup).items():
            generation, old = current("Backend", namespace, name)
            status = dict(old)
            condition = (
                att.Condition("Accepted", "True", "Accepted", "The Backend was accepted")
                if problem is None
                else att.Condition("Accepted", "False", "Invalid", problem)
            )
            status["conditions"] = _conditions([condition], old.get("conditions"), generation, now)
            update("Backend", namespace, name, status)

    if not policies:
        return updates
    verdicts = {
        (v.kind, v.namespace, v.name): v
        for v in policy_status.compute(objects, result, built.notes, built.policy_problems)
    }
    for obj in policies:
        kind = str(obj.get("kind", ""))
        meta = obj.get("metadata") or {}
        key = (kind, str(meta.get("namespace", "")), str(meta.get("name", "")))
        verdict = verdicts.get(key)
        generation, old = current(*key)
        before = [a for a in old.get("ancestors") or [] if isinstance(a, Mapping)]
        theirs = [a for a in before if a.get("controllerName") != controller_name]
        ours_before = [a for a in before if a.get("controllerName") == controller_name]
        if verdict is None and not ours_before:
            continue  # never ours: nothing to write
        ours = []
        for ancestor in verdict.ancestors if verdict is not None else ():
            previous = next(
                (a.get("conditions") for a in ours_before if a.get("ancestorRef") == ancestor.ref),
                None,
            )
            ours.append(
                {
                    "ancestorRef": ancestor.ref,
                    "controllerName": controller_name,
                    "conditions": _conditions(ancestor.conditions, previous, generation, now),
                }
            )
        status = dict(old)
        status["ancestors"] = [*theirs, *ours[: max(0, MAX_ANCESTORS - len(theirs))]]
        update(*key, status)
    return updates


def _backend_verdicts(
    result: att.AttachmentResult, lookup: Callable[[str, str, str], KubeObject | None]
) -> dict[tuple[str, str], str | None]:
    """The Envoy Gateway Backends our routes refer to (Envoy Gateway writes the status of the
    Backends its routes use), each with why it cannot be served (None: it is accepted)."""
    found: dict[tuple[str, str], str | None] = {}
    for route in result.routes:
        for backend in route.backends:
            ref = backend.ref
            if (ref["group"], ref["kind"]) != att.BACKEND_KIND:
                continue
            key = (str(ref["namespace"]), str(ref["name"]))
            obj = lookup("Backend", key[0], key[1])
            if key in found or obj is None:
                continue  # a missing one is the route's BackendNotFound, not a Backend status
            found[key] = eg.backend_endpoints(obj, None)[2]
    return found


def _comparable(value: Any) -> Any:
    """The status without ``lastTransitionTime`` (what decides whether to write)."""
    if isinstance(value, Mapping):
        return {k: _comparable(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


_Key = tuple[str, str, str]


class StatusWriter:
    """Write statuses that changed: synchronously (:meth:`write`) or from worker threads
    (:meth:`submit`, after :meth:`start`).

    Asynchronous writing keeps the reconcile loop (and so route propagation) free of API
    round trips, and batches: per object only the latest wanted status is kept, so a status that
    changes again before its write went out is written once; ``min_interval`` spaces two writes
    of the same object (the Gateway's ``attachedRoutes`` while routes are added one by one).

    After a successful write the writer remembers the resourceVersion the server answered, so a
    status computed from the cache before the watch delivered that write still carries a current
    ``resourceVersion`` (no self-inflicted conflicts); a real conflict (someone else wrote) is
    reported through ``on_failure`` and retried by the next reconcile.
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        workers: int = 8,
        min_interval: float = 0.0,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.workers = workers
        self.min_interval = min_interval
        self.on_failure = on_failure
        self.writes = 0
        self.conflicts = 0
        self.failures = 0
        self.writes_by_kind: dict[str, int] = {}
        self._written: dict[_Key, Any] = {}
        self._moved: dict[_Key, tuple[str, str]] = {}  # rv written from → rv the server gave
        self._cond = threading.Condition()
        self._pending: dict[_Key, StatusUpdate] = {}  # insertion order = queue order
        self._busy: set[_Key] = set()
        self._last: dict[_Key, float] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = False

    # -------------------------------------------------------------- life cycle

    def start(self) -> None:
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"status-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(5)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or being written (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    # -------------------------------------------------------------- writing

    def _wanted(self, item: StatusUpdate, current: Mapping[_Key, Any]) -> Any:
        """The comparable status to write, or None when nothing needs writing."""
        key = (item.kind, item.namespace, item.name)
        wanted = _comparable(item.status)
        if wanted == _comparable(current.get(key) or {}):
            return None
        if self._written.get(key) == (self._rv(key, item.resource_version), wanted):
            return None
        return wanted

    def _rv(self, key: _Key, resource_version: str) -> str:
        moved = self._moved.get(key)
        return moved[1] if moved is not None and moved[0] == resource_version else resource_version

    def submit(self, updates: Sequence[StatusUpdate], current: Mapping[_Key, Any]) -> None:
        """Queue the updates that change something (latest wins per object)."""
        with self._cond:
            for item in updates:
                key = (item.kind, item.namespace, item.name)
                if self._wanted(item, current) is None:
                    self._pending.pop(key, None)
                    continue
                self._pending.pop(key, None)
                self._pending[key] = item
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                item: StatusUpdate | None = None
                while item is None:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    wake = 0.5
                    for key, candidate in self._pending.items():
                        if key in self._busy:
                            continue
                        due = self._last.get(key, -1e9) + self.min_interval
                        if due <= now:
                            item = candidate
                            break
                        wake = min(wake, due - now)
                    if item is None:
                        self._cond.wait(wake)
                key = (item.kind, item.namespace, item.name)
                del self._pending[key]
                resource_version = self._rv(key, item.resource_version)
                if self._written.get(key) == (resource_version, _comparable(item.status)):
                    continue  # queued again while the same status was being written
                self._busy.add(key)
            ok = False
            try:
                ok = self._patch(item, resource_version)
            finally:
                with self._cond:
                    self._busy.discard(key)
                    self._last[key] = time.monotonic()
                    self._cond.notify_all()
            if not ok and self.on_failure is not None:
                self.on_failure()

    def write(
        self, updates: Sequence[StatusUpdate], current: Mapping[tuple[str, str, str], Any]
    ) -> int:
        """Write the updates that change something, now; return how many failed (to retry)."""
        failed = 0
        for item in updates:
            key = (item.kind, item.namespace, item.name)
            with self._cond:
                if self._wanted(item, current) is None:
                    continue
                resource_version = self._rv(key, item.resource_version)
            if not self._patch(item, resource_version):
                failed += 1
        return failed

    def _patch(self, item: StatusUpdate, resource_version: str) -> bool:
        key = (item.kind, item.namespace, item.name)
        info = kind_info(item.api_version, item.kind)
        if info is None:
            return True
        version = item.api_version.rsplit("/", 1)[-1]
        base = self.cluster.collection_path(info, item.namespace or None, version)
        path = f"{base}/{item.name}/status"
        body = {"metadata": {"resourceVersion": resource_version}, "status": item.status}
        try:
            answer = self.cluster.request(
                "PATCH", path, body=body, content_type="application/merge-patch+json"
            )
        except ClusterError as err:
            with self._cond:
                self.failures += 1
                if err.status == 409:
                    self.conflicts += 1
            if err.status == 409:
                log.debug("status of %s %s: conflict, retrying", item.kind, item.name)
            elif err.status == 404:
                return True  # deleted meanwhile: nothing to retry
            else:
                log.warning("status of %s %s/%s: %s", item.kind, item.namespace, item.name, err)
            return False
        new_rv = str(((answer or {}).get("metadata") or {}).get("resourceVersion") or "")
        with self._cond:
            self.writes += 1
            self.writes_by_kind[item.kind] = self.writes_by_kind.get(item.kind, 0) + 1
            self._written[key] = (new_rv or resource_version, _comparable(item.status))
            if new_rv:
                self._moved[key] = (item.resource_version, new_rv)
        return True
