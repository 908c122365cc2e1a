"""Churn: routes added one by one and existing ones changed while traffic flows.

One client sends requests back to back (keep-alive) to an existing route for the whole test.
Meanwhile 200 HTTPRoutes are created one at a time, each pointing at one of 20 Services whose
Envoy clusters do not exist until the first route refers to them (so the xDS order clusters →
endpoints → routes is exercised), and every 10th step modifies the watched route (backend and
a response header) and an earlier route. Checked:

- zero failed requests on the watched route, and after each modification it answers from the
  new backend with the new header;
- each new route answers only 404 (not programmed yet) until its first 200 and 200 afterwards:
  never a 503 or 500 (the Envoy Gateway failure mode of reference §5.2);
- a modified route never answers anything but 200 while it changes;
- the time from create to first 200, per route (p50/p99 recorded).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import controller_harness as h
from tests.realparts import facts
from tests.realparts.backends import register_service
from tests.realparts.envoy_fixtures import EchoBackendsFactory

ROUTES = 200
POOLS = 20
MAIN = "main.example.test"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@pytest.mark.cluster
@pytest.mark.envoy
def test_churn_200_routes_zero_failures(
    kube_cluster: Any,
    kube_api: Any,
    namespace: str,
    echo_backends: EchoBackendsFactory,
    envoy_binary: Path,
    tmp_path: Path,
) -> None:
    main_a, main_b = echo_backends(["main-a", "main-b"], routable=True)
    register_service(kube_api, namespace, "main-a", [main_a])
    register_service(kube_api, namespace, "main-b", [main_b])
    pool = echo_backends(["pool-x", "pool-y"], routable=True)
    for index in range(POOLS):
        register_service(kube_api, namespace, f"pool-{index}", pool)

    with h.start_controller(kube_cluster.kubeconfig, envoy_binary, tmp_path / "envoy") as run:
        cluster = run.cluster
        h.apply(cluster, h.gateway(namespace, run.class_name))
        h.apply(cluster, h.http_route(namespace, "main", MAIN, "main-a"))
        h.wait_for(lambda: h.probe(run.address, MAIN).backend == "main-a", 30, "main route")
        prober = h.Prober(run.address, MAIN).start()

        latencies: list[float] = []
        before_200: Counter[int] = Counter()
        after_200_bad: list[tuple[str, h.Probe]] = []
        changed_bad: list[tuple[str, h.Probe]] = []
        main_backend = "main-a"
        for i in range(ROUTES):
            host = f"r{i}.example.test"
            obj = h.http_route(namespace, f"r{i}", host, f"pool-{i % POOLS}")
            created = time.monotonic()
            h.create(cluster, obj)
            at, before = h.first_200(run.address, host, timeout=20)
            latencies.append(at - created)
            before_200.update(a.status for a in before)
            for _ in range(3):
                answer = h.probe(run.address, host)
                if answer.status != 200:
                    after_200_bad.append((host, answer))
            if i % 10 == 9:
                # modify the watched route: other backend, a response header with the step
                main_backend = "main-b" if main_backend == "main-a" else "main-a"
                h.apply(
                    cluster,
                    h.http_route(
                        namespace, "main", MAIN, main_backend, response_header=("x-step", str(i))
                    ),
                )
                # and an earlier route: another pool (maybe a new cluster), a header
                earlier = i - 5
                h.apply(
                    cluster,
                    h.http_route(
                        namespace,
                        f"r{earlier}",
                        f"r{earlier}.example.test",
                        f"pool-{(earlier + 7) % POOLS}",
                        response_header=("x-step", str(i)),
                    ),
                )
                for _ in range(20):
                    answer = h.probe(run.address, f"r{earlier}.example.test")
                    if answer.status != 200:
                        changed_bad.append((f"r{earlier}", answer))
                h.wait_for(
                    lambda b=main_backend: h.probe(run.address, MAIN).backend == b,
                    10,
                    f"main route on {main_backend}",
                )
        time.sleep(0.3)
        answers = prober.stop()

    failed = [a for a in answers if a.status != 200]
    assert len(answers) > 1000, "the client barely ran"
    assert not failed, f"{len(failed)}/{len(answers)} failed on the existing route: {failed[:5]}"
    assert {a.backend for a in answers} == {"main-a", "main-b"}
    assert set(before_200) <= {404}, f"answers before a new route's first 200: {before_200}"
    assert not after_200_bad, after_200_bad[:5]
    assert not changed_bad, changed_bad[:5]
    p50 = statistics.median(latencies)
    p99 = _quantile(latencies, 0.99)
    facts.record(
        f"controller churn: {ROUTES} routes added one by one + {ROUTES // 10 * 2} modifications, "
        f"{len(answers)} requests on the existing route, 0 failed; create → first 200 "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
        f"before the first 200 only 404 ({sum(before_200.values())} polls)"
    )


@pytest.mark.cluster
@pytest.mark.envoy
def test_empty_start_then_first_route_is_fast(
    kube_cluster: Any,
    kube_api: Any,
    namespace: str,
    echo_backends: EchoBackendsFactory,
    envoy_binary: Path,
    tmp_path: Path,
) -> None:
    """With nothing to serve yet, Envoy still gets (empty) answers and finishes initialising, so
    the reconcile loop never waits out its ACK timeout and the first route is served at once."""
    register_service(kube_api, namespace, "web", echo_backends(["web"], routable=True))
    with h.start_controller(kube_cluster.kubeconfig, envoy_binary, tmp_path / "envoy") as run:
        controller = run.controller
        h.wait_for(lambda: controller.stats.reconciles >= 1, 10, "the first reconcile")
        generation = controller.stats.last_generation
        assert generation >= 1
        assert controller.server.wait_synced(generation, 5), "Envoy never ACKed the empty config"
        created = time.monotonic()
        h.apply(run.cluster, h.gateway(namespace, run.class_name))
        h.apply(run.cluster, h.http_route(namespace, "web", "first.example.test", "web"))
        at, _ = h.first_200(run.address, "first.example.test", timeout=10)
    assert at - created < 2.0, f"first route served {at - created:.2f} s after its Gateway"
