"""Benchmark: the controller with a real API server, a real Envoy and real backends.

    python -m tests.bench.bench_controller [--small N,M] [--scale 5000] [--probes 30] [--json]

It starts its own control plane (etcd + kube-apiserver, Gateway API CRDs), a test network with
echo backends, and the controller as a separate process (``kubectl-gw controller run``, which
starts Envoy) so that its CPU and RSS are its own. Then, in order:

1. ``N`` (100) filler HTTPRoutes on Gateway A; route propagation: ``--probes`` routes created
   one at a time, each timed from the create call to its first 200 through Envoy (polling on
   fresh connections), p50/p99, quiet; then a client starts sending requests back to back to
   one existing route (its failures are "failed requests during churn") and propagation is
   measured again under that load;
2. settle: ``M`` (1,000) routes on Gateway B created at once (16 client threads); the time from
   the last create until Gateway B's listener shows ``attachedRoutes = M`` and every route has
   our ``Accepted=True`` parent status; status writes counted from a watch (each MODIFIED
   event of a route or Gateway B is one write: nothing else writes them);
3. propagation again with ``N + M`` routes in place, under the client's load, then quiet once
   the client stopped; then quiet on Gateway B, whose one listener holds the ``M`` routes;
4. controller CPU and RSS with ``N + M`` routes, then after growing to ``--scale`` (5,000);
5. translation time (in this process, synthetic objects, the controller's own incremental
   pipeline): verdicts + IR, xDS translation, snapshot, at ``M`` and ``--scale`` routes, for a
   full pass (fresh memos) and then for one route added and one route edited.

The published anchors are printed beside our numbers as ratios (ours / theirs: below 1 is
better). Goal: p50 propagation ≤ 30 ms, zero failures, settle ≤ 1 s with ≤ 1.05 writes/route.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster import controller_harness as h

PROPAGATION_ANCHORS = (("agentgateway", 0.030), ("Istio", 0.300), ("Envoy Gateway", 0.600))
SETTLE_ANCHORS = (("Cilium", 1.0), ("Envoy Gateway", 23.0))
WRITES_ANCHORS = (("Cilium", 193 / 1000), ("Envoy Gateway", 1383 / 1000))
GOAL_P50 = 0.030
GOAL_SETTLE = 1.0
GOAL_WRITES = 1.05


# --------------------------------------------------------------------------- measurements


@dataclass
class Results:
    propagation: dict[int, list[float]] = field(default_factory=dict)  # routes in place → s
    propagation_loaded: dict[int, list[float]] = field(default_factory=dict)  # the same, + prober
    # quiet, the new route on the very listener that holds the routes in place
    propagation_same_listener: dict[int, list[float]] = field(default_factory=dict)
    non_404_before_200: int = 0
    churn_requests: int = 0
    churn_failures: int = 0
    settle_routes: int = 0
    settle_seconds: float = 0.0
    settle_from_first_seconds: float = 0.0
    create_seconds: float = 0.0
    status_writes: int = 0
    route_writes: int = 0
    gateway_writes: int = 0
    resources: dict[int, dict[str, float]] = field(default_factory=dict)  # routes → cpu/rss
    translation: dict[int, dict[str, float]] = field(default_factory=dict)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds user+system, RSS MiB) of a process."""
    ticks = os.sysconf("SC_CLK_TCK")
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return cpu, rss


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# --------------------------------------------------------------------------- translation


def synthetic(routes: int, controller_name: str) -> list[dict[str, Any]]:
    gw = "gateway.networking.k8s.io/v1"
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": gw,
            "kind": "GatewayClass",
            "metadata": {"name": "c", "generation": 1},
            "spec": {"controllerName": controller_name},
        },
        {
            "apiVersion": gw,
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "ns", "generation": 1},
            "spec": {
                "gatewayClassName": "c",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}},
    ]
    for index in range(20):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"svc{index}", "namespace": "ns"},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            }
        )
        objects.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"svc{index}-1",
                    "namespace": "ns",
                    "labels": {"kubernetes.io/service-name": f"svc{index}"},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [f"198.18.0.{10 + index}"]}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        )
    for index in range(routes):
        route = h.http_route("ns", f"r{index}", f"r{index}.example.test", f"svc{index % 20}")
        route["metadata"]["generation"] = 1
        objects.append(route)
    return objects


def translation_times(routes: int) -> dict[str, float]:
    """Seconds per stage: a full pass (fresh memos), then one route added and one route edited
    on the controller's incremental pipeline (the memos a running controller keeps)."""
    from controller import gatewayapi_to_ir, incremental
    from controller.run import tune_gc
    from controller.xds import make_snapshot

    tune_gc()  # as the controller process does

    name = "kubectl-gw.dev/bench"
    objects: list[Any] = synthetic(routes, name)
    for index, obj in enumerate(objects):  # as the API server sets them: the memos key on them
        obj["metadata"].setdefault("uid", f"uid-{index}")
        obj["metadata"].setdefault("generation", 1)
    pipeline = incremental.Pipeline(
        frozenset({name}), gatewayapi_to_ir.BuildOptions("127.0.0.1", 10000)
    )
    out: dict[str, float] = {}
    for label in ("full", "route added", "route edited"):
        changed = {"Gateway"} if label == "full" else {"HTTPRoute"}
        if label == "route added":
            route = h.http_route("ns", "added", "added.example.test", "svc3")
            route["metadata"].update(uid="uid-added", generation=1)
            objects.append(route)
        elif label == "route edited":
            edited = copy.deepcopy(objects[-2])
            edited["spec"]["rules"][0]["backendRefs"][0]["name"] = "svc4"
            edited["metadata"]["generation"] += 1
            objects[-2] = edited
        # as the controller's provider tells it: the changed objects, when only routes changed
        changed_objects = None
        if label != "full":
            route = objects[-1] if label == "route added" else objects[-2]
            key = ("HTTPRoute", route["metadata"]["namespace"], route["metadata"]["name"])
            changed_objects = {key: route}
        t0 = time.perf_counter()
        computed = pipeline.compute(objects, changed, changed_objects)
        t1 = time.perf_counter()
        resources = pipeline.translate(computed.built.ir)
        t2 = time.perf_counter()
        make_snapshot(1, resources)
        t3 = time.perf_counter()
        out[f"{label}: verdicts+IR"] = t1 - t0
        out[f"{label}: xDS translate"] = t2 - t1
        out[f"{label}: snapshot"] = t3 - t2
        out[f"{label}: total"] = t3 - t0
    return out


# --------------------------------------------------------------------------- the live run


class StatusCounter:
    """Watch routes and Gateways; count MODIFIED events per namespace; know who is Accepted."""

    def __init__(self, cluster: Any, controller_name: str) -> None:
        from controller.provider import Provider
        from kubectl_gw.model import KINDS

        kinds = [k for k in KINDS if k.kind in ("HTTPRoute", "Gateway") and "x-k8s" not in k.group]
        self.controller_name = controller_name
        self.lock = threading.Lock()
        self.modified: dict[tuple[str, str], int] = {}  # (namespace, kind) → events
        self.accepted: dict[str, set[str]] = {}  # namespace → routes Accepted by us (events)
        self.provider = Provider(cluster, kinds, lambda: None, on_event=self._event)
        self.provider.start()
        if not self.provider.wait_synced(30):
            raise RuntimeError("the status watch did not sync")

    def _event(self, kind: str, obj: Any) -> None:
        namespace = obj["metadata"].get("namespace", "")
        if kind == "MODIFIED":
            key = (namespace, obj["kind"])
            with self.lock:
                self.modified[key] = self.modified.get(key, 0) + 1
        if obj.get("kind") == "HTTPRoute":
            accepted = kind != "DELETED" and any(
                parent.get("controllerName") == self.controller_name
                and any(
                    c.get("type") == "Accepted" and c.get("status") == "True"
                    for c in parent.get("conditions") or []
                )
                for parent in (obj.get("status") or {}).get("parents") or []
            )
            with self.lock:
                names = self.accepted.setdefault(namespace, set())
                if accepted:
                    names.add(obj["metadata"]["name"])
                else:
                    names.discard(obj["metadata"]["name"])

    def writes(self, namespace: str, kind: str) -> int:
        with self.lock:
            return self.modified.get((namespace, kind), 0)

    def settled(self, namespace: str, gateway: str, routes: int) -> bool:
        gw = self.provider.get("Gateway", namespace, gateway) or {}
        listeners = (gw.get("status") or {}).get("listeners") or []
        if not listeners or listeners[0].get("attachedRoutes") != routes:
            return False
        with self.lock:  # kept up to date by the events: polling stays cheap at 5,000 routes
            return len(self.accepted.get(namespace, ())) == routes

    def stop(self) -> None:
        self.provider.stop()


@contextlib.contextmanager
def controller_process(
    kubeconfig: Path, controller_name: str, offset: int, workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    from controller.envoy_binary import locate_envoy

    envoy = locate_envoy().path
    argv = [
        sys.executable,
        "-c",
        "from kubectl_gw.cli import main; main()",
        "controller",
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--controller-name",
        controller_name,
        "--envoy-path",
        str(envoy),
        "--xds-address",
        "127.0.0.1:0",
        "--listen-address",
        "127.0.0.1",
        "--port-offset",
        str(offset),
        "--admin-address",
        "127.0.0.1:0",
        *(["-v", "-v"] if os.environ.get("KGW_BENCH_DEBUG") else []),  # per-stage timings
        *(["--delta"] if os.environ.get("KGW_BENCH_DELTA") else []),  # incremental xDS
    ]
    log = (workdir / "controller.log").open("ab")
    root = str(Path(__file__).resolve().parents[2])  # this checkout's code, not another's
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def create_many(cluster: Any, objects: list[dict[str, Any]], threads: int = 16) -> float:
    """Create all objects with ``threads`` clients; return when the last create returned."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda obj: h.create(cluster, obj), objects))
    return time.monotonic()


def propagation(
    cluster: Any, address: tuple[str, int], namespace: str, prefix: str, count: int
) -> tuple[list[float], int]:
    times: list[float] = []
    odd = 0
    for index in range(count):
        host = f"{prefix}{index}.probe.test"
        created = time.monotonic()
        h.create(cluster, h.http_route(namespace, f"{prefix}{index}", host, f"svc{index % 20}"))
        at, before = h.first_200(address, host, timeout=60)
        times.append(at - created)
        odd += sum(1 for a in before if a.status != 404)
    return times, odd


def run(small: int, settle: int, scale: int, probes: int, workdir: Path) -> Results:
    from kubernetes import client as kclient

    from kubectl_gw import kube
    from tests.realparts import controlplane, crds
    from tests.realparts.backends import register_service, start_backends
    from tests.realparts.bins import ensure_binaries
    from tests.realparts.netns import TestNetwork

    results = Results()
    plane = controlplane.start(ensure_binaries())
    network: TestNetwork | None = None
    backends: list[Any] = []
    try:
        api = plane.api_client()
        crds.install_bundles(api, ("gateway-api-standard", "gateway-api-experimental-x"))
        network = TestNetwork.create()
        backends = start_backends(["b1", "b2"], routable=True, network=network)
        core = kclient.CoreV1Api(api)
        ns_a, ns_b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
        for ns in (ns_a, ns_b):
            core.create_namespace({"metadata": {"name": ns}})
            for index in range(20):
                register_service(api, ns, f"svc{index}", backends)
        cluster = kube.connect(kube.KubeTarget(kubeconfig=str(plane.kubeconfig)))
        controller_name = f"kubectl-gw.dev/bench-{uuid.uuid4().hex[:6]}"
        class_name = "bench"
        h.apply(
            cluster,
            {
                "apiVersion": h.GW,
                "kind": "GatewayClass",
                "metadata": {"name": class_name},
                "spec": {"controllerName": controller_name},
            },
        )
        h.apply(cluster, h.gateway(ns_a, class_name))
        h.apply(cluster, h.gateway(ns_b, class_name, port=81))
        offset = h.free_port_offset((80, 81))
        address = ("127.0.0.1", 80 + offset)
        counter = StatusCounter(cluster, controller_name)
        with controller_process(plane.kubeconfig, controller_name, offset, workdir) as proc:
            # 1. filler routes, the churn client, propagation with `small` in place
            fillers = [
                h.http_route(ns_a, f"f{i}", f"f{i}.example.test", f"svc{i % 20}")
                for i in range(small)
            ]
            create_many(cluster, fillers)
            h.wait_for(lambda: counter.settled(ns_a, "gw", small), 120, "filler routes", 0.1)
            h.first_200(address, "f0.example.test", timeout=60)
            times, odd = propagation(cluster, address, ns_a, "p", probes)
            results.propagation[small] = times
            results.non_404_before_200 += odd
            prober = h.Prober(address, "f0.example.test").start()
            times, odd = propagation(cluster, address, ns_a, "pl", probes)
            results.propagation_loaded[small + probes] = times
            results.non_404_before_200 += odd

            # 2. settle: `settle` routes at once on Gateway B
            routes = [
                h.http_route(ns_b, f"s{i}", f"s{i}.example.test", f"svc{i % 20}", port=80)
                for i in range(settle)
            ]
            first = time.monotonic()
            last = create_many(cluster, routes)
            h.wait_for(lambda: counter.settled(ns_b, "gw", settle), 600, "settle", 0.02)
            done = time.monotonic()
            results.settle_routes = settle
            results.create_seconds = last - first
            results.settle_seconds = done - last
            results.settle_from_first_seconds = done - first
            time.sleep(2)  # late writes would show up here
            results.route_writes = counter.writes(ns_b, "HTTPRoute")
            results.gateway_writes = counter.writes(ns_b, "Gateway")
            results.status_writes = results.route_writes + results.gateway_writes

            # 3. propagation with small + settle in place: under load, then quiet
            times, odd = propagation(cluster, address, ns_a, "ql", probes)
            results.propagation_loaded[small + settle + 2 * probes] = times
            results.non_404_before_200 += odd
            answers = prober.stop()
            results.churn_requests = len(answers)
            results.churn_failures = sum(1 for a in answers if a.status != 200)
            times, odd = propagation(cluster, address, ns_a, "q", probes)
            results.propagation[small + settle + 3 * probes] = times
            results.non_404_before_200 += odd
            # and on Gateway B, whose one listener holds the `settle` routes
            times, odd = propagation(cluster, (address[0], 81 + offset), ns_b, "qb", probes)
            results.propagation_same_listener[settle] = times
            results.non_404_before_200 += odd

            # 4. CPU and RSS, idle, at small + settle, then at scale
            def usage(routes_in_place: int) -> None:
                envoy = children(proc.pid)
                cpu0, _ = proc_usage(proc.pid)
                time.sleep(5)
                cpu1, rss = proc_usage(proc.pid)
                envoy_rss = proc_usage(envoy[0])[1] if envoy else 0.0
                results.resources[routes_in_place] = {
                    "idle CPU %": (cpu1 - cpu0) / 5 * 100,
                    "RSS MiB": rss,
                    "CPU s so far": cpu1,
                    "Envoy RSS MiB": envoy_rss,
                }

            in_place = small + settle + 5 * probes
            usage(in_place)
            if scale > in_place:
                more = [
                    h.http_route(ns_b, f"x{i}", f"x{i}.example.test", f"svc{i % 20}")
                    for i in range(scale - in_place)
                ]
                cpu_before = proc_usage(proc.pid)[0]
                began = time.monotonic()
                create_many(cluster, more)
                h.wait_for(
                    lambda: counter.settled(ns_b, "gw", settle + probes + len(more)),
                    1800,
                    f"{scale} routes settled",
                    0.5,
                )
                settled_in = time.monotonic() - began
                usage(scale)
                results.resources[scale]["settle s"] = settled_in
                results.resources[scale]["CPU s to absorb"] = proc_usage(proc.pid)[0] - cpu_before
        counter.stop()
    finally:
        for backend in backends:
            backend.stop()
        if network is not None:
            network.close()
        plane.stop()
    for routes_count in sorted({settle, scale} - {0}):
        results.translation[routes_count] = translation_times(routes_count)
    return results


# --------------------------------------------------------------------------- report


def ratios(value: float, anchors: tuple[tuple[str, float], ...]) -> str:
    return ", ".join(f"{value / anchor:.2f}x {name} ({anchor:g})" for name, anchor in anchors)


def report(results: Results) -> str:
    lines = ["controller benchmark (ours / published anchor: < 1 is better)", ""]
    lines.append("route propagation (create → first 200 through Envoy)")
    for label, measured in (
        ("quiet, new route on Gateway A (the settle routes are on Gateway B)", results.propagation),
        ("while a client sends requests back to back (2 cores shared)", results.propagation_loaded),
        (
            "quiet, new route on Gateway B, whose one listener holds the routes in place",
            results.propagation_same_listener,
        ),
    ):
        lines.append(f"  {label}:")
        for in_place, times in sorted(measured.items()):
            p50, p99 = statistics.median(times), quantile(times, 0.99)
            lines.append(
                f"  {in_place:>5} routes in place: p50 {p50 * 1000:7.1f} ms"
                f"  p99 {p99 * 1000:7.1f} ms  (n={len(times)})"
                f"  p50 vs {ratios(p50, PROPAGATION_ANCHORS)}"
                f"  goal ≤ {GOAL_P50 * 1000:.0f} ms: {'met' if p50 <= GOAL_P50 else 'MISSED'}"
            )
    lines.append(
        f"  answers other than 404 before a new route's first 200: {results.non_404_before_200}"
    )
    lines.append(
        f"failed requests during churn: {results.churn_failures} of {results.churn_requests} "
        f"(Envoy Gateway: ~15,000 503s; goal 0: "
        f"{'met' if results.churn_failures == 0 else 'MISSED'})"
    )
    per_route = results.status_writes / max(1, results.settle_routes)
    lines.append(
        f"settle, {results.settle_routes} routes created at once "
        f"(creates took {results.create_seconds:.2f} s): "
        f"{results.settle_seconds:.2f} s after the last create "
        f"({results.settle_from_first_seconds:.2f} s after the first); "
        f"vs {ratios(results.settle_seconds, SETTLE_ANCHORS)}; goal ≤ {GOAL_SETTLE:g} s: "
        f"{'met' if results.settle_seconds <= GOAL_SETTLE else 'MISSED'}"
    )
    lines.append(
        f"status writes: {results.status_writes} ({results.route_writes} routes + "
        f"{results.gateway_writes} Gateway) = {per_route:.3f} per route; vs "
        f"{ratios(per_route, WRITES_ANCHORS)}; goal ≤ {GOAL_WRITES}: "
        f"{'met' if per_route <= GOAL_WRITES else 'MISSED'}"
    )
    lines.append("controller process (kubectl-gw controller run), idle 5 s")
    for routes_count, usage in sorted(results.resources.items()):
        text = "  ".join(f"{k} {v:.1f}" for k, v in usage.items())
        lines.append(f"  {routes_count:>5} routes: {text}")
    lines.append("translation (seconds): a full pass, then one change on the incremental path")
    for routes_count, stages in sorted(results.translation.items()):
        text = "  ".join(f"{k} {v:.3f}" for k, v in stages.items())
        lines.append(f"  {routes_count:>5} routes: {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_controller")
    parser.add_argument("--small", type=int, default=100, help="routes in place first")
    parser.add_argument("--settle", type=int, default=1000, help="routes created at once")
    parser.add_argument("--scale", type=int, default=5000, help="routes for the CPU/RSS step")
    parser.add_argument("--probes", type=int, default=30, help="propagation samples per size")
    parser.add_argument("--json", action="store_true", help="also print the raw results")
    parser.add_argument("--keep", type=Path, help="keep the controller log in this directory")
    args = parser.parse_args(argv)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="kgw-bench-controller-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = run(args.small, args.settle, args.scale, args.probes, workdir)
    print(report(results))
    if args.json:
        print(json.dumps(results.__dict__, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
