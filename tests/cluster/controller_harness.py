"""Run our controller (with its real Envoy) against a real API server, and talk to it.

Shared by the controller end-to-end, feature, TLS, churn, fault and install tests, by
``tests/bench/bench_controller.py`` and by ``scripts/demo.py``:

- :func:`start_controller` / :class:`Running`: a GatewayClass with a controllerName of its own
  (so other tests' classes in the shared cluster are never served or written to), then
  :class:`controller.run.Controller` in this process (threads), which starts Envoy as its
  child, listening on ``127.0.0.1:<port + offset>``; ``Running.apply``/``get`` by server-side
  apply, ``Running.request``/``wait_status`` through Envoy;
- object builders (:func:`gateway_class`, :func:`gateway`, :func:`http_route`) and
  :func:`apply` / :func:`create` / :func:`get` / :func:`delete` on a :class:`kube.Cluster`;
- :func:`wait_for`: poll until a check is truthy (connection and API errors count as "not yet");
- :func:`request` / :func:`tls_request` / :class:`TlsSession`: one HTTP(S) request with
  ``http.client`` that never follows redirects and returns every response header
  (``Set-Cookie`` included), for redirects, CORS and cookies;
- traffic under churn: :func:`probe` (one GET, never raises, timed), :class:`Prober` (requests
  back to back on a keep-alive connection, recording every answer) and :func:`first_200` (poll
  on fresh connections until 200, recording what came before).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.run import Controller, ControllerConfig
from kubectl_gw import kube
from kubectl_gw.errors import ClusterError
from kubectl_gw.model import KindInfo, kind_info

GW = "gateway.networking.k8s.io/v1"
EG = "gateway.envoyproxy.io/v1alpha1"


def free_port_offset(ports: tuple[int, ...] = (80,)) -> int:
    """An offset N such that every ``port + N`` is free on 127.0.0.1 (steps of 1000)."""
    for offset in range(21000, 60000, 1000):
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError(f"no free port offset for {ports}")


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


def gateway_class(name: str, controller_name: str) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller_name},
    }


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


def _info(obj: Mapping[str, Any]) -> KindInfo:
    info = kind_info(obj["apiVersion"], obj["kind"])
    if info is None:
        raise ValueError(f"unknown kind {obj['apiVersion']} {obj['kind']}")
    return info


def apply(cluster: kube.Cluster, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Server-side apply (force)."""
    return dict(cluster.apply(obj, _info(obj), force=True))  # type: ignore[arg-type]


def create(cluster: kube.Cluster, obj: Mapping[str, Any]) -> dict[str, Any]:
    path = cluster.collection_path(_info(obj), obj["metadata"].get("namespace"))
    return dict(cluster.request("POST", path, body=obj))


def delete(cluster: kube.Cluster, obj: Mapping[str, Any]) -> None:
    path = cluster.collection_path(_info(obj), obj["metadata"].get("namespace"))
    with contextlib.suppress(ClusterError):
        cluster.request("DELETE", f"{path}/{obj['metadata']['name']}")


def get(cluster: kube.Cluster, obj: Mapping[str, Any]) -> dict[str, Any]:
    found = cluster.get_object(
        _info(obj), obj["metadata"].get("namespace"), obj["metadata"]["name"]
    )
    if found is None:
        raise AssertionError(f"{obj['kind']} {obj['metadata']['name']} not found")
    return dict(found)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]  # lower-case names, every header in order
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def backend(self) -> str:
        assert self.status == 200, (self.status, self.body[:300])
        return str(self.json()["backend"])


def request(
    port: int,
    path: str,
    *,
    host: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Answer:
    """One HTTP/1.1 request to ``127.0.0.1:port`` (no redirects followed, no proxy)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        return Answer(
            response.status,
            [(k.lower(), v) for k, v in response.getheaders()],
            response.read(),
        )
    finally:
        conn.close()


def tls_request(
    port: int,
    path: str,
    *,
    host: str,
    sni: str | None = None,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    client_cert: tuple[Path, Path] | None = None,
) -> tuple[Answer, bytes]:
    """One HTTPS request to ``127.0.0.1:port`` with SNI ``sni`` (default: ``host``); the answer
    and the DER certificate the server presented (not verified: tests check it themselves).
    ``client_cert``: (certificate PEM file, key PEM file) to present when the server asks."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        context.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    wrapped = context.wrap_socket(raw, server_hostname=sni or host)
    certificate = wrapped.getpeercert(binary_form=True) or b""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = wrapped
    try:
        conn.request(method, path, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        answer = Answer(
            response.status, [(k.lower(), v) for k, v in response.getheaders()], response.read()
        )
        return answer, certificate
    finally:
        conn.close()


class TlsSession:
    """HTTPS requests over one kept-alive TLS connection (reconnects when Envoy closes it)."""

    def __init__(self, port: int, sni: str, timeout: float = 10.0) -> None:
        self.port, self.sni, self.timeout = port, sni, timeout
        self.certificate = b""
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        wrapped = context.wrap_socket(raw, server_hostname=self.sni)
        self.certificate = wrapped.getpeercert(binary_form=True) or b""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        conn.sock = wrapped
        return conn

    def request(
        self,
        path: str,
        *,
        host: str | None = None,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request(
                    method, path, headers={"Host": host or self.sni, **(headers or {})}
                )
                response = self._conn.getresponse()
                answer = Answer(
                    response.status,
                    [(k.lower(), v) for k, v in response.getheaders()],
                    response.read(),
                )
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.will_close:
                self.close()
            return answer
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --------------------------------------------------------------------------- the controller


@dataclass
class Running:
    controller: Controller
    cluster: kube.Cluster
    controller_name: str
    class_name: str
    port_offset: int
    applied: list[dict[str, Any]] = field(default_factory=list)

    def port(self, gateway_port: int = 80) -> int:
        return gateway_port + self.port_offset

    def url(self, gateway_port: int = 80) -> str:
        return f"http://127.0.0.1:{self.port(gateway_port)}"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port(80))

    def apply(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            apply(self.cluster, obj)
            self.applied.append(obj)

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return get(self.cluster, obj)

    def request(self, path: str, *, host: str, gateway_port: int = 80, **kwargs: Any) -> Answer:
        return request(self.port(gateway_port), path, host=host, **kwargs)

    def wait_status(
        self, path: str, host: str, status: int = 200, timeout: float = 20, **kwargs: Any
    ) -> Answer:
        """Wait until ``path`` on ``host`` answers ``status`` (the route is programmed)."""
        answer: Answer = wait_for(
            lambda: (a := self.request(path, host=host, **kwargs)).status == status and a,
            timeout,
            f"{status} from {host}{path}",
        )
        return answer


@contextlib.contextmanager
def start_controller(
    kubeconfig: Path,
    envoy_binary: Path,
    workdir: Path,
    *,
    ports: tuple[int, ...] = (80,),
    prefix: str = "t",
    delta: bool = True,
    **overrides: Any,
) -> Iterator[Running]:
    """A GatewayClass of its own and the controller (with Envoy) serving it, on a port offset
    where every Gateway port in ``ports`` is free; ``delta``: Envoy speaks delta (incremental)
    ADS, the controller's default (False: state of the world); ``overrides`` go to
    :class:`ControllerConfig`. Stopped and the class deleted after."""
    from tests.realparts.envoy import unique_base_id

    suffix = uuid.uuid4().hex[:8]
    controller_name = f"kubectl-gw.dev/{prefix}-{suffix}"
    class_name = f"{prefix}-{suffix}"
    offset = free_port_offset(ports)
    options: dict[str, Any] = {
        "target": kube.KubeTarget(kubeconfig=str(kubeconfig)),
        "controller_name": controller_name,
        "listen_address": "127.0.0.1",
        "port_offset": offset,
        "envoy_path": str(envoy_binary),
        "envoy_base_id": unique_base_id(),
        "workdir": workdir,
        "delta": delta,
        **overrides,
    }
    config = ControllerConfig(**options)
    cluster = kube.connect(config.target)
    the_class = gateway_class(class_name, controller_name)
    apply(cluster, the_class)
    controller = Controller(config)
    try:
        controller.start()
        yield Running(controller, cluster, controller_name, class_name, offset)
    finally:
        controller.stop()
        delete(cluster, the_class)


# --------------------------------------------------------------------------- traffic under churn


@dataclass(frozen=True)
class Probe:
    """One answer of :func:`probe`, small enough to keep tens of thousands of them."""

    at: float  # time.monotonic() when it came
    status: int  # 0: no HTTP answer (connection refused/reset)
    backend: str  # the echo backend that answered a 200, else ""
    error: str = ""


def probe(
    address: tuple[str, int],
    host: str,
    path: str = "/",
    timeout: float = 5.0,
    conn: http.client.HTTPConnection | None = None,
) -> Probe:
    """One GET through Envoy (on ``conn`` when given, else on a fresh connection); never
    raises: a failure is status 0 with the error."""
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
        return Probe(time.monotonic(), response.status, backend)
    except (OSError, http.client.HTTPException) as err:
        return Probe(time.monotonic(), 0, "", f"{type(err).__name__}: {err}")
    finally:
        if own:
            connection.close()


@dataclass
class Prober:
    """Requests back to back on one keep-alive connection (a new one after an error)."""

    address: tuple[str, int]
    host: str
    path: str = "/"
    answers: list[Probe] = field(default_factory=list)
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
            answer = probe(self.address, self.host, self.path, conn=conn)
            self.answers.append(answer)
            if answer.status == 0:
                conn.close()
                conn = None
                self._stop.wait(0.01)
        if conn is not None:
            conn.close()

    def stop(self) -> list[Probe]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return self.answers

    def failures(self, since: float = 0.0) -> list[Probe]:
        return [a for a in list(self.answers) if a.at >= since and a.status != 200]

    def backends(self, since: float = 0.0) -> set[str]:
        return {a.backend for a in list(self.answers) if a.at >= since and a.status == 200}


def first_200(
    address: tuple[str, int], host: str, path: str = "/", timeout: float = 30.0
) -> tuple[float, list[Probe]]:
    """Poll on fresh connections until 200; the time it answered and every answer before."""
    before: list[Probe] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = probe(address, host, path)
        if answer.status == 200:
            return answer.at, before
        before.append(answer)
        time.sleep(0.002)
    raise AssertionError(f"{host}{path}: no 200 within {timeout} s; last answers: {before[-3:]}")
