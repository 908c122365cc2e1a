"""The real parts work together: echo backends, the real Envoy in front of them, the
backends registered as Service + EndpointSlice in the real test control plane, and the private
test network (a network namespace of this run) those registered backends listen in."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import subprocess
import threading
import time
from collections import Counter
from typing import Any

import pytest

from tests.realparts import envoy as realparts_envoy
from tests.realparts import facts, netns
from tests.realparts.backends import (
    EchoBackend,
    fetch,
    register_service,
    service_manifests,
    start_backends,
)
from tests.realparts.envoy import EnvoyStartError, static_http_proxy_bootstrap
from tests.realparts.envoy_fixtures import EchoBackendsFactory, EnvoyProcessFactory
from tests.realparts.netns import TestNetwork, TestNetworkError


@pytest.mark.envoy
def test_real_envoy_routes_to_echo_backends(
    echo_backends: EchoBackendsFactory,
    envoy_process: EnvoyProcessFactory,
    envoy_binary_version: str,
) -> None:
    backends = echo_backends(["echo-a", "echo-b"])
    assert len({b.address for b in backends}) == 2
    assert len({b.port for b in backends}) == 1

    envoy = envoy_process(
        static_http_proxy_bootstrap(0, [(b.address, b.port) for b in backends]), name="static"
    )
    assert envoy.version() == envoy_binary_version
    host, port = envoy.listener_address("http")
    base = f"http://{host}:{port}"

    started = time.perf_counter()
    answer = fetch(f"{base}/some/path?x=1&x=2&empty=", headers={"Host": "echo.example.test"})
    first_latency = time.perf_counter() - started
    assert answer.status == 200, answer.body
    seen = answer.json()
    names = {b.name for b in backends}
    assert seen["backend"] in names
    assert answer.headers["x-backend"] == seen["backend"]
    assert seen["method"] == "GET"
    assert seen["path"] == "/some/path"
    assert seen["query"] == {"x": ["1", "2"], "empty": [""]}
    assert seen["host"] == "echo.example.test"
    assert "x-request-id" in seen["headers"], "the request did not pass through Envoy"
    assert answer.headers.get("server") == "envoy"
    facts.record(
        f"request answered by backend {seen['backend']} through the real Envoy "
        f"{envoy_binary_version} (first request {first_latency * 1000:.1f} ms, "
        f"Envoy ready {envoy.ready_seconds:.2f} s after start)"
    )

    by_backend: Counter[str] = Counter()
    latencies: list[float] = []
    for i in range(20):
        started = time.perf_counter()
        answer = fetch(f"{base}/round/{i}")
        latencies.append(time.perf_counter() - started)
        assert answer.status == 200
        by_backend[answer.json()["backend"]] += 1
    assert set(by_backend) == names, f"round robin reached only {dict(by_backend)}"
    for backend in backends:
        assert any(r["path"].startswith("/round/") for r in backend.requests)

    posted = fetch(f"{base}/upload", method="POST", body=b"x" * 4096)
    assert posted.status == 200
    assert posted.json()["method"] == "POST"
    assert posted.json()["body_bytes"] == 4096

    failed = fetch(f"{base}/status/503")
    assert failed.status == 503
    assert failed.json()["backend"] in names
    assert failed.headers["x-backend"] in names

    latencies.sort()
    facts.record(
        f"20 requests through Envoy {envoy_binary_version}: "
        f"median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms, split {dict(sorted(by_backend.items()))}"
    )


def _read_back_endpoints(kube_api: Any, namespace: str, service: str) -> list[tuple[str, int]]:
    """(address, port) of every ready endpoint of ``service``, read through the API."""
    from kubernetes import client

    discovery: Any = client.DiscoveryV1Api(kube_api)
    slices = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    ).items
    found: list[tuple[str, int]] = []
    for endpoint_slice in slices:
        [slice_port] = endpoint_slice.ports
        found.extend(
            (address, slice_port.port)
            for endpoint in endpoint_slice.endpoints
            if endpoint.conditions.ready
            for address in endpoint.addresses
        )
    return found


def _in_network(network: TestNetwork, address: str) -> bool:
    return ipaddress.ip_address(address) in network.subnet


@pytest.mark.cluster
def test_backends_registered_as_service_and_endpointslice(
    kube_api: Any,
    namespace: str,
    echo_backends: EchoBackendsFactory,
    test_network: TestNetwork,
) -> None:
    from kubernetes import client

    backends = echo_backends(["svc-echo-a", "svc-echo-b", "svc-echo-c"], routable=True)
    assert all(_in_network(test_network, b.address) for b in backends), backends
    assert len({b.address for b in backends}) == 3
    [shared_port] = {b.port for b in backends}
    register_service(kube_api, namespace, "echo", backends, port=8080, app_protocol="http")

    core: Any = client.CoreV1Api(kube_api)
    discovery: Any = client.DiscoveryV1Api(kube_api)
    service = core.read_namespaced_service("echo", namespace)
    assert service.spec.selector is None
    assert service.spec.cluster_ip, "kube-apiserver allocated no ClusterIP"
    [service_port] = service.spec.ports
    assert (service_port.name, service_port.port, service_port.protocol) == ("http", 8080, "TCP")
    assert service_port.target_port == shared_port  # like pods: one port number for all
    assert service_port.app_protocol == "http"

    [endpoint_slice] = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=echo"
    ).items
    assert endpoint_slice.address_type == "IPv4"
    assert endpoint_slice.metadata.owner_references[0].uid == service.metadata.uid
    [slice_port] = endpoint_slice.ports
    assert (slice_port.name, slice_port.port, slice_port.protocol, slice_port.app_protocol) == (
        "http",
        shared_port,
        "TCP",
        "http",
    )
    assert len(endpoint_slice.endpoints) == len(backends)
    assert all(e.conditions.ready for e in endpoint_slice.endpoints)

    endpoints = _read_back_endpoints(kube_api, namespace, "echo")
    assert sorted(endpoints) == sorted((b.address, b.port) for b in backends)

    by_endpoint = {(b.address, b.port): b for b in backends}
    for address, port in endpoints:
        answer = fetch(f"http://{address}:{port}/from-endpointslice?ns={namespace}")
        assert answer.status == 200
        assert answer.json()["backend"] == by_endpoint[(address, port)].name
        assert answer.json()["query"] == {"ns": [namespace]}
    facts.record(
        f"Service {namespace}/echo -> 1 EndpointSlice "
        f"{sorted(f'{a}:{p}' for a, p in endpoints)} in {test_network.describe()}: "
        "each endpoint answered by its echo backend"
    )


@pytest.mark.cluster
@pytest.mark.envoy
def test_real_envoy_serves_endpoints_read_from_the_cluster(
    kube_api: Any,
    namespace: str,
    echo_backends: EchoBackendsFactory,
    envoy_process: EnvoyProcessFactory,
    test_network: TestNetwork,
) -> None:
    backends = echo_backends(["eps-a", "eps-b"], routable=True)
    register_service(kube_api, namespace, "eps", backends)
    endpoints = _read_back_endpoints(kube_api, namespace, "eps")
    assert sorted(endpoints) == sorted((b.address, b.port) for b in backends)
    assert all(_in_network(test_network, address) for address, _ in endpoints), endpoints

    envoy = envoy_process(static_http_proxy_bootstrap(0, endpoints), name="from-eps")
    host, port = envoy.listener_address()
    assert ipaddress.ip_address(host).is_loopback  # Envoy stays in the root namespace
    reached: Counter[str] = Counter()
    for i in range(6):
        answer = fetch(f"http://{host}:{port}/x/{i}", headers={"Host": "eps.example.test"})
        assert answer.status == 200, answer.body
        assert answer.headers.get("server") == "envoy"
        seen = answer.json()
        assert seen["host"] == "eps.example.test"
        assert "x-request-id" in seen["headers"], "the request did not pass through Envoy"
        reached[seen["backend"]] += 1
    assert set(reached) == {b.name for b in backends}, f"Envoy reached only {dict(reached)}"
    counters = envoy.stats(r"cluster\.backends\.upstream_rq_total")
    assert counters["cluster.backends.upstream_rq_total"] == 6
    facts.record(
        f"Envoy in the root namespace -> EndpointSlice {namespace}/eps "
        f"{sorted(f'{a}:{p}' for a, p in endpoints)}: split {dict(sorted(reached.items()))}"
    )


@pytest.mark.cluster
def test_register_service_refuses_loopback_backends(
    kube_api: Any, namespace: str, echo_backends: EchoBackendsFactory
) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    group = echo_backends(["loop-a", "loop-b"])
    assert all(ipaddress.ip_address(b.address).is_loopback for b in group)
    with pytest.raises(ValueError, match=r"refuses.*127\.0\.\d+\.\d+ \(loopback.*routable=True"):
        register_service(kube_api, namespace, "loop", group)
    core: Any = client.CoreV1Api(kube_api)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_service("loop", namespace)
    assert missing.value.status == 404, "register_service created the Service anyway"

    # The premise: kube-apiserver itself refuses a loopback endpoint address.
    _service, [loopback_slice] = service_manifests(
        namespace, "loop", [EchoBackend(name="x", address="198.18.255.10", port=group[0].port)]
    )
    loopback_slice["endpoints"][0]["addresses"] = [group[0].address]
    discovery: Any = client.DiscoveryV1Api(kube_api)
    with pytest.raises(ApiException) as refused:
        discovery.create_namespaced_endpoint_slice(namespace, loopback_slice)
    assert refused.value.status == 422
    assert "loopback" in str(refused.value.body)


def test_backends_in_the_test_network_are_inside_its_namespace(
    echo_backends: EchoBackendsFactory, test_network: TestNetwork
) -> None:
    backends = echo_backends(["ns-a", "ns-b"], port=0, routable=True)
    assert [b.address for b in backends] == test_network.addresses[-2:]
    assert len({b.port for b in backends}) == 1
    for backend in backends:
        # Reached from the root namespace through the veth pair ...
        answer = fetch(f"{backend.url}/status/202", method="PATCH", body=b"{}")
        assert (answer.status, answer.json()["backend"]) == (202, backend.name)
        # ... while the address does not exist in the root namespace at all.
        with socket.socket() as probe, pytest.raises(OSError) as info:
            probe.bind((backend.address, 0))
        assert info.value.errno == 99  # EADDRNOTAVAIL
    # A client inside the namespace reaches the backends too.
    inside = test_network.in_netns(lambda: fetch(f"{backends[0].url}/inside"))
    assert inside.json()["path"] == "/inside"


def _ip(*args: str) -> str:
    return subprocess.run(
        [netns.ip_binary(), *args], capture_output=True, text=True, check=True
    ).stdout


def _traces(network: TestNetwork) -> list[str]:
    """What is left of ``network`` on this host: namespace, veth, route."""
    left: list[str] = []
    if network.name in netns.namespace_names(_ip("netns", "list")):
        left.append(f"netns {network.name}")
    if netns.interface_exists(network.host_interface):
        left.append(f"link {network.host_interface}")
    if str(network.subnet) in _ip("-4", "route", "show"):
        left.append(f"route {network.subnet}")
    return left


def test_test_network_is_removed_completely_even_with_an_open_socket() -> None:
    network = TestNetwork.create()
    try:
        assert _traces(network) == [
            f"netns {network.name}",
            f"link {network.host_interface}",
            f"route {network.subnet}",
        ]
        address = network.add_address()
        listener = network.listen(address, 0)
    finally:
        network.close()
    try:
        # The open socket keeps the namespace alive in the kernel; the veth must go anyway.
        assert _traces(network) == []
        with pytest.raises(OSError):
            socket.create_connection((address, listener.getsockname()[1]), timeout=1).close()
    finally:
        listener.close()
    network.close()  # idempotent
    with pytest.raises(TestNetworkError, match="closed"):
        network.add_address()


def test_concurrent_test_networks_get_distinct_subnets() -> None:
    created: list[TestNetwork] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            created.append(TestNetwork.create())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert len({n.subnet for n in created}) == 3
        assert len({n.name for n in created}) == 3
        for network in created:
            address = network.add_address()
            with (
                network.listen(address, 0) as listener,
                socket.create_connection((address, listener.getsockname()[1]), timeout=3),
            ):
                pass
    finally:
        for network in created:
            network.close()
    assert [t for n in created for t in _traces(n)] == []


def test_stale_namespaces_of_dead_processes_are_removed() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"kgw-{dead.pid}-0"
    _ip("netns", "add", stale)
    try:
        network = TestNetwork.create()
        network.close()
        assert stale not in netns.namespace_names(_ip("netns", "list"))
    finally:
        if stale in netns.namespace_names(_ip("netns", "list")):
            _ip("netns", "del", stale)


def test_failing_ip_command_reports_command_and_stderr() -> None:
    with pytest.raises(TestNetworkError) as info:
        netns.run_ip("link", "del", "kgw-no-such")
    message = str(info.value)
    assert "`" + netns.ip_binary() + " link del kgw-no-such` failed with exit code" in message
    assert "kgw-no-such" in message.split("failed", 1)[1]


def test_service_manifests_for_one_shared_port() -> None:
    group = [
        EchoBackend(name="x", address="10.244.0.10", port=9000),
        EchoBackend(name="y", address="10.244.0.11", port=9000),
    ]
    service, slices = service_manifests("ns", "svc", group, port=80, app_protocol="http")
    assert service["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9000, "appProtocol": "http"}
    ]
    [endpoint_slice] = slices
    assert endpoint_slice["metadata"]["labels"]["kubernetes.io/service-name"] == "svc"
    assert [e["addresses"] for e in endpoint_slice["endpoints"]] == [
        ["10.244.0.10"],
        ["10.244.0.11"],
    ]
    assert endpoint_slice["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 9000, "appProtocol": "http"}
    ]


def test_start_backends_share_one_port_on_distinct_addresses() -> None:
    group = start_backends(["solo-a", "solo-b", "solo-c"])
    try:
        assert len({b.port for b in group}) == 1
        assert len({b.address for b in group}) == 3
        assert all(b.address.startswith("127.") for b in group)
        for backend in group:
            answer = fetch(f"{backend.url}/status/418", method="DELETE")
            assert answer.status == 418
            assert answer.json()["method"] == "DELETE"
            assert backend.requests[-1]["path"] == "/status/418"
    finally:
        for backend in group:
            backend.stop()


def test_echo_backend_keep_alive_and_chunked_body() -> None:
    [backend] = start_backends(["keepalive"])
    connection = http.client.HTTPConnection(backend.address, backend.port, timeout=5)
    try:
        connection.request("PUT", "/first", body=b"abc")
        first = connection.getresponse()
        assert first.status == 200
        assert json.loads(first.read())["body_bytes"] == 3
        sock = connection.sock
        connection.request(
            "POST", "/second?a=b", body=iter([b"hello ", b"world"]), encode_chunked=True
        )
        second = connection.getresponse()
        seen = json.loads(second.read())
        assert connection.sock is sock, "the second request needed a new connection"
        assert seen["body_bytes"] == 11
        assert seen["headers"]["transfer-encoding"] == "chunked"
        connection.request("HEAD", "/third")
        third = connection.getresponse()
        assert third.status == 200
        assert third.read() == b""
        assert [r["method"] for r in backend.requests] == ["PUT", "POST", "HEAD"]
    finally:
        connection.close()
        backend.stop()


@pytest.mark.envoy
def test_two_real_envoys_side_by_side(
    echo_backends: EchoBackendsFactory, envoy_process: EnvoyProcessFactory
) -> None:
    first, second = echo_backends(["side-a", "side-b"])
    envoys = [
        envoy_process(static_http_proxy_bootstrap(0, [(b.address, b.port)]), name=b.name)
        for b in (first, second)
    ]
    assert envoys[0].base_id != envoys[1].base_id
    assert envoys[0].admin_url != envoys[1].admin_url
    for envoy, backend in zip(envoys, (first, second), strict=True):
        host, port = envoy.listener_address()
        answer = fetch(f"http://{host}:{port}/which")
        assert answer.status == 200
        assert answer.json()["backend"] == backend.name
        counters = envoy.stats(r"cluster\.backends\.upstream_rq_total")
        assert counters["cluster.backends.upstream_rq_total"] == 1


@pytest.mark.envoy
def test_envoy_start_failure_shows_the_log(envoy_process: EnvoyProcessFactory) -> None:
    broken = static_http_proxy_bootstrap(0, [("127.0.0.1", 1)])
    broken["static_resources"]["clusters"][0]["lb_policy"] = "NO_SUCH_POLICY"
    started = time.monotonic()
    with pytest.raises(EnvoyStartError, match="exited with code") as info:
        envoy_process(broken, name="broken", timeout=20)
    assert time.monotonic() - started < 15
    assert "NO_SUCH_POLICY" in str(info.value)


@pytest.mark.envoy
def test_base_id_clash_is_retried_with_a_fresh_id(
    envoy_process: EnvoyProcessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = static_http_proxy_bootstrap(0, [("127.0.0.1", 1)])
    holder = envoy_process(bootstrap, name="holder")
    fresh = realparts_envoy.unique_base_id()
    ids = iter([holder.base_id, fresh])
    monkeypatch.setattr(realparts_envoy, "unique_base_id", lambda: next(ids))
    second = envoy_process(bootstrap, name="second")
    assert second.base_id == fresh
    assert "unable to bind domain socket" in second.log_tail()
