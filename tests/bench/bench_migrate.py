"""Benchmark: ``kubectl gw migrate -f corpus.yaml`` against ingress2gateway v1.1.0.

Both tools convert the same synthetic corpus (tests/bench/corpus.py: 1,000 and 10,000
Ingresses) in the same run; runs are interleaved (and the order flips every round) so that
machine noise hits both alike. For every run the wall time and the peak RSS of the child
process (``wait4`` rusage, so nothing is sampled) are measured; the medians and the ratios
kubectl-gw / ingress2gateway are printed. The goal is a ratio at or below 1.0 for both at
10,000.

ingress2gateway is built from its Go module (``sigs.k8s.io/ingress2gateway@v1.1.0``) with
``GOTOOLCHAIN=local go install`` and cached in
``${KUBECTL_GW_TEST_BIN:-~/.cache/kubectl-gw/test-bin}/ingress2gateway-v1.1.0/``. If it cannot
be built (the module proxy here refuses every version of it with 403), a banner says so and
that ratio is not computed. ``KGW_BENCH_SKIP_I2GW=1`` (or ``--skip-i2gw``) does not try.

A second anchor is always measured in the same run: the I/O floor, kubectl-gw's own loader and
writer on the same corpus with no conversion (what any Python tool pays to read and print it).
Its ratio says how much the conversion itself costs.

    python -m tests.bench.bench_migrate [--sizes 1000,10000] [--runs 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench import corpus

I2GW_MODULE = "sigs.k8s.io/ingress2gateway"
I2GW_VERSION = "v1.1.0"
I2GW_WRAPPER = Path(__file__).resolve().parents[1] / "gomod" / "ingress2gateway"
SKIP_ENV = "KGW_BENCH_SKIP_I2GW"
DEFAULT_SIZES = (1000, 10000)
GOAL = 1.0
BUILD_TIMEOUT = 1800.0
RUN_TIMEOUT = 1800.0


class I2gwUnavailableError(RuntimeError):
    """ingress2gateway could not be built or found; the message says why."""


@dataclass
class Sample:
    seconds: float
    max_rss_kb: int
    returncode: int
    stdout_bytes: int


@dataclass
class Tool:
    label: str
    argv_for: list[str]  # the command; "{corpus}" is replaced by the corpus path
    samples: list[Sample] = field(default_factory=list)

    def command(self, corpus_path: Path) -> list[str]:
        return [a.replace("{corpus}", str(corpus_path)) for a in self.argv_for]

    @property
    def median_seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def median_rss_mb(self) -> float:
        return statistics.median(s.max_rss_kb for s in self.samples) / 1024


# --------------------------------------------------------------------------- ingress2gateway


def i2gw_dir() -> Path:
    from tests.realparts.bins import cache_root

    return cache_root() / f"ingress2gateway-{I2GW_VERSION}"


def ensure_i2gw() -> Path:
    """The cached ingress2gateway binary, built from its Go module when missing."""
    from tests.realparts import bins

    target = i2gw_dir()
    binary = target / "ingress2gateway"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="i2gw-build-") as scratch:
        env_gobin = {"GOBIN": str(target), "GOFLAGS": "-buildvcs=false"}
        try:
            _go(
                ["install", "-trimpath", "-ldflags=-s -w", f"{I2GW_MODULE}@{I2GW_VERSION}"],
                Path(scratch),
                env_gobin,
            )
        except bins.BuildError as err:
            # go install refuses modules with replace directives; a wrapper module (when one
            # is checked in under tests/gomod/ingress2gateway) builds it instead.
            if not (I2GW_WRAPPER / "go.mod").is_file():
                raise I2gwUnavailableError(_first_lines(str(err))) from err
            try:
                _go(["build", "-trimpath", "-o", str(binary), I2GW_MODULE], I2GW_WRAPPER, {})
            except bins.BuildError as err2:
                raise I2gwUnavailableError(_first_lines(str(err2))) from err2
    if not binary.is_file():
        raise I2gwUnavailableError(f"go install finished but {binary} is missing")
    return binary


def _go(args: list[str], cwd: Path, extra: dict[str, str]) -> None:
    from tests.realparts import bins

    env = bins.go_env(**extra)
    proc = subprocess.run(
        [bins.go_executable(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise bins.BuildError(
            f"go {' '.join(args)} (exit {proc.returncode}): " + (proc.stdout + proc.stderr).strip()
        )


def _first_lines(text: str, count: int = 4) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[:count])


# --------------------------------------------------------------------------- measuring


def measure(command: list[str], scratch: Path) -> Sample:
    """Run ``command`` once; wall time and the child's own peak RSS (from wait4)."""
    out_path = scratch / "stdout"
    err_path = scratch / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Sample(seconds, int(usage.ru_maxrss), proc.returncode, out_path.stat().st_size)


def kubectl_gw_tool() -> Tool:
    bindir = Path(sys.executable).parent
    plugin = shutil.which("kubectl-gw", path=str(bindir)) or shutil.which("kubectl-gw")
    if plugin is None:
        raise SystemExit("kubectl-gw is not installed in this environment (pip install -e .)")
    return Tool("kubectl gw migrate", [plugin, "migrate", "-f", "{corpus}"])


IO_FLOOR_SCRIPT = (
    "import sys\n"
    "from kubectl_gw import io\n"
    "loaded = io.load_inputs([sys.argv[1]])\n"
    "sys.stdout.write(io.to_yaml([item.obj for item in loaded.objects]))\n"
)
IO_FLOOR_LABEL = "I/O floor (load + write, anchor)"


def io_floor_tool() -> Tool:
    return Tool(IO_FLOOR_LABEL, [sys.executable, "-c", IO_FLOOR_SCRIPT, "{corpus}"])


def i2gw_tool(binary: Path) -> Tool:
    return Tool(
        f"ingress2gateway {I2GW_VERSION}",
        [str(binary), "print", "--providers", "ingress-nginx", "-A", "--input-file", "{corpus}"],
    )


@dataclass
class SizeResult:
    size: int
    objects: int
    corpus_mb: float
    tools: list[Tool]


def run_size(size: int, runs: int, tools: list[Tool], workdir: Path) -> SizeResult:
    tools = [Tool(t.label, t.argv_for) for t in tools]  # each size keeps its own samples
    path = corpus.write(workdir / f"corpus-{size}.yaml", size)
    objects = len(corpus.generate(size))
    for tool in tools:
        warm = measure(tool.command(path), workdir)  # page cache, .pyc files; not counted
        if warm.returncode != 0:
            err = (workdir / "stderr").read_text(errors="replace").strip().splitlines()
            raise SystemExit(
                f"{tool.label} failed on the {size} corpus (exit {warm.returncode}): "
                + (err[-1] if err else "no output")
            )
    for round_no in range(runs):
        order = tools if round_no % 2 == 0 else list(reversed(tools))
        for tool in order:
            tool.samples.append(measure(tool.command(path), workdir))
    return SizeResult(size, objects, path.stat().st_size / 1e6, tools)


def report(results: list[SizeResult], i2gw_problem: str | None) -> str:
    lines = []
    if i2gw_problem is not None:
        lines.append(banner(i2gw_problem))
    for result in results:
        lines.append(
            f"corpus {result.size} Ingresses ({result.objects} objects, "
            f"{result.corpus_mb:.1f} MB), {len(result.tools[0].samples)} interleaved runs:"
        )
        for tool in result.tools:
            lines.append(
                f"  {tool.label:32} median {tool.median_seconds:8.2f} s   peak RSS "
                f"{tool.median_rss_mb:8.1f} MB   (min {min(s.seconds for s in tool.samples):.2f}"
                f" s, output {statistics.median(s.stdout_bytes for s in tool.samples) / 1e6:.1f}"
                " MB)"
            )
        ours = result.tools[0]
        by_label = {tool.label: tool for tool in result.tools}
        floor = by_label[IO_FLOOR_LABEL]
        lines.append(
            f"ratio@{result.size} kubectl-gw/io-floor: time "
            f"{ours.median_seconds / floor.median_seconds:.2f}  memory "
            f"{ours.median_rss_mb / floor.median_rss_mb:.2f}"
        )
        theirs = next((t for t in result.tools if t.label.startswith("ingress2gateway")), None)
        if theirs is not None:
            time_ratio = ours.median_seconds / theirs.median_seconds
            rss_ratio = ours.median_rss_mb / theirs.median_rss_mb
            verdict = "meets" if max(time_ratio, rss_ratio) <= GOAL else "MISSES"
            lines.append(
                f"ratio@{result.size} kubectl-gw/ingress2gateway: time {time_ratio:.2f}  "
                f"memory {rss_ratio:.2f}  ({verdict} the goal <= {GOAL:.1f})"
            )
        else:
            lines.append(
                f"ratio@{result.size} kubectl-gw/ingress2gateway: not computed (unavailable)"
            )
    return "\n".join(lines)


def banner(problem: str) -> str:
    bar = "!" * 78
    return (
        f"{bar}\n!!! ingress2gateway {I2GW_VERSION} UNAVAILABLE: no ratio against it.\n"
        f"!!! {problem}\n{bar}"
    )


def run(
    sizes: tuple[int, ...], runs: int, *, skip_i2gw: bool, keep: Path | None = None
) -> tuple[str, int]:
    """Build what is needed, measure, and return (the printed report, the exit code)."""
    tools = [kubectl_gw_tool(), io_floor_tool()]
    problem: str | None = None
    code = 0
    if skip_i2gw:
        problem = f"not tried ({SKIP_ENV}=1 / --skip-i2gw)"
    else:
        try:
            tools.append(i2gw_tool(ensure_i2gw()))
        except (I2gwUnavailableError, OSError, subprocess.TimeoutExpired) as err:
            problem = f"cannot build {I2GW_MODULE}@{I2GW_VERSION}: {err}"
            print(banner(problem), file=sys.stderr, flush=True)
    workdir = keep or Path(tempfile.mkdtemp(prefix="kgw-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = [run_size(size, runs, tools, workdir) for size in sizes]
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return report(results, problem), code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the corpora and last outputs here")
    parser.add_argument("--skip-i2gw", action="store_true", help=f"same as {SKIP_ENV}=1")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s)
    skip = args.skip_i2gw or os.environ.get(SKIP_ENV) == "1"
    text, code = run(sizes, args.runs, skip_i2gw=skip, keep=args.keep)
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
