"""``make demo``: a local end-to-end run a person can watch, non-interactive, under a minute.

    python scripts/demo.py            (from the repository root, in the project's venv)

1. a test cluster: etcd + kube-apiserver with the Gateway API and Envoy Gateway CRDs;
2. the ingress-nginx example (``examples/ingress-nginx``): Services and Ingresses applied; no
   kubelet runs, so each Service gets a real echo backend (in a private network namespace) and
   an EndpointSlice pointing at it, as the EndpointSlice controller would; an ``auth`` Service
   (an echo backend: 200 = allowed) for the api Ingress's ``auth-url``; self-signed
   certificates for the Ingresses' TLS Secrets;
3. ``kubectl gw migrate -A --apply --gateway-class kubectl-gw-demo``;
4. a GatewayClass for our controller and ``kubectl gw controller run`` (in this process) with
   its own Envoy, Gateway port P on 127.0.0.1:P+offset;
5. requests through Envoy (HTTP and HTTPS with SNI): the status, which backend answered and
   the path it saw, next to what the Ingress meant;
6. everything torn down (controller, Envoy, backends, network namespace, cluster).

Needs root (the network namespace) and the cached test binaries (``python -m
tests.realparts.bins ensure``); exits 1 with one line if a part cannot start.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # no fork() notices from gRPC
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

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


def get(
    port: int, host: str, path: str, *, tls: bool, headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """GET through Envoy on 127.0.0.1:port with SNI/Host ``host``: status, backend, detail."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the demo's self-signed certificates
        sock = context.wrap_socket(sock, server_hostname=host)
    conn = http.client.HTTPConnection(host)
    conn.sock = sock
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status == 200 and body.startswith(b"{"):
        seen = json.loads(body)
        return response.status, str(seen.get("backend")), f"path seen {seen.get('path')}"
    location = response.getheader("location")
    return response.status, "", f"location {location}" if location else ""


def main() -> int:
    from controller.run import Controller, ControllerConfig
    from kubectl_gw import cli, kube
    from kubectl_gw.io import load_inputs
    from tests.cluster import controller_harness as h
    from tests.realparts import certs, controlplane, crds
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
        # The api Ingress asks http://auth.shop.svc.cluster.local/verify before each request
        # (auth-url); an echo backend answers 200 there, i.e. lets every request through.
        auth = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "auth", "namespace": "shop"},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }
        h.apply(cluster, auth)
        services.append(auth)
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
        for ingress in ingresses:
            for tls in ingress["spec"].get("tls") or []:
                ns = ingress["metadata"]["namespace"]
                h.apply(cluster, certs.tls_secret(ns, tls["secretName"], list(tls["hosts"])))
        say("self-signed certificates for the Ingresses' TLS secrets")

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

        http_port, https_port = 80 + offset, 443 + offset
        h.wait_for(
            lambda: get(https_port, "shop.example.com", "/", tls=True)[0] == 200,
            30,
            "Envoy to serve the migrated routes",
        )
        say(f"requests through Envoy (port 80 on :{http_port}, 443 on :{https_port}):")
        requests: list[tuple[str, str, bool, dict[str, str], str]] = [
            ("shop.example.com", "/", False, {}, "ssl-redirect: 308 to https"),
            ("shop.example.com", "/", True, {}, "storefront (10 % canary)"),
            ("shop.example.com", "/", True, {"Cookie": "beta=always"}, "canary by cookie"),
            ("shop.example.com", "/checkout", True, {}, "storefront, Exact"),
            ("www.shop.example.com", "/", True, {}, "storefront"),
            ("shop.example.com", "/api/v1/items", True, {}, "api, rewrite-target /$2"),
            ("docs.example.com", "/v1/intro", False, {}, "docs"),
        ]
        for host, path, tls, headers, meaning in requests:
            status, backend, detail = get(https_port if tls else http_port, host, path, tls=tls,
                                          headers=headers)  # fmt: skip
            url = f"{'https' if tls else 'http'}://{host}{path}"
            extra = " ".join(f"-H '{k}: {v}'" for k, v in headers.items())
            print(f"    curl {url} {extra}".rstrip())
            print(f"      → {status} {backend or '-'} {detail}   [Ingress: {meaning}]")
    say("torn down: controller, Envoy, backends, network namespace, cluster")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # one line for a person watching
        print(f"demo failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        sys.exit(1)
