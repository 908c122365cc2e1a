"""Policy status against the real API server, written by our controller (with its real Envoy):
Envoy Gateway policies and a BackendTLSPolicy get ``status.ancestors`` with the conditions and
reasons Envoy Gateway writes (Accepted, Invalid, TargetNotFound, Conflicted, partially),
``observedGeneration`` following the spec, other controllers' entries kept, and an unchanged
status never written twice (counted by resourceVersion and by the writer's counter)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from controller import policy_status
from tests.cluster.controller_harness import EG, GW, Running, gateway, start_controller, wait_for
from tests.realparts import certs, facts
from tests.realparts.backends import register_service
from tests.realparts.envoy_fixtures import EchoBackendsFactory

pytestmark = [pytest.mark.cluster, pytest.mark.envoy]
GROUP = "gateway.networking.k8s.io"


def _route(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "gw", "sectionName": "http"}],
            "hostnames": ["web.example.test"],
            "rules": [
                {"name": "a", "backendRefs": [{"name": "web", "port": 80}]},
                {
                    "name": "b",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/secure"}}],
                    "backendRefs": [{"name": "secure", "port": 443}],
                },
            ],
        },
    }


def _policy(
    namespace: str, kind: str, name: str, target: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": EG,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targetRefs": [{"group": GROUP, **target}], **spec},
    }


def _btls(namespace: str, name: str, config_map: str) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "BackendTLSPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": "secure"}],
            "validation": {
                "hostname": "secure.example.test",
                "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": config_map}],
            },
        },
    }


def _ours(running: Running, obj: dict[str, Any]) -> list[dict[str, Any]]:
    found = running.get(obj)
    return [
        a
        for a in (found.get("status") or {}).get("ancestors") or []
        if a.get("controllerName") == running.controller_name
    ]


def _accepted(ancestor: dict[str, Any]) -> tuple[str, str]:
    cond = next(c for c in ancestor["conditions"] if c["type"] == "Accepted")
    return cond["status"], cond["reason"]


def test_policy_status_ancestors_conditions_and_writes(
    kube_cluster: Any,
    kube_api: Any,
    envoy_binary: Path,
    echo_backends: EchoBackendsFactory,
    namespace: str,
    tmp_path: Path,
) -> None:
    web = echo_backends(["web"], routable=True)
    secure = echo_backends(["secure"], routable=True)
    register_service(kube_api, namespace, "web", web)
    register_service(kube_api, namespace, "secure", secure, port=443)
    ancestor = {"group": GROUP, "kind": "Gateway", "namespace": namespace, "name": "gw"}
    route_ancestor = {**ancestor, "sectionName": "http"}
    route_target = {"kind": "HTTPRoute", "name": "web"}

    with start_controller(
        kube_cluster.kubeconfig, envoy_binary, tmp_path / "envoy", prefix="policy"
    ) as running:
        running.apply(gateway(namespace, running.class_name), _route(namespace))
        running.wait_status("/", "web.example.test")
        ca_pem = certs.self_signed(["ca.example.test"])[0].decode()
        running.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "ca", "namespace": namespace},
                "data": {"ca.crt": ca_pem},
            }
        )
        valid = _policy(namespace, "BackendTrafficPolicy", "valid", route_target, retry={})
        running.apply(valid)
        time.sleep(1.1)  # creationTimestamp has a one-second resolution: "valid" is older
        conflicting = _policy(
            namespace, "BackendTrafficPolicy", "conflicting", route_target, retry={}
        )
        typo = _policy(
            namespace,
            "BackendTrafficPolicy",
            "typo",
            {**route_target, "sectionName": "no-such-rule"},
            retry={},
        )
        missing = _policy(
            namespace, "BackendTrafficPolicy", "missing", {"kind": "HTTPRoute", "name": "nope"}
        )
        partial = _policy(
            namespace,
            "BackendTrafficPolicy",
            "partial",
            {"kind": "Gateway", "name": "gw"},
            faultInjection={"abort": {"httpStatus": 503}},
        )
        invalid = _policy(
            namespace,
            "SecurityPolicy",
            "invalid",
            {**route_target, "sectionName": "a"},
            basicAuth={"users": {"name": "no-such-secret"}},
        )
        tls_ok = _btls(namespace, "tls-ok", "ca")
        running.apply(conflicting, typo, missing, partial, invalid, tls_ok)
        everything = (valid, conflicting, typo, partial, invalid, tls_ok)

        def settled() -> bool:
            return all(_ours(running, p) for p in everything)

        wait_for(settled, 30, "every policy's status")
        (got,) = _ours(running, valid)
        assert got["ancestorRef"] == route_ancestor
        assert _accepted(got) == ("True", "Accepted")
        assert got["conditions"][0]["message"] == policy_status.ACCEPTED_MESSAGE
        (got,) = _ours(running, conflicting)
        assert _accepted(got) == ("False", "Conflicted")
        (got,) = _ours(running, typo)
        assert _accepted(got) == ("False", "TargetNotFound")
        assert "no-such-rule" in got["conditions"][0]["message"]
        (got,) = _ours(running, partial)
        assert got["ancestorRef"] == ancestor
        assert _accepted(got) == ("True", "Accepted")
        assert got["conditions"][0]["message"].startswith(policy_status.PARTIAL_PREFIX)
        assert "faultInjection" in got["conditions"][0]["message"]
        overridden = {c["type"]: c for c in got["conditions"]}["Overridden"]
        assert overridden["message"].endswith(f"for these routes: {namespace}/web")
        (got,) = _ours(running, invalid)
        assert _accepted(got) == ("False", "Invalid")
        assert "no-such-secret" in got["conditions"][0]["message"]
        # The route rule the invalid SecurityPolicy covers fails closed. (Polled: Envoy ACKs a
        # route configuration before every worker thread has switched to it.)
        wait_for(
            lambda: running.request("/", host="web.example.test").status == 500,
            10,
            "the rule the invalid SecurityPolicy covers to answer 500",
        )
        (got,) = _ours(running, tls_ok)
        assert got["ancestorRef"] == ancestor
        assert [(c["type"], c["status"], c["reason"]) for c in got["conditions"]] == [
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "True", "ResolvedRefs"),
        ]
        # A target that does not exist may be another controller's: nothing written.
        assert _ours(running, missing) == []

        # observedGeneration follows the spec; a second BackendTLSPolicy on the same Service
        # is conflicted.
        for obj in everything:
            found = running.get(obj)
            for item in _ours(running, obj):
                for cond in item["conditions"]:
                    assert cond["observedGeneration"] == found["metadata"]["generation"], obj
        time.sleep(1.1)  # one-second creationTimestamps: "tls-second" is the younger one
        tls_late = _btls(namespace, "tls-second", "no-such-config-map")
        running.apply(tls_late)
        wait_for(lambda: _ours(running, tls_late), 20, "the second BackendTLSPolicy's status")
        (got,) = _ours(running, tls_late)
        assert [(c["type"], c["reason"]) for c in got["conditions"]] == [
            ("Accepted", "Conflicted"),
            ("ResolvedRefs", "InvalidCACertificateRef"),
        ]

        # Another controller's entry survives our writes.
        theirs = {
            "ancestorRef": {**ancestor, "name": "elsewhere"},
            "controllerName": "example.com/someone-else",
            "conditions": [
                {
                    "type": "Accepted",
                    "status": "True",
                    "reason": "Accepted",
                    "message": "theirs",
                    "observedGeneration": 1,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
        current = running.get(valid)
        path = running.cluster.collection_path(_kind_info(valid), namespace)
        running.cluster.request(
            "PATCH",
            f"{path}/valid/status",
            body={"status": {"ancestors": [*current["status"]["ancestors"], theirs]}},
            content_type="application/merge-patch+json",
        )
        valid["spec"]["retry"] = {"numRetries": 4}
        running.apply(valid)

        def regenerated() -> bool:
            found = running.get(valid)
            ours = _ours(running, valid)
            return bool(ours) and all(
                c["observedGeneration"] == found["metadata"]["generation"]
                for c in ours[0]["conditions"]
            )

        wait_for(regenerated, 20, "observedGeneration of the changed policy")
        assert theirs in running.get(valid)["status"]["ancestors"]

        # Nothing changes → nothing is written: resourceVersions stay, the counter too.
        writer = running.controller.writer
        assert writer is not None
        assert writer.wait_idle(10)
        versions = {
            p["metadata"]["name"]: running.get(p)["metadata"]["resourceVersion"] for p in everything
        }
        writes = sum(writer.writes_by_kind.get(k, 0) for k in policy_status.POLICY_STATUS_KINDS)
        seen = running.controller.stats.reconciles
        for index in range(3):  # unrelated changes make the controller reconcile again
            running.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"poke-{index}", "namespace": namespace},
                    "data": {"n": str(index)},
                }
            )
        # at least one reconcile after the pokes (the three may be taken in a single one)
        assert running.controller.wait_reconciled(seen, 10)
        time.sleep(0.5)
        assert writer.wait_idle(10)
        after = {
            p["metadata"]["name"]: running.get(p)["metadata"]["resourceVersion"] for p in everything
        }
        assert after == versions
        assert (
            sum(writer.writes_by_kind.get(k, 0) for k in policy_status.POLICY_STATUS_KINDS)
            == writes
        )
        facts.record(
            f"policy status: {len(everything) + 1} policies, {writes} status writes, "
            "none repeated on unrelated reconciles"
        )


def _kind_info(obj: dict[str, Any]) -> Any:
    from kubectl_gw.model import kind_info

    return kind_info(obj["apiVersion"], obj["kind"])
