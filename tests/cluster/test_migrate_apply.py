"""``kubectl gw migrate`` against the real test API server (kube-apiserver + etcd + CRDs).

Sources are created with the plain kubernetes client (never with kubectl-gw), then migrate runs
through ``kubectl_gw.cli.run`` with ``--kubeconfig``, and everything is read back with the
plain client: the Gateway API objects exist with kubectl-gw's label and field manager, the
Ingresses are exactly as they were (same resourceVersion, same bytes), ``--dry-run=server``
persists nothing, and an unmanaged object of the same name is reported and left alone.

Two providers: the real ingress-nginx converter (end to end) and, for the orchestration on a
real server independent of the converter's choices, the fake provider of the unit tests.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from ruamel.yaml import YAML

from kubectl_gw import cli, migrate
from tests.realparts import facts

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.realparts.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

GW_GROUP = "gateway.networking.k8s.io"
MANAGED = ("app.kubernetes.io/managed-by", "kubectl-gw")
PREFIX = "nginx.ingress.kubernetes.io"
TLS_KEY_BYTES = (
    b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
)


def _raw(kube_api: ApiClient, method: str, path: str, body: Any = None) -> Any:
    from tests.realparts import crds

    return crds.api_request(kube_api, method, path, body)


def create_sources(kube_api: ApiClient, ns: str) -> dict[str, Any]:
    """An IngressClass, two Services, a TLS Secret and three Ingresses in ``ns``."""
    cls = f"nginx-{ns}"
    _raw(
        kube_api,
        "POST",
        "/apis/networking.k8s.io/v1/ingressclasses",
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": cls},
            "spec": {"controller": "k8s.io/ingress-nginx"},
        },
    )
    for name in ("web", "api"):
        _raw(
            kube_api,
            "POST",
            f"/api/v1/namespaces/{ns}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name},
                "spec": {
                    "selector": {"app": name},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                },
            },
        )
    _raw(
        kube_api,
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "shop-tls"},
            "data": {
                "tls.crt": base64.b64encode(b"certificate-bytes").decode(),
                "tls.key": base64.b64encode(TLS_KEY_BYTES).decode(),
            },
        },
    )

    def ing(name: str, host: str, path: str, svc: str, annotations: dict[str, str]) -> Any:
        spec: dict[str, Any] = {
            "ingressClassName": cls,
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": "Prefix",
                                "backend": {"service": {"name": svc, "port": {"name": "http"}}},
                            }
                        ]
                    },
                }
            ],
        }
        if host.startswith("shop."):
            spec["tls"] = [{"hosts": [host], "secretName": "shop-tls"}]
        return _raw(
            kube_api,
            "POST",
            f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    "name": name,
                    "annotations": {f"{PREFIX}/{k}": v for k, v in annotations.items()},
                },
                "spec": spec,
            },
        )

    ing("shop", f"shop.{ns}.example.com", "/", "web", {"ssl-redirect": "true"})
    ing("api", f"api.{ns}.example.com", "/v1", "api", {"proxy-read-timeout": "30"})
    ing("snippet", f"api.{ns}.example.com", "/admin", "api", {"server-snippet": "return 403;"})
    return {"class": cls}


def ingresses(kube_api: ApiClient, ns: str) -> dict[str, Any]:
    found = _raw(kube_api, "GET", f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses")
    return {i["metadata"]["name"]: i for i in found["items"]}


def live(kube_api: ApiClient, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The object as the API server has it now, or None."""
    from kubernetes.client.exceptions import ApiException

    from kubectl_gw.model import kind_info

    info = kind_info(obj["apiVersion"], obj["kind"])
    assert info is not None, obj["kind"]
    base = f"/apis/{obj['apiVersion']}" if info.group else f"/api/{obj['apiVersion']}"
    ns = obj["metadata"].get("namespace")
    where = f"/namespaces/{ns}" if info.namespaced else ""
    try:
        found: dict[str, Any] = _raw(
            kube_api, "GET", f"{base}{where}/{info.plural}/{obj['metadata']['name']}"
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return found


def namespace_exists(kube_api: ApiClient, ns: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        _raw(kube_api, "GET", f"/api/v1/namespaces/{ns}")
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def migrate_cli(
    capsys: pytest.CaptureFixture[str], plane: ControlPlane, *args: str
) -> tuple[int, str, str]:
    code = cli.run(["migrate", "--kubeconfig", str(plane.kubeconfig), *args])
    out, err = capsys.readouterr()
    return code, out, err


def load_stream(text: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d]


@pytest.fixture(params=["ingress-nginx", "fake"])
def provider(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fake":
        monkeypatch.setitem(migrate.PROVIDERS, "ingress-nginx", "tests.unit.test_migrate")
    return str(request.param)


def test_migrate_apply_reads_applies_and_leaves_ingresses_alone(
    kube_cluster: ControlPlane,
    kube_api: ApiClient,
    namespace: str,
    provider: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_sources(kube_api, namespace)
    before = ingresses(kube_api, namespace)
    gw_ns = f"{namespace}-gw"
    report = tmp_path / "report.json"
    common = ["-n", namespace, "--gateway-namespace", gw_ns, "--include-classless"]

    # 1. Offline view of the same cluster: what apply is going to send.
    code, out, err = migrate_cli(capsys, kube_cluster, *common)
    assert code == 0, err
    planned = load_stream(out)
    assert planned, err
    assert all(dict([MANAGED]).items() <= o["metadata"]["labels"].items() for o in planned)

    # 2. --dry-run=server: validated by the API server, nothing persisted, no namespace made.
    code, out, err = migrate_cli(capsys, kube_cluster, *common, "--apply", "--dry-run=server")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(planned) + 1, out  # + the gateway namespace it would create
    assert all(line.endswith(" serverside-applied (server dry run)") for line in lines)
    assert [live(kube_api, o) for o in planned] == [None] * len(planned)
    assert not namespace_exists(kube_api, gw_ns)

    # 3. The real apply.
    code, out, err = migrate_cli(
        capsys, kube_cluster, *common, "--apply", "--report", str(report), "--report-format", "json"
    )
    assert code == 0, err
    assert f"namespace/{gw_ns} serverside-applied" in out.splitlines()
    assert len(out.splitlines()) == len(planned) + 1
    kinds = sorted({o["kind"] for o in planned})
    for obj in planned:
        found = live(kube_api, obj)
        assert found is not None, obj["metadata"]
        assert found["metadata"]["labels"][MANAGED[0]] == MANAGED[1]
        assert {m["manager"] for m in found["metadata"]["managedFields"]} == {"kubectl-gw"}
    gw_namespace = _raw(kube_api, "GET", f"/api/v1/namespaces/{gw_ns}")
    assert gw_namespace["metadata"]["labels"][MANAGED[0]] == MANAGED[1]
    data = json.loads(report.read_text())
    ns_entries = [e for e in data["entries"] if e["source"]["kind"] == "Namespace"]
    assert [e["status"] for e in ns_entries] == ["converted"]
    assert "created it" in ns_entries[0]["message"]

    # Ingresses: not one byte changed (same resourceVersion, same managedFields).
    assert ingresses(kube_api, namespace) == before

    # Secret data never left the cluster into our output or report.
    secret_text = base64.b64encode(TLS_KEY_BYTES).decode()
    for text in (out, err, report.read_text()):
        assert secret_text not in text and "secret-key-material" not in text

    # 4. Apply again: our own objects are updated in place, no conflicts.
    code, out, err = migrate_cli(capsys, kube_cluster, *common, "--apply")
    assert code == 0, err
    assert "conflict" not in err
    assert ingresses(kube_api, namespace) == before
    facts.record(
        f"migrate --apply ({provider} provider): {len(planned)} objects ({', '.join(kinds)}) "
        "applied to the real API server; Ingresses byte-identical afterwards"
    )


def test_unmanaged_route_with_the_same_name_is_a_reported_conflict(
    kube_cluster: ControlPlane,
    kube_api: ApiClient,
    namespace: str,
    provider: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_sources(kube_api, namespace)
    gw_ns = f"{namespace}-gw"
    common = ["-n", namespace, "--gateway-namespace", gw_ns, "--include-classless"]
    code, out, err = migrate_cli(capsys, kube_cluster, *common)
    assert code == 0, err
    route = next(o for o in load_stream(out) if o["kind"] == "HTTPRoute")
    name = route["metadata"]["name"]
    theirs = _raw(
        kube_api,
        "POST",
        f"/apis/{GW_GROUP}/v1/namespaces/{namespace}/httproutes",
        {
            "apiVersion": f"{GW_GROUP}/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name, "labels": {"team": "theirs"}},
            "spec": {"hostnames": ["theirs.example.com"]},
        },
    )
    code, out, err = migrate_cli(
        capsys, kube_cluster, *common, "--apply", "--report", "-", "--report-format", "json"
    )
    assert code == 0, err
    assert re.search(rf"warning: HTTPRoute {namespace}/{name}: conflict: ", err)
    assert f"httproute.{GW_GROUP}/{name} serverside-applied" not in out.splitlines()
    now = _raw(kube_api, "GET", f"/apis/{GW_GROUP}/v1/namespaces/{namespace}/httproutes/{name}")
    assert now == theirs  # untouched: same resourceVersion, labels, spec, managers
    report = json.loads(err[err.index("{") : err.rindex("}") + 1])
    conflicts = [e for e in report["entries"] if e["key"] == "apply" and e["status"] == "error"]
    assert conflicts
    assert all(e["outputs"][0]["name"] == name for e in conflicts)
    assert {e["source"]["kind"] for e in conflicts} == {"Ingress"}
    # With --strict the run fails with exit 3 (with the fake provider the conflict is the only
    # incomplete entry; the real one also reports the server-snippet).
    code, _out, err = migrate_cli(capsys, kube_cluster, *common, "--apply", "--strict")
    assert code == 3


def test_secret_metadata_reads_never_carry_data(
    kube_cluster: ControlPlane, kube_api: ApiClient, namespace: str
) -> None:
    from kubectl_gw import kube

    create_sources(kube_api, namespace)
    _raw(
        kube_api,
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "opaque"},
            "stringData": {"password": "hunter2"},
        },
    )
    cluster = kube.connect(kube.KubeTarget(kubeconfig=str(kube_cluster.kubeconfig)))
    everything = kube.list_metadata(cluster, migrate.SECRET, namespace)
    tls = kube.list_metadata(
        cluster, migrate.SECRET, namespace, field_selector="type=kubernetes.io/tls"
    )
    assert sorted(s["metadata"]["name"] for s in everything) == ["opaque", "shop-tls"]
    assert [s["metadata"]["name"] for s in tls] == ["shop-tls"]
    one = kube.get_metadata(cluster, migrate.SECRET, namespace, "opaque")
    assert one is not None and one["metadata"]["name"] == "opaque"
    assert kube.get_metadata(cluster, migrate.SECRET, namespace, "missing") is None
    text = json.dumps([everything, tls, one])
    assert "hunter2" not in text and base64.b64encode(b"hunter2").decode() not in text
    for obj in [*everything, *tls, one]:
        assert set(obj) == {"apiVersion", "kind", "metadata"}
        assert (obj["apiVersion"], obj["kind"]) == ("v1", "Secret")
        assert "managedFields" not in obj["metadata"]

    reader = migrate.ClusterReader(cluster)
    assert reader.serves("getambassador.io", "v3alpha1")  # the session installs Emissary CRDs
    assert not reader.serves("no-such-group.example.com", "v1")
    sources = migrate.gather_from_cluster(reader, namespace)
    kinds = sorted({o["kind"] for o in sources.objects})
    assert {"Ingress", "IngressClass", "Secret", "Service"} <= set(kinds)
    secrets = {o["metadata"]["name"]: o for o in sources.objects if o["kind"] == "Secret"}
    assert secrets["shop-tls"].get("type") == "kubernetes.io/tls"
    assert "type" not in secrets["opaque"]
    assert "hunter2" not in json.dumps(sources.objects)
