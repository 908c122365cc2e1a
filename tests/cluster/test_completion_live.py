"""Completion through kubectl's protocol with live names: ``kubectl gw describe httproute <TAB>``
lists the HTTPRoutes of the namespace in the real test cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.realparts.controlplane import ControlPlane

BIN = Path(sys.executable).parent


def _route(name: str) -> dict[str, object]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "gw"}]},
    }


@pytest.mark.cluster
def test_describe_completes_live_route_names(
    kube_cluster: ControlPlane, kube_api: ApiClient, namespace: str
) -> None:
    from kubernetes import client

    api = client.CustomObjectsApi(kube_api)
    for name in ("store", "store-v2", "blog"):
        api.create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", namespace, "httproutes", _route(name)
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("_KUBECTL_GW")}
    proc = subprocess.run(
        [
            str(BIN / "kubectl_complete-gw"),
            "describe",
            "--kubeconfig",
            str(kube_cluster.kubeconfig),
            "-n",
            namespace,
            "httproute",
            "st",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert proc.stdout.splitlines() == ["store", "store-v2", ":4"]
