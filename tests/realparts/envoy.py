"""Run the real Envoy binary for tests.

``EnvoyProcess`` writes a bootstrap to a file, starts Envoy with its own ``--base-id`` (so several
can run side by side) and an admin listener on a free ``127.0.0.1`` port (port 0 in the
bootstrap; the real port is read back from ``--admin-address-path``), sends its log to a file,
and waits until admin ``/ready`` answers 200. ``stop()`` ends it by PID.

``static_http_proxy_bootstrap()`` builds the smallest useful v3 bootstrap: one HTTP listener that
routes every request to one STATIC round-robin cluster.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HCM_TYPE = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"

_base_ids = itertools.count(1)
_base_id_lock = threading.Lock()
# What Envoy prints when another Envoy holds the same --base-id.
_BASE_ID_CLASH = re.compile(r"unable to bind domain socket with base_id")
_admin_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EnvoyStartError(RuntimeError):
    """Envoy exited or did not become ready in time; the message carries the last log lines."""


def unique_base_id() -> int:
    """A ``--base-id`` distinct for every Envoy of this process and (by the PID) of others."""
    with _base_id_lock:
        serial = next(_base_ids)
    return (os.getpid() % 100_000) * 1_000 + serial % 1_000


def static_http_proxy_bootstrap(
    listen_port: int,
    cluster_endpoints: Sequence[tuple[str, int]],
    *,
    listen_address: str = "127.0.0.1",
    cluster_name: str = "backends",
    listener_name: str = "http",
    admin_port: int = 0,
    connect_timeout: str = "1s",
) -> dict[str, Any]:
    """A static v3 bootstrap: one HTTP listener, every request routed to one STATIC cluster.

    ``listen_port=0`` lets Envoy pick the port; read it back with
    :meth:`EnvoyProcess.listener_address`.
    """
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}},
        },
        "static_resources": {
            "listeners": [
                {
                    "name": listener_name,
                    "address": {
                        "socket_address": {"address": listen_address, "port_value": listen_port}
                    },
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": HCM_TYPE,
                                        "stat_prefix": listener_name,
                                        "codec_type": "AUTO",
                                        "route_config": {
                                            "name": "local_route",
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {"cluster": cluster_name},
                                                        }
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {"@type": ROUTER_TYPE},
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": cluster_name,
                    "type": "STATIC",
                    "connect_timeout": connect_timeout,
                    "lb_policy": "ROUND_ROBIN",
                    "load_assignment": {
                        "cluster_name": cluster_name,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": host,
                                                    "port_value": port,
                                                }
                                            }
                                        }
                                    }
                                    for host, port in cluster_endpoints
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


class EnvoyProcess:
    """One real Envoy process (see the module docstring)."""

    def __init__(
        self,
        binary: str | os.PathLike[str],
        bootstrap: Mapping[str, Any],
        *,
        workdir: str | os.PathLike[str] | None = None,
        name: str = "envoy",
        base_id: int | None = None,
        log_level: str = "warn",
        concurrency: int | None = 1,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = Path(binary)
        self.name = name
        self.bootstrap: dict[str, Any] = copy.deepcopy(dict(bootstrap))
        self.bootstrap.setdefault(
            "admin", {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
        )
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp("-envoy"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._fixed_base_id = base_id is not None
        self.base_id = base_id if base_id is not None else unique_base_id()
        self.log_level = log_level
        self.concurrency = concurrency
        self.extra_args = list(extra_args)
        self.bootstrap_path = self.workdir / f"{name}-bootstrap.json"
        self.log_path = self.workdir / f"{name}.log"
        self.admin_address_path = self.workdir / f"{name}-admin-address.txt"
        self.process: subprocess.Popen[bytes] | None = None
        self.admin_url = ""
        self.started_at = 0.0
        self.ready_seconds = 0.0
        self._log_offset = 0

    # ----------------------------------------------------------------- life cycle

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def command(self) -> list[str]:
        args = [
            str(self.binary),
            "--config-path",
            str(self.bootstrap_path),
            "--base-id",
            str(self.base_id),
            "--log-level",
            self.log_level,
            "--admin-address-path",
            str(self.admin_address_path),
            "--service-cluster",
            "kubectl-gw-tests",
            "--service-node",
            self.name,
        ]
        if self.concurrency is not None:
            args += ["--concurrency", str(self.concurrency)]
        return args + self.extra_args

    def start(self, timeout: float = 30.0) -> EnvoyProcess:
        """Start Envoy and wait until admin ``/ready`` answers 200.

        If Envoy exits at once because its hot-restart base ID is taken (a leftover Envoy of
        another run), it is started again with a fresh ``--base-id``.
        """
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self.name} already running (pid {self.process.pid})")
        self.bootstrap_path.write_text(json.dumps(self.bootstrap, indent=2))
        for attempt in range(3):
            self._spawn()
            try:
                self.wait_ready(timeout)
            except EnvoyStartError:
                self.stop()
                clash = _BASE_ID_CLASH.search(self.log_tail(since_start=True))
                if attempt < 2 and clash and not self._fixed_base_id:
                    self.base_id = unique_base_id()
                    continue
                raise
            except BaseException:
                self.stop()
                raise
            break
        self.ready_seconds = time.monotonic() - self.started_at
        return self

    def _spawn(self) -> None:
        self.admin_address_path.unlink(missing_ok=True)
        self.admin_url = ""
        self.started_at = time.monotonic()
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"--- {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # a Ctrl-C of pytest is not forwarded; stop() ends it
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no admin address yet"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise EnvoyStartError(
                    f"{self.name} exited with code {code} before becoming ready "
                    f"(log {self.log_path}):\n{self.log_tail(since_start=True)}"
                )
            if not self.admin_url:
                address = _read_text(self.admin_address_path).strip()
                if address:
                    self.admin_url = f"http://{address}"
            if self.admin_url:
                try:
                    status, body = self.admin_get("/ready", timeout=2.0)
                except OSError as exc:
                    last = f"/ready: {exc}"
                    self.admin_url = ""  # re-read the address file (it may have been half written)
                else:
                    if status == 200:
                        return
                    last = f"/ready answered {status}: {body.strip()[:100]}"
            time.sleep(0.02)
        raise EnvoyStartError(
            f"{self.name} (pid {self.pid}) not ready after {timeout:.0f}s ({last}); "
            f"log {self.log_path}:\n{self.log_tail(since_start=True)}"
        )

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM by PID, SIGKILL after ``grace`` seconds; idempotent."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)

    def __enter__(self) -> EnvoyProcess:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- admin and log

    def admin_get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        if not self.admin_url:
            raise RuntimeError(f"{self.name} has no admin address yet")
        try:
            with _admin_opener.open(self.admin_url + path, timeout=timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode(errors="replace")

    def listener_address(self, name: str | None = None) -> tuple[str, int]:
        """The bound ``(address, port)`` of a listener (the only one if ``name`` is None)."""
        status, body = self.admin_get("/listeners?format=json")
        if status != 200:
            raise RuntimeError(f"admin /listeners answered {status}: {body[:200]}")
        listeners = json.loads(body).get("listener_statuses", [])
        for listener in listeners:
            if name is None or listener.get("name") == name:
                socket_address = listener["local_address"]["socket_address"]
                return socket_address["address"], int(socket_address["port_value"])
        raise LookupError(f"no listener {name!r} in {[x.get('name') for x in listeners]}")

    def stats(self, filter_regex: str | None = None) -> dict[str, int]:
        """Counters and gauges from admin ``/stats`` (histograms are left out)."""
        path = "/stats?format=json"
        if filter_regex:
            path += "&filter=" + urllib.parse.quote(filter_regex)
        status, body = self.admin_get(path)
        if status != 200:
            raise RuntimeError(f"admin /stats answered {status}: {body[:200]}")
        return {
            entry["name"]: int(entry["value"])
            for entry in json.loads(body).get("stats", [])
            if "value" in entry
        }

    def version(self) -> str:
        """The running server's version string from admin ``/server_info``."""
        status, body = self.admin_get("/server_info")
        if status != 200:
            raise RuntimeError(f"admin /server_info answered {status}: {body[:200]}")
        full = str(json.loads(body).get("version", ""))
        parts = full.split("/")
        return parts[1] if len(parts) > 1 else full

    def log_tail(self, lines: int = 30, *, since_start: bool = False) -> str:
        """The last ``lines`` log lines (only those of the latest start if ``since_start``)."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            data = b""
        text = data[self._log_offset if since_start else 0 :].decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
