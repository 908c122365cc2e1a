"""The reconcile loop: watch → cache → debounce → attachment → IR → xDS → push → status.

:class:`Controller` wires the parts: :class:`~controller.provider.Provider` (list+watch into a
local cache), the attachment engine (``controller.attachment.compute`` for our controller
names), :mod:`controller.gatewayapi_to_ir`, :mod:`controller.translate`, the ADS server
(:class:`~controller.xds.AdsServer`), the Envoy supervisor and the status writer.

The loop is level-triggered: every watch event only marks the state dirty; the loop waits for
``debounce`` seconds of quiet (at most ``max_debounce`` after the first event), then computes
everything from the latest full cache. Translation that fails (a bug) is logged and the last
good configuration stays pushed. Status is written after Envoy ACKed (Programmed) or the ACK
wait timed out (Programmed=False, Pending), and only when it changed.
"""

from __future__ import annotations

import datetime
import gc
import logging
import tempfile
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller import egpolicy, gatewayapi_to_ir, incremental
from controller import status as status_mod
from controller.attachment import ROUTE_KINDS, ObjKey
from controller.policy_status import POLICY_STATUS_KINDS
from controller.xds import AdsServer
from kubectl_gw.kube import KubeTarget
from kubectl_gw.model import KINDS, KindInfo

if TYPE_CHECKING:
    from controller.provider import Changes

log = logging.getLogger("kubectl_gw.controller")

DEFAULT_CONTROLLER_NAME = "kubectl-gw.dev/controller"
WATCHED_KINDS = (
    "GatewayClass",
    "Gateway",
    "ListenerSet",
    "HTTPRoute",
    "GRPCRoute",
    "TLSRoute",
    "TCPRoute",
    "UDPRoute",
    "ReferenceGrant",
    "BackendTLSPolicy",
    "Namespace",
    "Service",
    "EndpointSlice",
    "Secret",
    "ConfigMap",
    *egpolicy.POLICY_KINDS,  # the Envoy Gateway kinds migrate emits (absent CRD = none)
)


def tune_gc() -> None:
    """The caches hold every watched object: with the default thresholds the cyclic GC walks
    them all again and again (a third of a reconcile's time at 5,000 routes). Collect young
    objects less often; reference counting still frees everything acyclic at once."""
    gc.set_threshold(50_000, 20, 20)


def watched_kinds() -> list[KindInfo]:
    by_kind = {info.kind: info for info in KINDS if info.group != "getambassador.io"}
    return [by_kind[kind] for kind in WATCHED_KINDS]


@dataclass
class ControllerConfig:
    target: KubeTarget = field(default_factory=KubeTarget)
    controller_name: str = DEFAULT_CONTROLLER_NAME
    xds_address: str = "127.0.0.1:0"
    listen_address: str = "0.0.0.0"
    status_address: str | None = None  # written to Gateway status.addresses
    port_offset: int = 0
    run_envoy: bool = True
    envoy_path: str | None = None
    envoy_base_id: int | None = None
    envoy_log_level: str = "warn"
    admin_address: str = "127.0.0.1:0"
    # Delta xDS by default: a change sends Envoy only what changed. In state of the world every
    # route configuration goes out again on every change and Envoy re-reads each (at 1,000 routes
    # that was most of Envoy's ACK time).
    delta: bool = True
    workdir: Path | None = None
    debounce: float = 0.002  # quiet time before a reconcile; bursts also batch while one runs
    max_debounce: float = 0.2
    ack_timeout: float = 5.0
    write_status: bool = True
    status_workers: int = 16  # 0: write status synchronously inside the reconcile loop
    status_min_interval: float = 0.2  # seconds between two writes of one object's status
    watch_timeout: int = 240  # seconds a watch request lasts before it is resumed


@dataclass
class Stats:
    reconciles: int = 0
    pushes: int = 0
    failures: int = 0
    last_translate_seconds: float = 0.0
    last_reconcile_seconds: float = 0.0
    last_generation: int = 0
    routes: int = 0
    incremental: int = 0  # reconciles that reused the attachment verdicts (endpoints only)
    last_stages: dict[str, float] = field(default_factory=dict)  # seconds per stage (debug log)


class Controller:
    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.server = AdsServer()
        self.provider: Any = None
        self.supervisor: Any = None
        self.writer: status_mod.StatusWriter | None = None
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ir: Any = None
        self._idle = threading.Condition()
        self._generation_seen = 0
        self._retry_lock = threading.Lock()
        self._retry_at: float | None = None
        self._notes: set[str] = set()
        self._first_dirty_at: float | None = None  # the first change not yet reconciled
        self._pipeline: incremental.Pipeline | None = None  # made with the first reconcile
        self._status_seen: dict[tuple[str, str, str], Any] = {}
        self._counted_ir: Any = None  # the IR stats.routes was counted on
        self._status_check_all = False

    # -------------------------------------------------------------- life cycle

    def start(self) -> None:
        from controller.provider import Provider
        from kubectl_gw import kube

        config = self.config
        tune_gc()
        cluster = kube.connect(config.target)
        cluster.server_version()  # fail fast, with kubectl's message, if unreachable
        self.writer = status_mod.StatusWriter(
            cluster.with_pool(config.status_workers + 2),
            workers=config.status_workers,
            min_interval=config.status_min_interval,
            on_failure=self._status_failed,
        )
        if config.status_workers:
            self.writer.start()
        xds_port = self.server.start(config.xds_address)
        self.provider = Provider(
            cluster, watched_kinds(), self.mark_dirty, watch_timeout=config.watch_timeout
        )
        self.provider.start()
        if config.run_envoy:
            self._start_envoy(xds_port)
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)
        self._thread.start()

    def _start_envoy(self, xds_port: int) -> None:
        from controller import envoy_process

        config = self.config
        workdir = config.workdir or Path(tempfile.mkdtemp(prefix="kubectl-gw-envoy-"))
        admin_host, _, admin_port = config.admin_address.rpartition(":")
        xds_host = config.xds_address.rpartition(":")[0] or "127.0.0.1"
        boot = envoy_process.bootstrap(
            xds_host="127.0.0.1" if xds_host in ("0.0.0.0", "") else xds_host,
            xds_port=xds_port,
            node_id=f"kubectl-gw-{int(time.time())}",
            node_cluster=config.controller_name,
            admin_address=admin_host or "127.0.0.1",
            admin_port=int(admin_port or 0),
            delta=config.delta,
        )
        options = envoy_process.EnvoyOptions(
            binary=config.envoy_path,
            workdir=workdir,
            base_id=config.envoy_base_id,
            log_level=config.envoy_log_level,
        )
        self.supervisor = envoy_process.EnvoySupervisor(boot, options)
        self.supervisor.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.provider is not None:
            self.provider.stop()
        if self.writer is not None:
            self.writer.stop()
        if self.supervisor is not None:
            self.supervisor.stop()
        self.server.stop()

    def run_forever(self) -> None:
        """Block until interrupted (the CLI)."""
        try:
            while not self._stop.wait(1.0):
                if self._thread is not None and not self._thread.is_alive():
                    raise RuntimeError("the reconcile loop died")
        finally:
            self.stop()

    # -------------------------------------------------------------- the loop

    def mark_dirty(self) -> None:
        if self._first_dirty_at is None:
            self._first_dirty_at = time.perf_counter()
        self._dirty.set()

    def retry_soon(self, delay: float) -> None:
        """Reconcile again in ``delay`` seconds (one pending retry at a time, the earliest)."""
        at = time.monotonic() + delay
        with self._retry_lock:
            if self._retry_at is None or at < self._retry_at:
                self._retry_at = at

    def _due_retry(self) -> float | None:
        """Seconds until the pending retry (0 when due), None when there is none."""
        with self._retry_lock:
            if self._retry_at is None:
                return None
            return max(0.0, self._retry_at - time.monotonic())

    def _loop(self) -> None:
        assert self.provider is not None
        while not self._stop.is_set():
            if not self.provider.synced():
                time.sleep(0.02)
                continue
            due = self._due_retry()
            self._dirty.wait(1.0 if due is None else min(1.0, due))
            if self._stop.is_set():
                return
            if not self._dirty.is_set():
                due = self._due_retry()
                if due is None or due > 0:
                    continue
            with self._retry_lock:
                self._retry_at = None
            first = time.monotonic()
            self._dirty.clear()
            while time.monotonic() - first < self.config.max_debounce:
                if not self._dirty.wait(self.config.debounce):
                    break
                self._dirty.clear()
            try:
                retry = self.reconcile()
            except Exception:
                self.stats.failures += 1
                log.exception("reconcile failed; the last good configuration stays")
                retry = True
            if retry:
                self.retry_soon(1.0)

    def reconcile(self) -> bool:
        """One full pass; True if something should be retried soon."""
        assert self.provider is not None
        started = time.perf_counter()
        queued_since, self._first_dirty_at = self._first_dirty_at, None
        stages = {"queued": started - queued_since if queued_since is not None else 0.0}
        config = self.config
        changes = self.provider.take_changes()
        changed, objects = changes.kinds, changes.objects
        options = gatewayapi_to_ir.BuildOptions(config.listen_address, config.port_offset)
        if self._pipeline is None:
            self._pipeline = incremental.Pipeline(frozenset({config.controller_name}), options)
        computed = self._pipeline.compute(objects, changed, changes.changed)
        result, built = computed.result, computed.built
        if computed.reused_verdicts:
            self.stats.incremental += 1
        stages["compute"] = time.perf_counter() - started
        notes = set(built.notes)
        for note in built.notes:
            if note not in self._notes:
                log.info("%s", note)  # once, not on every reconcile
        self._notes = notes
        synced = True
        message = ""
        if built.ir != self._last_ir:
            t0 = time.perf_counter()
            resources = self._pipeline.translate(built.ir)
            self.stats.last_translate_seconds = stages["translate"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            generation = self.server.set_resources(resources)
            stages["publish"] = time.perf_counter() - t0
            self.stats.pushes += 1
            self.stats.last_generation = generation
            self._last_ir = built.ir
        generation = self.stats.last_generation
        rejected: str | None = None
        if generation:
            t0 = time.perf_counter()
            synced = self.server.wait_synced(generation, config.ack_timeout)
            stages["envoy"] = time.perf_counter() - t0
            if not synced:
                rejected = self.server.rejection(generation)
                message = (
                    f"Envoy rejected the configuration: {rejected}"
                    if rejected is not None
                    else "waiting for Envoy to accept the configuration"
                )
        if built.ir is not self._counted_ir:
            self._counted_ir = built.ir
            self.stats.routes = sum(
                len(v.routes)
                for lis in built.ir.listeners
                for chain in lis.filter_chains
                for v in chain.route_config.virtual_hosts
            )
        retry = not synced and rejected is None
        t0 = time.perf_counter()
        if config.write_status and self.writer is not None:
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            programming = status_mod.Programming(synced, self._addresses(), message)
            updates = status_mod.desired(
                objects,
                result,
                built,
                programming,
                config.controller_name,
                now,
                routes=self._routes_to_check(result.routes, changes, computed.recomputed),
                lookup=changes.get,
                policies=[
                    obj
                    for kind in POLICY_STATUS_KINDS
                    for obj in changes.by_kind.get(kind, {}).values()
                ],
                backends=list(changes.by_kind.get("Backend", {}).values()),
            )
            current = {
                (u.kind, u.namespace, u.name): (changes.get(u.kind, u.namespace, u.name) or {}).get(
                    "status"
                )
                for u in updates
            }
            if config.status_workers:
                self.writer.submit(updates, current)
            elif self.writer.write(updates, current):
                retry = True
        stages["status"] = time.perf_counter() - t0
        self.stats.reconciles += 1
        self.stats.last_reconcile_seconds = stages["total"] = time.perf_counter() - started
        self.stats.last_stages = stages
        memo = self._pipeline.build_memo
        log.debug(
            "reconcile %d: %s; changed %s; memo %d/%d; status backlog %d",
            self.stats.reconciles,
            " ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in stages.items()),
            ",".join(sorted(changed)) or "-",
            memo.hits,
            memo.misses,
            len(getattr(self.writer, "_pending", ())),
        )
        with self._idle:
            self._generation_seen = self.stats.reconciles
            self._idle.notify_all()
        return retry

    def _routes_to_check(
        self,
        routes: list[Any],
        changes: Changes,
        recomputed: Collection[tuple[str, str, str]] | None,
    ) -> list[Any]:
        """The routes whose status may need a write: a new verdict (another ``RouteResult``
        object: the engine's memo keeps the object of an unchanged route) or an object with an
        event since the last pass (our own write's echo, or someone else's write); and a route
        none of whose parents is ours any more but whose status still has our entries (to take
        them out). After a failed write every route is checked again. ``recomputed``: the only
        routes whose verdicts may be new objects, when the pipeline knows (then the others are
        not looked at)."""
        assert self._pipeline is not None
        pipeline = self._pipeline

        def ours_to_clear(key: tuple[str, str, str]) -> Any:
            obj = changes.get(*key)
            route = pipeline.verdict(ObjKey(*key))
            if route is None or route.parents or obj is None:
                return None
            parents = (obj.get("status") or {}).get("parents") or []
            name = self.config.controller_name
            if any(isinstance(p, dict) and p.get("controllerName") == name for p in parents):
                return route
            return None

        touched = changes.touched
        if self._status_check_all:
            self._status_check_all = False
            self._status_seen.clear()
        elif recomputed is not None and self._status_seen:
            check = []
            for key in sorted({*recomputed, *(k for k in touched if k[0] in ROUTE_KINDS)}):
                route = pipeline.verdict(ObjKey(*key))
                if route is not None and route.parents:
                    check.append(route)
                elif (stale := ours_to_clear(key)) is not None:
                    check.append(stale)
            return check
        seen: dict[tuple[str, str, str], Any] = {}
        check = []
        before = self._status_seen
        for route in routes:
            key = route.key
            if before.get(key) is not route or key in touched:
                check.append(route)
            seen[key] = route
        self._status_seen = seen
        for kind in ROUTE_KINDS:
            for namespace, name in changes.by_kind.get(kind, {}):
                if (kind, namespace, name) not in seen:
                    stale = ours_to_clear((kind, namespace, name))
                    if stale is not None:
                        check.append(stale)
        return check

    def _status_failed(self) -> None:
        self._status_check_all = True  # read by the reconcile thread
        self.retry_soon(0.5)

    def _addresses(self) -> tuple[str, ...]:
        config = self.config
        if config.status_address:
            return (config.status_address,)
        if config.listen_address in ("0.0.0.0", "::"):
            return ("127.0.0.1",)
        return (config.listen_address,)

    def wait_reconciled(self, after: int, timeout: float) -> bool:
        """Wait until more than ``after`` reconciles have finished (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._generation_seen <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True
