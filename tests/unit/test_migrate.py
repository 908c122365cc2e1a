"""``kubectl gw migrate`` orchestration: flags, sources, output, report, strict.

The converter is injected: this module itself is a provider (``convert`` below) that the tests
put in the provider registry, so the orchestration is tested on its own, whatever the real
converters do. The fake is deliberately unhelpful: it returns objects unsorted and reads the
status of each annotation from its value (``converted``, ``partial``, ``error``, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from converters.api import (
    DEFAULT_GATEWAY_CLASS,
    DEFAULT_GATEWAY_NAMESPACE,
    ExistingGateway,
    MigrateOptions,
)
from converters.provenance import stamp
from converters.report import STATUSES, Conversion
from kubectl_gw import cli, migrate
from kubectl_gw.errors import UserError
from kubectl_gw.model import KubeObject, ObjectRef

PREFIX = "nginx.ingress.kubernetes.io"
GW_API = "gateway.networking.k8s.io/v1"
CALLS: list[tuple[list[KubeObject], MigrateOptions]] = []


# --------------------------------------------------------------------------- the fake provider


def convert(objects: Sequence[KubeObject], options: MigrateOptions) -> Conversion:
    """A provider for tests: one HTTPRoute per Ingress, one shared Gateway, and report entries
    whose status is the annotation's value when that value is a status name."""
    CALLS.append((list(objects), options))
    conv = Conversion()
    ingresses = [o for o in objects if o["kind"] == "Ingress"]
    if not ingresses:
        return conv
    gateway: KubeObject = stamp(
        {
            "apiVersion": GW_API,
            "kind": "Gateway",
            "metadata": {"name": "nginx", "namespace": options.gateway_namespace},
            "spec": {
                "gatewayClassName": options.gateway_class,
                "listeners": [
                    {
                        "name": "http",
                        "port": 80,
                        "protocol": "HTTP",
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
        [ObjectRef.of(i) for i in ingresses],
    )
    gw_ref = ObjectRef.of(gateway)
    for ing in reversed(ingresses):  # unsorted on purpose
        ref = ObjectRef.of(ing)
        meta = ing["metadata"]
        hosts = [r["host"] for r in (ing.get("spec") or {}).get("rules", []) if r.get("host")]
        route: KubeObject = stamp(
            {
                "apiVersion": GW_API,
                "kind": "HTTPRoute",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "spec": {
                    "parentRefs": [{"name": "nginx", "namespace": options.gateway_namespace}],
                    "hostnames": hosts,
                    "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
                },
            },
            [ref],
        )
        route_ref = ObjectRef.of(route)
        conv.objects.append(route)
        conv.report.add(ref, "spec.rules[0].http.paths[0]", "converted", "", [route_ref, gw_ref])
        for key, value in sorted((meta.get("annotations") or {}).items()):
            if key.startswith(f"{options.annotation_prefix}/"):
                status = value if value in STATUSES else "converted"
                outputs = [route_ref] if status in ("converted", "partial") else []
                conv.report.add(ref, key, status, f"fake: {value}\nsecond line", outputs)  # type: ignore[arg-type]
    conv.objects.append(gateway)
    return conv


@pytest.fixture(autouse=True)
def fake_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    CALLS.clear()
    monkeypatch.setitem(migrate.PROVIDERS, "ingress-nginx", __name__)


# --------------------------------------------------------------------------- inputs


def ingress(
    name: str,
    namespace: str | None = "shop",
    host: str = "shop.example.com",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = {f"{PREFIX}/{k}": v for k, v in annotations.items()}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


def write_docs(path: Path, docs: Sequence[dict[str, Any]]) -> Path:
    yaml = YAML(typ="safe", pure=True)
    with path.open("w") as handle:
        yaml.dump_all(list(docs), handle)
    return path


def corpus(tmp_path: Path, name: str = "in.yaml") -> Path:
    return write_docs(
        tmp_path / name,
        [
            ingress("web", annotations={"ssl-redirect": "true"}),
            ingress("api", "api", "api.example.com", {"configuration-snippet": "unsupported"}),
            ingress("admin", "shop", "admin.example.com", {"auth-url": "partial"}),
        ],
    )


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.run(args)
    out, err = capsys.readouterr()
    return code, out, err


def load_yaml_stream(text: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d is not None]


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("infra/shared", ("infra", "shared", None)),
        ("infra/shared/https", ("infra", "shared", "https")),
        ("a/gw.example-1/sec.tion-2", ("a", "gw.example-1", "sec.tion-2")),
    ],
)
def test_gateway_flag_parses(text: str, expected: tuple[str, str, str | None]) -> None:
    gw = migrate.parse_gateway(text)
    assert (gw.namespace, gw.name, gw.section) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("shared", "expected NS/NAME or NS/NAME/SECTION"),
        ("a/b/c/d", "expected NS/NAME or NS/NAME/SECTION"),
        ("a//b", "expected NS/NAME or NS/NAME/SECTION"),
        ("/b", "expected NS/NAME or NS/NAME/SECTION"),
        ("Infra/gw", "namespace 'Infra' is not a valid DNS-1123 label"),
        ("in.fra/gw", "namespace 'in.fra' is not a valid DNS-1123 label"),
        ("infra/gw_1", "name 'gw_1' is not a valid DNS-1123 subdomain"),
        ("infra/gw/-x", "section (listener name) '-x' is not a valid"),
        (f"{'a' * 64}/gw", "is not a valid DNS-1123 label"),
    ],
)
def test_gateway_flag_rejects_with_one_line(
    text: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UserError, match=re.escape(needle)):
        migrate.parse_gateway(text)
    code, out, err = run(["migrate", "-f", str(corpus(tmp_path)), "--gateway", text], capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert needle in error_line(err)
    assert CALLS == []  # nothing converted


_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


@given(ns=_label, name=_label, section=st.none() | _label)
def test_gateway_flag_round_trips(ns: str, name: str, section: str | None) -> None:
    text = f"{ns}/{name}" + (f"/{section}" if section else "")
    gw = migrate.parse_gateway(text)
    assert (gw.namespace, gw.name, gw.section) == (ns, name, section)


@given(st.text(max_size=40))
def test_gateway_flag_never_crashes(text: str) -> None:
    try:
        migrate.parse_gateway(text)
    except UserError as err:
        assert "\n" not in str(err)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--gateway", "a/b", "--gateway-per-namespace"], "cannot be used together"),
        (["--gateway", "a/b", "--gateway-namespace", "c"], "--gateway-namespace has no effect"),
        (["--dry-run=server"], "--dry-run=server only applies to --apply"),
        (["--dry-run"], "--dry-run=client only applies to --apply"),
        (["--report-format", "json"], "--report-format needs --report"),
        (["--provider", "traefik"], "unknown provider 'traefik' (known: emissary, ingress-nginx)"),
        (["--nginx-configmap", "just-a-name"], "--nginx-configmap: expected NS/NAME"),
        (["--annotation-prefix", "Not A Prefix"], "--annotation-prefix 'Not A Prefix'"),
        (["--ingress-class", "Bad_Class"], "--ingress-class 'Bad_Class'"),
        (["--gateway-namespace", "NS"], "--gateway-namespace 'NS'"),
        (["--dry-run=maybe", "--apply"], "'maybe' is not one of"),
        (["--report", ""], "--report: expected a file path or -"),
    ],
)
def test_bad_flag_combinations_are_one_line_usage_errors(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["migrate", "-f", str(corpus(tmp_path)), *args], capsys)
    assert (code, out) == (2, "")
    assert needle in error_line(err)
    assert not list(tmp_path.glob(".*"))


def captured_request(args: list[str], monkeypatch: pytest.MonkeyPatch) -> migrate.MigrateRequest:
    seen: list[migrate.MigrateRequest] = []

    def fake_run(request: migrate.MigrateRequest, console: Any, **_kw: Any) -> None:
        seen.append(request)

    monkeypatch.setattr(migrate, "run", fake_run)
    assert cli.run(["migrate", *args]) == 0
    assert len(seen) == 1
    return seen[0]


def test_defaults_and_every_flag_reach_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = captured_request(["-f", "x.yaml"], monkeypatch)
    assert plain.options == MigrateOptions()
    assert plain.options.gateway_class == DEFAULT_GATEWAY_CLASS
    assert plain.options.gateway_namespace == DEFAULT_GATEWAY_NAMESPACE
    assert (plain.output, plain.dry_run, plain.report_format) == ("yaml", "none", "table")
    assert (plain.apply, plain.strict, plain.provider, plain.namespace) == (
        False,
        False,
        None,
        None,
    )
    full = captured_request(
        [
            *("-f", "a.yaml", "-f", "b"),
            *("-n", "shop", "--provider", "ingress-nginx"),
            *(
                "--ingress-class",
                "nginx",
                "--ingress-class",
                "internal",
                "--ingress-class",
                "nginx",
            ),
            *("--include-classless", "--gateway-class", "eg", "--gateway", "infra/gw/https"),
            *("--target", "standard", "-o", "json", "--output-dir", "out"),
            *("--report", "r.json", "--report-format", "json", "--strict", "--apply"),
            *("--dry-run", "--nginx-configmap", "ingress-nginx/cm"),
            *("--annotation-prefix", "example.com", "--ambassador-id", "blue"),
        ],
        monkeypatch,
    )
    opts = full.options
    assert full.filenames == ("a.yaml", "b")
    assert full.namespace == "shop"
    assert opts.ingress_classes == ("nginx", "internal")
    assert opts.include_classless
    assert opts.gateway_class == "eg"
    assert opts.gateway == ExistingGateway("infra", "gw", "https")
    assert opts.gateway_namespace == "infra"
    assert opts.target == "standard"
    assert opts.annotation_prefix == "example.com"
    assert opts.ambassador_id == "blue"
    assert full.nginx_configmap == ("ingress-nginx", "cm")
    assert (full.output, full.output_dir, full.report_path, full.report_format) == (
        "json",
        Path("out"),
        "r.json",
        "json",
    )
    assert (full.strict, full.apply, full.dry_run) == (True, True, "client")  # bare --dry-run
    server = captured_request(["--apply", "--dry-run=server", "-A", "-n", "x"], monkeypatch)
    assert (server.dry_run, server.all_namespaces, server.namespace) == ("server", True, None)
    assert captured_request(["--apply", "--dry-run", "server"], monkeypatch).dry_run == "server"


def test_help_states_the_real_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(["migrate", "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split()).replace("- ", "-")
    for default in (DEFAULT_GATEWAY_CLASS, DEFAULT_GATEWAY_NAMESPACE, PREFIX):
        assert default in flat
    assert "/".join(migrate.DEFAULT_NGINX_CONFIGMAP) in flat
    for flag in ("--provider", "--gateway-per-namespace", "--dry-run", "--ambassador-id"):
        assert flag in out


# --------------------------------------------------------------------------- output


def test_yaml_output_is_sorted_and_rerun_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = corpus(tmp_path)
    code, first, err = run(["migrate", "-f", str(source)], capsys)
    assert code == 0, err
    docs = load_yaml_stream(first)
    keys = [(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs]
    assert keys == [
        ("Gateway", "gateway-system", "nginx"),
        ("HTTPRoute", "api", "api"),
        ("HTTPRoute", "shop", "admin"),
        ("HTTPRoute", "shop", "web"),
    ]
    assert first.count("---\n") == 3
    # Same input in another order and split over two files: the same bytes.
    docs_in = load_yaml_stream(source.read_text())
    split = tmp_path / "split"
    split.mkdir()
    write_docs(split / "a.yaml", docs_in[2:])
    write_docs(split / "b.yaml", docs_in[:2])
    _code, second, _err = run(["migrate", "-f", str(split)], capsys)
    _code, third, _err = run(["migrate", "-f", str(source)], capsys)
    assert first == second == third


def test_json_output_is_a_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(["migrate", "-f", str(corpus(tmp_path)), "-o", "json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert (doc["apiVersion"], doc["kind"]) == ("v1", "List")
    assert [i["kind"] for i in doc["items"]] == ["Gateway", "HTTPRoute", "HTTPRoute", "HTTPRoute"]


def test_stdin_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    data = corpus(tmp_path).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, _err = run(["migrate", "-f", "-"], capsys)
    assert code == 0
    assert len(load_yaml_stream(out)) == 4


def test_output_dir_one_file_per_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    cluster_scoped = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "nginx"},
        "spec": {"controller": "k8s.io/ingress-nginx"},
    }
    src = write_docs(tmp_path / "in.yaml", [*load_yaml_stream(corpus(tmp_path).read_text())])
    code, stdout, err = run(["migrate", "-f", str(src), "--output-dir", str(out_dir)], capsys)
    assert code == 0, err
    assert stdout == ""
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [".kubectl-gw", "api.yaml", "gateway-system.yaml", "shop.yaml"]
    shop = load_yaml_stream((out_dir / "shop.yaml").read_text())
    assert [d["metadata"]["name"] for d in shop] == ["admin", "web"]
    # The same objects as the stdout form, split by namespace.
    _c, whole, _e = run(["migrate", "-f", str(src)], capsys)
    assert sorted(map(json.dumps, load_yaml_stream(whole))) == sorted(
        json.dumps(d)
        for f in ("api.yaml", "gateway-system.yaml", "shop.yaml")
        for d in load_yaml_stream((out_dir / f).read_text())
    )
    # Cluster-scoped objects get their own file.
    files = migrate.files_by_namespace([cluster_scoped, *load_yaml_stream(whole)], "json")  # type: ignore[list-item]
    assert sorted(files) == ["_cluster.json", "api.json", "gateway-system.json", "shop.json"]
    assert json.loads(files["_cluster.json"])["items"][0]["kind"] == "IngressClass"


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_output_dir_rerun_replaces_the_whole_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    args = ["migrate", "-f", str(corpus(tmp_path)), "--output-dir", str(out_dir)]
    assert run(args, capsys)[0] == 0
    first = snapshot(out_dir)
    assert run(args, capsys)[0] == 0
    assert snapshot(out_dir) == first  # byte-identical rerun
    # A smaller input: the stale namespace file disappears with the rest.
    only_api = write_docs(tmp_path / "api.yaml", [ingress("api", "api", "api.example.com")])
    assert run(["migrate", "-f", str(only_api), "--output-dir", str(out_dir)], capsys)[0] == 0
    assert sorted(snapshot(out_dir)) == [".kubectl-gw", "api.yaml", "gateway-system.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.yaml", "in.yaml", "out"]


def test_output_dir_an_empty_existing_directory_is_used(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    migrate.write_output_dir(out_dir, {"a.yaml": "x: 1\n"})
    assert snapshot(out_dir) == {
        ".kubectl-gw": migrate.OUTPUT_DIR_MARKER_TEXT.encode(),
        "a.yaml": b"x: 1\n",
    }


def test_output_dir_failure_midway_leaves_nothing_behind(tmp_path: Path) -> None:
    files = {"a.yaml": "a: 1\n", "b.yaml": "b: 1\n", "c.yaml": "c: 1\n"}
    written: list[str] = []

    def failing(path: Path, text: str) -> None:
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        path.write_text(text)
        written.append(path.name)

    out_dir = tmp_path / "out"
    with pytest.raises(UserError, match="No space left on device"):
        migrate.write_output_dir(out_dir, files, write=failing)
    assert written == ["a.yaml", "b.yaml"]
    assert list(tmp_path.iterdir()) == []  # no out/, no temporary directory

    # With a previous output in place: it stays exactly as it was.
    migrate.write_output_dir(out_dir, {"old.yaml": "old: 1\n"})
    before = snapshot(out_dir)
    written.clear()
    with pytest.raises(UserError):
        migrate.write_output_dir(out_dir, files, write=failing)
    assert snapshot(out_dir) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_output_dir_failure_when_swapping_restores_the_previous_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "out"
    migrate.write_output_dir(out_dir, {"old.yaml": "old: 1\n"})
    before = snapshot(out_dir)
    real_rename = Path.rename

    def rename(self: Path, target: Any) -> Any:
        if self.name.endswith(".new"):
            raise OSError(5, "Input/output error")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(UserError, match="Input/output error"):
        migrate.write_output_dir(out_dir, {"new.yaml": "new: 1\n"})
    assert snapshot(out_dir) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_output_dir_never_replaces_a_foreign_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "mine"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("keep me")
    code, out, err = run(
        ["migrate", "-f", str(corpus(tmp_path)), "--output-dir", str(out_dir)], capsys
    )
    assert (code, out) == (2, "")
    assert "not written by kubectl-gw" in error_line(err)
    assert snapshot(out_dir) == {"notes.txt": b"keep me"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        migrate.write_output_dir(tmp_path / "file", {})


# --------------------------------------------------------------------------- summary & report


def test_summary_table_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["migrate", "-f", str(corpus(tmp_path))], capsys)
    assert code == 0
    lines = err.splitlines()
    header = lines[0]
    assert header.split() == ["KIND", "NAMESPACE", "NAME", "RESULT"] + [s.upper() for s in STATUSES]
    assert STATUSES == ("converted", "partial", "unsupported", "ignored", "error")
    rows = {tuple(line.split()[:4]) for line in lines[1:4]}
    assert rows == {
        ("Ingress", "api", "api", "unsupported"),
        ("Ingress", "shop", "admin", "partial"),
        ("Ingress", "shop", "web", "converted"),
    }
    assert all(line == line.rstrip() for line in lines)
    assert "|" not in err and "+--" not in err
    # columns: every header word starts where its column starts
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    for line in lines[1:4]:
        cells = [m.start() for m in re.finditer(r"\S+", line)]
        assert set(cells) <= set(starts)
    gaps = re.findall(r"\S( +)\S", header)
    assert min(len(g) for g in gaps) == 3
    assert lines[4] == (
        "ingress-nginx: 3 source objects -> 4 Gateway API objects; "
        "report entries: 4 converted, 1 partial, 1 unsupported"
    )


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_report_json_and_yaml(fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"report.{fmt}"
    args = ["migrate", "-f", str(corpus(tmp_path)), "--report", str(path), "--report-format", fmt]
    code, out, _err = run(args, capsys)
    assert code == 0
    assert len(load_yaml_stream(out)) == 4  # the objects are still on stdout
    text = path.read_text()
    data = json.loads(text) if fmt == "json" else YAML(typ="safe", pure=True).load(text)
    assert data["kind"] == "MigrationReport"
    assert data["provider"] == "ingress-nginx"
    assert data["summary"] == {
        "converted": 4, "partial": 1, "unsupported": 1, "ignored": 0, "error": 0,
    }  # fmt: skip
    assert data["incomplete"] == 2
    entries = data["entries"]
    assert [(e["source"]["namespace"], e["source"]["name"], e["key"]) for e in entries] == [
        ("api", "api", "spec.rules[0].http.paths[0]"),
        ("api", "api", f"{PREFIX}/configuration-snippet"),
        ("shop", "admin", "spec.rules[0].http.paths[0]"),
        ("shop", "admin", f"{PREFIX}/auth-url"),
        ("shop", "web", "spec.rules[0].http.paths[0]"),
        ("shop", "web", f"{PREFIX}/ssl-redirect"),
    ]
    first = entries[0]
    assert first["source"] == {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "namespace": "api", "name": "api",
    }  # fmt: skip
    assert first["outputs"] == [
        {"apiVersion": GW_API, "kind": "HTTPRoute", "namespace": "api", "name": "api"},
        {"apiVersion": GW_API, "kind": "Gateway", "namespace": "gateway-system", "name": "nginx"},
    ]
    assert set(first) == {"source", "key", "status", "message", "outputs"}


def test_report_table_to_a_file_and_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "report.txt"
    code, _out, err = run(["migrate", "-f", str(corpus(tmp_path)), "--report", str(path)], capsys)
    assert code == 0
    table = path.read_text().splitlines()
    assert table[0].split() == ["KIND", "NAMESPACE", "NAME", "KEY", "STATUS", "MESSAGE", "OUTPUTS"]
    assert len(table) == 7
    snippet = next(line for line in table if "configuration-snippet" in line)
    assert "unsupported" in snippet and "fake: unsupported second line" in snippet
    assert "HTTPRoute/shop/web, Gateway/gateway-system/nginx" in table[5]
    assert err.splitlines()[0].startswith("KIND")  # the summary is still there
    # --report -: the full report replaces the summary on stderr; stdout keeps the objects only.
    code, out, err = run(["migrate", "-f", str(corpus(tmp_path)), "--report", "-"], capsys)
    assert code == 0
    assert err.splitlines()[: len(table)] == table
    assert "RESULT" not in err
    assert len(load_yaml_stream(out)) == 4
    code, out, err = run(
        ["migrate", "-f", str(corpus(tmp_path)), "--report", "-", "--report-format", "json"],
        capsys,
    )
    report_text = err[: err.rindex("}") + 1]
    assert json.loads(report_text)["incomplete"] == 2


def test_report_to_an_unwritable_place_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    code, _out, err = run(
        ["migrate", "-f", str(corpus(tmp_path)), "--report", str(blocker / "r.json")], capsys
    )
    assert code == 2
    assert "--report" in error_line(err)


# --------------------------------------------------------------------------- strict, best effort


def test_best_effort_exits_0_with_errors_in_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_docs(
        tmp_path / "in.yaml",
        [ingress("bad", annotations={"rewrite-target": "error"}), ingress("good")],
    )
    code, out, err = run(["migrate", "-f", str(src)], capsys)
    assert code == 0, err
    assert [d["metadata"]["name"] for d in load_yaml_stream(out)] == ["nginx", "bad", "good"]
    assert re.search(r"^Ingress\s+shop\s+bad\s+error\s", err, re.MULTILINE)


def test_strict_exits_3_after_writing_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r.json"
    args = ["migrate", "-f", str(corpus(tmp_path)), "--strict", "--report", str(report)]
    code, out, err = run([*args, "--report-format", "json"], capsys)
    assert code == 3
    assert len(load_yaml_stream(out)) == 4
    assert json.loads(report.read_text())["incomplete"] == 2
    assert error_line(err) == (
        "error: --strict: 2 report entries are not fully converted (1 partial, 1 unsupported)"
    )


@pytest.mark.parametrize("status", ["converted", "ignored"])
def test_strict_exits_0_when_everything_is_converted_or_ignored(
    status: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_docs(tmp_path / "in.yaml", [ingress("web", annotations={"x": status})])
    code, _out, err = run(["migrate", "-f", str(src), "--strict"], capsys)
    assert code == 0, err


def test_no_ingress_gives_an_empty_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_docs(
        tmp_path / "in.yaml",
        [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "a"}}],
    )
    code, out, err = run(["migrate", "-f", str(src)], capsys)
    assert (code, out) == (0, "")
    assert "0 source objects -> 0 Gateway API objects" in err


# --------------------------------------------------------------------------- sources from files


def test_secret_data_never_reaches_the_converter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": "shop-tls",
            "namespace": "shop",
            "labels": {"a": "b"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"tls.key":"S0VZ"}}',
                "keep": "me",
            },
            "managedFields": [{"manager": "kubectl"}],
        },
        "data": {"tls.crt": "Q0VSVA==", "tls.key": "S0VZ"},
        "stringData": {"password": "hunter2"},
    }
    src = write_docs(tmp_path / "in.yaml", [secret, ingress("web")])
    code, out, err = run(
        ["migrate", "-f", str(src), "--report", "-", "--report-format", "json"], capsys
    )
    assert code == 0
    ((objects, _options),) = CALLS
    given_secret = next(o for o in objects if o["kind"] == "Secret")
    assert given_secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": "shop-tls",
            "namespace": "shop",
            "labels": {"a": "b"},
            "annotations": {"keep": "me"},
        },
    }
    for text in (out, err):
        assert "S0VZ" not in text and "hunter2" not in text and "Q0VSVA" not in text


def test_namespace_flag_with_files_defaults_and_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cls = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "nginx"},
        "spec": {"controller": "k8s.io/ingress-nginx"},
    }
    src = write_docs(
        tmp_path / "in.yaml",
        [cls, ingress("bare", namespace=None), ingress("web", "shop"), ingress("api", "api")],
    )
    assert run(["migrate", "-f", str(src)], capsys)[0] == 0
    names = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in CALLS[-1][0]}
    assert names == {(None, "nginx"), ("default", "bare"), ("shop", "web"), ("api", "api")}
    code, _out, err = run(["migrate", "-f", str(src), "-n", "shop"], capsys)
    assert code == 0
    names = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in CALLS[-1][0]}
    assert names == {(None, "nginx"), ("shop", "bare"), ("shop", "web")}
    assert "note: -n shop: left out 1 objects of other namespaces" in err
    run(["migrate", "-f", str(src), "-A", "-n", "shop"], capsys)  # -A wins, as in kubectl
    assert len(CALLS[-1][0]) == 4


def test_nginx_configmap_from_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def cm(ns: str, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns},
            "data": {"ssl-redirect": "false"},
        }

    src = write_docs(tmp_path / "in.yaml", [ingress("web"), cm("infra", "nginx-config")])
    code, _out, err = run(
        ["migrate", "-f", str(src), "--nginx-configmap", "infra/nginx-config"], capsys
    )
    assert code == 0, err
    given_cm = CALLS[-1][1].nginx_configmap
    assert given_cm is not None and given_cm["metadata"]["name"] == "nginx-config"
    code, _out, err = run(["migrate", "-f", str(src), "--nginx-configmap", "infra/nope"], capsys)
    assert code == 2
    assert "--nginx-configmap infra/nope: no such ConfigMap in the input files" in error_line(err)
    # Without the flag: the Helm chart's name is picked up when present, and said so.
    run(["migrate", "-f", str(src)], capsys)
    assert CALLS[-1][1].nginx_configmap is None
    helm = write_docs(
        tmp_path / "helm.yaml", [ingress("web"), cm("ingress-nginx", "ingress-nginx-controller")]
    )
    code, _out, err = run(["migrate", "-f", str(helm)], capsys)
    assert CALLS[-1][1].nginx_configmap is not None
    assert (
        "using the ingress-nginx controller ConfigMap ingress-nginx/ingress-nginx-controller" in err
    )


# --------------------------------------------------------------------------- providers


def emissary_mapping() -> dict[str, Any]:
    return {
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": {"name": "m", "namespace": "a"},
        "spec": {"prefix": "/", "service": "web"},
    }


def test_provider_detection() -> None:
    mapping: Any = emissary_mapping()
    annotated: Any = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "annotations": {"getambassador.io/config": "---"}},
    }
    ing: Any = ingress("web")
    assert migrate.detect_provider([mapping]) == "emissary"
    assert migrate.detect_provider([annotated]) == "emissary"
    assert migrate.detect_provider([mapping, ing]) == "ingress-nginx"
    assert migrate.detect_provider([ing]) == "ingress-nginx"
    assert migrate.detect_provider([]) == "ingress-nginx"


def test_registry_adds_providers_without_touching_the_logic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_docs(tmp_path / "in.yaml", [emissary_mapping()])
    monkeypatch.setitem(migrate.PROVIDERS, "emissary", "converters.no_such_provider_module")
    code, out, err = run(["migrate", "-f", str(src)], capsys)
    assert (code, out) == (2, "")
    assert "the emissary provider is not built yet" in error_line(err)
    assert "note: no Ingress in the sources, Emissary resources found: provider emissary" in err
    monkeypatch.setitem(migrate.PROVIDERS, "emissary", __name__)
    code, _out, err = run(["migrate", "-f", str(src), "--ambassador-id", "blue"], capsys)
    assert code == 0, err
    assert CALLS[-1][1].ambassador_id == "blue"
    both = write_docs(tmp_path / "both.yaml", [emissary_mapping(), ingress("web")])
    code, _out, err = run(["migrate", "-f", str(both)], capsys)
    assert code == 0, err
    assert "note: Emissary resources found too; they are not converted by ingress-nginx" in err
    code, _out, err = run(["migrate", "-f", str(both), "--provider", "ingress-nginx"], capsys)
    assert "Emissary resources found too" not in err  # the user chose
    code, _out, err = run(
        ["migrate", "-f", str(src), "--provider", "emissary", "--nginx-configmap", "a/b"], capsys
    )
    assert code == 2
    assert "--nginx-configmap only applies to --provider ingress-nginx" in error_line(err)


def test_load_converter_tells_not_built_from_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError, match="unknown provider 'nope'"):
        migrate.load_converter("nope")
    assert migrate.load_converter("ingress-nginx") is convert
    (tmp_path / "kgw_broken_provider.py").write_text("import kgw_no_such_dependency\n")
    (tmp_path / "kgw_no_convert.py").write_text("CONVERT = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError):  # a missing dependency is a bug, not "not built"
        migrate.load_converter("x", {"x": "kgw_broken_provider"})
    with pytest.raises(UserError, match="has no convert"):
        migrate.load_converter("x", {"x": "kgw_no_convert"})


def test_listener_port_maps_emissary_listener_ports(capsys: pytest.CaptureFixture[str]) -> None:
    from kubectl_gw import cli

    code = cli.run(["migrate", "-f", EMISSARY_EXAMPLES, "--listener-port", "8080=8000"])
    out, _err = capsys.readouterr()
    assert code == 0
    assert "port: 8000" in out
    assert "port: 443" in out  # the other default (8443 -> 443) stays


@pytest.mark.parametrize("value", ["8080", "8080=", "x=80", "0=80", "80=70000"])
def test_listener_port_rejects_bad_values(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from kubectl_gw import cli

    code = cli.run(["migrate", "-f", EMISSARY_EXAMPLES, "--listener-port", value])
    _out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: --listener-port: expected FROM=TO")


EMISSARY_EXAMPLES = str(Path(__file__).resolve().parents[2] / "examples" / "emissary")
