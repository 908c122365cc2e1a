"""A deterministic synthetic Ingress corpus for the migrate benchmark.

``generate(n)`` gives ``n`` Ingresses (plus their Services and IngressClasses) with the mix a
real ingress-nginx cluster has: teams in namespaces, hosts shared by several Ingresses,
wildcard hosts, TLS on most hosts, 1-4 paths of every pathType, named and numbered ports, and
the common annotations (redirects, regex and rewrites, body size, timeouts, CORS, allow lists,
rate limits, affinity, backend protocol, canaries, the odd snippet). The same ``n`` and
``seed`` always give the same bytes.

    python -m tests.bench.corpus 1000 > corpus.yaml
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PREFIX = "nginx.ingress.kubernetes.io"
DEFAULT_SEED = 20260601
INGRESSES_PER_NAMESPACE = 25
CLASSES = ("nginx", "nginx-internal")

# (probability, annotations): each entry is drawn independently per Ingress.
_ANNOTATION_MIX: tuple[tuple[float, dict[str, str]], ...] = (
    (0.30, {"ssl-redirect": "true"}),
    (0.10, {"force-ssl-redirect": "true"}),
    (0.25, {"proxy-body-size": "20m"}),
    (0.25, {"proxy-read-timeout": "120", "proxy-send-timeout": "120"}),
    (0.10, {"proxy-connect-timeout": "10"}),
    (0.10, {"enable-cors": "true", "cors-allow-origin": "https://app.example.com"}),
    (0.08, {"whitelist-source-range": "10.0.0.0/8,192.168.0.0/16"}),
    (0.08, {"limit-rps": "50"}),
    (
        0.05,
        {"affinity": "cookie", "session-cookie-name": "route", "session-cookie-max-age": "3600"},
    ),
    (0.05, {"upstream-hash-by": "$request_uri"}),
    (0.05, {"proxy-next-upstream": "error timeout http_502", "proxy-next-upstream-tries": "3"}),
    (0.04, {"custom-http-errors": "404,503"}),
    (0.03, {"configuration-snippet": 'more_set_headers "X-Frame-Options: DENY";'}),
    (0.03, {"server-alias": "alias.example.net"}),
)


def _name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:05d}"


def _service(namespace: str, name: str, grpc: bool) -> dict[str, Any]:
    port = {"name": "grpc", "port": 50051, "targetPort": 50051, "appProtocol": "grpc"}
    if not grpc:
        port = {"name": "http", "port": 80, "targetPort": 8080}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"selector": {"app": name}, "ports": [port]},
    }


def _backend(service: str, named: bool, grpc: bool) -> dict[str, Any]:
    if grpc:
        port: dict[str, Any] = {"number": 50051}
    else:
        port = {"name": "http"} if named else {"number": 80}
    return {"service": {"name": service, "port": port}}


def _paths(rng: random.Random, regex: bool, service: str, named: bool, grpc: bool) -> list[Any]:
    count = rng.choice((1, 1, 1, 2, 2, 3, 4))
    stems = rng.sample(["api", "static", "assets", "v1", "v2", "auth", "admin", "img", "ws"], count)
    paths = []
    for i, stem in enumerate(stems):
        if regex:
            path, path_type = f"/{stem}(/|$)(.*)", "ImplementationSpecific"
        elif i == 0 and rng.random() < 0.5:
            path, path_type = "/", "Prefix"
        else:
            path_type = rng.choice(("Prefix", "Prefix", "Exact", "ImplementationSpecific"))
            path = f"/{stem}" + ("/" if rng.random() < 0.2 else "")
        paths.append(
            {"path": path, "pathType": path_type, "backend": _backend(service, named, grpc)}
        )
    return paths


def generate(count: int, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """``count`` Ingresses and what they need (IngressClasses first, then per namespace)."""
    rng = random.Random(seed)
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {
                "name": cls,
                **(
                    {"annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}}
                    if cls == "nginx"
                    else {}
                ),
            },
            "spec": {"controller": "k8s.io/ingress-nginx"},
        }
        for cls in CLASSES
    ]
    namespaces = max(1, count // INGRESSES_PER_NAMESPACE)
    hosts_per_namespace = max(1, INGRESSES_PER_NAMESPACE * 3 // 4)  # ~1.3 Ingresses per host
    made = 0
    index = 0
    while made < count:
        ns = _name("team", index % namespaces)
        index += 1
        host_no = rng.randrange(hosts_per_namespace)
        apex = f"{ns}.example.com"
        if host_no == 0 and rng.random() < 0.3:
            host = f"*.{apex}"
        elif host_no == 1:
            host = apex
        else:
            host = f"svc{host_no}.{apex}"
        name = _name("ing", made)
        service = _name("svc", made)
        grpc = rng.random() < 0.03
        named = rng.random() < 0.4
        annotations: dict[str, str] = {}
        for chance, values in _ANNOTATION_MIX:
            if rng.random() < chance:
                annotations.update(values)
        regex = False
        if not grpc and rng.random() < 0.15:
            annotations["rewrite-target"] = "/$2"
            annotations["use-regex"] = "true"
            regex = True
        elif not grpc and rng.random() < 0.08:
            annotations["use-regex"] = "true"
        if grpc:
            annotations["backend-protocol"] = "GRPC"
        elif rng.random() < 0.03:
            annotations["backend-protocol"] = "HTTPS"
        spec: dict[str, Any] = {
            "rules": [
                {
                    "host": host,
                    "http": {"paths": _paths(rng, regex, service, named, grpc)},
                }
            ]
        }
        if rng.random() < 0.9:
            spec = {"ingressClassName": CLASSES[0] if rng.random() < 0.9 else CLASSES[1], **spec}
        tls = rng.random() < 0.6
        if tls:
            secret = f"{host.replace('*', 'wildcard').replace('.', '-')}-tls"
            spec["tls"] = [{"hosts": [host], "secretName": secret}]
        ingress = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": name,
                "namespace": ns,
                **(
                    {"annotations": {f"{PREFIX}/{k}": v for k, v in sorted(annotations.items())}}
                    if annotations
                    else {}
                ),
            },
            "spec": spec,
        }
        objects.append(_service(ns, service, grpc))
        objects.append(ingress)
        made += 1
        if made < count and not grpc and rng.random() < 0.05:  # a canary next to it
            canary = json.loads(json.dumps(ingress))
            canary["metadata"]["name"] = _name("ing", made) + "-canary"
            canary["metadata"]["annotations"] = {
                f"{PREFIX}/canary": "true",
                f"{PREFIX}/canary-weight": str(rng.choice((5, 10, 20, 50))),
            }
            canary_service = _name("svc", made) + "-canary"
            for path in canary["spec"]["rules"][0]["http"]["paths"]:
                path["backend"] = _backend(canary_service, named, grpc)
            canary["spec"].pop("tls", None)
            objects.append(_service(ns, canary_service, grpc))
            objects.append(canary)
            made += 1
    return objects


def documents(objects: list[dict[str, Any]]) -> Iterator[str]:
    """Each object as one JSON-flow YAML document (valid YAML, quick to write)."""
    for obj in objects:
        yield "---\n" + json.dumps(obj, sort_keys=False) + "\n"


def write(path: Path, count: int, seed: int = DEFAULT_SEED) -> Path:
    """Write the corpus as block-style YAML, the way ``kubectl get -o yaml`` users hand it in
    (libyaml's emitter when PyYAML has it: 10,000 Ingresses in seconds, not half a minute)."""
    objects = generate(count, seed)
    try:
        import yaml  # type: ignore[import-untyped]

        dumper: Any = yaml.CSafeDumper
    except (ImportError, AttributeError):
        dumper = None
    with path.open("w", encoding="utf-8") as handle:
        if dumper is not None:
            yaml.dump_all(objects, handle, Dumper=dumper, sort_keys=False, default_flow_style=False)
        else:
            from ruamel.yaml import YAML

            writer = YAML(typ="safe", pure=True)
            writer.default_flow_style = False
            writer.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
            writer.dump_all(objects, handle)
    return path


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    count = int(args[0]) if args else 1000
    seed = int(args[1]) if len(args) > 1 else DEFAULT_SEED
    for doc in documents(generate(count, seed)):
        sys.stdout.write(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
