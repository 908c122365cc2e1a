"""A real etcd + kube-apiserver on loopback ports, for the cluster tests (reference §7).

No controller-manager, scheduler or kubelet: namespaces never finish terminating, pods never run.
That is enough to create, validate and read back Gateway API, Envoy Gateway and Emissary objects.

Usage::

    python -m tests.realparts.controlplane up     # start detached (+ CRDs); prints the kubeconfig
    python -m tests.realparts.controlplane down   # stop what `up` started, remove its directory

``up`` records the PIDs in ``~/.cache/kubectl-gw/cluster/state.json``; ``down`` stops exactly those
PIDs (after checking they still run the recorded binaries), never anything by name.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.realparts.bins import Binaries

CONTEXT_NAME = "kubectl-gw-test"
USER_NAME = "admin"
SERVICE_CIDR = "10.0.0.0/24"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 40
START_ATTEMPTS = 3
WORKDIR_PREFIX = "kubectl-gw-cluster-"
OWNER_FILE = "owner.pid"


class ControlPlaneError(RuntimeError):
    """etcd or kube-apiserver did not start; the message carries the last log lines."""


def state_file() -> Path:
    return Path.home() / ".cache" / "kubectl-gw" / "cluster" / "state.json"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


_LIBC: Any = None


def _die_with_parent() -> None:
    """Child-side preexec: be killed when the parent (the pytest process) dies (Linux only).

    SIGKILL, not SIGTERM: kube-apiserver's graceful shutdown hangs when etcd goes away at the
    same moment, and the data is throw-away anyway.
    """
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _preexec(detach: bool) -> Callable[[], None] | None:
    global _LIBC
    if detach or not sys.platform.startswith("linux"):
        return None
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
    return _die_with_parent


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # Field 3 (after the parenthesised command) is the state; Z = zombie, X = dead.
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _pid_runs(pid: int, binary: str) -> bool:
    """True when PID is alive and runs BINARY (guards against PID reuse)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except OSError:
        return False
    return argv0 == binary and _pid_alive(pid)


def _stop_pid(pid: int, binary: str, timeout: float = STOP_TIMEOUT) -> None:
    """Terminate PID (not our child), wait, then kill; only if it still runs BINARY."""
    if not _pid_runs(pid, binary):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _stop_child(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout)


@dataclass
class _Process:
    name: str
    binary: str
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    argv: list[str] = field(default_factory=list)  # to start it again (restart_apiserver)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _pid_runs(self.pid, self.binary)

    def stop(self) -> None:
        if self.popen is not None:
            _stop_child(self.popen)
        else:
            _stop_pid(self.pid, self.binary)


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver and the kubeconfig that reaches it."""

    kubeconfig: Path
    server: str
    token: str
    ca_file: Path
    workdir: Path
    etcd_url: str = ""
    processes: list[_Process] = field(default_factory=list, repr=False)
    started_seconds: float = 0.0

    def api_client(self) -> ApiClient:
        """A fresh ApiClient for this cluster (the kubeconfig is passed explicitly)."""
        from kubernetes import config

        loader: Any = config  # the kubernetes package is untyped
        client: ApiClient = loader.new_client_from_config(
            config_file=str(self.kubeconfig), persist_config=False
        )
        return client

    def log_file(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def logs_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        parts = [f"--- {p.name} ({p.log}) ---\n{log_tail(p.log, lines)}" for p in self.processes]
        return "\n".join(parts)

    def alive(self) -> bool:
        return bool(self.processes) and all(p.alive() for p in self.processes)

    def stop(self, remove_workdir: bool = True) -> None:
        """Stop kube-apiserver, then etcd (each by its own PID); remove the work directory."""
        for proc in sorted(self.processes, key=lambda p: p.name != "kube-apiserver"):
            with contextlib.suppress(Exception):
                proc.stop()
        self.processes = []
        atexit.unregister(self.stop)
        if remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- faults (tests/cluster/test_controller_faults.py) ----------------------------------------

    def stop_apiserver(self, kill: bool = False) -> None:
        """Stop kube-apiserver only (SIGTERM, or SIGKILL with ``kill``); etcd keeps its data."""
        proc = self._apiserver()
        if kill and proc.popen is not None and proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait(STOP_TIMEOUT)
        else:
            proc.stop()

    def start_apiserver(self) -> float:
        """Start kube-apiserver again with the same flags (same port, certificates, tokens,
        etcd); wait until it is ready. Returns the seconds it took.

        A start that dies at once is retried (up to ``START_ATTEMPTS``); the error carries the
        new process's own log lines.
        """
        began = time.monotonic()
        old = self._apiserver()
        if old.alive():
            raise ControlPlaneError("kube-apiserver is still running")
        context = ssl.create_default_context(cafile=str(self.ca_file))

        def ready() -> bool:
            return _http_get(f"{self.server}/readyz", self.token, context)[0] == 200

        for attempt in range(START_ATTEMPTS):
            offset = old.log.stat().st_size if old.log.exists() else 0
            proc = _spawn(old.name, old.argv, self.workdir, detach=False)
            self.processes[self.processes.index(old)] = proc
            old = proc
            try:
                _wait_for("/readyz after restart", proc, ready)
            except ControlPlaneError as exc:
                proc.stop()
                with proc.log.open("rb") as handle:
                    handle.seek(offset)
                    own = handle.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                if attempt + 1 < START_ATTEMPTS and proc.popen is not None:
                    continue
                raise ControlPlaneError(
                    f"{str(exc).splitlines()[0]}\nits own log:\n" + "\n".join(own)
                ) from None
            return time.monotonic() - began
        raise AssertionError("unreachable")

    def _apiserver(self) -> _Process:
        for proc in self.processes:
            if proc.name == "kube-apiserver":
                if not proc.argv:
                    raise ControlPlaneError("kube-apiserver was not started by this process")
                return proc
        raise ControlPlaneError("no kube-apiserver in this control plane")

    def to_state(self) -> dict[str, Any]:
        return {
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "token": self.token,
            "ca_file": str(self.ca_file),
            "workdir": str(self.workdir),
            "etcd_url": self.etcd_url,
            "processes": [
                {"name": p.name, "binary": p.binary, "pid": p.pid, "log": str(p.log)}
                for p in self.processes
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ControlPlane:
        procs = [
            _Process(p["name"], p["binary"], int(p["pid"]), Path(p["log"]))
            for p in state.get("processes", [])
        ]
        return cls(
            kubeconfig=Path(state["kubeconfig"]),
            server=state["server"],
            token=state["token"],
            ca_file=Path(state["ca_file"]),
            workdir=Path(state["workdir"]),
            etcd_url=state.get("etcd_url", ""),
            processes=procs,
        )


# --- files -------------------------------------------------------------------------------------


def write_sa_key(path: Path) -> None:
    """An RSA 2048 key that both signs and verifies service-account tokens."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> None:
    """One cluster, one token user, one context ``kubectl-gw-test`` in namespace default."""
    from ruamel.yaml import YAML

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT_NAME,
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": USER_NAME, "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT_NAME,
                "context": {"cluster": CONTEXT_NAME, "user": USER_NAME, "namespace": "default"},
            }
        ],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    with path.open("w") as handle:
        yaml.dump(doc, handle)
    path.chmod(0o600)


def remove_stale_workdirs() -> list[Path]:
    """Remove work dirs left by test sessions that were killed (their owner PID is gone).

    Only directories with an owner file are considered: ``up`` clusters have none, since they
    outlive the process that started them. The processes of a killed owner died with it
    (PR_SET_PDEATHSIG), so only files remain.
    """
    removed: list[Path] = []
    for candidate in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int((candidate / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if owner != os.getpid() and not _pid_alive(owner):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


# --- starting ----------------------------------------------------------------------------------


def _spawn(name: str, argv: list[str], workdir: Path, detach: bool) -> _Process:
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,  # Ctrl-C in the terminal reaches pytest, which stops us
            preexec_fn=_preexec(detach),
        )
    return _Process(name, argv[0], popen.pid, log, popen, list(argv))


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_get(
    url: str, token: str | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    opener = _NO_PROXY
    if context is not None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
    try:
        with opener.open(request, timeout=5) as response:
            status: int = response.status
            return status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_for(
    what: str, proc: _Process, check: Callable[[], bool], timeout: float = READY_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            code = proc.popen.poll() if proc.popen else None
            raise ControlPlaneError(
                f"{proc.name} exited (code {code}) before {what}; last log lines:\n"
                + log_tail(proc.log)
            )
        try:
            if check():
                return
        except (OSError, ssl.SSLError, ValueError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise ControlPlaneError(
        f"{proc.name}: no {what} within {timeout:.0f} s (last error: {last_error or 'none'}); "
        f"last log lines:\n{log_tail(proc.log)}"
    )


def _start_etcd(binary: Path, workdir: Path, detach: bool) -> tuple[_Process, str]:
    for attempt in range(START_ATTEMPTS):
        client_port, peer_port = _free_ports(2)
        client = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        data_dir = workdir / "etcd"
        shutil.rmtree(data_dir, ignore_errors=True)
        argv = [
            str(binary),
            "--name=t",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=t={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]
        proc = _spawn("etcd", argv, workdir, detach)

        def healthy(url: str = client) -> bool:
            status, body = _http_get(f"{url}/health")
            return status == 200 and json.loads(body).get("health") == "true"

        try:
            _wait_for("/health", proc, healthy)
        except ControlPlaneError:
            proc.stop()
            if attempt + 1 < START_ATTEMPTS and "address already in use" in log_tail(proc.log):
                continue
            raise
        return proc, client
    raise AssertionError("unreachable")


def _start_apiserver(
    binary: Path,
    workdir: Path,
    etcd_url: str,
    token: str,
    detach: bool,
    extra_args: tuple[str, ...] = (),
) -> tuple[_Process, str, Path]:
    pki = workdir / "pki"
    ca_file = pki / "apiserver.crt"
    sa_key = workdir / "sa.key"
    tokens = workdir / "tokens.csv"
    for attempt in range(START_ATTEMPTS):
        port = _free_port()
        server = f"https://127.0.0.1:{port}"
        argv = [
            str(binary),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={pki}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={server}",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            # The lease reconciler would publish 127.0.0.1 as the endpoint of service
            # "kubernetes", which Endpoints validation rejects (loopback) every 10 s.
            "--endpoint-reconciler-type=none",
            *extra_args,
        ]
        proc = _spawn("kube-apiserver", argv, workdir, detach)

        def ready(url: str = server) -> bool:
            if not ca_file.is_file():
                return False
            context = ssl.create_default_context(cafile=str(ca_file))
            status, _ = _http_get(f"{url}/readyz", token, context)
            return status == 200

        def default_namespace(url: str = server) -> bool:
            context = ssl.create_default_context(cafile=str(ca_file))
            status, _ = _http_get(f"{url}/api/v1/namespaces/default", token, context)
            return status == 200

        try:
            _wait_for("/readyz", proc, ready)
            _wait_for("namespace default", proc, default_namespace, timeout=30)
        except ControlPlaneError:
            proc.stop()
            if attempt + 1 < START_ATTEMPTS and "address already in use" in log_tail(proc.log):
                continue
            raise
        return proc, server, ca_file
    raise AssertionError("unreachable")


def start(
    binaries: Binaries,
    workdir: Path | None = None,
    detach: bool = False,
    apiserver_args: tuple[str, ...] = (),
) -> ControlPlane:
    """Start etcd and kube-apiserver in WORKDIR (a new temp dir by default).

    ``apiserver_args`` are appended to kube-apiserver's flags (e.g. ``--watch-cache-sizes=...``).

    With ``detach=False`` the processes die with this Python process (PR_SET_PDEATHSIG) and an
    atexit hook stops them; with ``detach=True`` they outlive it (for ``up``/``down``).
    """
    began = time.monotonic()
    if workdir is None:
        remove_stale_workdirs()
        workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    workdir.mkdir(parents=True, exist_ok=True)
    if not detach:
        (workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")
    token = secrets.token_hex(24)
    (workdir / "tokens.csv").write_text(f'{token},{USER_NAME},admin-uid,"system:masters"\n')
    write_sa_key(workdir / "sa.key")
    plane = ControlPlane(
        kubeconfig=workdir / "kubeconfig",
        server="",
        token=token,
        ca_file=workdir / "pki" / "apiserver.crt",
        workdir=workdir,
    )
    if not detach:
        atexit.register(plane.stop)
    try:
        etcd, plane.etcd_url = _start_etcd(binaries.etcd, workdir, detach)
        plane.processes.append(etcd)
        apiserver, plane.server, plane.ca_file = _start_apiserver(
            binaries.kube_apiserver, workdir, plane.etcd_url, token, detach, apiserver_args
        )
        plane.processes.append(apiserver)
        write_kubeconfig(plane.kubeconfig, plane.server, plane.ca_file, token)
    except BaseException:
        plane.stop()
        raise
    plane.started_seconds = time.monotonic() - began
    return plane


# --- CLI ---------------------------------------------------------------------------------------


def _down() -> int:
    path = state_file()
    if not path.is_file():
        print("no cluster recorded; nothing to stop", file=sys.stderr)
        return 0
    plane = ControlPlane.from_state(json.loads(path.read_text()))
    plane.stop()
    path.unlink(missing_ok=True)
    print(f"stopped; removed {plane.workdir}", file=sys.stderr)
    return 0


def _up() -> int:
    from tests.realparts.bins import ensure_binaries
    from tests.realparts.crds import install_bundles

    path = state_file()
    if path.is_file():
        existing = ControlPlane.from_state(json.loads(path.read_text()))
        if existing.alive():
            print(f"already running at {existing.server}", file=sys.stderr)
            print(existing.kubeconfig)
            return 0
        existing.stop()
        path.unlink(missing_ok=True)
    bins = ensure_binaries()
    for name in ("kube-apiserver", "etcd"):
        print(bins.describe(name), file=sys.stderr)
    plane = start(bins, detach=True)
    try:
        with contextlib.closing(plane.api_client()) as client:
            report = install_bundles(client)
    except BaseException:
        plane.stop()
        raise
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plane.to_state(), indent=2))
    path.chmod(0o600)  # it holds the admin token
    print(f"control plane at {plane.server} in {plane.started_seconds:.1f} s", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    print(
        f"logs in {plane.workdir}; stop with: python -m tests.realparts.controlplane down",
        file=sys.stderr,
    )
    print(plane.kubeconfig)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.realparts.controlplane")
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args(argv)
    try:
        return _up() if args.command == "up" else _down()
    except Exception as exc:  # a short message beats a traceback for a CLI
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
