"""End to end: Gateway API objects in the real test cluster → our controller → a real Envoy →
real echo backends.

The controller runs in-process (threads) against ``kube_cluster.kubeconfig`` and starts the
real Envoy as its child. Each test uses its own ``controllerName`` so that GatewayClasses made
by other tests in the shared cluster are never served or written to.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller import attachment
from controller.run import Controller, ControllerConfig
from kubectl_gw import kube
from kubectl_gw.model import kind_info
from tests.realparts import facts
from tests.realparts.backends import fetch, register_service
from tests.realparts.envoy import unique_base_id
from tests.realparts.envoy_fixtures import EchoBackendsFactory

GW = "gateway.networking.k8s.io/v1"


def _free_port_offset() -> int:
    for offset in range(21000, 60000, 1000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", 80 + offset))
            except OSError:
                continue
            return offset
    raise RuntimeError("no free port for the Gateway listener")


@dataclass
class Running:
    controller: Controller
    cluster: kube.Cluster
    controller_name: str
    class_name: str
    base_url: str

    def apply(self, obj: dict[str, Any]) -> None:
        info = kind_info(obj["apiVersion"], obj["kind"])
        assert info is not None
        self.cluster.apply(obj, info, force=True)  # type: ignore[arg-type]

    def get(self, obj: dict[str, Any]) -> dict[str, Any]:
        info = kind_info(obj["apiVersion"], obj["kind"])
        assert info is not None
        found = self.cluster.get_object(
            info, obj["metadata"].get("namespace"), obj["metadata"]["name"]
        )
        assert found is not None
        return dict(found)


@pytest.fixture
def running(kube_cluster: Any, tmp_path: Path, envoy_binary: Path) -> Iterator[Running]:
    suffix = uuid.uuid4().hex[:8]
    controller_name = f"kubectl-gw.dev/e2e-{suffix}"
    class_name = f"e2e-{suffix}"
    offset = _free_port_offset()
    config = ControllerConfig(
        target=kube.KubeTarget(kubeconfig=str(kube_cluster.kubeconfig)),
        controller_name=controller_name,
        listen_address="127.0.0.1",
        port_offset=offset,
        envoy_path=str(envoy_binary),
        envoy_base_id=unique_base_id(),
        workdir=tmp_path / "envoy",
    )
    cluster = kube.connect(config.target)
    gateway_class = {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": class_name},
        "spec": {"controllerName": controller_name},
    }
    info = kind_info(GW, "GatewayClass")
    assert info is not None
    cluster.apply(gateway_class, info)  # type: ignore[arg-type]
    controller = Controller(config)
    controller.start()
    try:
        yield Running(
            controller, cluster, controller_name, class_name, f"http://127.0.0.1:{80 + offset}"
        )
    finally:
        controller.stop()
        cluster.request("DELETE", f"/apis/gateway.networking.k8s.io/v1/gatewayclasses/{class_name}")


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, AssertionError) as err:  # connection refused before the listener exists
            last = err
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def gateway(namespace: str, class_name: str) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": namespace},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }


def route(namespace: str, api_backends: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["web.example.test"],
            "rules": [
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": "/api"},
                            "headers": [{"name": "X-Canary", "value": "yes"}],
                        }
                    ],
                    "backendRefs": [{"name": "v2", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                    "backendRefs": api_backends,
                },
                {
                    "matches": [{"path": {"type": "Exact", "value": "/missing"}}],
                    "backendRefs": [{"name": "does-not-exist", "port": 80}],
                },
            ],
        },
    }


def backend_of(running: Running, path: str, headers: dict[str, str] | None = None) -> str:
    answer = fetch(
        running.base_url + path,
        headers={"Host": "web.example.test", **(headers or {})},
        timeout=5,
    )
    assert answer.status == 200, (answer.status, answer.body[:200])
    return str(answer.json()["backend"])


@pytest.mark.cluster
@pytest.mark.envoy
def test_gateway_api_objects_serve_traffic_through_envoy(
    running: Running, kube_api: Any, namespace: str, echo_backends: EchoBackendsFactory
) -> None:
    v1 = echo_backends(["v1-a", "v1-b"], routable=True)
    v2 = echo_backends(["v2"], routable=True)
    v3 = echo_backends(["v3"], routable=True)
    register_service(kube_api, namespace, "v1", v1)
    register_service(kube_api, namespace, "v2", v2)
    register_service(kube_api, namespace, "v3", v3)
    started = time.monotonic()
    running.apply(gateway(namespace, running.class_name))
    web = route(
        namespace,
        [{"name": "v1", "port": 80, "weight": 70}, {"name": "v2", "port": 80, "weight": 30}],
    )
    running.apply(web)

    # 1. the header match reaches v2, every time
    wait_for(lambda: backend_of(running, "/api/x", {"X-Canary": "yes"}) == "v2", 30, "first 200")
    first_200 = time.monotonic() - started
    assert {backend_of(running, "/api/x", {"X-Canary": "yes"}) for _ in range(20)} == {"v2"}
    seen = v2[0].requests[-1]
    assert seen["path"] == "/api/x"
    assert seen["host"] == "web.example.test"
    assert "x-request-id" in seen["headers"], "not through Envoy"

    # 2. the weighted split roughly holds (70/30 over v1-a, v1-b | v2)
    counts: Counter[str] = Counter(backend_of(running, f"/api/w{i}") for i in range(300))
    v2_share = counts["v2"] / 300
    assert set(counts) <= {"v1-a", "v1-b", "v2"}
    assert 0.2 <= v2_share <= 0.4, counts
    assert counts["v1-a"] > 0 and counts["v1-b"] > 0, counts

    # 3. a missing backend answers 500 for its rule only; other paths keep working
    missing = fetch(running.base_url + "/missing", headers={"Host": "web.example.test"})
    assert missing.status == 500
    assert backend_of(running, "/api/still") in {"v1-a", "v1-b", "v2"}
    unknown_path = fetch(running.base_url + "/elsewhere", headers={"Host": "web.example.test"})
    assert unknown_path.status == 404
    other_host = fetch(running.base_url + "/api/x", headers={"Host": "other.example.test"})
    assert other_host.status == 404

    # 4. status as the attachment engine computed it, read back from the API server
    def status_written() -> bool:
        gw = running.get(gateway(namespace, running.class_name))
        conditions = {c["type"]: c for c in gw.get("status", {}).get("conditions", [])}
        return conditions.get("Programmed", {}).get("status") == "True"

    wait_for(status_written, 15, "Gateway Programmed=True")
    gw = running.get(gateway(namespace, running.class_name))
    gw_status = gw["status"]
    gw_conditions = {c["type"]: c for c in gw_status["conditions"]}
    assert gw_conditions["Accepted"]["status"] == "True"
    assert gw_conditions["Accepted"]["observedGeneration"] == gw["metadata"]["generation"]
    assert gw_status["addresses"] == [{"type": "IPAddress", "value": "127.0.0.1"}]
    listener = gw_status["listeners"][0]
    assert listener["name"] == "http"
    assert listener["attachedRoutes"] == 1
    assert {c["type"]: c["status"] for c in listener["conditions"]}["Programmed"] == "True"
    web_obj = running.get(web)
    parents = web_obj["status"]["parents"]
    assert len(parents) == 1
    assert parents[0]["controllerName"] == running.controller_name
    # the parentRef as stored (the API server defaults group and kind)
    assert parents[0]["parentRef"] == web_obj["spec"]["parentRefs"][0]
    assert parents[0]["parentRef"]["name"] == "gw"
    written = {c["type"]: (c["status"], c["reason"]) for c in parents[0]["conditions"]}
    # the same verdicts the shared engine gives on the objects as they are in the cluster
    objects = running.controller.provider.objects()
    engine = attachment.compute(objects, controller_names=frozenset({running.controller_name}))
    verdict = engine.route("HTTPRoute", namespace, "web")
    assert verdict is not None
    expected = {c.type: (c.status, c.reason) for c in verdict.parents[0].conditions}
    assert written == expected
    assert written["Accepted"] == ("True", "Accepted")
    assert written["ResolvedRefs"] == ("False", "BackendNotFound")
    gc = running.get(
        {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": running.class_name}}
    )
    assert {c["type"]: c["status"] for c in gc["status"]["conditions"]}["Accepted"] == "True"
    writes_after_settle = running.controller.writer.writes if running.controller.writer else 0

    # 5. switch /api to a brand-new backend (new cluster) under load: no failed request
    results: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            answer = fetch(running.base_url + "/api/load", headers={"Host": "web.example.test"})
            backend = answer.json().get("backend", "") if answer.status == 200 else ""
            results.append((time.monotonic(), answer.status, backend))

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    time.sleep(0.5)
    switched_at = time.monotonic()
    running.apply(route(namespace, [{"name": "v3", "port": 80}]))
    first_v3 = wait_for(
        lambda: next((t for t, _, b in results if b == "v3"), None), 15, "traffic on v3"
    )
    time.sleep(0.5)
    stop.set()
    loader.join(10)
    failures = [(s, b) for _, s, b in results if s != 200]
    assert not failures, f"{len(failures)} failed requests during the switch: {failures[:5]}"
    after = [b for t, _, b in results if t > first_v3 + 0.2]
    assert after and set(after) == {"v3"}, Counter(after)
    propagation = first_v3 - switched_at
    facts.record(
        f"controller e2e: first 200 {first_200:.2f} s after creating the objects; route switch "
        f"to a new backend seen by Envoy {propagation * 1000:.0f} ms after apply; "
        f"{len(results)} requests during the switch, 0 failed; v2 share {v2_share:.2f} "
        f"(weight 30 %); {writes_after_settle} status writes"
    )
