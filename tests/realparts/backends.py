"""Real HTTP echo backends, and their registration as Service + EndpointSlice.

Backends started together form a group that shares one port, each backend on its own address,
so a group stands behind a single Service port exactly like the pods of a Deployment:

- by default (``routable=False``) each backend listens on a loopback address ``127.0.0.N``
  (N from 10 upward, never reused within one test session);
- with ``routable=True`` each backend listens on its own ``198.18.X.N`` inside the session's
  :class:`~tests.realparts.netns.TestNetwork` (a network namespace the test run creates; the
  root namespace reaches it through a veth pair). kube-apiserver refuses loopback addresses in
  EndpointSlices ("may not be in the loopback range"), so backends meant for
  :func:`register_service` are started this way (the ``echo_backends`` fixture passes the
  ``test_network`` fixture for you). Test traffic never leaves this machine: this host's own
  interface addresses are never used.

Each request (any method, any path, HTTP/1.1 keep-alive, with or without a body) is answered
with ``200`` and a JSON echo of what the backend saw, plus an ``x-backend: <name>`` header.
``/status/<code>`` answers with that status instead, so tests can check error propagation.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import ipaddress
import itertools
import json
import socket
import socketserver
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.realparts.netns import TestNetwork

FIRST_HOST_INDEX = 10
STATUS_PREFIX = "/status/"
MANAGED_BY = "kubectl-gw-tests"

_host_indexes = itertools.count(FIRST_HOST_INDEX)
_host_lock = threading.Lock()


def next_loopback_address() -> str:
    """A loopback address not handed out before in this process.

    127.0.0.10, 127.0.0.11, ... 127.0.0.254, then 127.0.1.1 and so on.
    """
    with _host_lock:
        while True:
            index = next(_host_indexes)
            third, fourth = divmod(index, 256)
            second, third = divmod(third, 256)
            if second > 255:
                raise RuntimeError("ran out of 127.0.0.0/8 addresses for backends")
            if fourth in (0, 255):
                continue
            return f"127.{second}.{third}.{fourth}"


# --------------------------------------------------------------------------- the HTTP server


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Envoy pools upstream connections
    server_version = "kubectl-gw-echo"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped after this many seconds
    # Headers and body go out in two writes; with Nagle on, a keep-alive peer (Envoy) waits for
    # its delayed ACK and every pooled request takes ~40 ms.
    disable_nagle_algorithm = True

    server: _EchoServer

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler dispatches to ``do_<METHOD>``; answer every method the same way.
        if name.startswith("do_"):
            return self._echo
        raise AttributeError(name)

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep the test output clean; ``requests`` has everything

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after the chunk
        length = int(self.headers.get("Content-Length", "0") or "0")
        return self.rfile.read(length) if length > 0 else b""

    def _echo(self) -> None:
        backend = self.server.backend
        body = self._read_body()
        parsed = urllib.parse.urlsplit(self.path)
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            lowered = key.lower()
            headers[lowered] = f"{headers[lowered]}, {value}" if lowered in headers else value
        seen: dict[str, Any] = {
            "backend": backend.name,
            "method": self.command,
            "path": parsed.path,
            "query": urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
            "host": headers.get("host", ""),
            "headers": headers,
            "body_bytes": len(body),
        }
        backend.requests.append(seen)

        status = 200
        if parsed.path.startswith(STATUS_PREFIX):
            code = parsed.path[len(STATUS_PREFIX) :].split("/", 1)[0]
            status = int(code) if code.isdigit() and 200 <= int(code) <= 599 else 400
        payload = json.dumps(seen, sort_keys=True).encode()
        no_body = self.command == "HEAD" or status in (204, 304)

        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-backend", backend.name)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not no_body:
            self.wfile.write(payload)


class _EchoServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # pooled keep-alive connections must not block stop()
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: EchoBackend) -> None:
        self.backend = backend
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _EchoHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the address's FQDN (reverse DNS); not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@dataclass(eq=False)
class EchoBackend:
    """One running echo backend (see the module docstring for what it answers)."""

    name: str
    address: str
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: _EchoServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @classmethod
    def start(
        cls, name: str, address: str, port: int = 0, *, network: TestNetwork | None = None
    ) -> EchoBackend:
        """Bind ``address:port`` (``0`` picks a free port) and serve in a daemon thread.

        With ``network`` the listening socket is created inside that network namespace
        (``address`` must be one of its addresses); the serving thread runs in this process.
        """
        backend = cls(name=name, address=address, port=port)

        def bind() -> _EchoServer:
            return _EchoServer((address, port), backend)

        server = bind() if network is None else network.in_netns(bind)
        backend.port = server.server_address[1]
        backend._server = server
        backend._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"echo-backend-{name}",
            daemon=True,
        )
        backend._thread.start()
        return backend

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        """Stop serving, close the listening socket and drop open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)


def start_backends(
    names: Sequence[str],
    port: int = 0,
    *,
    routable: bool = False,
    network: TestNetwork | None = None,
) -> list[EchoBackend]:
    """Start one backend per name, each on its own fresh address, all on the same port.

    ``routable=False`` (the default): the addresses are ``127.0.0.N``. ``routable=True``: they
    come from ``network.add_address()`` inside the test network namespace (``network`` is
    required), which kube-apiserver accepts in EndpointSlices, so :func:`register_service`
    lists the group as one EndpointSlice with one endpoint per backend.

    With ``port=0`` the first backend picks a free port and the others bind the same number on
    their own addresses; if one of those is taken the whole group retries with a new port.
    """
    if not names:
        return []
    if len(set(names)) != len(names):
        raise ValueError(f"backend names must be distinct: {list(names)}")
    if routable and network is None:
        raise ValueError(
            "routable backends listen inside the test network: pass network= "
            "(the test_network fixture; echo_backends(..., routable=True) does it)"
        )
    if network is not None and not routable:
        raise ValueError("network= is only used with routable=True")

    if network is not None:
        addresses = [network.add_address() for _ in names]
    else:
        addresses = [next_loopback_address() for _ in names]
    last_error: OSError | None = None
    for _attempt in range(20):
        started: list[EchoBackend] = []
        try:
            first = EchoBackend.start(names[0], addresses[0], port, network=network)
            started.append(first)
            for name, addr in zip(names[1:], addresses[1:], strict=True):
                started.append(EchoBackend.start(name, addr, first.port, network=network))
            return started
        except OSError as exc:
            stop_backends(started)
            if exc.errno != errno.EADDRINUSE or port != 0:
                raise
            last_error = exc
        except BaseException:
            stop_backends(started)
            raise
    raise RuntimeError(f"could not find one free port for backends {list(names)}: {last_error}")


def stop_backends(backends: Iterable[EchoBackend]) -> None:
    for backend in backends:
        backend.stop()


# --------------------------------------------------------------------------- a small HTTP client


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def fetch(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> HttpAnswer:
    """One HTTP request with urllib; non-2xx statuses are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with _opener.open(request, timeout=timeout) as response:
            return HttpAnswer(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        with error:
            return HttpAnswer(
                error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()
            )


# --------------------------------------------------------------------------- Kubernetes objects


def endpoint_ip_problem(address: str) -> str | None:
    """Why the API server would refuse ``address`` in an EndpointSlice, or ``None``.

    The same rules as kube-apiserver's ``ValidateEndpointIP``.
    """
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback (127.0.0.0/8, ::1)"
    if ip.is_link_local:
        return "link-local (169.254.0.0/16, fe80::/10)"
    if ip.version == 4 and ip in ipaddress.ip_network("224.0.0.0/24"):
        return "link-local multicast (224.0.0.0/24)"
    return None


def service_manifests(
    namespace: str,
    service_name: str,
    backends: Sequence[EchoBackend],
    port: int = 80,
    target_port: int | str | None = None,
    app_protocol: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The selector-less Service and the EndpointSlices that put ``backends`` behind it.

    One group from :func:`start_backends` shares one port: one EndpointSlice with an endpoint
    per backend, and the Service's ``targetPort`` is that number. Backends with different ports
    get one EndpointSlice per port (as the EndpointSlice controller does for pods whose named
    port resolves to different numbers) and ``targetPort`` is the port name ``http``.

    Raises ``ValueError`` for addresses kube-apiserver refuses (loopback, link-local,
    unspecified): such backends never reach the API.
    """
    if not backends:
        raise ValueError("a Service needs at least one backend")
    refused = {
        b.address: problem
        for b in backends
        if (problem := endpoint_ip_problem(b.address)) is not None
    }
    if refused:
        raise ValueError(
            "kube-apiserver refuses these EndpointSlice addresses: "
            + ", ".join(f"{a} ({p})" for a, p in sorted(refused.items()))
            + "; start the backends inside the test network: "
            "echo_backends(..., routable=True) or start_backends(..., routable=True, network=...)"
        )
    by_port: dict[int, list[EchoBackend]] = {}
    for backend in backends:
        by_port.setdefault(backend.port, []).append(backend)
    if target_port is None:
        target_port = next(iter(by_port)) if len(by_port) == 1 else "http"
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY}

    service_port: dict[str, Any] = {
        "name": "http",
        "protocol": "TCP",
        "port": port,
        "targetPort": target_port,
    }
    if app_protocol is not None:
        service_port["appProtocol"] = app_protocol
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name, "namespace": namespace, "labels": labels},
        "spec": {"type": "ClusterIP", "ports": [service_port]},
    }

    slices: list[dict[str, Any]] = []
    for backend_port, group in sorted(by_port.items()):
        slice_port: dict[str, Any] = {"name": "http", "protocol": "TCP", "port": backend_port}
        if app_protocol is not None:
            slice_port["appProtocol"] = app_protocol
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{service_name}-{backend_port}",
                    "namespace": namespace,
                    "labels": {
                        "kubernetes.io/service-name": service_name,
                        "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                        **labels,
                    },
                },
                "addressType": "IPv6" if ":" in group[0].address else "IPv4",
                "endpoints": [
                    {
                        "addresses": [b.address],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "hostname": _dns_label(b.name),
                    }
                    for b in group
                ],
                "ports": [slice_port],
            }
        )
    return service, slices


def register_service(
    api_client: Any,
    namespace: str,
    service_name: str,
    backends: Sequence[EchoBackend],
    port: int = 80,
    target_port: int | str | None = None,
    app_protocol: str | None = None,
) -> None:
    """Create a Service and the EndpointSlice(s) listing ``backends`` in the test cluster.

    The backends must have addresses the API server accepts in an EndpointSlice (not loopback:
    start them inside the test network with ``echo_backends(..., routable=True)``; loopback
    backends raise ``ValueError`` before anything is created). The Service has no selector, so no
    EndpointSlice controller (if one runs) touches the hand-written slices, which carry
    ``kubernetes.io/service-name`` like controller-made ones and are owned by the Service.
    """
    from kubernetes import client  # lazy: backends without a cluster need no Kubernetes client

    service, slices = service_manifests(
        namespace, service_name, backends, port, target_port, app_protocol
    )
    # The typed client APIs expect model objects; plain dicts are serialized the same way.
    core: Any = client.CoreV1Api(api_client)
    discovery: Any = client.DiscoveryV1Api(api_client)
    created = core.create_namespaced_service(namespace, service)
    owner = {
        "apiVersion": "v1",
        "kind": "Service",
        "name": service_name,
        "uid": created.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    for endpoint_slice in slices:
        endpoint_slice["metadata"]["ownerReferences"] = [owner]
        discovery.create_namespaced_endpoint_slice(namespace, endpoint_slice)


def _dns_label(name: str) -> str:
    label = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return label[:63].rstrip("-") or "backend"
