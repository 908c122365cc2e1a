"""Marks every generated object carries: who made it and from which sources.

``app.kubernetes.io/managed-by: kubectl-gw`` lets ``--apply`` tell our objects from the
user's (an existing object without it is a conflict, never overwritten);
``gateway.networking.k8s.io/generator`` is the key ingress2gateway uses too; the sources
annotation names the objects the output came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubectl_gw import __version__
from kubectl_gw.model import KubeObject, ObjectRef

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubectl-gw"
GENERATOR_ANNOTATION = "gateway.networking.k8s.io/generator"
SOURCES_ANNOTATION = "kubectl-gw.io/sources"


def source_list(sources: Iterable[ObjectRef]) -> str:
    """``Ingress shop/web, Ingress shop/web-canary`` — sorted and without repeats."""
    return ", ".join(sorted({str(s) for s in sources}))


def stamp(obj: KubeObject, sources: Iterable[ObjectRef]) -> KubeObject:
    meta: Any = obj.setdefault("metadata", {})
    meta.setdefault("labels", {})[MANAGED_BY_LABEL] = MANAGED_BY
    annotations = meta.setdefault("annotations", {})
    annotations[GENERATOR_ANNOTATION] = f"kubectl-gw-{__version__}"
    listed = source_list(sources)
    if listed:
        annotations[SOURCES_ANNOTATION] = listed
    return obj


def is_managed(obj: KubeObject) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY
