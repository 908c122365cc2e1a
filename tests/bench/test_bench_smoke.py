"""Smoke run of the benchmarks: they run and print their ratios. Timing is never asserted here;
``make bench`` is where the numbers are read."""

from __future__ import annotations

from tests.bench import bench_startup


def test_startup_bench_runs_and_reports_ratios() -> None:
    timings = bench_startup.run(runs=2)
    text = bench_startup.report(timings)
    print(text)
    assert "kubectl gw --help" in text
    assert all(len(t.samples_ms) == 2 for t in timings)
