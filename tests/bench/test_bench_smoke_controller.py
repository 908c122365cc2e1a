"""Smoke run of the controller benchmark with tiny sizes: it runs end to end against the real
parts and prints its report. Timing is never asserted here; ``python -m
tests.bench.bench_controller`` is where the numbers are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench import bench_controller


@pytest.mark.cluster
@pytest.mark.envoy
def test_controller_bench_runs_and_reports_ratios(tmp_path: Path, envoy_binary: Path) -> None:
    results = bench_controller.run(small=5, settle=20, scale=50, probes=3, workdir=tmp_path)
    text = bench_controller.report(results)
    print(text)
    assert sorted(results.propagation) == [5, 5 + 20 + 3 * 3]
    assert sorted(results.propagation_loaded) == [5 + 3, 5 + 20 + 2 * 3]
    assert sorted(results.propagation_same_listener) == [20]
    for measured in (
        results.propagation,
        results.propagation_loaded,
        results.propagation_same_listener,
    ):
        assert all(len(times) == 3 for times in measured.values())
    assert results.settle_routes == 20
    assert results.route_writes >= 20  # every route got its status at least once
    assert results.churn_requests > 0
    assert set(results.resources) == {5 + 20 + 5 * 3, 50}
    assert "x agentgateway (0.03)" in text and "x Envoy Gateway (23)" in text
