"""Which Ingresses belong to ingress-nginx, and under which class (report why others do not)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from converters.api import MigrateOptions
from converters.report import Report
from kubectl_gw.model import KubeObject, ObjectRef

CONTROLLER = "k8s.io/ingress-nginx"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
FALLBACK_CLASS = "nginx"


@dataclass(frozen=True)
class Selected:
    obj: KubeObject
    cls: str
    how: str  # the report key that decided the class
    message: str


def select(
    objects: Sequence[KubeObject], options: MigrateOptions, report: Report
) -> list[Selected]:
    classes = [o for o in objects if o.get("kind") == "IngressClass"]
    ours = {
        o["metadata"]["name"]
        for o in classes
        if ((o.get("spec") or {}).get("controller") or "") == CONTROLLER
    }
    if not classes:
        ours = {FALLBACK_CLASS}  # nothing to resolve against: ingress-nginx's default class
    wanted = set(options.ingress_classes) if options.ingress_classes else ours
    defaults = sorted(
        o["metadata"]["name"]
        for o in classes
        if ((o["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION, "")).lower()
        == "true"
    )
    default = defaults[0] if defaults else ""
    out: list[Selected] = []
    for obj in objects:
        if obj.get("kind") != "Ingress":
            continue
        ref = ObjectRef.of(obj)
        spec = obj.get("spec") or {}
        annotations = obj["metadata"].get("annotations") or {}
        by_field = str(spec.get("ingressClassName") or "")
        by_annotation = str(annotations.get(CLASS_ANNOTATION) or "")
        if by_field:
            cls, how = by_field, "spec.ingressClassName"
        elif by_annotation:
            cls, how = by_annotation, CLASS_ANNOTATION
        else:
            cls, how = "", "spec.ingressClassName"
        if cls:
            if cls in wanted:
                message = f"class {cls}"
                if how == CLASS_ANNOTATION:
                    message += " from the deprecated annotation (use spec.ingressClassName)"
                out.append(Selected(obj, cls, how, message))
            else:
                why = (
                    f"class {cls} is not one of {', '.join(sorted(wanted)) or 'no class'}"
                    if options.ingress_classes
                    else f"class {cls} is not an IngressClass of controller {CONTROLLER}"
                )
                _ignore(report, ref, obj, how, why, options)
            continue
        if options.include_classless:
            use = default if default in wanted else (sorted(wanted) or [FALLBACK_CLASS])[0]
            out.append(
                Selected(obj, use, how, f"no class: included (--include-classless) as {use}")
            )
        elif default and default in wanted:
            out.append(
                Selected(obj, default, how, f"no class: {default} is the default IngressClass")
            )
        else:
            why = "no ingress class and no default ingress-nginx IngressClass; "
            why += "use --include-classless to convert it"
            _ignore(report, ref, obj, how, why, options)
    return out


def _ignore(
    report: Report, ref: ObjectRef, obj: KubeObject, how: str, why: str, options: MigrateOptions
) -> None:
    report.add(ref, how, "ignored", why)
    lead = options.annotation_prefix.rstrip("/") + "/"
    for key in sorted(obj["metadata"].get("annotations") or {}):
        if key.startswith(lead):
            report.add(ref, key, "ignored", "the Ingress is not converted")
