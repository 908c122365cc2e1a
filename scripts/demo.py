"""``make demo``: a local end-to-end run a person can watch, non-interactive, under a minute.

    python scripts/demo.py            (from the repository root, in the project's venv)

1. a test cluster: etcd + kube-apiserver with the Gateway API and Envoy Gateway CRDs;
2. the ingress-nginx example (``examples/ingress-nginx``): Services and Ingresses applied; no
   kubelet runs, so each Service gets a real echo backend (in a private network namespace) and
   an EndpointSlice pointing at it, as the EndpointSlice controller would;
3. ``kubectl gw migrate -A --apply --gateway-class kubectl-gw-demo``;
4. a GatewayClass for our controller and ``kubectl gw controller run`` (in this process) with
   its own Envoy, Gateway port P on 127.0.0.1:P+offset;
5. requests through Envoy for every host/path of the Ingresses: which backend answered, and
   the path it saw;
6. everything torn down (controller, Envoy, backends, network namespace, cluster).

Needs root (the network namespace) and the cached test binaries (``python -m
tests.realparts.bins ensure``); exits 1 with one line if a part cannot start.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXAMPLE = ROOT / "examples" / "ingress-nginx"
CLASS = "kubectl-gw-demo"
CONTROLLER_NAME = "kubectl-gw.dev/demo"


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {text}", flush=True)


STARTED = time.monotonic()


def endpoint_slice(service: dict[str, Any], backend: Any) -> dict[str, Any]:
    meta = service["metadata"]
    port = (service["spec"].get("ports") or [{}])[0]
    slice_port: dict[str, Any] = {"protocol": "TCP", "port": backend.port}
    if port.get("name"):
        slice_port["name"] = port["name"]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{meta['name']}-demo",
            "namespace": meta["namespace"],
            "labels": {"kubernetes.io/service-name": meta["name"]},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [backend.address], "conditions": {"ready": True}}],
        "ports": [slice_port],
    }


def main() -> int:
    from controller.run import Controller, ControllerConfig
    from kubectl_gw import cli, kube
    from kubectl_gw.io import load_inputs
    from tests.bench import controller_harness as h
    from tests.realparts import controlplane, crds
    from tests.realparts.backends import start_backends
    from tests.realparts.bins import ensure_binaries
    from tests.realparts.netns import TestNetwork

    with contextlib.ExitStack() as stack:
        say("starting etcd + kube-apiserver")
        plane = controlplane.start(ensure_binaries())
        stack.callback(plane.stop)
        with contextlib.closing(plane.api_client()) as api:
            crds.install_bundles(
                api, ("gateway-api-standard", "gateway-api-experimental-x", "envoy-gateway")
            )
        say(f"cluster up at {plane.server} (kubeconfig {plane.kubeconfig})")
        cluster = kube.connect(kube.KubeTarget(kubeconfig=str(plane.kubeconfig)))

        objects = [loaded.obj for loaded in load_inputs([str(EXAMPLE)]).objects]
        namespaces = sorted(
            {o["metadata"]["namespace"] for o in objects if "namespace" in o["metadata"]}
        )
        for ns in namespaces:
            h.apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for obj in objects:
            h.apply(cluster, dict(obj))
        ingresses = [o for o in objects if o["kind"] == "Ingress"]
        services = [dict(o) for o in objects if o["kind"] == "Service"]
        say(
            f"applied {EXAMPLE.relative_to(ROOT)}: "
            f"{len(ingresses)} Ingresses, {len(services)} Services"
        )

        network = TestNetwork.create()
        stack.callback(network.close)
        for service in services:
            meta = service["metadata"]
            name = f"{meta['namespace']}/{meta['name']}"
            backend = start_backends([name], routable=True, network=network)[0]
            stack.callback(backend.stop)
            h.apply(cluster, endpoint_slice(service, backend))
        say(f"one echo backend per Service in {network.describe()}, as EndpointSlices")

        say(f"$ kubectl gw migrate -A --apply --gateway-class {CLASS}")
        code = cli.run(
            ["migrate", "--kubeconfig", str(plane.kubeconfig), "-A", "--apply",
             "--gateway-class", CLASS]
        )  # fmt: skip
        if code != 0:
            raise RuntimeError(f"migrate --apply exited {code}")
        h.apply(
            cluster,
            {
                "apiVersion": h.GW,
                "kind": "GatewayClass",
                "metadata": {"name": CLASS},
                "spec": {"controllerName": CONTROLLER_NAME},
            },
        )
        offset = h.free_port_offset((80, 443))
        config = ControllerConfig(
            target=kube.KubeTarget(kubeconfig=str(plane.kubeconfig)),
            controller_name=CONTROLLER_NAME,
            listen_address="127.0.0.1",
            port_offset=offset,
            workdir=Path(stack.enter_context(tempfile.TemporaryDirectory())),
        )
        controller = Controller(config)
        stack.callback(controller.stop)
        controller.start()
        say(
            f"$ kubectl gw controller run --controller-name {CONTROLLER_NAME} "
            f"--port-offset {offset}"
        )

        address = ("127.0.0.1", 80 + offset)
        checks: list[tuple[str, str, str]] = []
        for ingress in ingresses:
            for rule in ingress["spec"].get("rules") or []:
                for path in (rule.get("http") or {}).get("paths") or []:
                    value = path.get("path", "/")
                    if any(c in value for c in "()[]*+?$^"):
                        value = "/"
                    service = path["backend"].get("service", {}).get("name", "?")
                    checks.append((rule.get("host", "*"), value, service))
        h.wait_for(
            lambda: h.request(address, checks[0][0], checks[0][1]).status not in (0, 404),
            30,
            "Envoy to serve the migrated routes",
        )
        say(f"requests through Envoy on 127.0.0.1:{80 + offset} (port 80):")
        for host, path, service in sorted(set(checks)):
            answer = h.request(address, host, path)
            where = f"backend {answer.backend}" if answer.backend else "no backend"
            print(
                f"    GET http://{host}{path:<14} → {answer.status} {where:<28} "
                f"(Ingress: {service})"
            )
    say("torn down: controller, Envoy, backends, network namespace, cluster")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # one line for a person watching
        print(f"demo failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        sys.exit(1)
