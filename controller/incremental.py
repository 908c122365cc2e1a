"""The controller's incremental pipeline: objects → attachment → IR → xDS, costing what a
change touches rather than what is in place.

The provider hands over the changed objects with the cache (``Changes``). By what changed:

- routes only: the engine (:class:`~controller.attachment.RouteMemo`) evaluates the changed
  routes again and updates the routing tables of their listeners for them; the builder
  (:class:`~controller.gatewayapi_to_ir.BuildMemo`) rebuilds the virtual hosts of the
  hostnames whose live entries changed; the translator
  (:class:`~controller.translate.TranslateMemo`) makes messages for new virtual hosts only;
- EndpointSlices only: the previous verdicts stand and the IR is rebuilt through every memo,
  the endpoints refreshed from the current slices of the Services concerned;
- Secrets, ConfigMaps, Services or Namespaces nothing looked up: the previous pass stands;
- anything else: a full pass (the memos are dropped first).

Every memo is keyed by identity, so that a hit is exactly what a full pass would compute.
Without the changed objects (only the changed kinds) the memos find unchanged routes by
identity or by uid and generation. ``tests/unit/test_incremental.py`` checks, change after
change, that either way gives the same IR, verdicts, notes and xDS resources as a fresh full
pass.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller import attachment, gatewayapi_to_ir, ir, translate
from kubectl_gw.model import KubeObject

ENDPOINT_ONLY_KINDS = frozenset({"EndpointSlice"})  # changes the attachment engine never reads
REFERENCED_KINDS = frozenset({"Secret", "ConfigMap", "Service", "Namespace"})
"""Kinds watched cluster-wide of which only the objects something refers to matter."""
ROUTE_ONLY_KINDS = frozenset({"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"})
"""Changes that leave every other route's verdict and IR as they were."""


@dataclass
class Pass:
    result: attachment.AttachmentResult
    built: gatewayapi_to_ir.BuildResult
    reused_verdicts: bool  # endpoints only: the previous verdicts were reused whole
    recomputed: frozenset[attachment.ObjKey] | None = None
    """The routes whose verdicts may be new objects (every other route's is the same object as
    after the previous pass); None when not known (a full pass)."""


def _tls_policy_refs(
    policies: Sequence[Mapping[str, Any]],
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The CA ConfigMaps and the Services BackendTLSPolicies name (their status reads them)."""
    config_maps: set[tuple[str, str]] = set()
    services: set[tuple[str, str]] = set()
    for policy in policies:
        namespace = str((policy.get("metadata") or {}).get("namespace", ""))
        spec = policy.get("spec") or {}
        for ref in (spec.get("validation") or {}).get("caCertificateRefs") or []:
            if isinstance(ref, Mapping):
                config_maps.add((namespace, str(ref.get("name", ""))))
        for ref in spec.get("targetRefs") or []:
            if isinstance(ref, Mapping):
                services.add((namespace, str(ref.get("name", ""))))
    return config_maps, services


class Pipeline:
    def __init__(
        self, controller_names: frozenset[str], options: gatewayapi_to_ir.BuildOptions
    ) -> None:
        self.controller_names = controller_names
        self.options = options
        self.route_memo = attachment.RouteMemo()
        self.build_memo = gatewayapi_to_ir.BuildMemo()
        self.translate_memo = translate.TranslateMemo()
        self._last: attachment.AttachmentResult | None = None
        self._last_pass: Pass | None = None

    def compute(
        self,
        objects: Sequence[KubeObject],
        changed: Collection[str],
        changed_objects: Mapping[tuple[str, str, str], KubeObject | None] | None = None,
    ) -> Pass:
        """Verdicts and IR for ``objects``; ``changed``: the kinds that changed since the
        previous call (all of them, or more, is always safe). ``changed_objects``: every object
        (kind, namespace, name) that changed since, as it is now (None: deleted), when known;
        with it a change of routes only costs what those routes and their listeners cost."""
        try:
            unread = self._unread_change(changed, changed_objects)
            if unread is not None:
                return unread
            self._last_pass = self._compute(objects, changed, changed_objects)
            return self._last_pass
        except BaseException:
            self.invalidate()  # a pass cut short may have left a memo half updated
            raise

    def invalidate(self) -> None:
        self.route_memo.invalidate()
        self.build_memo.invalidate()
        self._last = None
        self._last_pass = None

    def _unread_change(
        self,
        changed: Collection[str],
        changed_objects: Mapping[tuple[str, str, str], KubeObject | None] | None,
    ) -> Pass | None:
        """The previous pass again, when only objects of :data:`REFERENCED_KINDS` changed and
        none of them was ever looked up by the engine or the builder since their memos were
        built (as a certificate, a CA bundle, a backend, a Namespace a selector reads...; a
        BackendTLSPolicy's CA ConfigMaps and target Services count as looked up: its status
        reads them). They are still put into the memos' indexes, for whatever reads them
        later."""
        world, index, last = self.route_memo.world, self.build_memo.index, self._last_pass
        kinds = frozenset(changed)
        if (
            changed_objects is None
            or not kinds
            or not kinds <= REFERENCED_KINDS
            or world is None
            or index is None
            or last is None
        ):
            return None
        config_maps, services = _tls_policy_refs(index.tls_policies)
        read = {
            "Secret": world.secrets.read | index.secrets.read,
            "ConfigMap": index.config_maps.read | config_maps,
            "Service": world.services.read | index.services.read | services,
            "Namespace": {("", name) for name in world.ns_read},  # (cluster-scoped)
        }
        if any(key[1:] in read[key[0]] for key in changed_objects):
            return None
        had_services = bool(world.services)  # "no Services at all" is a note of the engine
        indexes = {
            "Secret": (world.secrets, index.secrets),
            "ConfigMap": (index.config_maps,),
            "Service": (world.services, index.services),
        }
        for (kind, namespace, name), obj in changed_objects.items():
            if kind == "Namespace":
                world.set_namespace(name, obj)
            for held in indexes.get(kind, ()):
                held.put((namespace, name), obj)
        if bool(world.services) != had_services:
            self.invalidate()  # a full pass must run: the engine notes when there are none
            return None
        return Pass(last.result, last.built, True, frozenset())

    def _compute(
        self,
        objects: Sequence[KubeObject],
        changed: Collection[str],
        changed_objects: Mapping[tuple[str, str, str], KubeObject | None] | None,
    ) -> Pass:
        kinds = frozenset(changed)
        for memo in (self.route_memo, self.build_memo):
            memo.hits = memo.misses = 0  # counts of this pass
        # What the builder can patch in: routes, and EndpointSlices when it is told which.
        patchable = ROUTE_ONLY_KINDS | (
            ENDPOINT_ONLY_KINDS if changed_objects is not None else set()
        )
        if not kinds <= patchable:
            self.build_memo.invalidate()
        patches = (
            None
            if changed_objects is None
            else {k: v for k, v in changed_objects.items() if k[0] in patchable}
        )
        if self._last is not None and kinds and kinds <= ENDPOINT_ONLY_KINDS:
            built = gatewayapi_to_ir.build(
                objects, self._last, self.options, self.build_memo, patches
            )
            return Pass(self._last, built, True, frozenset())
        if not kinds <= ROUTE_ONLY_KINDS | ENDPOINT_ONLY_KINDS:
            self.route_memo.invalidate()
        fast = patches is not None and self.route_memo.world is not None
        result, built = gatewayapi_to_ir.compute_and_build(
            objects,
            self.controller_names,
            self.options,
            route_memo=self.route_memo,
            build_memo=self.build_memo,
            changed_routes=patches,
        )
        self._last = result
        recomputed = None
        if fast and patches is not None:
            recomputed = frozenset(
                attachment.ObjKey(*key) for key in patches if key[0] in ROUTE_ONLY_KINDS
            )
        return Pass(result, built, False, recomputed)

    def verdict(self, key: attachment.ObjKey) -> attachment.RouteResult | None:
        """The route's verdict of the last pass (None: not a route of the last pass)."""
        return self.route_memo.verdict(key)

    def translate(self, model: ir.IR) -> translate.Resources:
        self.translate_memo.hits = self.translate_memo.misses = 0
        return translate.translate(model, self.translate_memo)
