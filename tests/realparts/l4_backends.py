"""Real L4 backends for the controller's TLSRoute / TCPRoute / UDPRoute tests, and their
Service + EndpointSlice manifests.

- :class:`L4Backend` ``tcp``: every connection is answered line by line: a line ``x`` gets
  ``<name>:x``; ``tls``: the same behind a TLS handshake with the backend's own self-signed
  certificate (``.certificate`` holds its DER, so a client can tell the backend's certificate
  from the Gateway's: TLS passthrough); ``udp``: every datagram ``x`` is answered
  ``<name>:x``.
- Each backend binds its own address inside the session's test network (kube-apiserver
  refuses loopback addresses in EndpointSlices), all of a group on one port.
- :func:`l4_service`: the selector-less Service (one port, protocol TCP or UDP) and the
  EndpointSlice listing a group, ready for server-side apply.
- Clients: :func:`tcp_exchange`, :func:`tls_exchange` (with SNI; returns the peer certificate)
  and :func:`udp_exchange`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tests.realparts.certs import self_signed

if TYPE_CHECKING:
    from tests.realparts.netns import TestNetwork

Kind = Literal["tcp", "tls", "udp"]


@dataclass(eq=False)
class L4Backend:
    name: str
    kind: Kind
    address: str
    port: int
    certificate: bytes = b""  # DER of the backend's own certificate (tls)
    connections: int = 0
    received: list[bytes] = field(default_factory=list)
    _sock: socket.socket | None = field(default=None, repr=False)
    _context: ssl.SSLContext | None = field(default=None, repr=False)
    _stopped: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def start(
        cls, name: str, kind: Kind, network: TestNetwork, port: int = 0, address: str = ""
    ) -> L4Backend:
        address = address or network.add_address()
        backend = cls(name, kind, address, port)
        if kind == "tls":
            cert, key = self_signed([f"{name}.backend.test"])
            backend.certificate = ssl.PEM_cert_to_DER_cert(cert.decode())
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "c.pem").write_bytes(cert)
                (Path(tmp) / "k.pem").write_bytes(key)
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(str(Path(tmp) / "c.pem"), str(Path(tmp) / "k.pem"))
            backend._context = context

        def bind() -> socket.socket:
            if kind == "udp":
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((address, port))
                return sock
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(256)
            return sock

        backend._sock = network.in_netns(bind)
        backend.port = backend._sock.getsockname()[1]
        target = backend._serve_udp if kind == "udp" else backend._accept
        threading.Thread(target=target, name=f"l4-{name}", daemon=True).start()
        return backend

    def _accept(self) -> None:
        assert self._sock is not None
        self._sock.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        stream: socket.socket = conn
        try:
            conn.settimeout(10)
            if self._context is not None:
                stream = self._context.wrap_socket(conn, server_side=True)
            with stream, stream.makefile("rwb") as file:
                for line in file:
                    with self._lock:
                        self.received.append(line)
                    file.write(self.name.encode() + b":" + line)
                    file.flush()
        except (OSError, ssl.SSLError):
            pass

    def _serve_udp(self) -> None:
        assert self._sock is not None
        self._sock.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                data, peer = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.received.append(data)
            with contextlib.suppress(OSError):
                self._sock.sendto(self.name.encode() + b":" + data, peer)

    def stop(self) -> None:
        self._stopped.set()
        if self._sock is not None:
            self._sock.close()


def start_group(names: Sequence[str], kind: Kind, network: TestNetwork) -> list[L4Backend]:
    """One backend per name, each on its own address, all on the first one's port."""
    first = L4Backend.start(names[0], kind, network)
    return [first] + [L4Backend.start(n, kind, network, port=first.port) for n in names[1:]]


def l4_service(
    namespace: str, name: str, backends: Sequence[L4Backend], port: int
) -> list[dict[str, Any]]:
    """A selector-less Service with one port (UDP for UDP backends, else TCP) and the
    EndpointSlice listing ``backends`` (all on one port)."""
    protocol = "UDP" if backends[0].kind == "udp" else "TCP"
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "type": "ClusterIP",
                "ports": [
                    {
                        "name": "l4",
                        "protocol": protocol,
                        "port": port,
                        "targetPort": backends[0].port,
                    }
                ],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-1",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [b.address], "conditions": {"ready": True}} for b in backends
            ],
            "ports": [{"name": "l4", "protocol": protocol, "port": backends[0].port}],
        },
    ]


# --------------------------------------------------------------------------- clients


def tcp_exchange(port: int, line: bytes, timeout: float = 5.0) -> bytes:
    """Send one line to ``127.0.0.1:port``, return the answer line (b"" if the connection was
    closed or reset without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(line + b"\n")
            with sock.makefile("rb") as file:
                return file.readline().rstrip(b"\n")
        except (ConnectionResetError, BrokenPipeError):
            return b""


def tls_exchange(port: int, sni: str, line: bytes, timeout: float = 5.0) -> tuple[bytes, bytes]:
    """TLS to ``127.0.0.1:port`` with SNI ``sni`` (certificate not verified); one line; the
    answer and the DER certificate the server presented. Raises on a refused handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with raw, context.wrap_socket(raw, server_hostname=sni) as sock:
        certificate = sock.getpeercert(binary_form=True) or b""
        sock.sendall(line + b"\n")
        with sock.makefile("rb") as file:
            return file.readline().rstrip(b"\n"), certificate


def udp_exchange(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """One datagram to ``127.0.0.1:port``; the answer (raises TimeoutError if none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, ("127.0.0.1", port))
        answer, _ = sock.recvfrom(65535)
        return answer
