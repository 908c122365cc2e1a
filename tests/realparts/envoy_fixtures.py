"""Pytest plugin: the real Envoy binary, real Envoy processes and real echo backends.

Fixtures:

- ``envoy_binary`` (session): ``Path`` of the Envoy binary found by
  ``controller.envoy_binary``; a missing binary fails the test, it never skips it.
- ``envoy_binary_version`` (session): its version, e.g. ``"1.40.0"``.
- ``test_network`` (session): the :class:`~tests.realparts.netns.TestNetwork` (a network
  namespace of this run, joined to the root namespace by a veth pair on a free
  ``198.18.X.0/24``), created on first use and deleted at session end. Creating it needs root
  and iproute2; if that fails, the test fails (never skips) with the command and its stderr.
- ``echo_backends`` (function): ``echo_backends(["a", "b"]) -> list[EchoBackend]`` on
  ``127.0.0.N``; ``echo_backends([...], routable=True)`` starts them inside ``test_network``
  on ``198.18.X.N`` (addresses kube-apiserver accepts in EndpointSlices, for
  ``register_service``). Stopped at teardown.
- ``envoy_process`` (function): ``envoy_process(bootstrap, name="envoy") -> EnvoyProcess``,
  started and ready; stopped at teardown.

Tests that run Envoy are marked ``@pytest.mark.envoy``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from controller.envoy_binary import EnvoyNotFound, EnvoyVersionError, envoy_version, locate_envoy
from tests.realparts import facts
from tests.realparts.backends import EchoBackend, start_backends
from tests.realparts.envoy import EnvoyProcess
from tests.realparts.netns import TestNetwork, TestNetworkError

EchoBackendsFactory = Callable[..., list[EchoBackend]]
EnvoyProcessFactory = Callable[..., EnvoyProcess]

_binary_info: dict[str, tuple[Path, str]] = {}


def _envoy_binary_info() -> tuple[Path, str]:
    if "envoy" not in _binary_info:
        try:
            location = locate_envoy()
            version = envoy_version(location.path)
        except (EnvoyNotFound, EnvoyVersionError) as exc:
            pytest.fail(f"real Envoy binary unavailable: {exc}", pytrace=False)
        _binary_info["envoy"] = (location.path, version)
        facts.record(f"envoy {version} from {location.source}: {location.path}")
    return _binary_info["envoy"]


@pytest.fixture(scope="session")
def envoy_binary() -> Path:
    return _envoy_binary_info()[0]


@pytest.fixture(scope="session")
def envoy_binary_version(envoy_binary: Path) -> str:
    return _envoy_binary_info()[1]


@pytest.fixture(scope="session")
def test_network() -> Iterator[TestNetwork]:
    """The session's private network namespace (see the module docstring)."""
    try:
        network = TestNetwork.create()
    except TestNetworkError as exc:
        reason = f"test network unavailable: {exc}"
        facts.record(reason)
        network = None
    if network is None:
        # Outside the except block, so the report shows the reason alone, not a chained traceback.
        pytest.fail(reason, pytrace=False)
    facts.record(
        f"test network: {network.describe()} (veth {network.host_interface} "
        f"{network.host_address} <-> {network.peer_interface} {network.peer_address})"
    )
    try:
        yield network
    finally:
        network.close()


@pytest.fixture
def echo_backends(request: pytest.FixtureRequest) -> Iterator[EchoBackendsFactory]:
    started: list[EchoBackend] = []

    def factory(
        names: Sequence[str], port: int = 0, *, routable: bool = False
    ) -> list[EchoBackend]:
        network: TestNetwork | None = None
        if routable:
            network = request.getfixturevalue("test_network")
        backends = start_backends(names, port=port, routable=routable, network=network)
        started.extend(backends)
        return backends

    yield factory
    for backend in reversed(started):
        backend.stop()


@pytest.fixture
def envoy_process(
    envoy_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EnvoyProcessFactory]:
    processes: list[EnvoyProcess] = []
    workdir = tmp_path_factory.mktemp("envoy")

    def factory(
        bootstrap: Mapping[str, Any],
        name: str | None = None,
        *,
        timeout: float = 30.0,
        **options: Any,
    ) -> EnvoyProcess:
        name = name or f"envoy-{len(processes) + 1}"
        if any(p.name == name for p in processes):
            raise ValueError(f"an Envoy named {name!r} already runs in this test")
        proc = EnvoyProcess(envoy_binary, bootstrap, workdir=workdir, name=name, **options)
        processes.append(proc)
        return proc.start(timeout=timeout)

    yield factory
    for proc in reversed(processes):
        proc.stop()
