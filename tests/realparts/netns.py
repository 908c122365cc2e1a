"""A private test network: a network namespace of our own, wired to this host by a veth pair.

kube-apiserver refuses loopback, link-local and unspecified addresses in EndpointSlices, and test
traffic must stay inside the sandbox, so backends that go into an EndpointSlice listen inside a
network namespace that the test run creates itself:

- the namespace is ``kgw-<pid>-<n>`` (``<pid>`` is the pytest process, so a crashed run's
  namespaces are recognised and deleted by the next run);
- a veth pair joins it to the root namespace: ``kgw<pid>h<n>`` stays in the root namespace with
  ``198.18.X.1/24``, its peer ``kgw<pid>p<n>`` lives in the namespace with ``198.18.X.2/24``
  (198.18.0.0/15 is the RFC 2544 benchmarking range, never routed on the Internet);
- ``X`` is a ``198.18.X.0/24`` that no route of this host overlaps, chosen under an ``fcntl``
  lock in the temp directory, so concurrent pytest sessions on this machine never share one;
- :meth:`TestNetwork.add_address` hands out ``198.18.X.10``, ``.11``, ... as ``/32`` addresses of
  the namespace side; the root namespace (Envoy, the test client) reaches them through the
  connected route of the host side.

Sockets stay in the namespace they were created in, so :meth:`TestNetwork.in_netns` runs a
callable in a short-lived helper thread switched into the namespace (``setns(2)`` through
ctypes: network namespaces are per thread on Linux) and the servers keep running in this
process. :meth:`TestNetwork.close` deletes the veth pair and the namespace.

Creating the network needs root (``CAP_NET_ADMIN``) and iproute2; any failure raises
:class:`TestNetworkError` with the exact command and its stderr.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import ipaddress
import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import TypeVar

T = TypeVar("T")

SUPERNET = ipaddress.IPv4Network("198.18.0.0/16")
HOST_INDEX = 1  # 198.18.X.1: the root-namespace end of the veth pair
PEER_INDEX = 2  # 198.18.X.2: the namespace end
FIRST_ADDRESS_INDEX = 10  # add_address() hands out 198.18.X.10 and upward
LAST_ADDRESS_INDEX = 254
NETNS_DIR = Path("/run/netns")
LOCK_PATH = Path(tempfile.gettempdir()) / "kubectl-gw-test-network.lock"
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT = 20.0

_NAME_RE = re.compile(r"^kgw-(?P<pid>\d+)-(?P<n>\d+)$")
_ROUTE_TYPES = frozenset(
    {
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "throw",
        "unreachable",
        "prohibit",
        "blackhole",
        "nat",
        "anycast",
    }
)
_name_counter = itertools.count()
_open_networks: set[TestNetwork] = set()
_sigterm_chained = False


class TestNetworkError(RuntimeError):
    """The test network could not be created, used or removed (the message says which command)."""

    __test__ = False  # not a pytest test class


# --------------------------------------------------------------------------- pure helpers


def routes_in_use(route_output: str) -> list[ipaddress.IPv4Network]:
    """The destinations of ``ip -4 -o route show table all`` (without the default route)."""
    found: list[ipaddress.IPv4Network] = []
    for line in route_output.splitlines():
        tokens = line.split()
        if tokens and tokens[0] in _ROUTE_TYPES:
            tokens = tokens[1:]
        if not tokens or tokens[0] == "default":
            continue
        try:
            found.append(ipaddress.IPv4Network(tokens[0], strict=False))
        except ValueError:
            continue  # not an IPv4 destination (never expected with -4)
    return found


def subnet_for(index: int) -> ipaddress.IPv4Network:
    """``198.18.<index>.0/24``."""
    if not 0 <= index <= 255:
        raise ValueError(f"subnet index must be 0..255, not {index}")
    return ipaddress.IPv4Network(f"{SUPERNET.network_address + index * 256}/24")


def choose_subnet_index(used: Iterable[ipaddress.IPv4Network]) -> int | None:
    """The lowest ``X`` whose ``198.18.X.0/24`` overlaps none of ``used`` (``None``: all taken)."""
    relevant = [net for net in used if net.overlaps(SUPERNET)]
    for index in range(256):
        candidate = subnet_for(index)
        if not any(candidate.overlaps(net) for net in relevant):
            return index
    return None


def namespace_owner(name: str) -> int | None:
    """The pid in a ``kgw-<pid>-<n>`` namespace name, or ``None`` for other names."""
    match = _NAME_RE.match(name)
    return int(match["pid"]) if match else None


def namespace_names(netns_list_output: str) -> list[str]:
    """Names from ``ip netns list`` (lines like ``kgw-12-0 (id: 3)``)."""
    return [line.split()[0] for line in netns_list_output.splitlines() if line.strip()]


def stale_namespaces(names: Iterable[str], alive: Callable[[int], bool]) -> list[str]:
    """The ``kgw-<pid>-<n>`` names whose pid is not alive (never this process's own)."""
    stale: list[str] = []
    for name in names:
        pid = namespace_owner(name)
        if pid is not None and pid != os.getpid() and not alive(pid):
            stale.append(name)
    return sorted(stale)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


# --------------------------------------------------------------------------- system access


def ip_binary() -> str:
    found = shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise TestNetworkError("iproute2 is not installed: no `ip` command on PATH or in /sbin")
    return found


def run_ip(*args: str) -> str:
    """Run ``ip <args>``; its stdout, or :class:`TestNetworkError` with command and stderr."""
    command = [ip_binary(), *args]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TestNetworkError(f"`{shlex.join(command)}` could not run: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip() or "no output"
        hint = " (creating a test network needs root / CAP_NET_ADMIN)" if os.geteuid() else ""
        raise TestNetworkError(
            f"`{shlex.join(command)}` failed with exit code {done.returncode}: {detail}{hint}"
        )
    return done.stdout


@contextlib.contextmanager
def allocation_lock(path: Path = LOCK_PATH) -> Iterator[None]:
    """An exclusive ``flock`` shared by every pytest session on this machine."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise TestNetworkError(f"cannot open the test network lock file {path}: {exc}") from None
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # any user's session must be able to take the lock
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns(CLONE_NEWNET): {os.strerror(code)}")


def run_in_namespace(netns_path: Path, fn: Callable[[], T], *, thread_name: str = "netns") -> T:
    """Call ``fn`` in a helper thread switched into the network namespace at ``netns_path``."""
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            with Path("/proc/thread-self/ns/net").open("rb") as saved:
                with netns_path.open("rb") as target:
                    _setns(target.fileno())
                try:
                    result.append(fn())
                finally:
                    _setns(saved.fileno())
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    helper = threading.Thread(target=body, name=thread_name, daemon=True)
    helper.start()
    helper.join()
    if failure:
        raise failure[0]
    return result[0]


# --------------------------------------------------------------------------- the network


class TestNetwork:
    """A network namespace with a veth pair to the root namespace (see the module docstring)."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        self.subnet = subnet_for(index)
        owner, number = name.split("-")[1:]
        self.host_interface = f"kgw{owner}h{number}"
        self.peer_interface = f"kgw{owner}p{number}"
        self.host_address = str(self.subnet.network_address + HOST_INDEX)
        self.peer_address = str(self.subnet.network_address + PEER_INDEX)
        self.addresses: list[str] = []
        self._next_address = FIRST_ADDRESS_INDEX
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"TestNetwork({self.describe()})"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.name

    def describe(self) -> str:
        return f"netns {self.name} with {self.subnet}"

    # ----------------------------------------------------------------------- lifecycle

    @classmethod
    def create(cls) -> TestNetwork:
        """Create a fresh namespace + veth pair on a free ``198.18.X.0/24`` and check it works.

        Stale ``kgw-<pid>-*`` namespaces of dead processes are deleted first.
        """
        ip_binary()  # a clear error before anything else when iproute2 is missing
        with allocation_lock():
            existing = namespace_names(run_ip("netns", "list"))
            for stale in stale_namespaces(existing, pid_alive):
                remove_namespace(stale)
            name = next(
                n for n in (f"kgw-{os.getpid()}-{i}" for i in _name_counter) if n not in existing
            )
            index = choose_subnet_index(
                routes_in_use(run_ip("-4", "-o", "route", "show", "table", "all"))
            )
            if index is None:
                raise TestNetworkError(f"every 198.18.X.0/24 in {SUPERNET} is already routed here")
            network = cls(name, index)
            try:
                network._build()
            except BaseException:
                with contextlib.suppress(TestNetworkError):
                    network.close()
                raise
        _open_networks.add(network)
        atexit.register(network._close_at_exit)
        _chain_sigterm_cleanup()
        try:
            network._self_check()
        except BaseException:
            with contextlib.suppress(TestNetworkError):
                network.close()
            raise
        return network

    def _build(self) -> None:
        ns, host, peer = self.name, self.host_interface, self.peer_interface
        run_ip("netns", "add", ns)
        run_ip("link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns)
        run_ip("addr", "add", f"{self.host_address}/24", "dev", host)
        run_ip("link", "set", host, "up")
        run_ip("-n", ns, "addr", "add", f"{self.peer_address}/24", "dev", peer)
        run_ip("-n", ns, "link", "set", peer, "up")
        run_ip("-n", ns, "link", "set", "lo", "up")

    def _self_check(self) -> None:
        """A TCP connection from the root namespace to a listener inside the namespace."""
        listener = self.listen(self.peer_address, 0)
        try:
            port = listener.getsockname()[1]
            try:
                with socket.create_connection((self.peer_address, port), timeout=5):
                    pass
            except OSError as exc:
                raise TestNetworkError(
                    f"{self.describe()}: no TCP connection from the root namespace to "
                    f"{self.peer_address}:{port} inside it: {exc}"
                ) from None
        finally:
            listener.close()

    def close(self) -> None:
        """Delete the veth pair, then the namespace (idempotent).

        The host end goes first: deleting it removes both ends and the route at once, even if
        a socket created in the namespace is still open (which keeps the namespace alive in
        the kernel after its name is gone), and the kernel's own cleanup of a deleted
        namespace is asynchronous.
        """
        if self._closed:
            return
        self._closed = True
        _open_networks.discard(self)
        with contextlib.suppress(Exception):
            atexit.unregister(self._close_at_exit)
        problems: list[str] = []
        try:
            if interface_exists(self.host_interface):
                run_ip("link", "del", self.host_interface)
        except TestNetworkError as exc:
            if interface_exists(self.host_interface):
                problems.append(str(exc))
        try:
            remove_namespace(self.name)
        except TestNetworkError as exc:
            problems.append(str(exc))
        if problems:
            raise TestNetworkError("; ".join(problems))

    def _close_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> TestNetwork:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- use

    def add_address(self) -> str:
        """Add the next ``198.18.X.N/32`` (N from 10) to the namespace side and return it."""
        with self._lock:
            if self._closed:
                raise TestNetworkError(f"{self.describe()} is closed")
            index = self._next_address
            if index > LAST_ADDRESS_INDEX:
                raise TestNetworkError(
                    f"{self.describe()}: all {LAST_ADDRESS_INDEX - FIRST_ADDRESS_INDEX + 1} "
                    "addresses are handed out"
                )
            address = str(self.subnet.network_address + index)
            run_ip("-n", self.name, "addr", "add", f"{address}/32", "dev", self.peer_interface)
            self._next_address = index + 1
            self.addresses.append(address)
            return address

    def in_netns(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` with the network namespace switched (for a helper thread) to this one.

        Sockets created by ``fn`` belong to this namespace for their whole life; use it to
        create servers, then serve from any thread.
        """
        if self._closed:
            raise TestNetworkError(f"{self.describe()} is closed")
        return run_in_namespace(self.netns_path, fn, thread_name=f"netns-{self.name}")

    def listen(self, address: str, port: int = 0, backlog: int = 128) -> socket.socket:
        """A TCP socket bound to ``address:port`` inside the namespace, already listening."""

        def bind() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
                sock.listen(backlog)
            except BaseException:
                sock.close()
                raise
            return sock

        return self.in_netns(bind)


def _chain_sigterm_cleanup() -> None:
    """On SIGTERM (``timeout``, a CI cancel) remove open networks, then act as before.

    atexit does not run when SIGTERM kills the process; a SIGKILLed run's namespaces are
    removed by the next run's stale check instead.
    """
    global _sigterm_chained
    if _sigterm_chained or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        for network in list(_open_networks):
            network._close_at_exit()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    _sigterm_chained = True


def interface_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def remove_namespace(name: str) -> None:
    """``ip netns del <name>``; a namespace that is already gone is fine."""
    try:
        run_ip("netns", "del", name)
    except TestNetworkError:
        if (NETNS_DIR / name).exists():
            raise


def own_namespaces() -> list[str]:
    """The ``kgw-<this pid>-*`` namespaces that exist now (for leak checks)."""
    names = namespace_names(run_ip("netns", "list"))
    return [n for n in names if namespace_owner(n) == os.getpid()]
