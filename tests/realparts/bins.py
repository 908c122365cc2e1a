"""Build (or find in the cache) the kube-apiserver and etcd binaries for the cluster tests.

No registry ships kube-apiserver, so it is built from ``k8s.io/kubernetes`` through the Go module
proxy with the wrapper module in ``tests/gomod/kube``; etcd comes from ``tests/gomod/etcd``. The
pinned versions are read from those go.mod files, so they are the single source of truth.

Binaries live in ``${KUBECTL_GW_TEST_BIN:-~/.cache/kubectl-gw/test-bin}/<name>-<version>/`` and are
rebuilt only when missing or when ``--version`` does not report the pinned version.

Usage::

    python -m tests.realparts.bins ensure
    python -m tests.realparts.bins regen-kube-gomod v1.36.3
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GOMOD_DIR = REPO_ROOT / "tests" / "gomod"
KUBE_MODULE_DIR = GOMOD_DIR / "kube"
ETCD_MODULE_DIR = GOMOD_DIR / "etcd"

KUBE_MAIN_MODULE = "k8s.io/kubernetes"
ETCD_MAIN_MODULE = "go.etcd.io/etcd/server/v3"
KUBE_APISERVER_PKG = "k8s.io/kubernetes/cmd/kube-apiserver"
# A fixed build date keeps the binaries reproducible (hack/lib/version.sh sets the same vars).
BUILD_DATE = "1970-01-01T00:00:00Z"
TAIL_LINES = 40


class BuildError(RuntimeError):
    """A go command failed; the message carries the last lines of its output."""


@dataclass
class Binaries:
    """Where the test binaries are, which versions they are, and which of them this call built."""

    kube_apiserver: Path
    etcd: Path
    kube_version: str
    etcd_version: str
    built: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)

    def describe(self, name: str) -> str:
        """One line for the test log, e.g. ``kube-apiserver v1.36.3: built in 512 s (path)``."""
        path = self.kube_apiserver if name == "kube-apiserver" else self.etcd
        version = self.kube_version if name == "kube-apiserver" else self.etcd_version
        if name in self.built:
            how = f"built in {self.durations.get(name, 0.0):.0f} s"
        else:
            how = "found in cache"
        return f"{name} {version}: {how} ({path})"


def cache_root() -> Path:
    """The binary cache directory (``KUBECTL_GW_TEST_BIN`` or ``~/.cache/kubectl-gw/test-bin``)."""
    configured = os.environ.get("KUBECTL_GW_TEST_BIN")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "kubectl-gw" / "test-bin"


def go_executable() -> str:
    """The ``go`` command: from PATH, else the standard install location."""
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    if fallback.is_file():
        return str(fallback)
    raise BuildError("no `go` command found (PATH or /usr/local/go/bin/go); Go >= 1.26 is needed")


def go_env(**extra: str) -> dict[str, str]:
    """Environment for go commands: never download a toolchain; static binaries."""
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env["CGO_ENABLED"] = "0"
    env.update(extra)
    return env


def run_go(
    args: list[str], cwd: Path, log: Path | None = None, timeout: float = 3600.0
) -> subprocess.CompletedProcess[str]:
    """Run ``go ARGS`` in CWD; on failure raise BuildError with the last lines of its output."""
    cmd = [go_executable(), *args]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if log is not None:
        log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        tail = "\n".join(lines[-TAIL_LINES:])
        raise BuildError(
            f"`go {' '.join(args[:3])} ...` failed in {cwd} (exit {proc.returncode}):\n{tail}"
        )
    return proc


def required_version_in(text: str, module: str) -> str | None:
    """The version at which go.mod TEXT requires MODULE, or None."""
    pattern = re.compile(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", re.MULTILINE)
    match = pattern.search(text)
    return match.group(1) if match else None


def required_version(gomod: Path, module: str) -> str:
    """The version at which the go.mod at GOMOD requires MODULE."""
    version = required_version_in(gomod.read_text(), module)
    if version is None:
        raise BuildError(f"{gomod} does not require {module}")
    return version


def kube_version() -> str:
    """The pinned Kubernetes version, e.g. ``v1.36.3``."""
    return required_version(KUBE_MODULE_DIR / "go.mod", KUBE_MAIN_MODULE)


def etcd_version() -> str:
    """The pinned etcd version, e.g. ``v3.6.16``."""
    return required_version(ETCD_MODULE_DIR / "go.mod", ETCD_MAIN_MODULE)


def kube_ldflags(version: str) -> str:
    """``-s -w`` plus the version variables that hack/lib/version.sh would set."""
    match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+.*", version)
    if match is None:
        raise BuildError(f"cannot parse Kubernetes version {version!r}")
    values = {
        "gitVersion": version,
        "gitMajor": match.group(1),
        "gitMinor": match.group(2),
        "gitTreeState": "clean",
        "buildDate": BUILD_DATE,
    }
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{name}={value}" for name, value in values.items()]
    return " ".join(flags)


def reported_version(binary: Path) -> str | None:
    """What ``BINARY --version`` says (the whole output), or None when it cannot run."""
    if not binary.is_file():
        return None
    try:
        proc = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout + proc.stderr


def kube_version_ok(binary: Path, version: str) -> bool:
    out = reported_version(binary)
    return out is not None and out.split() == ["Kubernetes", version]


def etcd_version_ok(binary: Path, version: str) -> bool:
    out = reported_version(binary)
    return out is not None and f"etcd Version: {version.removeprefix('v')}" in out.splitlines()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise builds into DIRECTORY across processes (parallel pytest sessions)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(
    name: str,
    target: Path,
    module_dir: Path,
    package: str,
    ldflags: str,
    ok: Callable[[Path], bool],
) -> float:
    """Build PACKAGE into TARGET through a temp name and an atomic rename; return seconds."""
    start = time.monotonic()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    log = target.parent / "build.log"
    try:
        run_go(
            ["build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), package],
            cwd=module_dir,
            log=log,
        )
        tmp.chmod(0o755)
        if not ok(tmp):
            got = reported_version(tmp)
            raise BuildError(f"freshly built {name} reports {got!r}, not the pinned version")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return time.monotonic() - start


def _ensure_one(
    name: str,
    version: str,
    module_dir: Path,
    package: str,
    ldflags: str,
    check: Callable[[Path, str], bool],
    result_built: list[str],
    durations: dict[str, float],
) -> Path:
    target_dir = cache_root() / f"{name}-{version}"
    target = target_dir / name
    if check(target, version):
        return target
    with _locked(target_dir):
        if check(target, version):  # another process built it while we waited
            return target
        durations[name] = _build(
            name, target, module_dir, package, ldflags, lambda p: check(p, version)
        )
        result_built.append(name)
    return target


def ensure_binaries() -> Binaries:
    """Return the pinned kube-apiserver and etcd, building whichever is missing or stale."""
    kver, ever = kube_version(), etcd_version()
    built: list[str] = []
    durations: dict[str, float] = {}
    apiserver = _ensure_one(
        "kube-apiserver",
        kver,
        KUBE_MODULE_DIR,
        KUBE_APISERVER_PKG,
        kube_ldflags(kver),
        kube_version_ok,
        built,
        durations,
    )
    etcd = _ensure_one(
        "etcd", ever, ETCD_MODULE_DIR, ETCD_MAIN_MODULE, "-s -w", etcd_version_ok, built, durations
    )
    return Binaries(apiserver, etcd, kver, ever, built, durations)


# --- regenerating tests/gomod/kube/go.mod ------------------------------------------------------

_STAGING_LINE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/src/(k8s\.io/[\w.-]+)\s*$")


def staging_replaces(kubernetes_gomod: str, version: str) -> list[str]:
    """Rewrite k/k's ``k8s.io/x => ./staging/src/k8s.io/x`` lines to ``=> k8s.io/x v0.Y.Z``."""
    match = re.fullmatch(r"v1\.(\d+\.\d+.*)", version)
    if match is None:
        raise BuildError(f"expected a v1.Y.Z Kubernetes version, got {version!r}")
    staging_version = f"v0.{match.group(1)}"
    lines = []
    for line in kubernetes_gomod.splitlines():
        found = _STAGING_LINE.match(line)
        if found:
            lines.append(f"{found.group(1)} => {found.group(2)} {staging_version}")
    if not lines:
        raise BuildError(f"k8s.io/kubernetes@{version} go.mod has no staging replace lines")
    return sorted(lines)


def regen_kube_gomod(version: str, tidy: bool = True) -> list[str]:
    """Point tests/gomod/kube at k8s.io/kubernetes VERSION with a fresh replace block."""
    proc = run_go(["mod", "download", "-json", f"{KUBE_MAIN_MODULE}@{version}"], cwd=Path("/"))
    info = json.loads(proc.stdout)
    replaces = staging_replaces(Path(info["GoMod"]).read_text(), version)
    gomod = KUBE_MODULE_DIR / "go.mod"
    text = gomod.read_text()
    block = "replace (\n" + "".join(f"\t{line}\n" for line in replaces) + ")\n"
    text, count = re.subn(r"^replace \(\n.*?^\)\n", block, text, flags=re.MULTILINE | re.DOTALL)
    if count == 0:
        text = text.rstrip("\n") + "\n\n" + block
    text = re.sub(
        rf"^(\s*(?:require\s+)?{re.escape(KUBE_MAIN_MODULE)}\s+)v\S+",
        rf"\g<1>{version}",
        text,
        count=1,
        flags=re.MULTILINE,
    )
    if required_version_in(text, KUBE_MAIN_MODULE) != version:
        text = text.rstrip("\n") + f"\n\nrequire {KUBE_MAIN_MODULE} {version}\n"
    gomod.write_text(text)
    if tidy:
        run_go(["mod", "tidy"], cwd=KUBE_MODULE_DIR)
    return replaces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.realparts.bins", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure", help="build or find kube-apiserver and etcd; print where they are")
    regen = sub.add_parser("regen-kube-gomod", help="regenerate tests/gomod/kube/go.mod")
    regen.add_argument("version", help="k8s.io/kubernetes version, e.g. v1.36.3")
    regen.add_argument("--no-tidy", action="store_true", help="do not run `go mod tidy` after")
    args = parser.parse_args(argv)
    try:
        if args.command == "ensure":
            bins = ensure_binaries()
            print(bins.describe("kube-apiserver"))
            print(bins.describe("etcd"))
        else:
            replaces = regen_kube_gomod(args.version, tidy=not args.no_tidy)
            print(f"{KUBE_MODULE_DIR / 'go.mod'}: {len(replaces)} staging replaces")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
