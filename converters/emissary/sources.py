"""Where Emissary configuration comes from, normalised to v3alpha1 meaning.

- CRDs of group ``getambassador.io`` in v1, v2 or v3alpha1 (``ambassador/v0|v1`` in annotations);
- ``getambassador.io/config`` annotations on Services and Ingresses: multi-document YAML, each
  document flattened (``apiVersion``, ``kind``, ``name``, optional ``namespace`` and
  ``metadata_labels``; the rest is the spec), namespace and labels defaulting to the parent's;
- Ingresses handled by Emissary (IngressClass controller ``getambassador.io/ingress-controller``
  or the ``kubernetes.io/ingress.class: ambassador`` annotation): every path becomes a Mapping with
  Emissary's own semantics (the default rewrite ``/`` strips the Ingress path) and every TLS host a
  Host with ``insecure.action: Route``.

Then ``ambassador_id`` filtering keeps the resources of one installation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from converters.emissary.model import Src
from converters.report import Report
from kubectl_gw.errors import InputError
from kubectl_gw.model import EMISSARY_GROUP, KubeObject, ObjectRef, split_api_version

CONFIG_ANNOTATION = "getambassador.io/config"
ID_ANNOTATION = "getambassador.io/ambassador-id"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
INGRESS_CONTROLLER = "getambassador.io/ingress-controller"
AMBASSADOR_CLASS = "ambassador"
KINDS = (
    "Mapping",
    "Host",
    "TLSContext",
    "TCPMapping",
    "Listener",
    "Module",
    "AuthService",
    "RateLimitService",
)
EDGE_STACK_KINDS = (
    "Filter",
    "FilterPolicy",
    "RateLimit",
    "WebApplicationFirewall",
    "WebApplicationFirewallPolicy",
    "DevPortal",
)
OTHER_KINDS = (
    "LogService",
    "TracingService",
    "KubernetesServiceResolver",
    "KubernetesEndpointResolver",
    "ConsulResolver",
)
V3 = "v3alpha1"


@dataclass
class Gathered:
    resources: list[Src] = field(default_factory=list)
    services: dict[tuple[str, str], KubeObject] = field(default_factory=dict)
    secrets: dict[tuple[str, str], KubeObject] = field(default_factory=dict)
    namespaces: set[str] = field(default_factory=set)
    parents: list[Src] = field(default_factory=list)  # Services/Ingresses reported for their keys


def _ns(obj: KubeObject) -> str:
    return (obj.get("metadata") or {}).get("namespace") or "default"


def gather(objects: Sequence[KubeObject], report: Report, ambassador_id: str | None) -> Gathered:
    out = Gathered()
    classes: dict[str, str] = {}
    for obj in objects:
        kind = obj.get("kind")
        group, _version = split_api_version(obj.get("apiVersion", ""))
        meta = obj.get("metadata") or {}
        if kind == "Namespace" and not group:
            out.namespaces.add(meta.get("name", ""))
            continue
        if group == "networking.k8s.io" and kind == "IngressClass":
            classes[meta.get("name", "")] = (obj.get("spec") or {}).get("controller", "")
        ns = _ns(obj)
        if meta.get("namespace"):
            out.namespaces.add(ns)
        if not group and kind == "Service":
            out.services[(ns, meta.get("name", ""))] = obj
        elif not group and kind == "Secret":
            out.secrets[(ns, meta.get("name", ""))] = obj
    for obj in objects:
        group, version = split_api_version(obj.get("apiVersion", ""))
        kind = obj.get("kind", "")
        ref = ObjectRef.of(obj)
        if not ref.namespace:
            ref = ObjectRef(ref.api_version, ref.kind, "default", ref.name)
        meta = obj.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        if group == EMISSARY_GROUP:
            spec = obj.get("spec")
            src = _make(
                ref,
                kind,
                version,
                ref.namespace,
                ref.name,
                meta.get("labels") or {},
                spec if isinstance(spec, dict) else {},
            )
            if kind in KINDS:
                out.resources.append(src)
            else:
                _foreign(src, kind)
                out.parents.append(src)
            continue
        if not group and kind == "Service" and CONFIG_ANNOTATION in annotations:
            parent = _make(ref, kind, version, ref.namespace, ref.name, {}, {})
            parent.key_prefix = ""
            _annotation(obj, parent, out)
            out.parents.append(parent)
        elif group == "networking.k8s.io" and kind == "Ingress":
            _ingress(obj, ref, classes, out, report)
    kept: list[Src] = []
    wanted = ambassador_id or "default"
    for src in out.resources:
        ids = _ids(src)
        if ids is None:
            src.error("ambassador_id", "ambassador_id must be a string or a list of strings")
            out.parents.append(src)
            continue
        if wanted in ids or "_automatic_" in ids:
            if "ambassador_id" in src.spec:
                src.note("ambassador_id", "converted", f"belongs to the installation {wanted!r}")
            kept.append(src)
        else:
            src.note(
                "ambassador_id",
                "ignored",
                f"belongs to {', '.join(ids)}, not to the installation {wanted!r} "
                "(--ambassador-id); not converted",
                [],
            )
            src.dropped = True
            out.parents.append(src)
    out.resources = kept
    return out


def _ids(src: Src) -> list[str] | None:
    value = src.spec.get("ambassador_id")
    if value is None:
        return ["default"]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value) or ["default"]
    return None


def _foreign(src: Src, kind: str) -> None:
    src.key_prefix = ""
    if kind in EDGE_STACK_KINDS:
        msg = f"{kind} is an Ambassador Edge Stack kind; not converted"
    elif kind in OTHER_KINDS:
        msg = {
            "LogService": "no Gateway API equivalent; Envoy Gateway's EnvoyProxy "
            "telemetry.accessLog (ALS sink) is the closest target; not converted",
            "TracingService": "no Gateway API equivalent; Envoy Gateway's EnvoyProxy "
            "telemetry.tracing is the closest target; not converted",
            "KubernetesServiceResolver": "Envoy Gateway routes to endpoints; BackendTrafficPolicy "
            "routingType: Service is the closest target; not converted",
            "KubernetesEndpointResolver": "Envoy Gateway routes to endpoints by default",
            "ConsulResolver": "Consul discovery has no Gateway API equivalent; not converted",
        }[kind]
    else:
        msg = f"{kind} is not an Emissary kind kubectl-gw knows; not converted"
    if kind == "KubernetesEndpointResolver":
        src.note("kind", "ignored", msg, [])
    else:
        src.note("kind", "unsupported", msg, [])
    src.spec = {}
    src.dropped = True


def _make(
    ref: ObjectRef,
    kind: str,
    version: str,
    namespace: str,
    name: str,
    labels: dict[str, str],
    spec: dict[str, Any],
) -> Src:
    src = Src(ref, kind, version, namespace, name, dict(labels), copy.deepcopy(spec))
    if version != V3:
        _normalise(src)
    return src


# --------------------------------------------------------------------------- v1/v2 → v3alpha1


def _normalise(src: Src) -> None:
    spec = src.spec
    if src.kind == "Mapping":
        if "hostname" not in spec:
            if "host" in spec and not spec.get("host_regex"):
                spec["hostname"] = spec.pop("host")
                src.renamed["hostname"] = "host"
            elif "host" not in spec:
                spec["hostname"] = "*"
                src.renamed["hostname"] = "host"
                src.note(
                    "hostname",
                    "converted",
                    f"not set: in {src.version} a Mapping without host serves every host "
                    '(v3alpha1 would need hostname: "*")',
                )
        for plain, regex in (
            ("headers", "regex_headers"),
            ("query_parameters", "regex_query_parameters"),
        ):
            values = spec.get(plain)
            if isinstance(values, dict):
                present = [k for k, v in values.items() if v is True]
                for k in present:
                    del values[k]
                    spec.setdefault(regex, {})[k] = ".*"
                    src.renamed.setdefault(regex, plain)
                if not values:
                    del spec[plain]
        for key in ("remove_request_headers", "remove_response_headers"):
            if isinstance(spec.get(key), str):
                spec[key] = [spec[key]]
        cors = spec.get("cors")
        if isinstance(cors, dict):
            for key in ("origins", "methods", "headers", "exposed_headers"):
                if isinstance(cors.get(key), str):
                    cors[key] = [p.strip() for p in cors[key].split(",") if p.strip()]
    elif src.kind == "Host":
        if "selector" in spec and "mappingSelector" not in spec:
            spec["mappingSelector"] = spec.pop("selector")
            src.renamed["mappingSelector"] = "selector"
        if "ambassadorId" in spec and "ambassador_id" not in spec:
            spec["ambassador_id"] = spec.pop("ambassadorId")
            src.renamed["ambassador_id"] = "ambassadorId"


# --------------------------------------------------------------------------- annotations


def _annotation(obj: KubeObject, parent: Src, out: Gathered) -> None:
    from kubectl_gw import io as kio

    meta = obj.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(CONFIG_ANNOTATION, "")
    where = f"{parent.ref.kind} {parent.namespace}/{parent.name} annotation {CONFIG_ANNOTATION}"
    try:
        docs = [doc for _n, doc in kio._parse_documents(text, where) if doc is not None]
    except InputError as err:
        parent.error(CONFIG_ANNOTATION, f"malformed YAML: {err}")
        return
    made: list[str] = []
    problems: list[str] = []
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            problems.append(f"document {index + 1} is not a mapping")
            continue
        api = str(doc.get("apiVersion", ""))
        kind = str(doc.get("kind", ""))
        name = doc.get("name")
        group, _sep, version = api.rpartition("/")
        if group == "ambassador":
            group, version = EMISSARY_GROUP, "v2" if version in ("v0", "v1") else version
        if group != EMISSARY_GROUP or kind not in KINDS or not isinstance(name, str) or not name:
            problems.append(
                f"document {index + 1} ({kind or 'no kind'} {name or ''}) is not a "
                "known Emissary resource with a name"
            )
            continue
        ns = str(doc.get("namespace") or parent.namespace)
        labels = doc.get("metadata_labels")
        if not isinstance(labels, dict):
            labels = dict(meta.get("labels") or {})
        spec = {
            k: v
            for k, v in doc.items()
            if k not in ("apiVersion", "kind", "name", "namespace", "metadata_labels")
        }
        ref = ObjectRef(f"{EMISSARY_GROUP}/{version}", kind, ns, name)
        src = _make(ref, kind, version, ns, name, labels, spec)
        src.origin = where
        out.resources.append(src)
        made.append(f"{kind} {ns}/{name}")
    if problems:
        parent.note(
            CONFIG_ANNOTATION,
            "error" if not made else "partial",
            "; ".join(problems) + (f"; read {', '.join(made)}" if made else ""),
            [],
        )
    else:
        parent.note(
            CONFIG_ANNOTATION,
            "converted",
            f"embedded {', '.join(made) or 'nothing'}: each is reported as its own resource",
            [],
        )


# --------------------------------------------------------------------------- Ingresses


def _ingress(
    obj: KubeObject, ref: ObjectRef, classes: dict[str, str], out: Gathered, report: Report
) -> None:
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    spec = obj.get("spec") or {}
    cls_name = spec.get("ingressClassName")
    how = ""
    if annotations.get(CLASS_ANNOTATION) == AMBASSADOR_CLASS:
        how = f"annotation {CLASS_ANNOTATION}: {AMBASSADOR_CLASS}"
        key = CLASS_ANNOTATION
    elif cls_name and (
        classes.get(cls_name) == INGRESS_CONTROLLER
        or (cls_name not in classes and cls_name == AMBASSADOR_CLASS)
    ):
        how = f"IngressClass {cls_name} (controller {INGRESS_CONTROLLER})"
        key = "spec.ingressClassName"
    parent = Src(ref, "Ingress", "v1", ref.namespace, ref.name, {}, {}, key_prefix="")
    if CONFIG_ANNOTATION in annotations:
        _annotation(obj, parent, out)
    if not how:
        if CONFIG_ANNOTATION in annotations:
            out.parents.append(parent)
        # Another controller's Ingress: not this provider's to report beyond its annotation.
        return
    ids = annotations.get(ID_ANNOTATION)
    labels = dict(meta.get("labels") or {})
    made: list[Src] = []

    def add(kind: str, key: str, name: str, mspec: dict[str, Any]) -> None:
        if ids is not None:
            mspec["ambassador_id"] = [i.strip() for i in str(ids).split(",") if i.strip()]
        src = Src(
            ref, kind, V3, ref.namespace, name, labels, mspec, key_prefix=f"{key}.", single_key=key
        )
        src.origin = f"Ingress {ref.namespace}/{ref.name} {key}"
        made.append(src)

    tls_hosts: set[str] = set()
    for t_index, tls in enumerate(spec.get("tls") or []):
        secret = (tls or {}).get("secretName")
        for h_index, host in enumerate((tls or {}).get("hosts") or ["*"]):
            tls_hosts.add(host)
            hspec: dict[str, Any] = {
                "hostname": host,
                "requestPolicy": {"insecure": {"action": "Route"}},
            }
            if secret:
                hspec["tlsSecret"] = {"name": secret}
            add(
                "Host",
                f"spec.tls[{t_index}].hosts[{h_index}]",
                f"{ref.name}-tls-{t_index}-{h_index}",
                hspec,
            )
    default = spec.get("defaultBackend")
    if default:
        mspec = _ingress_backend(default, ref.namespace, out)
        mspec.update({"prefix": "/", "hostname": "*"})
        add("Mapping", "spec.defaultBackend", f"{ref.name}-default", mspec)
    for r_index, rule in enumerate(spec.get("rules") or []):
        host = (rule or {}).get("host") or "*"
        for p_index, path in enumerate(((rule or {}).get("http") or {}).get("paths") or []):
            mspec = _ingress_backend((path or {}).get("backend") or {}, ref.namespace, out)
            mspec["prefix"] = (path or {}).get("path") or "/"
            mspec["hostname"] = host
            if (path or {}).get("pathType") == "Exact":
                mspec["prefix_exact"] = True
                mspec["precedence"] = 1
            add(
                "Mapping",
                f"spec.rules[{r_index}].http.paths[{p_index}]",
                f"{ref.name}-{r_index}-{p_index}",
                mspec,
            )
    report.add(
        ref,
        key,
        "converted",
        f"handled by Emissary ({how}): every path became a Mapping with Emissary's "
        'semantics (the path prefix is stripped: rewrite "/")',
        [],
    )
    if ids is not None:
        report.add(ref, ID_ANNOTATION, "converted", f"ambassador_id {ids}", [])
    if CONFIG_ANNOTATION in annotations:
        out.parents.append(parent)
    out.resources.extend(made)


def _ingress_backend(backend: dict[str, Any], namespace: str, out: Gathered) -> dict[str, Any]:
    svc = backend.get("service") or {}
    name = svc.get("name")
    port = svc.get("port") or {}
    if not name:
        return {
            "_ingress_error": "the backend has no service (resource backends are not "
            "supported by Emissary)"
        }
    number = port.get("number")
    if number is None and port.get("name"):
        found: dict[str, Any] = dict(out.services.get((namespace, name)) or {})
        for p in (found.get("spec") or {}).get("ports") or []:
            if p.get("name") == port["name"]:
                number = p.get("port")
        if number is None:
            return {
                "_ingress_error": f"service port {port['name']!r} of Service "
                f"{namespace}/{name} is not known (Service not in the sources)"
            }
    return {"service": f"{name}.{namespace}" + (f":{number}" if number else "")}
