"""Run our controller (with its real Envoy) against a real API server, and talk to it.

Shared by the controller fault and churn tests and by ``tests/bench/bench_controller.py``:

- :func:`start_controller`: a GatewayClass with a fresh ``controllerName`` (so GatewayClasses of
  other tests in the same cluster are never served), then :class:`controller.run.Controller`
  in this process, which starts Envoy as its child, listening on ``127.0.0.1:<port + offset>``;
- object builders (:func:`gateway`, :func:`http_route`), :func:`create` / :func:`apply`;
- :class:`Prober`: one client sending requests back to back on a keep-alive connection,
  recording every answer (status, backend, time);
- :func:`first_200`: poll a URL on fresh connections until it answers 200, recording what came
  before.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.run import Controller, ControllerConfig
from kubectl_gw import kube
from kubectl_gw.errors import ClusterError
from kubectl_gw.model import kind_info

GW = "gateway.networking.k8s.io/v1"


def free_port_offset(ports: tuple[int, ...] = (80,)) -> int:
    """An offset N such that every ``port + N`` is free on 127.0.0.1 (steps of 1000)."""
    for offset in range(21000, 60000, 1000):
        free = True
        for port in ports:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + offset))
                except OSError:
                    free = False
        if free:
            return offset
    raise RuntimeError("no free port for the Gateway listeners")


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Call ``check`` until it returns something truthy; fail with the last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, AssertionError, ClusterError, http.client.HTTPException) as err:
            last = err
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


# --------------------------------------------------------------------------- objects


def gateway(namespace: str, class_name: str, name: str = "gw", port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}],
        },
    }


def http_route(
    namespace: str,
    name: str,
    hostname: str,
    backend: str,
    *,
    path: str = "/",
    port: int = 80,
    response_header: tuple[str, str] | None = None,
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": path}}],
        "backendRefs": [{"name": backend, "port": port}],
    }
    if response_header is not None:
        rule["filters"] = [
            {
                "type": "ResponseHeaderModifier",
                "responseHeaderModifier": {
                    "set": [{"name": response_header[0], "value": response_header[1]}]
                },
            }
        ]
    return {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [hostname], "rules": [rule]},
    }


def _info(obj: dict[str, Any]) -> Any:
    info = kind_info(obj["apiVersion"], obj["kind"])
    if info is None:
        raise ValueError(f"unknown kind {obj['apiVersion']} {obj['kind']}")
    return info


def apply(cluster: kube.Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply (force)."""
    return dict(cluster.apply(obj, _info(obj), force=True))  # type: ignore[arg-type]


def create(cluster: kube.Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    info = _info(obj)
    path = cluster.collection_path(info, obj["metadata"].get("namespace"))
    return dict(cluster.request("POST", path, body=obj))


def delete(cluster: kube.Cluster, obj: dict[str, Any]) -> None:
    info = _info(obj)
    path = cluster.collection_path(info, obj["metadata"].get("namespace"))
    with contextlib.suppress(ClusterError):
        cluster.request("DELETE", f"{path}/{obj['metadata']['name']}")


def get(cluster: kube.Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    found = cluster.get_object(
        _info(obj), obj["metadata"].get("namespace"), obj["metadata"]["name"]
    )
    if found is None:
        raise AssertionError(f"{obj['kind']} {obj['metadata']['name']} not found")
    return dict(found)


# --------------------------------------------------------------------------- the controller


@dataclass
class Running:
    controller: Controller
    cluster: kube.Cluster
    controller_name: str
    class_name: str
    port_offset: int

    def url(self, port: int = 80) -> str:
        return f"http://127.0.0.1:{port + self.port_offset}"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", 80 + self.port_offset)


@contextlib.contextmanager
def start_controller(
    kubeconfig: Path, envoy_binary: Path, workdir: Path, **overrides: Any
) -> Iterator[Running]:
    """A GatewayClass of our own and the controller serving it (stopped and deleted after)."""
    from tests.realparts.envoy import unique_base_id

    suffix = uuid.uuid4().hex[:8]
    controller_name = f"kubectl-gw.dev/t-{suffix}"
    class_name = f"t-{suffix}"
    offset = free_port_offset()
    options: dict[str, Any] = {
        "target": kube.KubeTarget(kubeconfig=str(kubeconfig)),
        "controller_name": controller_name,
        "listen_address": "127.0.0.1",
        "port_offset": offset,
        "envoy_path": str(envoy_binary),
        "envoy_base_id": unique_base_id(),
        "workdir": workdir,
        **overrides,
    }
    config = ControllerConfig(**options)
    cluster = kube.connect(config.target)
    gateway_class = {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": class_name},
        "spec": {"controllerName": controller_name},
    }
    apply(cluster, gateway_class)
    controller = Controller(config)
    try:
        controller.start()
        yield Running(controller, cluster, controller_name, class_name, offset)
    finally:
        controller.stop()
        with contextlib.suppress(ClusterError):
            delete(cluster, gateway_class)


# --------------------------------------------------------------------------- traffic


@dataclass(frozen=True)
class Answer:
    at: float
    status: int  # 0: no HTTP answer (connection refused/reset)
    backend: str
    error: str = ""


def request(
    address: tuple[str, int],
    host: str,
    path: str = "/",
    timeout: float = 5.0,
    conn: http.client.HTTPConnection | None = None,
) -> Answer:
    """One GET through Envoy (on ``conn`` when given, else on a fresh connection)."""
    own = conn is None
    connection = conn or http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        body = response.read()
        backend = ""
        if response.status == 200:
            with contextlib.suppress(ValueError):
                backend = str(json.loads(body).get("backend", ""))
        return Answer(time.monotonic(), response.status, backend)
    except (OSError, http.client.HTTPException) as err:
        return Answer(time.monotonic(), 0, "", f"{type(err).__name__}: {err}")
    finally:
        if own:
            connection.close()


@dataclass
class Prober:
    """Requests back to back on one keep-alive connection (a new one after an error)."""

    address: tuple[str, int]
    host: str
    path: str = "/"
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Prober:
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(*self.address, timeout=5)
            answer = request(self.address, self.host, self.path, conn=conn)
            self.answers.append(answer)
            if answer.status == 0:
                conn.close()
                conn = None
                self._stop.wait(0.01)
        if conn is not None:
            conn.close()

    def stop(self) -> list[Answer]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return self.answers

    def failures(self, since: float = 0.0) -> list[Answer]:
        return [a for a in list(self.answers) if a.at >= since and a.status != 200]

    def backends(self, since: float = 0.0) -> set[str]:
        return {a.backend for a in list(self.answers) if a.at >= since and a.status == 200}


def first_200(
    address: tuple[str, int], host: str, path: str = "/", timeout: float = 30.0
) -> tuple[float, list[Answer]]:
    """Poll on fresh connections until 200; the time it answered and every answer before."""
    before: list[Answer] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = request(address, host, path)
        if answer.status == 200:
            return answer.at, before
        before.append(answer)
        time.sleep(0.002)
    raise AssertionError(f"{host}{path}: no 200 within {timeout} s; last answers: {before[-3:]}")
