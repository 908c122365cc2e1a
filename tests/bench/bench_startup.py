"""Benchmark: start-up time of ``kubectl gw --help``, against anchors measured in the same run.

Anchors: the bare interpreter (``python -S -c pass`` and ``python -c pass``: the floor any Python
plugin pays) and, when a kubectl binary is on PATH, ``kubectl version --client`` (what a user
compares a plugin with). The target is 150 ms or less for ``--help``.

    python -m tests.bench.bench_startup [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TARGET_MS = 150.0


@dataclass
class Timing:
    label: str
    command: list[str]
    samples_ms: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)


def measure(label: str, command: list[str], runs: int) -> Timing:
    subprocess.run(command, capture_output=True, check=True)  # warm the page cache once
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return Timing(label, command, samples)


def run(runs: int) -> list[Timing]:
    bindir = Path(sys.executable).parent
    plugin = shutil.which("kubectl-gw", path=str(bindir)) or shutil.which("kubectl-gw")
    if plugin is None:
        raise SystemExit("kubectl-gw is not installed in this environment (pip install -e .)")
    timings = [
        measure("python -S -c pass (anchor)", [sys.executable, "-S", "-c", "pass"], runs),
        measure("python -c pass (anchor)", [sys.executable, "-c", "pass"], runs),
    ]
    kubectl = shutil.which("kubectl")
    if kubectl:
        timings.append(
            measure("kubectl version --client (anchor)", [kubectl, "version", "--client"], runs)
        )
    timings.append(measure("kubectl gw --help", [plugin, "--help"], runs))
    timings.append(measure("kubectl gw version --client", [plugin, "version", "--client"], runs))
    return timings


def report(timings: list[Timing]) -> str:
    anchor = timings[1]
    lines = [f"{'command':40} {'median ms':>10} {'min ms':>8} {'x python':>9}"]
    for t in timings:
        ratio = t.median_ms / anchor.median_ms
        lines.append(f"{t.label:40} {t.median_ms:10.1f} {min(t.samples_ms):8.1f} {ratio:9.2f}")
    kubectl = next((t for t in timings if t.label.startswith("kubectl version")), None)
    helptime = next(t for t in timings if t.label == "kubectl gw --help")
    if kubectl:
        lines.append(
            f"kubectl gw --help / kubectl version --client = "
            f"{helptime.median_ms / kubectl.median_ms:.2f}"
        )
    verdict = "meets" if helptime.median_ms <= TARGET_MS else "MISSES"
    lines.append(
        f"kubectl gw --help median {helptime.median_ms:.1f} ms {verdict} the "
        f"{TARGET_MS:.0f} ms target"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    print(report(run(args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
