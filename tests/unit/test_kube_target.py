"""Resolving kubeconfig, context and namespace the way kubectl does (no server needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubectl_gw import kube
from kubectl_gw.errors import ClusterError


def kubeconfig(path: Path, *, contexts: dict[str, str | None], current: str | None) -> Path:
    lines = [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: c",
        "  cluster: {server: 'https://127.0.0.1:1'}",
        "users:",
        "- name: u",
        "  user: {token: t}",
        "contexts:",
    ]
    for name, namespace in contexts.items():
        ns = f", namespace: {namespace}" if namespace else ""
        lines.append(f"- name: {name}\n  context: {{cluster: c, user: u{ns}}}")
    if current:
        lines.append(f"current-context: {current}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_kubeconfig_paths_follow_kubectl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(["/a", "", "/b"]))
    assert kube.kubeconfig_paths(None) == ["/a", "/b"]
    assert kube.kubeconfig_paths("/x") == ["/x"]
    monkeypatch.delenv("KUBECONFIG")
    assert kube.kubeconfig_paths(None) == [str(Path.home() / ".kube" / "config")]


def test_namespace_order_flag_then_context_then_default(tmp_path: Path) -> None:
    cfg = str(kubeconfig(tmp_path / "k", contexts={"a": "team-a", "b": None}, current="a"))
    assert kube.connect(kube.KubeTarget(kubeconfig=cfg)).namespace == "team-a"
    assert kube.connect(kube.KubeTarget(kubeconfig=cfg, namespace="x")).namespace == "x"
    assert kube.connect(kube.KubeTarget(kubeconfig=cfg, context="b")).namespace == "default"


def test_several_kubeconfig_files_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kubeconfig(tmp_path / "one", contexts={"a": "ns-a"}, current="a")
    second = kubeconfig(tmp_path / "two", contexts={"b": "ns-b"}, current=None)
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(first), str(second)]))
    cluster = kube.connect(kube.KubeTarget(context="b"))
    assert (cluster.context, cluster.namespace) == ("b", "ns-b")


def test_unknown_context_and_missing_kubeconfig(tmp_path: Path) -> None:
    cfg = str(kubeconfig(tmp_path / "k", contexts={"a": None}, current="a"))
    with pytest.raises(ClusterError, match='context "zzz" does not exist'):
        kube.connect(kube.KubeTarget(kubeconfig=cfg, context="zzz"))
    with pytest.raises(ClusterError, match="no kubeconfig found"):
        kube.connect(kube.KubeTarget(kubeconfig=str(tmp_path / "none")))


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    cfg = str(kubeconfig(tmp_path / "k", contexts={"a": None}, current="a"))
    cluster = kube.connect(kube.KubeTarget(kubeconfig=cfg, request_timeout=2))
    cluster.api.configuration.retries = 0
    with pytest.raises(
        ClusterError, match=r"cannot reach the API server at https://127\.0\.0\.1:1"
    ):
        cluster.server_version()
