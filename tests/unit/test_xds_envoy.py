"""The real Envoy accepts every golden translation, pushed one after another over ADS.

Each case of ``tests/golden/translate`` goes through the whole pure pipeline and our ADS server
to a real Envoy; Envoy must ACK every resource type (a NACK fails the test with Envoy's own
message). Going from case to case also exercises replacing and removing everything.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from controller import envoy_process, gatewayapi_to_ir, translate
from controller.run import DEFAULT_CONTROLLER_NAME
from controller.xds import AdsServer
from kubectl_gw.io import load_inputs
from tests.realparts import facts
from tests.realparts.envoy import unique_base_id
from tests.unit.test_translate_golden import CASES, GOLDEN


def _free_offset(ports: list[int]) -> int:
    for _ in range(50):
        offset = random.randrange(20000, 40000, 1000)
        try:
            for port in ports:
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):  # UDPRoute goldens too
                    with socket.socket(socket.AF_INET, kind) as sock:
                        sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free port range for the Envoy listeners")


@pytest.fixture(params=[False, True], ids=["sotw", "delta"])
def envoy_with_ads(
    request: pytest.FixtureRequest, envoy_binary: Path, tmp_path: Path
) -> Iterator[AdsServer]:
    server = AdsServer()
    port = server.start("127.0.0.1:0")
    boot = envoy_process.bootstrap(
        xds_host="127.0.0.1",
        xds_port=port,
        node_id="goldens",
        node_cluster="tests",
        delta=request.param,
    )
    options = envoy_process.EnvoyOptions(
        binary=str(envoy_binary), workdir=tmp_path, base_id=unique_base_id()
    )
    supervisor = envoy_process.EnvoySupervisor(boot, options)
    supervisor.start()
    try:
        yield server
    finally:
        supervisor.stop()
        server.stop()


@pytest.mark.envoy
def test_real_envoy_acks_every_golden(envoy_with_ads: AdsServer) -> None:
    server = envoy_with_ads
    inputs = {
        case: [item.obj for item in load_inputs([str(GOLDEN / case / "input.yaml")]).objects]
        for case in CASES
    }
    ports = sorted(  # every port a golden's Gateways listen on must be free after the offset
        {
            int(listener["port"])
            for objects in inputs.values()
            for obj in objects
            if obj.get("kind") in ("Gateway", "ListenerSet", "XListenerSet")
            for listener in (obj.get("spec") or {}).get("listeners") or []
        }
    )
    offset = _free_offset(ports)
    options = gatewayapi_to_ir.BuildOptions(listen_address="127.0.0.1", port_offset=offset)
    for case in CASES + CASES[:1]:
        objects = inputs[case]
        _result, built = gatewayapi_to_ir.compute_and_build(
            objects, frozenset({DEFAULT_CONTROLLER_NAME}), options
        )
        generation = server.set_resources(translate.translate(built.ir))
        synced = server.wait_synced(generation, 15)
        nacks = [f"{n.type_url}: {n.message}" for n in server.nacks]
        assert synced, f"{case}: Envoy did not ACK everything: {nacks or 'timeout'}"
    assert not server.nacks


@pytest.mark.envoy
def test_a_changed_eds_cluster_is_warmed_at_once(envoy_with_ads: AdsServer) -> None:
    """Envoy replaces a changed EDS cluster with a new one that warms until a load assignment
    arrives, and asks for none (the name is subscribed already); its CDS ACK, and every route
    change queued behind it, waited for the EDS fetch timeout (15 s) until the server sent the
    endpoints again with the changed cluster."""
    server = envoy_with_ads
    objects = [item.obj for item in load_inputs([str(GOLDEN / "basic" / "input.yaml")]).objects]
    ports = sorted(
        {
            int(listener["port"])
            for obj in objects
            if obj.get("kind") == "Gateway"
            for listener in (obj.get("spec") or {}).get("listeners") or []
        }
    )
    options = gatewayapi_to_ir.BuildOptions("127.0.0.1", _free_offset(ports))
    _result, built = gatewayapi_to_ir.compute_and_build(
        objects, frozenset({DEFAULT_CONTROLLER_NAME}), options
    )
    assert server.wait_synced(server.set_resources(translate.translate(built.ir)), 15)
    model = built.ir
    eds = [c for c in model.clusters if not c.dns_hosts and c.name in model.referenced_clusters()]
    assert eds, "the golden has an EDS cluster"
    changed = replace(eds[0], connect_timeout_seconds=eds[0].connect_timeout_seconds + 1)
    model = replace(
        model, clusters=tuple(changed if c.name == changed.name else c for c in model.clusters)
    )
    began = time.monotonic()
    generation = server.set_resources(translate.translate(model))
    assert server.wait_synced(generation, 5), "the changed cluster held the CDS ACK back"
    facts.record(
        f"a changed EDS cluster: Envoy synced in {(time.monotonic() - began) * 1000:.0f} ms "
        "(its endpoints sent again with it)"
    )
