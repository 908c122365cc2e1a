"""``kubectl gw install``: the rendered manifests are accepted by the real API server, and the
least-privilege RBAC they grant is enough for the controller (and no more than it needs).

- every object, server-side applied with ``dryRun=All`` through the CLI, is accepted;
- the ClusterRole grants read verbs on exactly the watched kinds and write verbs on exactly
  the status subresources the writer patches;
- with those RBAC objects applied for real, the controller running with the ServiceAccount's
  own token (TokenRequest) lists and watches everything, programs Envoy and writes status;
  the same token may not change a route's spec.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from controller import install
from controller.run import Controller, ControllerConfig, watched_kinds
from controller.status import STATUS_KINDS
from kubectl_gw import kube
from kubectl_gw.cli import run
from kubectl_gw.errors import ClusterError
from tests.cluster import controller_harness as h
from tests.realparts.backends import register_service
from tests.realparts.envoy import unique_base_id
from tests.realparts.envoy_fixtures import EchoBackendsFactory


def test_rbac_is_exactly_what_the_controller_uses() -> None:
    objects = install.render(install.InstallOptions())
    role = next(o for o in objects if o["kind"] == "ClusterRole")
    read: set[tuple[str, str]] = set()
    write: set[tuple[str, str]] = set()
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        target = read if rule["verbs"] == ["get", "list", "watch"] else write
        assert rule["verbs"] in (["get", "list", "watch"], ["patch", "update"]), rule
        for group in rule["apiGroups"]:
            target.update((group, r) for r in rule["resources"])
    assert read == {(k.group, k.plural) for k in watched_kinds()}
    status = {(k.group, f"{k.plural}/status") for k in watched_kinds() if k.kind in STATUS_KINDS}
    assert write == status
    kinds = [o["kind"] for o in objects]
    assert kinds[0] == "Namespace" and kinds[-1] == "GatewayClass"
    assert {"ServiceAccount", "ClusterRoleBinding", "Deployment", "Service"} <= set(kinds)


def test_bad_option_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["install", "--gateway-class", "Not_A_Name"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: GatewayClass name 'Not_A_Name'") and err.count("\n") == 1


def test_output_json_is_a_list_in_apply_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["install", "-o", "json", "-n", "gw-sys", "--port", "8080"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "List"
    assert doc["items"][0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "gw-sys", "labels": doc["items"][0]["metadata"]["labels"]},
    }
    envoy_service = next(
        o
        for o in doc["items"]
        if o["kind"] == "Service" and o["metadata"]["name"].endswith("-envoy")
    )
    assert envoy_service["spec"]["ports"][0]["port"] == 8080
    assert envoy_service["spec"]["ports"][0]["targetPort"] == 18080


@pytest.mark.cluster
def test_server_side_dry_run_accepts_everything(
    kube_cluster: Any, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The namespace exists (a server dry run cannot create objects in one that does not).
    code = run(
        [
            "install",
            "--kubeconfig",
            str(kube_cluster.kubeconfig),
            "-n",
            namespace,
            "--dry-run=server",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    objects = install.render(install.InstallOptions(namespace=namespace))
    assert len(lines) == len(objects)
    assert all(line.endswith("serverside-applied (server dry run)") for line in lines), lines
    # a dry run leaves nothing behind
    cluster = kube.connect(kube.KubeTarget(kubeconfig=str(kube_cluster.kubeconfig)))
    assert cluster.get_object(install.info_for(objects[-1]), None, "kubectl-gw") is None


def _token(api: Any, namespace: str, account: str) -> str:
    from kubernetes import client

    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    answer = client.CoreV1Api(api).create_namespaced_service_account_token(
        account, namespace, request
    )
    return str(answer.status.token)


@pytest.mark.cluster
@pytest.mark.envoy
def test_controller_runs_with_only_the_installed_rbac(
    kube_cluster: Any,
    kube_api: Any,
    namespace: str,
    echo_backends: EchoBackendsFactory,
    envoy_binary: Path,
    tmp_path: Path,
) -> None:
    from tests.realparts.controlplane import write_kubeconfig

    suffix = uuid.uuid4().hex[:6]
    options = install.InstallOptions(
        namespace=namespace,
        name=f"kgw-{suffix}",
        controller_name=f"kubectl-gw.dev/rbac-{suffix}",
        gateway_class=f"rbac-{suffix}",
    )
    objects = install.render(options)
    admin = kube.connect(kube.KubeTarget(kubeconfig=str(kube_cluster.kubeconfig)))
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "GatewayClass"}
    applied = [o for o in objects if o["kind"] in wanted]
    install.apply(admin, applied)
    try:
        kubeconfig = tmp_path / "sa.kubeconfig"
        token = _token(kube_api, namespace, options.name)
        write_kubeconfig(kubeconfig, kube_cluster.server, kube_cluster.ca_file, token)
        register_service(kube_api, namespace, "web", echo_backends(["web"], routable=True))
        offset = h.free_port_offset()
        h.apply(admin, h.gateway(namespace, options.gateway_class))
        route = h.http_route(namespace, "web", "rbac.example.test", "web")
        h.apply(admin, route)
        config = ControllerConfig(
            target=kube.KubeTarget(kubeconfig=str(kubeconfig)),
            controller_name=options.controller_name,
            listen_address="127.0.0.1",
            port_offset=offset,
            envoy_path=str(envoy_binary),
            envoy_base_id=unique_base_id(),
            workdir=tmp_path / "envoy",
        )
        controller = Controller(config)
        controller.start()
        try:
            address = ("127.0.0.1", 80 + offset)
            h.wait_for(
                lambda: h.probe(address, "rbac.example.test").backend == "web", 30, "traffic"
            )

            def accepted() -> bool:
                parents = h.get(admin, route).get("status", {}).get("parents", [])
                return any(p["controllerName"] == options.controller_name for p in parents)

            h.wait_for(accepted, 15, "route status written with the ServiceAccount")
            assert controller.provider.errors == 0, "a watch was refused"
            assert controller.writer is not None and controller.writer.failures == 0
            # the same credentials may not change what they only read
            as_sa = kube.connect(kube.KubeTarget(kubeconfig=str(kubeconfig)))
            with pytest.raises(ClusterError) as refused:
                h.apply(as_sa, h.http_route(namespace, "web", "other.example.test", "web"))
            assert refused.value.status == 403
        finally:
            controller.stop()
    finally:
        for obj in reversed(applied):
            with contextlib.suppress(ClusterError):
                info = install.info_for(obj)
                path = admin.collection_path(info, obj["metadata"].get("namespace"))
                admin.request("DELETE", f"{path}/{obj['metadata']['name']}")
