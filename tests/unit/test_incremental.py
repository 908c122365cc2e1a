"""The incremental pipeline gives, change after change, exactly what a fresh full pass gives.

Hypothesis draws sequences of changes a cluster sees (routes added, edited, deleted, their
status rewritten; Services, EndpointSlices, ReferenceGrants and policies changed) and after
each one compares :class:`controller.incremental.Pipeline` (memos on) with a full pass on the
same objects: the IR, per-listener programming, notes, every route's conditions, attached-route
counts, and the xDS resources. It also checks that the memos are really used, so the test cannot
pass by the pipeline quietly doing full passes.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import attachment, gatewayapi_to_ir, incremental, translate
from tests.realparts import certs

CONTROLLER = "kubectl-gw.dev/test"
GW = "gateway.networking.k8s.io/v1"
EG = "gateway.envoyproxy.io/v1alpha1"
OPTIONS = gatewayapi_to_ir.BuildOptions("127.0.0.1", 10000)
ROUTE_NAMES = [f"r{i}" for i in range(6)]
SERVICES = ["svc0", "svc1", "svc2", "missing"]
TLS_SECRET = certs.tls_secret("a", "cert", ["*.example.test", "x.example.test"])


class World:
    """The objects a controller's cache holds, with uid/generation/resourceVersion kept the way
    the API server keeps them."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.changed: dict[tuple[str, str, str], dict[str, Any] | None] = {}
        self.serial = 0
        self.add(
            {
                "apiVersion": GW,
                "kind": "GatewayClass",
                "metadata": {"name": "c"},
                "spec": {"controllerName": CONTROLLER},
            }
        )
        for ns in ("a", "b"):
            self.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self.add(
            {
                "apiVersion": GW,
                "kind": "Gateway",
                "metadata": {"name": "gw", "namespace": "a"},
                "spec": {
                    "gatewayClassName": "c",
                    "listeners": [
                        {
                            "name": "http",
                            "port": 80,
                            "protocol": "HTTP",
                            "allowedRoutes": {"namespaces": {"from": "All"}},
                        },
                        {
                            "name": "wild",
                            "port": 8080,
                            "protocol": "HTTP",
                            "hostname": "*.example.test",
                        },
                        {
                            "name": "picky",
                            "port": 9090,
                            "protocol": "HTTP",
                            "allowedRoutes": {
                                "namespaces": {
                                    "from": "Selector",
                                    "selector": {"matchLabels": {"team": "blue"}},
                                }
                            },
                        },
                        {
                            "name": "secure",
                            "port": 443,
                            "protocol": "HTTPS",
                            "tls": {"certificateRefs": [{"name": "cert"}]},
                        },
                    ],
                },
            }
        )
        for index, name in enumerate(SERVICES[:3]):
            self.service(name, 80, "")
            self.endpoints(name, [f"198.18.0.{10 + index}"])
        self.secret("cert", "valid")
        self.secret("other", "valid")

    def secret(self, name: str, variant: str) -> set[str]:
        """The HTTPS listener's certificate ("cert") or a Secret nothing refers to ("other"):
        valid, not PEM, or deleted."""
        if variant == "delete":
            return self.remove("Secret", "a", name)
        secret = copy.deepcopy(TLS_SECRET)
        secret["metadata"] = {"name": name, "namespace": "a"}
        if variant == "garbage":
            secret["data"] = {"tls.crt": "bm90IHBlbQ==", "tls.key": "bm90IHBlbQ=="}
        return {self.add(secret)}

    # -------------------------------------------------------------- bookkeeping

    def add(self, obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        before = self.objects.get(key)
        self.serial += 1
        meta["resourceVersion"] = str(self.serial)
        meta.setdefault("creationTimestamp", f"2026-01-01T00:00:{self.serial % 60:02d}Z")
        if before is None:
            meta["uid"] = f"uid-{self.serial}"
            meta["generation"] = 1
        else:
            meta["uid"] = before["metadata"]["uid"]
            meta["creationTimestamp"] = before["metadata"]["creationTimestamp"]
            meta["generation"] = before["metadata"]["generation"] + 1
        self.objects[key] = obj
        self.changed[key] = obj
        return str(obj["kind"])

    def delete(self, kind: str, namespace: str, name: str) -> str | None:
        if self.objects.pop((kind, namespace, name), None) is None:
            return None
        self.changed[(kind, namespace, name)] = None
        return kind

    def remove(self, kind: str, namespace: str, name: str) -> set[str]:
        """Delete an object; the kinds the provider would report as changed."""
        gone = self.delete(kind, namespace, name)
        return {gone} if gone else set()

    def take_changed(self) -> dict[tuple[str, str, str], dict[str, Any] | None]:
        """The objects changed since the last call (the provider's ``Changes.changed``)."""
        changed, self.changed = self.changed, {}
        return changed

    def touch_status(self, kind: str, namespace: str, name: str) -> None:
        """A status write: a new object (as the watch delivers it), same uid and generation."""
        old = self.objects.get((kind, namespace, name))
        if old is None:
            return
        new = copy.deepcopy(old)
        self.serial += 1
        new["metadata"]["resourceVersion"] = str(self.serial)
        new["status"] = {"parents": [{"written": self.serial}]}
        self.objects[(kind, namespace, name)] = new

    # -------------------------------------------------------------- objects

    def service(self, name: str, port: int, app: str) -> str:
        spec_port: dict[str, Any] = {"name": "http", "port": port, "targetPort": 8080}
        if app:
            spec_port["appProtocol"] = app
        return self.add(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": "a"},
                "spec": {"ports": [spec_port]},
            }
        )

    def endpoints(self, service: str, addresses: list[str]) -> str:
        return self.add(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{service}-1",
                    "namespace": "a",
                    "labels": {"kubernetes.io/service-name": service},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [a]} for a in addresses],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        )


@st.composite
def parent_refs(draw: st.DrawFn) -> dict[str, Any]:
    """The Gateway, one of its listeners or all of them."""
    parent: dict[str, Any] = {"name": "gw", "namespace": "a"}
    section = draw(st.sampled_from([None, "http", "wild"]))
    if section:
        parent["sectionName"] = section
    return parent


@st.composite
def route_specs(draw: st.DrawFn) -> dict[str, Any]:
    namespace = draw(st.sampled_from(["a", "b"]))
    name = draw(st.sampled_from(ROUTE_NAMES))
    hosts = draw(
        st.lists(
            st.sampled_from(
                ["x.example.test", "z.example.test", "*.example.test", "*.test", "y.other.test"]
            ),
            max_size=2,
        )
    )
    backends = [
        {
            "name": draw(st.sampled_from(SERVICES)),
            "namespace": "a",
            "port": draw(st.sampled_from([80, 81])),
            "weight": draw(st.integers(0, 3)),
        }
        for _ in range(draw(st.integers(1, 2)))
    ]
    rule: dict[str, Any] = {
        "matches": [
            {"path": {"type": "PathPrefix", "value": draw(st.sampled_from(["/", "/api", "/v"]))}}
        ],
        "backendRefs": backends,
    }
    extra = draw(st.sampled_from(["none", "header", "mirror", "redirect"]))
    if extra == "header":
        rule["filters"] = [
            {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {"set": [{"name": "x-r", "value": name}]},
            }
        ]
    elif extra == "mirror":
        rule["filters"] = [
            {
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": {"name": draw(st.sampled_from(SERVICES)), "port": 80}
                },
            }
        ]
    elif extra == "redirect":
        rule["filters"] = [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}}]
    return {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"parentRefs": [draw(parent_refs())], "hostnames": hosts, "rules": [rule]},
    }


@st.composite
def grpc_route_specs(draw: st.DrawFn) -> dict[str, Any]:
    """GRPCRoutes share hostnames with the HTTPRoutes: their entries come first in a virtual
    host, and a change of one kind must keep the other kind's entries of that hostname."""
    hosts = draw(
        st.lists(st.sampled_from(["x.example.test", "*.example.test", "y.other.test"]), max_size=2)
    )
    method: dict[str, Any] = {"service": draw(st.sampled_from(["pkg.Echo", "pkg.Other"]))}
    name = draw(st.sampled_from(["", "Get"]))
    if name:
        method["method"] = name
    return {
        "apiVersion": GW,
        "kind": "GRPCRoute",
        "metadata": {"name": draw(st.sampled_from(ROUTE_NAMES[:3])), "namespace": "a"},
        "spec": {
            "parentRefs": [draw(parent_refs())],
            "hostnames": hosts,
            "rules": [
                {
                    "matches": [{"method": method}],
                    "backendRefs": [{"name": draw(st.sampled_from(SERVICES)), "port": 80}],
                }
            ],
        },
    }


changes = st.one_of(
    st.tuples(st.just("route"), route_specs()),
    st.tuples(st.just("route"), grpc_route_specs()),
    st.tuples(st.just("delete"), st.sampled_from(["a", "b"]), st.sampled_from(ROUTE_NAMES)),
    st.tuples(st.just("delete-grpc"), st.just("a"), st.sampled_from(ROUTE_NAMES[:3])),
    st.tuples(st.just("status"), st.sampled_from(["a", "b"]), st.sampled_from(ROUTE_NAMES)),
    st.tuples(
        st.just("service"),
        st.sampled_from(SERVICES),
        st.sampled_from([80, 81]),
        st.sampled_from(["", "kubernetes.io/h2c"]),
    ),
    st.tuples(st.just("endpoints"), st.sampled_from(SERVICES[:3]), st.integers(1, 3)),
    st.tuples(st.just("grant"), st.booleans()),
    st.tuples(st.just("lonely"), st.sampled_from([80, 81, 0])),
    st.tuples(
        st.just("namespace"), st.sampled_from(["b", "c"]), st.sampled_from(["blue", "red", ""])
    ),
    st.tuples(
        st.just("secret"),
        st.sampled_from(["cert", "other"]),
        st.sampled_from(["valid", "garbage", "delete"]),
    ),
    st.tuples(st.just("policy"), st.sampled_from(ROUTE_NAMES), st.sampled_from(["2s", "5s", ""])),
    st.tuples(st.just("security"), st.sampled_from(ROUTE_NAMES), st.sampled_from([*SERVICES, ""])),
)


def eg_policy(
    world: World, kind: str, name: str, route: str, spec: dict[str, Any] | None
) -> set[str]:
    """An Envoy Gateway policy in namespace a targeting HTTPRoute ``route`` (None: deleted)."""
    if spec is None:
        return world.remove(kind, "a", name)
    target = {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route}
    return {
        world.add(
            {
                "apiVersion": EG,
                "kind": kind,
                "metadata": {"name": name, "namespace": "a"},
                "spec": {"targetRefs": [target], **spec},
            }
        )
    }


def apply_change(world: World, change: tuple[Any, ...]) -> set[str]:
    """Apply one change; the kinds the provider would report as changed."""
    what = change[0]
    if what == "route":
        return {world.add(copy.deepcopy(change[1]))}
    if what in ("delete", "delete-grpc"):
        kind = "GRPCRoute" if what == "delete-grpc" else "HTTPRoute"
        return world.remove(kind, change[1], change[2])
    if what == "status":
        world.touch_status("HTTPRoute", change[1], change[2])
        return set()  # status-only events are not changes (provider)
    if what == "service":
        return {world.service(change[1], change[2], change[3])}
    if what == "namespace":  # labels a listener's selector reads ("b"), or a namespace
        # nothing is in ("c", deleted when unlabelled)
        name, team = change[1], change[2]
        if not team and name == "c":
            return world.remove("Namespace", "", "c")
        meta: dict[str, Any] = {"name": name}
        if team:
            meta["labels"] = {"team": team}
        return {world.add({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})}
    if what == "lonely":  # a Service no route refers to: added, changed, deleted (port 0)
        if not change[1]:
            return world.remove("Service", "a", "lonely")
        return {world.service("lonely", change[1], "")}
    if what == "secret":
        return world.secret(change[1], change[2])
    if what == "endpoints":
        return {world.endpoints(change[1], [f"198.18.1.{i}" for i in range(change[2])])}
    if what == "grant":
        if not change[1]:
            return world.remove("ReferenceGrant", "a", "from-b")
        return {
            world.add(
                {
                    "apiVersion": "gateway.networking.k8s.io/v1beta1",
                    "kind": "ReferenceGrant",
                    "metadata": {"name": "from-b", "namespace": "a"},
                    "spec": {
                        "from": [
                            {
                                "group": "gateway.networking.k8s.io",
                                "kind": "HTTPRoute",
                                "namespace": "b",
                            }
                        ],
                        "to": [{"group": "", "kind": "Service"}],
                    },
                }
            )
        }
    if what == "policy":
        spec = {"timeout": {"http": {"requestTimeout": change[2]}}}
        return eg_policy(
            world, "BackendTrafficPolicy", "btp", change[1], spec if change[2] else None
        )
    if what == "security":  # extAuth to a Service (missing: the routes answer 500)
        spec = {"extAuth": {"http": {"backendRefs": [{"name": change[2], "port": 80}]}}}
        return eg_policy(world, "SecurityPolicy", "sp", change[1], spec if change[2] else None)
    raise AssertionError(what)


def verdicts(result: attachment.AttachmentResult) -> list[Any]:
    out: list[Any] = []
    for route in result.routes:
        out.append(
            (
                route.key,
                [
                    (p.index, p.accepted, p.reason, [c.__dict__ for c in p.conditions])
                    for p in route.parents
                ],
            )
        )
    for gateway in result.gateways:
        for lis in gateway.listeners:
            out.append(
                (
                    lis.key,
                    lis.attached_routes,
                    [(e.route, e.rank, e.shadowed_by is None) for e in lis.routing],
                )
            )
    return out


@pytest.mark.parametrize(
    "with_changed_objects", [False, True, None], ids=["kinds", "objects", "alternating"]
)
@settings(max_examples=int(os.environ.get("KGW_HYPOTHESIS_EXAMPLES", "200")), deadline=None)
@given(st.lists(changes, min_size=1, max_size=25))
def test_incremental_equals_full(
    with_changed_objects: bool | None, sequence: list[tuple[Any, ...]]
) -> None:
    """Either told only the changed kinds (the memos find unchanged routes by identity), or the
    changed objects too (as the controller's provider tells it: only those are looked at), or
    one and the other in turn (None)."""
    world = World()
    pipeline = incremental.Pipeline(frozenset({CONTROLLER}), OPTIONS)
    pipeline.compute(list(world.objects.values()), {"Gateway"})  # the first pass: full
    world.take_changed()
    for step, change in enumerate(sequence):
        changed = apply_change(world, change)
        objects = list(world.objects.values())
        changed_objects = world.take_changed()
        tell = with_changed_objects if with_changed_objects is not None else step % 2 == 1
        got = pipeline.compute(objects, changed, changed_objects if tell else None)
        want_result, want_built = gatewayapi_to_ir.compute_and_build(
            objects, frozenset({CONTROLLER}), OPTIONS
        )
        assert got.built.ir == want_built.ir, change
        assert got.built.programmed == want_built.programmed, change
        assert set(got.built.notes) == set(want_built.notes), change
        assert {k: set(v) for k, v in got.built.policy_problems.items()} == {
            k: set(v) for k, v in want_built.policy_problems.items()
        }, change
        assert verdicts(got.result) == verdicts(want_result), change
        assert translate.to_json(pipeline.translate(got.built.ir)) == translate.to_json(
            translate.translate(want_built.ir)
        ), change


def simple_route(name: str, section: str, hostname: str, service: str) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "a"},
        "spec": {
            "parentRefs": [{"name": "gw", "sectionName": section}],
            "hostnames": [hostname],
            "rules": [{"backendRefs": [{"name": service, "port": 80}]}],
        },
    }


def test_memos_are_used_for_a_route_change() -> None:
    """One new route among many: the other routes' verdicts, IR and virtual hosts are reused
    (so the equality above is not the pipeline doing full passes)."""
    world = World()
    for index in range(30):
        world.add(simple_route(f"m{index}", "http", f"h{index}.example.test", "svc0"))
    pipeline = incremental.Pipeline(frozenset({CONTROLLER}), OPTIONS)
    first = pipeline.compute(list(world.objects.values()), {"Gateway"})
    pipeline.translate(first.built.ir)
    world.add(simple_route("new", "http", "new.example.test", "svc1"))
    for memo in (pipeline.route_memo, pipeline.build_memo, pipeline.translate_memo):
        memo.hits = memo.misses = 0
    second = pipeline.compute(list(world.objects.values()), {"HTTPRoute"})
    pipeline.translate(second.built.ir)
    assert (pipeline.route_memo.hits, pipeline.route_memo.misses) == (30, 1)
    assert (pipeline.build_memo.hits, pipeline.build_memo.misses) == (30, 1)
    vhosts = sum(
        len(chain.route_config.virtual_hosts)
        for listener in second.built.ir.listeners
        for chain in listener.filter_chains
    )
    assert (pipeline.translate_memo.hits, pipeline.translate_memo.misses) == (vhosts - 1, 1)
    # A Service change invalidates verdicts and IR routes (they read Services).
    world.service("svc0", 80, "kubernetes.io/h2c")
    for memo in (pipeline.route_memo, pipeline.build_memo):
        memo.hits = memo.misses = 0
    pipeline.compute(list(world.objects.values()), {"Service"})
    assert pipeline.route_memo.hits == 0 and pipeline.build_memo.hits == 0


def test_an_untouched_listener_keeps_its_routing_table_virtual_hosts_and_message() -> None:
    """A route added on one listener leaves another listener's routing table, virtual hosts
    and route configuration message as they were (the same objects: nothing rebuilt)."""
    world = World()
    for index in range(20):
        world.add(simple_route(f"m{index}", "http", f"h{index}.example.test", "svc0"))
    pipeline = incremental.Pipeline(frozenset({CONTROLLER}), OPTIONS)

    def port_80(computed: incremental.Pass) -> Any:
        (listener,) = [lis for lis in computed.built.ir.listeners if lis.gateway_port == 80]
        return listener.filter_chains[0].route_config

    first = pipeline.compute(list(world.objects.values()), {"Gateway"})
    first_message = pipeline.translate(first.built.ir).of(translate.ROUTE_TYPE)["http-80"]
    world.add(simple_route("other", "wild", "o.example.test", "svc1"))
    second = pipeline.compute(list(world.objects.values()), {"HTTPRoute"})
    second_message = pipeline.translate(second.built.ir).of(translate.ROUTE_TYPE)["http-80"]
    assert port_80(second).virtual_hosts is port_80(first).virtual_hosts
    assert second_message is first_message
    http = [lis for g in second.result.gateways for lis in g.listeners if lis.name == "http"]
    old = [lis for g in first.result.gateways for lis in g.listeners if lis.name == "http"]
    assert http[0].routing is old[0].routing
    # and the port-8080 side did change
    assert "http-8080" in pipeline.translate(second.built.ir).of(translate.ROUTE_TYPE)


def test_a_change_nothing_read_is_skipped_and_one_read_is_not() -> None:
    """Secrets, ConfigMaps, Services and Namespaces are watched cluster-wide: a change of one
    no step looked up keeps the previous pass (the very same objects), one a step looked up
    (a Namespace whose labels a listener's selector read, even one missing before) does not,
    and a skipped object is still seen by the steps that read it later."""
    world = World()
    route = simple_route("rb", "http", "x.example.test", "svc0")
    route["metadata"]["namespace"] = "b"
    route["spec"]["parentRefs"] = [{"name": "gw", "namespace": "a"}]  # every listener
    world.add(route)
    pipeline = incremental.Pipeline(frozenset({CONTROLLER}), OPTIONS)
    first = pipeline.compute(list(world.objects.values()), {"Gateway"})
    world.take_changed()

    def picky_routes(computed: incremental.Pass) -> int:
        (lis,) = [
            lis for g in computed.result.gateways for lis in g.listeners if lis.name == "picky"
        ]
        return lis.attached_routes

    assert picky_routes(first) == 0
    for change in (("lonely", 80), ("secret", "other", "garbage"), ("namespace", "c", "blue")):
        changed = apply_change(world, change)
        skipped = pipeline.compute(list(world.objects.values()), changed, world.take_changed())
        assert skipped.result is first.result and skipped.built is first.built, change
    # a route in c: its (route-only) pass reads c's labels, put in while c's change was skipped
    other = copy.deepcopy(route)
    other["metadata"] = {"name": "rc", "namespace": "c"}
    changed = {world.add(other)}
    second = pipeline.compute(list(world.objects.values()), changed, world.take_changed())
    assert picky_routes(second) == 1
    changed = apply_change(world, ("namespace", "b", "blue"))  # the selector read b's labels
    third = pipeline.compute(list(world.objects.values()), changed, world.take_changed())
    assert third.result is not second.result and picky_routes(third) == 2
