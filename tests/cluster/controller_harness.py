"""Shared harness for end-to-end tests of the controller: the real test cluster, our controller
in-process (threads) with the real Envoy as its child, and real echo backends.

- :func:`start_controller` / :class:`Running`: a GatewayClass with a controllerName of its own
  (so other tests' classes in the shared cluster are never served or written to), the
  controller on a free port offset, ``apply``/``get``/``delete`` of objects by server-side
  apply;
- :func:`wait_for`: poll until a check is truthy (connection errors count as "not yet");
- :func:`request`: one HTTP request with ``http.client`` that never follows redirects and
  returns every response header (``Set-Cookie`` included), for redirects, CORS and cookies.

The controller must watch the Envoy Gateway kinds it translates (``controller.egpolicy``
.POLICY_KINDS); :func:`start_controller` makes sure the watched kinds include them.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller import egpolicy
from controller import run as run_module
from controller.run import Controller, ControllerConfig
from kubectl_gw import kube
from kubectl_gw.model import kind_info
from tests.realparts.envoy import unique_base_id

GW = "gateway.networking.k8s.io/v1"
EG = "gateway.envoyproxy.io/v1alpha1"


def free_port_offset(ports: tuple[int, ...] = (80,)) -> int:
    """An offset N such that every ``port + N`` is free on 127.0.0.1."""
    for offset in range(21000, 60000, 1000):
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError(f"no free port offset for {ports}")


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, AssertionError, http.client.HTTPException) as err:
            last = err
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


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

    def apply(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            info = kind_info(obj["apiVersion"], obj["kind"])
            assert info is not None, obj["kind"]
            self.cluster.apply(obj, info, force=True)  # type: ignore[arg-type]
            self.applied.append(obj)

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        info = kind_info(obj["apiVersion"], obj["kind"])
        assert info is not None
        found = self.cluster.get_object(
            info, obj["metadata"].get("namespace"), obj["metadata"]["name"]
        )
        assert found is not None
        return dict(found)

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


def gateway_class(name: str, controller_name: str) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller_name},
    }


@contextmanager
def start_controller(
    kube_cluster: Any,
    envoy_binary: Path,
    workdir: Path,
    *,
    ports: tuple[int, ...] = (80,),
    prefix: str = "e2e",
) -> Iterator[Running]:
    """A GatewayClass of its own and the controller (with Envoy) serving it; torn down after."""
    suffix = uuid.uuid4().hex[:8]
    controller_name = f"kubectl-gw.dev/{prefix}-{suffix}"
    class_name = f"{prefix}-{suffix}"
    offset = free_port_offset(ports)
    config = ControllerConfig(
        target=kube.KubeTarget(kubeconfig=str(kube_cluster.kubeconfig)),
        controller_name=controller_name,
        listen_address="127.0.0.1",
        port_offset=offset,
        envoy_path=str(envoy_binary),
        envoy_base_id=unique_base_id(),
        workdir=workdir,
    )
    cluster = kube.connect(config.target)
    info = kind_info(GW, "GatewayClass")
    assert info is not None
    cluster.apply(gateway_class(class_name, controller_name), info)  # type: ignore[arg-type]
    missing = tuple(k for k in egpolicy.POLICY_KINDS if k not in run_module.WATCHED_KINDS)
    with pytest.MonkeyPatch.context() as patch:
        # Until controller.run watches the Envoy Gateway kinds itself (reported), add them.
        patch.setattr(run_module, "WATCHED_KINDS", run_module.WATCHED_KINDS + missing)
        controller = Controller(config)
        controller.start()
    try:
        yield Running(controller, cluster, controller_name, class_name, offset)
    finally:
        controller.stop()
        cluster.request("DELETE", f"/apis/gateway.networking.k8s.io/v1/gatewayclasses/{class_name}")
