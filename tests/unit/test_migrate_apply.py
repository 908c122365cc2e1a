"""``migrate`` against a cluster, with an in-memory stand-in for the API server: what is read
(Secret metadata only, referenced ConfigMaps, optional kinds), and how ``--apply`` behaves
(kind order, conflicts, namespaces, dry runs, failures, strict, progress).

The real API server is exercised by tests/cluster/test_migrate_apply.py; these tests pin the
orchestration's decisions, which a real server cannot provoke on demand (403s, failures).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, cast

import pytest

from converters.api import MigrateOptions
from converters.provenance import MANAGED_BY, MANAGED_BY_LABEL, stamp
from converters.report import Conversion
from kubectl_gw import migrate
from kubectl_gw.errors import ClusterError, InputError, StrictError, UserError
from kubectl_gw.model import KindInfo, KubeObject, ObjectRef, split_api_version
from tests.unit.test_migrate import CALLS, GW_API, PREFIX, ingress
from tests.unit.test_migrate import convert as fake_convert

Key = tuple[str, str, str, str]  # group, kind, namespace, name


class FakeCluster:
    """Enough of an API server for migrate: objects by (group, kind, namespace, name)."""

    def __init__(self, objects: list[dict[str, Any]], namespaces: list[str]) -> None:
        self.namespace = "shop"
        self.store: dict[Key, dict[str, Any]] = {}
        for obj in objects:
            self.put(obj)
        for ns in namespaces:
            self.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self.forbidden: set[str] = set()  # kinds whose list/get answers 403
        self.failing: set[str] = set()  # object names whose apply answers 422
        self.emissary = False
        self.calls: list[tuple[str, ...]] = []

    @staticmethod
    def key(obj: dict[str, Any]) -> Key:
        group, _v = split_api_version(obj["apiVersion"])
        meta = obj["metadata"]
        return (group, obj["kind"], meta.get("namespace", ""), meta["name"])

    def put(self, obj: dict[str, Any]) -> None:
        self.store[self.key(obj)] = obj

    def _check(self, info: KindInfo) -> None:
        if info.kind in self.forbidden:
            raise ClusterError(f"{info.plural} is forbidden", status=403)

    # SourceReader
    def list_objects(self, info: KindInfo, namespace: str | None) -> list[KubeObject]:
        self.calls.append(("list", info.kind, namespace or "*"))
        self._check(info)
        if info.family == "emissary" and not self.emissary:
            raise ClusterError("404 page not found", status=404)
        return [
            cast(KubeObject, json.loads(json.dumps(o)))
            for (g, k, ns, _n), o in sorted(self.store.items())
            if (g, k) == (info.group, info.kind) and (namespace is None or ns == namespace)
        ]

    def get_object(self, info: KindInfo, namespace: str | None, name: str) -> KubeObject | None:
        self.calls.append(("get", info.kind, namespace or "", name))
        self._check(info)
        found = self.store.get((info.group, info.kind, namespace or "", name))
        return cast(KubeObject, json.loads(json.dumps(found))) if found else None

    def list_secret_metadata(
        self, namespace: str | None, *, tls_only: bool = False
    ) -> list[KubeObject]:
        # Returns the whole Secret (data included) on purpose: migrate must scrub anyway.
        secrets = self.list_objects(migrate.SECRET, namespace)
        return [
            s
            for s in secrets
            if not tls_only or cast(dict[str, Any], s).get("type") == "kubernetes.io/tls"
        ]

    def get_secret_metadata(self, namespace: str, name: str) -> KubeObject | None:
        return self.get_object(migrate.SECRET, namespace, name)

    def serves(self, group: str, version: str) -> bool:
        return self.emissary

    # Applier
    def apply(
        self, obj: KubeObject, info: KindInfo, *, dry_run: bool = False, force: bool = False
    ) -> KubeObject:
        meta = obj["metadata"]
        self.calls.append(
            ("apply", info.kind, meta.get("namespace", ""), meta["name"], str(dry_run))
        )
        if meta["name"] in self.failing:
            raise ClusterError(f"PATCH {meta['name']}: 422: invalid", status=422)
        if not dry_run:
            self.put(cast(dict[str, Any], obj))
        return obj

    def applied(self) -> list[tuple[str, ...]]:
        return [c[1:] for c in self.calls if c[0] == "apply"]


def secret(ns: str, name: str, tls: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls" if tls else "Opaque",
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": {migrate.LAST_APPLIED: '{"data": {"tls.key": "S0VZ"}}'},
        },
        "data": {"tls.key": "S0VZ"},
    }


def configmap(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": {"X-Frame-Options": "DENY"},
    }


def service(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }


INGRESS_CLASS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "IngressClass",
    "metadata": {"name": "nginx"},
    "spec": {"controller": "k8s.io/ingress-nginx"},
}


@pytest.fixture
def cluster() -> FakeCluster:
    CALLS.clear()
    return FakeCluster(
        [
            INGRESS_CLASS,
            ingress(
                "web",
                annotations={
                    "custom-headers": "other/headers",
                    "auth-secret": "basic-users",
                    "auth-tls-secret": "other/ca",
                    "proxy-ssl-secret": "malformed/too/many",
                },
            ),
            ingress("api", "api", "api.example.com"),
            service("shop", "web"),
            service("api", "web"),
            secret("shop", "shop-tls"),
            secret("shop", "basic-users", tls=False),
            secret("other", "ca", tls=False),
            secret("other", "unrelated"),
            configmap("other", "headers"),
            configmap("other", "unrelated"),
        ],
        namespaces=["shop", "api", "other"],
    )


class Streams:
    def __init__(self, tty: bool = False) -> None:
        self.out = io.StringIO()
        self.err = TTY() if tty else io.StringIO()
        self.console = migrate.Console(out=self.out, err=self.err)


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def do(
    cluster: FakeCluster, streams: Streams | None = None, **flags: Any
) -> tuple[migrate.MigrateOutcome, Streams]:
    streams = streams or Streams()
    request = migrate.build_request(**flags)
    outcome = migrate.run(
        request,
        streams.console,
        converter=fake_convert,
        connect=lambda _target: cluster,
        reader_factory=lambda c: c,
    )
    return outcome, streams


# --------------------------------------------------------------------------- reading


def test_reads_the_sources_of_the_namespace(cluster: FakeCluster) -> None:
    _outcome, streams = do(cluster)
    ((objects, _options),) = CALLS
    refs = [str(ObjectRef.of(o)) for o in objects]
    assert refs == [
        "Ingress shop/web",
        "IngressClass nginx",
        "Service shop/web",
        "ConfigMap other/headers",
        "Secret other/ca",
        "Secret shop/basic-users",
        "Secret shop/shop-tls",
    ]
    by_ref = {str(ObjectRef.of(o)): cast(dict[str, Any], o) for o in objects}
    assert by_ref["Secret shop/shop-tls"].get("type") == "kubernetes.io/tls"
    for name in ("Secret other/ca", "Secret shop/basic-users", "Secret shop/shop-tls"):
        assert "data" not in by_ref[name]
        assert by_ref[name]["metadata"].get("annotations", {}) == {}
    assert "S0VZ" not in json.dumps(objects)
    assert ("get", "Secret", "other", "ca") in cluster.calls  # out of scope: read by name
    assert not any(c[:2] == ("list", "ConfigMap") for c in cluster.calls)  # only by name
    assert not any(c[1:2] == ("Mapping",) for c in cluster.calls)  # Emissary not served
    assert "HTTPRoute" in streams.out.getvalue()


def test_all_namespaces_and_emissary_kinds(cluster: FakeCluster) -> None:
    cluster.emissary = True
    cluster.put(
        {
            "apiVersion": "getambassador.io/v3alpha1",
            "kind": "Mapping",
            "metadata": {"name": "m", "namespace": "api"},
            "spec": {"prefix": "/", "service": "web"},
        }
    )
    do(cluster, all_namespaces=True)
    ((objects, _options),) = CALLS
    kinds = [
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects
    ]
    assert ("Ingress", "api", "api") in kinds
    assert ("Mapping", "api", "m") in kinds
    assert ("Secret", "other", "unrelated") in kinds  # -A lists every Secret's metadata
    assert ("list", "Ingress", "*") in cluster.calls


def test_forbidden_ingressclasses_are_a_note_not_a_failure(cluster: FakeCluster) -> None:
    cluster.forbidden.add("IngressClass")
    _outcome, streams = do(cluster)
    assert "note: cannot list ingressclasses (forbidden); continuing without them" in (
        streams.err.getvalue()
    )
    cluster.forbidden = {"Ingress"}
    with pytest.raises(ClusterError, match="forbidden"):
        do(cluster)


def test_nginx_configmap_from_the_cluster(cluster: FakeCluster) -> None:
    cluster.put(configmap("ingress-nginx", "ingress-nginx-controller"))
    cluster.put(configmap("infra", "nginx"))
    _o, streams = do(cluster)
    options: MigrateOptions = CALLS[-1][1]
    assert options.nginx_configmap is not None
    assert options.nginx_configmap["metadata"]["name"] == "ingress-nginx-controller"
    assert "using the ingress-nginx controller ConfigMap" in streams.err.getvalue()
    do(cluster, nginx_configmap="infra/nginx")
    chosen = CALLS[-1][1].nginx_configmap
    assert chosen is not None and chosen["metadata"]["namespace"] == "infra"
    with pytest.raises(UserError, match="no such ConfigMap in the cluster"):
        do(cluster, nginx_configmap="infra/missing")


# --------------------------------------------------------------------------- applying


def test_apply_in_kind_order_with_the_gateway_namespace_created(cluster: FakeCluster) -> None:
    outcome, streams = do(cluster, apply=True, all_namespaces=True)
    assert cluster.applied() == [
        ("Namespace", "", "gateway-system", "False"),
        ("Gateway", "gateway-system", "nginx", "False"),
        ("HTTPRoute", "api", "api", "False"),
        ("HTTPRoute", "shop", "web", "False"),
    ]
    ns = cluster.store[("", "Namespace", "", "gateway-system")]
    assert ns["metadata"]["labels"] == {MANAGED_BY_LABEL: MANAGED_BY}
    assert streams.out.getvalue().splitlines() == [
        "namespace/gateway-system serverside-applied",
        "gateway.gateway.networking.k8s.io/nginx serverside-applied",
        "httproute.gateway.networking.k8s.io/api serverside-applied",
        "httproute.gateway.networking.k8s.io/web serverside-applied",
    ]  # and no YAML on stdout
    entry = next(e for e in outcome.conversion.report.entries if e.source.kind == "Namespace")
    assert (entry.key, entry.status) == ("apply", "converted")
    assert "did not exist; created it" in entry.message
    assert outcome.applied is not None and len(outcome.applied.applied) == 3
    # Ingresses untouched: never sent.
    assert not any(c[0] == "Ingress" for c in cluster.applied())


def test_apply_again_is_fine_for_managed_objects(cluster: FakeCluster) -> None:
    do(cluster, apply=True)
    cluster.calls.clear()
    outcome, _streams = do(cluster, apply=True)
    assert [c[0] for c in cluster.applied()] == ["Gateway", "HTTPRoute"]
    assert outcome.conversion.report.incomplete() == []


def test_unmanaged_object_with_the_same_name_is_a_conflict(cluster: FakeCluster) -> None:
    theirs = {
        "apiVersion": GW_API,
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"team": "shop"}},
        "spec": {"hostnames": ["mine.example.com"]},
    }
    cluster.put(json.loads(json.dumps(theirs)))
    outcome, streams = do(cluster, apply=True, report="-", report_format="json")
    assert ("HTTPRoute", "shop", "web", "False") not in cluster.applied()
    assert ("Gateway", "gateway-system", "nginx", "False") in cluster.applied()
    assert cluster.store[("gateway.networking.k8s.io", "HTTPRoute", "shop", "web")] == theirs
    assert outcome.applied is not None
    assert [str(r) for r in outcome.applied.conflicts] == ["HTTPRoute shop/web"]
    err = streams.err.getvalue()
    assert "warning: HTTPRoute shop/web: conflict: it already exists and is not managed" in err
    report = json.loads(err[err.index("{") : err.rindex("}") + 1])
    conflict = [e for e in report["entries"] if (e["key"], e["status"]) == ("apply", "error")]
    assert len(conflict) == 1
    assert conflict[0]["source"]["name"] == "web"  # attributed to the Ingress it came from
    assert conflict[0]["status"] == "error"
    assert conflict[0]["outputs"][0]["kind"] == "HTTPRoute"
    # A conflict alone is best effort (exit 0), but --strict fails on it.
    with pytest.raises(StrictError):
        do(cluster, apply=True, strict=True)


def test_missing_namespaces_other_than_the_gateways_are_not_created(
    cluster: FakeCluster,
) -> None:
    del cluster.store[("", "Namespace", "", "api")]
    outcome, streams = do(cluster, apply=True, all_namespaces=True)
    assert not any(c[0] == "Namespace" and c[2] == "api" for c in cluster.applied())
    assert not any(c[1] == "api" for c in cluster.applied())
    assert "namespace api does not exist; kubectl-gw only creates the gateway namespace" in (
        streams.err.getvalue()
    )
    assert outcome.applied is not None
    assert [str(r) for r in outcome.applied.skipped] == ["HTTPRoute api/api"]


def test_dry_run_client_sends_nothing(cluster: FakeCluster) -> None:
    _outcome, streams = do(cluster, apply=True, dry_run="client")
    assert cluster.applied() == []
    assert streams.out.getvalue().splitlines() == [
        "namespace/gateway-system serverside-applied (dry run)",
        "gateway.gateway.networking.k8s.io/nginx serverside-applied (dry run)",
        "httproute.gateway.networking.k8s.io/web serverside-applied (dry run)",
    ]


def test_dry_run_server_sends_dry_runs_only(cluster: FakeCluster) -> None:
    cluster.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gateway-system"}})
    before = json.dumps(sorted(cluster.store.items()), sort_keys=True)
    _outcome, streams = do(cluster, apply=True, dry_run="server")
    assert cluster.applied() == [
        ("Gateway", "gateway-system", "nginx", "True"),
        ("HTTPRoute", "shop", "web", "True"),
    ]
    assert json.dumps(sorted(cluster.store.items()), sort_keys=True) == before
    assert streams.out.getvalue().endswith("serverside-applied (server dry run)\n")


def test_apply_failure_is_exit_1_after_the_report(cluster: FakeCluster) -> None:
    cluster.failing.add("nginx")
    streams = Streams()
    with pytest.raises(ClusterError, match="1 of 2 objects could not be applied"):
        do(cluster, streams, apply=True, report="-", report_format="json")
    err = streams.err.getvalue()
    assert "warning: Gateway gateway-system/nginx: apply failed: PATCH nginx: 422" in err
    assert '"key": "apply"' in err  # the report was written before the failure was raised
    assert ("HTTPRoute", "shop", "web", "False") in cluster.applied()  # the rest still applied


def test_strict_incomplete_conversion_applies_nothing(cluster: FakeCluster) -> None:
    cluster.put(ingress("web", annotations={"server-snippet": "unsupported"}))
    streams = Streams()
    with pytest.raises(StrictError):
        do(cluster, streams, apply=True, strict=True)
    assert cluster.applied() == []
    assert "--strict: the conversion is incomplete, so nothing was applied" in (
        streams.err.getvalue()
    )


def test_ingress_and_unknown_kinds_are_never_applied(cluster: FakeCluster) -> None:
    def sneaky(objects: Any, options: MigrateOptions) -> Conversion:
        conv = fake_convert(objects, options)
        conv.objects.append(stamp(cast(KubeObject, ingress("web")), []))
        conv.objects.append(
            cast(
                KubeObject,
                {"apiVersion": "x.io/v1", "kind": "Gizmo", "metadata": {"name": "g"}},
            )
        )
        return conv

    streams = Streams()
    request = migrate.build_request(apply=True)
    outcome = migrate.run(
        request,
        streams.console,
        converter=sneaky,
        connect=lambda _t: cluster,
        reader_factory=lambda c: c,
    )
    assert [c[0] for c in cluster.applied()] == ["Namespace", "Gateway", "HTTPRoute"]
    assert outcome.applied is not None
    assert sorted(str(r) for r in outcome.applied.skipped) == ["Gizmo g", "Ingress shop/web"]
    assert "kubectl-gw never modifies Ingress objects" in streams.err.getvalue()


def test_unlabelled_output_gets_the_managed_label_when_applied(cluster: FakeCluster) -> None:
    def bare(objects: Any, options: MigrateOptions) -> Conversion:
        conv = Conversion()
        conv.objects.append(
            cast(
                KubeObject,
                {
                    "apiVersion": GW_API,
                    "kind": "HTTPRoute",
                    "metadata": {"name": "r", "namespace": "shop", "labels": {"a": "b"}},
                    "spec": {},
                },
            )
        )
        return conv

    migrate.run(
        migrate.build_request(apply=True),
        Streams().console,
        converter=bare,
        connect=lambda _t: cluster,
        reader_factory=lambda c: c,
    )
    stored = cluster.store[("gateway.networking.k8s.io", "HTTPRoute", "shop", "r")]
    assert stored["metadata"]["labels"] == {"a": "b", MANAGED_BY_LABEL: MANAGED_BY}


# --------------------------------------------------------------------------- progress


def many_ingresses(cluster: FakeCluster, count: int) -> None:
    for i in range(count):
        cluster.put(ingress(f"web-{i:03d}", annotations={"x": "converted"}))


def test_progress_bar_on_a_tty_with_many_objects(cluster: FakeCluster) -> None:
    many_ingresses(cluster, migrate.PROGRESS_MIN)
    _o, streams = do(cluster, Streams(tty=True), apply=True)
    assert "applying" in streams.err.getvalue()
    assert "applying" not in streams.out.getvalue()


@pytest.mark.parametrize(("tty", "count"), [(False, 40), (True, 3)])
def test_no_progress_bar_off_a_tty_or_with_few_objects(
    cluster: FakeCluster, tty: bool, count: int
) -> None:
    many_ingresses(cluster, count)
    _o, streams = do(cluster, Streams(tty=tty), apply=True)
    assert "applying" not in streams.err.getvalue()


def test_console_progress_passes_every_item_through() -> None:
    items = list(range(migrate.PROGRESS_MIN + 5))
    console = migrate.Console(out=io.StringIO(), err=TTY())
    seen: Iterator[int] = iter(console.progress(items, "x"))
    assert list(seen) == items
    assert "x" in cast(io.StringIO, console.err).getvalue()


def test_prefix_flag_changes_which_annotations_name_objects(cluster: FakeCluster) -> None:
    do(cluster, annotation_prefix="example.com")
    assert not any(c[:2] == ("get", "ConfigMap") and c[2] == "other" for c in cluster.calls)
    cluster.calls.clear()
    do(cluster, annotation_prefix=PREFIX)
    assert ("get", "ConfigMap", "other", "headers") in cluster.calls


def test_bad_files_fail_before_any_cluster_is_contacted(tmp_path: Any) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: [\n")
    contacted: list[object] = []
    with pytest.raises(InputError):
        migrate.run(
            migrate.build_request(filenames=[str(bad)], apply=True),
            Streams().console,
            converter=fake_convert,
            connect=lambda target: contacted.append(target),
        )
    assert contacted == []


def test_server_dry_run_says_what_it_could_not_validate(cluster: FakeCluster) -> None:
    _o, streams = do(cluster, apply=True, dry_run="server")
    assert cluster.applied() == [  # the Gateway in the missing namespace is not sent
        ("Namespace", "", "gateway-system", "True"),
        ("HTTPRoute", "shop", "web", "True"),
    ]
    assert (
        "warning: namespace gateway-system does not exist yet, so the API server cannot "
        "validate the objects that go there in a dry run"
    ) in streams.err.getvalue()


def test_unwritable_report_fails_before_anything_is_applied(
    cluster: FakeCluster, tmp_path: Any
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(UserError, match="--report"):
        do(cluster, apply=True, report=str(blocker / "report.json"))
    with pytest.raises(UserError, match="cannot write there"):
        do(cluster, apply=True, report=str(tmp_path))
    assert cluster.applied() == []
