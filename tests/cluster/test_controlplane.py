"""The test control plane is real: version, CRDs, schema and CEL validation, round trips."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.realparts import bins, crds, facts

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.realparts.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

GW_GROUP = "gateway.networking.k8s.io"
GW_VERSION = "v1"


def _custom(kube_api: ApiClient) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(kube_api)


def test_apiserver_reports_pinned_version(kube_api: ApiClient) -> None:
    from kubernetes import client

    info = client.VersionApi(kube_api).get_code()
    assert info.git_version == bins.kube_version() == "v1.36.3"
    assert (info.major, info.minor) == ("1", "36")


def test_kubeconfig_has_one_context(kube_cluster: ControlPlane) -> None:
    from ruamel.yaml import YAML

    config = YAML(typ="safe").load(kube_cluster.kubeconfig.read_text())
    assert [c["name"] for c in config["contexts"]] == ["kubectl-gw-test"]
    assert config["current-context"] == "kubectl-gw-test"
    assert config["contexts"][0]["context"]["namespace"] == "default"
    assert config["clusters"][0]["cluster"]["server"] == kube_cluster.server
    assert config["users"][0]["user"]["token"] == kube_cluster.token


def test_every_session_crd_is_established(
    kube_api: ApiClient, kube_crds: crds.InstallReport
) -> None:
    live = crds.api_request(
        kube_api, "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    )
    by_name = {item["metadata"]["name"]: item for item in live["items"]}
    for bundle in crds.SESSION_BUNDLES:
        expected = crds.crd_names(crds.load_bundle(bundle))
        assert kube_crds.crds[bundle] == len(expected), bundle
        for name in expected:
            conditions = by_name[name]["status"]["conditions"]
            established = [c["status"] for c in conditions if c["type"] == "Established"]
            assert established == ["True"], name
    assert kube_crds.crds == {
        "gateway-api-standard": 10,
        "gateway-api-experimental-x": 3,
        "envoy-gateway": 8,
        "emissary": 14,
    }
    assert kube_crds.total == 35
    # Gateway API CRDs are the standard channel of the pinned bundle.
    httproutes = by_name[f"httproutes.{GW_GROUP}"]["metadata"]["annotations"]
    assert httproutes[f"{GW_GROUP}/channel"] == "standard"
    assert httproutes[f"{GW_GROUP}/bundle-version"] == crds.GATEWAY_API.version
    # Emissary is trimmed to v3alpha1 with no conversion webhook.
    mappings = by_name["mappings.getambassador.io"]["spec"]
    assert [v["name"] for v in mappings["versions"]] == ["v3alpha1"]
    assert mappings["conversion"]["strategy"] == "None"


def test_safe_upgrades_policy_blocks_experimental_over_standard(kube_api: ApiClient) -> None:
    from kubernetes.client.exceptions import ApiException

    policy = crds.api_request(
        kube_api,
        "GET",
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/"
        "safe-upgrades.gateway.networking.k8s.io",
    )
    assert policy["spec"]["failurePolicy"] == "Fail"
    experimental = [
        obj
        for obj in crds.load_bundle("gateway-api-experimental")
        if obj["metadata"]["name"] == f"referencegrants.{GW_GROUP}"
    ]
    assert len(experimental) == 1
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/referencegrants.{GW_GROUP}"
    query = [("fieldManager", crds.FIELD_MANAGER), ("force", "true"), ("dryRun", "All")]
    # A new policy is enforced once the apiserver has compiled it; retry briefly (dry run only).
    deadline = time.monotonic() + 15
    while True:
        try:
            crds.api_request(
                kube_api, "PATCH", path, experimental[0], query, crds.APPLY_CONTENT_TYPE
            )
        except ApiException as exc:
            assert exc.status == 422
            assert "experimental CRDs on top of standard" in (exc.body or "")
            break
        assert time.monotonic() < deadline, "experimental CRD accepted over the standard one"
        time.sleep(0.5)


def _gateway_objects(namespace: str, class_name: str) -> tuple[dict[str, Any], ...]:
    gateway_class = {
        "apiVersion": f"{GW_GROUP}/{GW_VERSION}",
        "kind": "GatewayClass",
        "metadata": {"name": class_name},
        "spec": {"controllerName": "kubectl-gw.test/controller"},
    }
    gateway = {
        "apiVersion": f"{GW_GROUP}/{GW_VERSION}",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": namespace},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [
                {
                    "name": "http",
                    "protocol": "HTTP",
                    "port": 80,
                    "hostname": "*.example.com",
                    "allowedRoutes": {"namespaces": {"from": "Same"}},
                }
            ],
        },
    }
    route = {
        "apiVersion": f"{GW_GROUP}/{GW_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": "route", "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "gw", "sectionName": "http"}],
            "hostnames": ["app.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                    "backendRefs": [{"name": "api", "port": 8080, "weight": 3}],
                }
            ],
        },
    }
    return gateway_class, gateway, route


def test_gateway_and_httproute_round_trip(kube_api: ApiClient, namespace: str) -> None:
    custom = _custom(kube_api)
    class_name = f"kgw-{namespace}"
    gateway_class, gateway, route = _gateway_objects(namespace, class_name)
    custom.create_cluster_custom_object(GW_GROUP, GW_VERSION, "gatewayclasses", gateway_class)
    try:
        custom.create_namespaced_custom_object(GW_GROUP, GW_VERSION, namespace, "gateways", gateway)
        custom.create_namespaced_custom_object(GW_GROUP, GW_VERSION, namespace, "httproutes", route)

        got_class = custom.get_cluster_custom_object(
            GW_GROUP, GW_VERSION, "gatewayclasses", class_name
        )
        got_gw = custom.get_namespaced_custom_object(
            GW_GROUP, GW_VERSION, namespace, "gateways", "gw"
        )
        got_route = custom.get_namespaced_custom_object(
            GW_GROUP, GW_VERSION, namespace, "httproutes", "route"
        )
    finally:
        custom.delete_cluster_custom_object(GW_GROUP, GW_VERSION, "gatewayclasses", class_name)

    assert got_class["spec"]["controllerName"] == "kubectl-gw.test/controller"
    assert got_gw["spec"]["gatewayClassName"] == class_name
    listener = got_gw["spec"]["listeners"][0]
    assert {k: listener[k] for k in ("name", "protocol", "port", "hostname")} == {
        "name": "http",
        "protocol": "HTTP",
        "port": 80,
        "hostname": "*.example.com",
    }
    assert got_route["spec"]["hostnames"] == ["app.example.com"]
    parent = got_route["spec"]["parentRefs"][0]
    assert (parent["name"], parent["sectionName"]) == ("gw", "http")
    # Defaults come from the real CRD schema: parentRef group/kind.
    assert (parent["group"], parent["kind"]) == (GW_GROUP, "Gateway")
    rule = got_route["spec"]["rules"][0]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/api"}}]
    backend = rule["backendRefs"][0]
    assert (backend["name"], backend["port"], backend["weight"]) == ("api", 8080, 3)
    assert (backend["group"], backend["kind"]) == ("", "Service")
    facts.record(
        f"Gateway {namespace}/gw and HTTPRoute {namespace}/route created through the Python "
        "client and read back"
    )


@pytest.mark.parametrize(
    ("label", "path_value"),
    [("relative path", "no-leading-slash"), ("double slash", "/a//b")],
)
def test_invalid_httproute_rejected_by_server_validation(
    kube_api: ApiClient, namespace: str, label: str, path_value: str
) -> None:
    from kubernetes.client.exceptions import ApiException

    custom = _custom(kube_api)
    _, _, route = _gateway_objects(namespace, "unused")
    good = custom.create_namespaced_custom_object(
        GW_GROUP, GW_VERSION, namespace, "httproutes", route, dry_run="All"
    )
    assert good["metadata"]["name"] == "route"

    route["spec"]["rules"][0]["matches"][0]["path"]["value"] = path_value
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(
            GW_GROUP, GW_VERSION, namespace, "httproutes", route, dry_run="All"
        )
    assert caught.value.status == 422, label
    assert "spec.rules[0].matches[0].path" in (caught.value.body or ""), caught.value.body


def test_emissary_v3alpha1_mapping_can_be_created(kube_api: ApiClient, namespace: str) -> None:
    custom = _custom(kube_api)
    mapping = {
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": {"name": "quote", "namespace": namespace},
        "spec": {"hostname": "*", "prefix": "/backend/", "service": "quote:80"},
    }
    custom.create_namespaced_custom_object(
        "getambassador.io", "v3alpha1", namespace, "mappings", mapping
    )
    got = custom.get_namespaced_custom_object(
        "getambassador.io", "v3alpha1", namespace, "mappings", "quote"
    )
    assert got["spec"] == mapping["spec"]


def test_envoy_gateway_backendtrafficpolicy_can_be_created(
    kube_api: ApiClient, namespace: str
) -> None:
    from kubernetes.client.exceptions import ApiException

    custom = _custom(kube_api)
    policy: dict[str, Any] = {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "BackendTrafficPolicy",
        "metadata": {"name": f"btp-{uuid.uuid4().hex[:6]}", "namespace": namespace},
        "spec": {
            "targetRefs": [{"group": GW_GROUP, "kind": "HTTPRoute", "name": "route"}],
            "timeout": {"http": {"requestTimeout": "5s"}},
        },
    }
    custom.create_namespaced_custom_object(
        "gateway.envoyproxy.io", "v1alpha1", namespace, "backendtrafficpolicies", policy
    )
    got = custom.get_namespaced_custom_object(
        "gateway.envoyproxy.io",
        "v1alpha1",
        namespace,
        "backendtrafficpolicies",
        policy["metadata"]["name"],
    )
    assert got["spec"]["targetRefs"] == policy["spec"]["targetRefs"]
    assert got["spec"]["timeout"] == {"http": {"requestTimeout": "5s"}}

    # EG's CEL rules are live too: a targetRef to a foreign group is refused.
    policy["metadata"]["name"] += "-bad"
    policy["spec"]["targetRefs"][0]["group"] = "example.com"
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(
            "gateway.envoyproxy.io",
            "v1alpha1",
            namespace,
            "backendtrafficpolicies",
            policy,
            dry_run="All",
        )
    assert caught.value.status == 422
