"""``kubectl gw install``: the manifests that run the controller and Envoy inside a cluster.

:func:`render` fills the jinja2 templates in ``controller/templates/`` (values go in through the
``tojson`` filter, so every string is quoted YAML) and parses the result into objects, in apply
order:

- Namespace, ServiceAccount;
- least-privilege RBAC: a ClusterRole that may ``get/list/watch`` exactly the kinds the
  provider watches (:func:`controller.run.watched_kinds`) and ``patch/update`` exactly the
  ``status`` subresources the status writer writes (:data:`controller.status.STATUS_KINDS`),
  and its ClusterRoleBinding;
- the controller: a kubeconfig ConfigMap (the API server through the ServiceAccount's token and
  CA, as the controller reads a kubeconfig), a ClusterIP Service for xDS, and a Deployment
  running ``kubectl-gw controller run --no-envoy``;
- Envoy: its bootstrap ConfigMap (ADS at the xDS Service, resolved by DNS), a Deployment, and
  a Service exposing the Gateway ports (port P → container port P + ``port_offset``, so Envoy
  runs without root);
- the GatewayClass with our ``controllerName``.

The Gateway API CRDs themselves are not part of it (install the standard channel first).
:func:`apply` sends them with server-side apply (optionally ``dryRun=All``), in that order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from kubectl_gw import __version__
from kubectl_gw.errors import ClusterError, InputError
from kubectl_gw.model import KindInfo, KubeObject, kind_info

DEFAULT_NAMESPACE = "kubectl-gw-system"
DEFAULT_NAME = "kubectl-gw"
DEFAULT_GATEWAY_CLASS = "kubectl-gw"
DEFAULT_IMAGE = f"ghcr.io/kubectl-gw/kubectl-gw:{__version__}"
DEFAULT_ENVOY_IMAGE = "docker.io/envoyproxy/envoy:v1.40.0"
XDS_PORT = 18000
ADMIN_PORT = 19000
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TEMPLATES = (
    "namespace.yaml.j2",
    "serviceaccount.yaml.j2",
    "rbac.yaml.j2",
    "controller.yaml.j2",
    "envoy.yaml.j2",
    "gatewayclass.yaml.j2",
)

# Kinds the installer applies that the shared registry does not list.
_EXTRA_KINDS = {
    ("", "ServiceAccount"): KindInfo(
        "", "ServiceAccount", "serviceaccounts", True, "core", ("v1",)
    ),
    ("rbac.authorization.k8s.io", "ClusterRole"): KindInfo(
        "rbac.authorization.k8s.io", "ClusterRole", "clusterroles", False, "core", ("v1",)
    ),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): KindInfo(
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "clusterrolebindings",
        False,
        "core",
        ("v1",),
    ),
    ("apps", "Deployment"): KindInfo("apps", "Deployment", "deployments", True, "core", ("v1",)),
}


@dataclass(frozen=True)
class InstallOptions:
    namespace: str = DEFAULT_NAMESPACE
    name: str = DEFAULT_NAME
    controller_name: str = ""  # "" = controller.run.DEFAULT_CONTROLLER_NAME
    gateway_class: str = DEFAULT_GATEWAY_CLASS
    image: str = DEFAULT_IMAGE
    envoy_image: str = DEFAULT_ENVOY_IMAGE
    ports: tuple[int, ...] = (80, 443)
    port_offset: int = 10000
    service_type: str = "LoadBalancer"
    envoy_replicas: int = 1
    status_address: str | None = None


def _dns_label(value: str, what: str) -> str:
    ok = (
        0 < len(value) <= 63
        and value[0].isalnum()
        and value[-1].isalnum()
        and all(c.islower() or c.isdigit() or c == "-" for c in value)
    )
    if not ok:
        raise InputError(f"{what} {value!r}: must be a DNS label (lower case, digits, '-')")
    return value


def _rules(infos: Iterable[KindInfo], subresource: str = "") -> list[dict[str, Any]]:
    by_group: dict[str, list[str]] = {}
    for info in infos:
        resource = f"{info.plural}/{subresource}" if subresource else info.plural
        by_group.setdefault(info.group, [])
        if resource not in by_group[info.group]:
            by_group[info.group].append(resource)
    return [{"group": g, "resources": sorted(r)} for g, r in sorted(by_group.items())]


def _kubeconfig() -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "in-cluster",
                "cluster": {
                    "server": "https://kubernetes.default.svc",
                    "certificate-authority": f"{SA_DIR}/ca.crt",
                },
            }
        ],
        "users": [{"name": "controller", "user": {"tokenFile": f"{SA_DIR}/token"}}],
        "contexts": [
            {"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "controller"}}
        ],
        "current-context": "in-cluster",
    }
    return json.dumps(doc, indent=2) + "\n"


def values(options: InstallOptions) -> dict[str, Any]:
    """Everything the templates read (pure)."""
    from controller import envoy_process
    from controller.run import DEFAULT_CONTROLLER_NAME, watched_kinds
    from controller.status import STATUS_KINDS

    namespace = _dns_label(options.namespace, "namespace")
    name = _dns_label(options.name, "name")
    _dns_label(options.gateway_class, "GatewayClass name")
    controller_name = options.controller_name or DEFAULT_CONTROLLER_NAME
    if "/" not in controller_name:
        raise InputError(f"controller name {controller_name!r}: expected DOMAIN/PATH")
    if not options.ports:
        raise InputError("at least one Gateway port is needed")
    for port in options.ports:
        if not 1 <= port <= 65535 or not 1 <= port + options.port_offset <= 65535:
            raise InputError(f"port {port} (+ offset {options.port_offset}) is out of range")
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "kubectl-gw"}
    controller_selector = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": "controller",
    }
    envoy_selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "envoy"}
    status_infos = []
    for kind in STATUS_KINDS:
        info = next((k for k in watched_kinds() if k.kind == kind), None)
        if info is not None:
            status_infos.append(info)
    args = [
        "controller",
        "run",
        "--kubeconfig",
        "/etc/kubectl-gw/kubeconfig",
        "--controller-name",
        controller_name,
        "--no-envoy",
        "--xds-address",
        f"0.0.0.0:{XDS_PORT}",
        "--listen-address",
        "0.0.0.0",
        "--port-offset",
        str(options.port_offset),
    ]
    if options.status_address:
        args += ["--status-address", options.status_address]
    boot = envoy_process.bootstrap(
        xds_host=f"{name}-xds.{namespace}.svc",
        xds_port=XDS_PORT,
        node_id=f"{name}-envoy",
        node_cluster=controller_name,
        admin_address="127.0.0.1",
        admin_port=ADMIN_PORT,
        xds_dns=True,
    )
    return {
        "namespace": namespace,
        "name": name,
        "labels": labels,
        "controller_name": controller_name,
        "gateway_class": options.gateway_class,
        "image": options.image,
        "envoy_image": options.envoy_image,
        "read_rules": _rules(watched_kinds()),
        "status_rules": _rules(status_infos, "status"),
        "kubeconfig": _kubeconfig(),
        "xds_port": XDS_PORT,
        "controller_selector": controller_selector,
        "controller_pod_labels": controller_selector,
        "controller_args": args,
        "envoy_selector": envoy_selector,
        "envoy_pod_labels": envoy_selector,
        "envoy_replicas": options.envoy_replicas,
        "envoy_args": [
            "--config-path",
            "/etc/envoy/bootstrap.json",
            "--disable-hot-restart",
            "--drain-strategy",
            "immediate",
            "--drain-time-s",
            "5",
            "--log-level",
            "warn",
        ],
        "bootstrap": json.dumps(boot, indent=2) + "\n",
        "ports": [
            {"port": p, "target": p + options.port_offset} for p in sorted(set(options.ports))
        ],
        "service_type": options.service_type,
    }


def render_text(options: InstallOptions) -> str:
    """The manifests as one YAML stream, straight from the templates."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("controller", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    data = values(options)
    parts = [env.get_template(name).render(**data) for name in TEMPLATES]
    return "---\n".join(part if part.endswith("\n") else part + "\n" for part in parts)


def render(options: InstallOptions) -> list[KubeObject]:
    """The manifests as objects, in apply order."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    docs = [d for d in yaml.load_all(render_text(options)) if d]
    return cast(list[KubeObject], docs)


def info_for(obj: KubeObject) -> KindInfo:
    group = obj["apiVersion"].rpartition("/")[0]
    info = kind_info(obj["apiVersion"], obj["kind"]) or _EXTRA_KINDS.get((group, obj["kind"]))
    if info is None:
        raise AssertionError(f"no kind info for {obj['apiVersion']} {obj['kind']}")
    return info


def apply(
    cluster: Any,
    objects: Sequence[KubeObject],
    *,
    dry_run: bool = False,
    report: Callable[[str], None] = lambda _line: None,
) -> list[KubeObject]:
    """Server-side apply each object in order; ``report`` gets kubectl's line per object.

    Stops at the first refusal with a ClusterError naming the object and how many went in.
    """
    done: list[KubeObject] = []
    suffix = " (server dry run)" if dry_run else ""
    for obj in objects:
        info = info_for(obj)
        label = f"{info.plural}/{obj['metadata']['name']}"
        if info.group:
            label = f"{info.plural}.{info.group}/{obj['metadata']['name']}"
        try:
            done.append(cluster.apply(obj, info, dry_run=dry_run))
        except ClusterError as err:
            raise ClusterError(
                f"{label}: {err} ({len(done)} of {len(objects)} objects applied before it)",
                status=err.status,
            ) from err
        report(f"{label} serverside-applied{suffix}")
    return done
