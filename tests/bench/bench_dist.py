"""Benchmark: cold start of the single-file plugin (zipapp) next to the installed console script.

Both run the same commands with the same interpreter version; the zipapp runs under a bare
interpreter (a venv without packages), as on a user's machine after ``kubectl krew install``.
Printed as medians and as the ratio zipapp / console script. Anchor: ``python -c pass``.

The zipapp compiles what it imports from source on every run (zipimport cannot cache bytecode),
which is what the offline rows measure. Cluster commands import the ``kubernetes`` client from
the part the zipapp unpacks on first use; the last rows time that import: once on a fresh cache
(unpack + compile) and then warm (bytecode cached), next to the same import in the venv.

    python -m tests.bench.bench_dist [--zipapp PATH] [--runs N]

Without ``--zipapp`` it builds one for this machine with ``scripts/build_dist.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

IMPORT_CLUSTER_CLIENT = """
import pathlib, sys, time
archive = sys.argv[1]
if archive != "-":
    sys.path.insert(0, archive)
    import _kgw_boot
    path = pathlib.Path(archive)
    sys.meta_path.insert(0, _kgw_boot.LateFinder(path, _kgw_boot.read_build_info(path)))
began = time.perf_counter()
import kubernetes.config
print((time.perf_counter() - began) * 1000)
"""


@dataclass
class Row:
    label: str
    zipapp_ms: float
    console_ms: float

    @property
    def ratio(self) -> float:
        return self.zipapp_ms / self.console_ms


def median_ms(command: list[str], runs: int, env: dict[str, str], cwd: Path) -> float:
    subprocess.run(command, capture_output=True, env=env, cwd=cwd, check=False)  # page cache
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(command, capture_output=True, env=env, cwd=cwd, check=False)
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def import_ms(command: list[str], env: dict[str, str]) -> float:
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} could not import the cluster client:\n{proc.stderr}")
    return float(proc.stdout)


def bare_python(where: Path) -> Path:
    """A venv without packages (and without system site-packages) of this Python version."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(where)], check=True)
    return where / "bin" / "python3"


def host_zipapp(workdir: Path) -> Path:
    """Build the zipapp for this machine (linux/amd64 here) and unpack it from its archive."""
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    platform = f"{sys.platform.removesuffix('2')}/{arch}"
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "build_dist.py"),
            "--out",
            str(workdir / "out"),
            "--manifest",
            str(workdir / "gw.yaml"),
            "--platform",
            platform,
            "--no-python-dists",
        ],
        check=True,
        capture_output=True,
    )
    archive = next((workdir / "out" / "krew").glob("*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(workdir / "plugin", filter="data")
    return workdir / "plugin" / "kubectl-gw"


def run(zipapp: Path, runs: int, workdir: Path) -> tuple[list[Row], float]:
    bindir = Path(sys.executable).parent
    console = shutil.which("kubectl-gw", path=str(bindir))
    complete = shutil.which("kubectl_complete-gw", path=str(bindir))
    if console is None or complete is None:
        raise SystemExit("kubectl-gw is not installed in this environment (pip install -e .)")
    python = bare_python(workdir / "bare")
    launcher = zipapp.with_name("kubectl_complete-gw")
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(workdir / "home")}
    cases = [
        ("--help", [str(python), str(zipapp), "--help"], [console, "--help"]),
        (
            "version --client",
            [str(python), str(zipapp), "version", "--client"],
            [console, "version", "--client"],
        ),
        ("kubectl_complete-gw mig", [str(python), str(launcher), "mig"], [complete, "mig"]),
    ]
    anchor = median_ms([str(python), "-c", "pass"], runs, env, workdir)
    rows = [
        Row(label, median_ms(z, runs, env, workdir), median_ms(c, runs, env, workdir))
        for label, z, c in cases
    ]
    importer = [str(python), "-c", IMPORT_CLUSTER_CLIENT, str(zipapp)]
    first = import_ms(importer, env)
    warm = statistics.median(import_ms(importer, env) for _ in range(max(runs // 3, 1)))
    venv_env = dict(env, PATH=f"{bindir}:/usr/bin:/bin")
    in_venv = [sys.executable, "-c", IMPORT_CLUSTER_CLIENT, "-"]
    venv = statistics.median(import_ms(in_venv, venv_env) for _ in range(max(runs // 3, 1)))
    rows.append(Row("import kubernetes, first cluster command", first, venv))
    rows.append(Row("import kubernetes, later cluster commands", warm, venv))
    return rows, anchor


def report(rows: list[Row], anchor_ms: float) -> str:
    lines = [f"{'command':44} {'zipapp ms':>10} {'console ms':>11} {'zipapp/console':>15}"]
    for row in rows:
        lines.append(
            f"{row.label:44} {row.zipapp_ms:10.1f} {row.console_ms:11.1f} {row.ratio:15.2f}"
        )
    lines.append(f"anchor: bare python -c pass {anchor_ms:.1f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zipapp", type=Path, help="a kubectl-gw zipapp (default: build one)")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kgw-bench-dist-") as scratch:
        workdir = Path(scratch)
        zipapp = args.zipapp.resolve() if args.zipapp else host_zipapp(workdir)
        rows, anchor = run(zipapp, args.runs, workdir)
        print(report(rows, anchor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
