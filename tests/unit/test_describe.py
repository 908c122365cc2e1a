"""``kubectl gw describe`` offline through the CLI: printers, request tracing, errors, status."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubectl_gw import cli
from kubectl_gw.errors import ClusterError
from kubectl_gw.model import KindInfo

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "describe"
UPDATE = os.environ.get("KGW_UPDATE_GOLDEN") == "1"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.run(args)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def test_example_tree_matches_its_golden(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["describe", "-f", str(EXAMPLE / "setup.yaml")], capsys)
    assert (code, err) == (0, "")
    golden = EXAMPLE / "describe.txt"
    if UPDATE:
        golden.write_text(out, encoding="utf-8")
    assert out == golden.read_text(encoding="utf-8")
    for needle in (
        "NotAllowedByListeners",
        "NoMatchingListenerHostname",
        "NoMatchingParent",
        "RefNotPermitted",
        "SHADOWED by HTTPRoute infra/store rule 0",
        "fix: set allowedRoutes.namespaces.from: All",
    ):
        assert needle in out


def test_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["describe", "-f", str(EXAMPLE), "-o", "json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert list(doc)[:2] == ["gateways", "routes"]
    gw = doc["gateways"][0]
    assert list(gw)[:5] == ["namespace", "name", "class", "conditions", "listeners"]
    assert list(gw["listeners"][0])[:6] == [
        "name",
        "port",
        "protocol",
        "hostname",
        "attachedRoutes",
        "conditions",
    ]
    route = doc["routes"][0]
    assert list(route)[:5] == ["kind", "namespace", "name", "parents", "backends"]
    assert list(route["parents"][0])[:5] == [
        "parentRef",
        "accepted",
        "reason",
        "message",
        "listeners",
    ]
    assert list(route["backends"][0])[:3] == ["ref", "resolved", "reason"]
    # deterministic: a rerun is byte-identical, and yaml carries the same data
    assert run(["describe", "-f", str(EXAMPLE), "-o", "json"], capsys)[1] == out
    code, yaml_out, _ = run(["describe", "-f", str(EXAMPLE), "-o", "yaml"], capsys)
    from ruamel.yaml import YAML

    assert YAML(typ="safe").load(yaml_out) == doc


def test_select_one_route(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["describe", "httproute", "cart", "-f", str(EXAMPLE), "-o", "json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert [(r["namespace"], r["name"]) for r in doc["routes"]] == [("shop", "cart")]
    assert doc["routes"][0]["parents"][0]["reason"] == "NotAllowedByListeners"
    assert [g["name"] for g in doc["gateways"]] == ["web"]
    code, out, _ = run(["describe", "gateway/web", "-f", str(EXAMPLE), "-o", "wide"], capsys)
    assert code == 0 and "shop/cart" in out and "NotAllowedByListeners" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["describe", "httproute", "nope"], 'HTTPRoute "nope" not found'),
        (["describe", "widget", "x"], 'unknown kind "widget"'),
        (["describe", "httproute", "a", "b"], "at most a kind and a name"),
        (["describe", "request"], "exactly one URL"),
        (["describe", "request", "ftp://x/"], "scheme must be http or https"),
        (["describe", "request", "http://x/", "-X", "FETCH"], "not an HTTP method"),
        (["describe", "request", "http://x/", "-H", "nocolon"], "expected 'Name: value'"),
        (["describe", "request", "http://x/", "--gateway", "nope"], 'Gateway "nope" not found'),
        (["describe", "httproute", "-X", "GET"], "only go with 'describe request URL'"),
        (["describe", "-o", "dot", "request", "http://x/"], "tree, json or yaml"),
    ],
)
def test_errors_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run([*args, "-f", str(EXAMPLE)], capsys)
    assert code == 2 and out == ""
    assert message in one_error_line(err)


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nmetadata: [\n")
    code, out, err = run(["describe", "-f", str(bad)], capsys)
    assert code == 2 and out == ""
    assert "bad.yaml" in one_error_line(err)


def test_ambiguous_name_asks_for_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        f"metadata: {{name: same, namespace: {ns}}}\nspec: {{parentRefs: [{{name: gw}}]}}\n"
        for ns in ("a", "b")
    ]
    (tmp_path / "r.yaml").write_text("---\n".join(docs))
    code, _out, err = run(["describe", "httproute", "same", "-f", str(tmp_path)], capsys)
    assert code == 2 and "pass -n" in one_error_line(err)
    code, out, _ = run(["describe", "httproute", "same", "-n", "b", "-f", str(tmp_path)], capsys)
    assert code == 0 and "HTTPRoute b/same → Gateway b/gw" in out
    assert "NoMatchingParent" in out and "no controller writes status" in out


def test_request_trace(capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://store.example.com/api/orders"
    code, out, _ = run(["describe", "request", url, "-f", str(EXAMPLE)], capsys)
    assert code == 0
    assert "served by HTTPRoute infra/store rule 1 (#1): PathPrefix /api" in out
    assert "RefNotPermitted" in out and "HTTP 500" in out
    assert "lost: HTTPRoute infra/store rule 0 (#2): PathPrefix / — winner has a longer path" in out
    code, out, _ = run(
        ["describe", "request", "http://store.example.com/", "-o", "json", "-f", str(EXAMPLE)],
        capsys,
    )
    doc = json.loads(out)
    (gw,) = doc["gateways"]
    assert (gw["winner"]["name"], gw["winner"]["rule"]) == ("store", 0)
    assert [(x["name"], x["lostBecause"]) for x in gw["losers"]] == [
        ("store-v2", "winner has an older creationTimestamp")
    ]
    code, out, _ = run(
        ["describe", "request", "http://nope.example.org/", "-f", str(EXAMPLE)], capsys
    )
    assert code == 0 and "no listener on port 80 matches host nope.example.org" in out


def test_request_headers_method_and_listener_isolation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.yaml").write_text(
        """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: example.com/c}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: c
  listeners:
  - {name: wild, protocol: HTTP, port: 80, hostname: "*.example.com"}
  - {name: foo, protocol: HTTP, port: 80, hostname: foo.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {value: /}, method: POST, headers: [{name: x-canary, value: "1"}]}]
    backendRefs: [{name: canary, port: 80, weight: 1}, {name: stable, port: 80, weight: 3}]
  - backendRefs: [{name: stable, port: 80}]
"""
    )
    base = ["describe", "request", "-f", str(tmp_path)]
    code, out, _ = run([*base[:2], "http://foo.example.com/x", *base[2:]], capsys)
    assert code == 0 and "listener foo" in out and "rule 1" in out
    code, out, _ = run(
        [*base[:2], "http://foo.example.com/x", "-X", "post", "-H", "X-Canary: 1", *base[2:]],
        capsys,
    )
    assert "served by HTTPRoute ns/r rule 0" in out
    assert "Service ns/stable:80 (weight 3, 75%)" in out
    assert "winner has a method match" in out


def test_dot_renders_to_png_with_graphviz(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["describe", "-f", str(EXAMPLE), "-o", "dot"], capsys)
    assert code == 0 and out.startswith("digraph kubectl_gw {")
    assert "style=dashed, color=red" in out  # unattached edges are marked
    dot = shutil.which("dot")
    assert dot is not None, "Graphviz `dot` is not installed (apt-get install graphviz); needed"
    png = tmp_path / "graph.png"
    subprocess.run([dot, "-Tpng", "-o", str(png)], input=out.encode(), check=True, timeout=60)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["describe", "-f", str(EXAMPLE), "-o", "mermaid"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "flowchart LR"
    assert any('-.->|"NotAllowedByListeners"|' in line for line in lines)
    assert lines[-1].startswith("  linkStyle ") and "stroke:red" in lines[-1]


def test_written_status_in_files_is_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (EXAMPLE / "setup.yaml").read_text()
    text += """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: late, namespace: infra, generation: 3}
spec:
  parentRefs: [{name: web}]
  hostnames: [late.example.com]
status:
  parents:
  - parentRef: {name: web}
    controllerName: kubectl-gw.dev/controller
    conditions:
    - {type: Accepted, status: "False", reason: NoMatchingListenerHostname, observedGeneration: 2}
"""
    (tmp_path / "in.yaml").write_text(text)
    code, out, _ = run(
        ["describe", "httproute", "late", "-n", "infra", "-f", str(tmp_path)], capsys
    )
    assert code == 0
    assert "[stale]" in out and "observedGeneration 2) < metadata.generation 3" in out
    assert "[conditionMismatch]" in out and "kubectl-gw computes True/Accepted" in out


def test_offline_describe_does_not_import_kubernetes() -> None:
    code = (
        "import sys; from kubectl_gw import cli; "
        f"rc = cli.run(['describe', '-f', {str(EXAMPLE)!r}, '-o', 'json']); "
        "assert rc == 0; assert 'kubernetes' not in sys.modules, 'kubernetes imported'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr


_REFS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: ours}
spec: {controllerName: kubectl-gw.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: ours
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs:
    - {group: gateway.envoyproxy.io, kind: Backend, name: ext, namespace: shared, port: 80}
    - {name: db, namespace: shared, port: 80}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata: {name: ext, namespace: shared}
spec: {endpoints: [{ip: {address: 192.0.2.1, port: 80}}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shared}
spec: {ports: [{port: 80}]}
"""


def test_ref_not_permitted_fix_names_the_kind_and_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.yaml").write_text(_REFS)
    code, out, _ = run(["describe", "-f", str(tmp_path)], capsys)
    assert code == 0
    fixes = [line.strip() for line in out.splitlines() if "fix: add a ReferenceGrant" in line]
    assert fixes == [
        "fix: add a ReferenceGrant in namespace shared from HTTPRoute in infra to "
        "Backend.gateway.envoyproxy.io ext",
        "fix: add a ReferenceGrant in namespace shared from HTTPRoute in infra to Service db",
    ]


class _FakeCluster:
    """Serves collections from a dict of path → items; any other collection is a 404."""

    namespace = "default"

    def __init__(self, served: dict[str, list[dict[str, Any]]]) -> None:
        self.served = served
        self.asked: list[str] = []

    def collection_path(self, info: KindInfo, namespace: str | None, version: str = "") -> str:
        base = f"/apis/{info.group}/{version}" if info.group else f"/api/{version}"
        return f"{base}/{info.plural}"

    def request(self, method: str, path: str, **_: Any) -> Any:
        self.asked.append(path)
        if path not in self.served:
            raise ClusterError("the server could not find the requested resource", status=404)
        return {"items": [dict(item) for item in self.served[path]]}

    def get_object(self, info: KindInfo, namespace: str | None, name: str) -> Any:
        return None


def _route_to_backend() -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "infra"},
        "spec": {
            "rules": [
                {
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {
                                "backendRef": {
                                    "group": "gateway.envoyproxy.io",
                                    "kind": "Backend",
                                    "name": "ext",
                                }
                            },
                        }
                    ]
                }
            ]
        },
    }


@pytest.mark.parametrize("refers", [False, True])
def test_live_read_tolerates_a_missing_backend_crd(
    refers: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubectl_gw import kube
    from kubectl_gw.describe import read_cluster

    routes = [_route_to_backend()] if refers else []
    fake = _FakeCluster({"/apis/gateway.networking.k8s.io/v1/httproutes": routes})
    monkeypatch.setattr(kube, "connect", lambda target: fake)
    objects, notes, _ = read_cluster(kube.KubeTarget())
    assert "/apis/gateway.envoyproxy.io/v1alpha1/backends" in fake.asked
    assert [o["kind"] for o in objects] == (["HTTPRoute"] if refers else [])
    (note,) = notes
    assert note.startswith("not served by this cluster (CRD missing?): Namespace, GatewayClass")
    # Envoy Gateway's Backend is only news when a route refers to one
    assert ("Backend.gateway.envoyproxy.io" in note) == refers


def test_live_read_lists_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubectl_gw import kube
    from kubectl_gw.describe import read_cluster

    backend = {"metadata": {"name": "ext", "namespace": "shared"}, "spec": {}}
    fake = _FakeCluster({"/apis/gateway.envoyproxy.io/v1alpha1/backends": [backend]})
    monkeypatch.setattr(kube, "connect", lambda target: fake)
    objects, notes, _ = read_cluster(kube.KubeTarget())
    assert [(o["apiVersion"], o["kind"]) for o in objects] == [
        ("gateway.envoyproxy.io/v1alpha1", "Backend")
    ]
    assert "Backend" not in notes[0]
