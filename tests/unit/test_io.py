"""The loader and the writer: every input shape, every bad input, deterministic output."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_gw import io as kio
from kubectl_gw.errors import InputError

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  ports:
  - name: http
    port: 80
"""

INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
spec:
  rules:
  - host: shop.example.com
"""


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def names(result: kio.LoadResult) -> list[str]:
    return [f"{o.obj['kind']}/{o.obj['metadata']['name']}" for o in result.objects]


def test_multi_document_yaml_keeps_order_and_origin(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", f"{SERVICE}---\n{INGRESS}")
    result = kio.load_inputs([str(path)])
    assert names(result) == ["Service/web", "Ingress/web"]
    assert [str(o.origin) for o in result.objects] == [f"{path}: document 1", f"{path}: document 2"]


def test_json_file_and_kind_list(tmp_path: Path) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "x"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "x"}},
        ],
    }
    path = write(tmp_path, "list.json", json.dumps(doc))
    assert names(kio.load_inputs([str(path)])) == ["Service/a", "ConfigMap/b"]


def test_typed_list_kind_is_expanded(tmp_path: Path) -> None:
    text = "apiVersion: networking.k8s.io/v1\nkind: IngressList\nitems:\n" + "".join(
        f"- apiVersion: networking.k8s.io/v1\n  kind: Ingress\n  metadata: {{name: i{i}}}\n"
        for i in range(3)
    )
    path = write(tmp_path, "l.yaml", text)
    assert names(kio.load_inputs([str(path)])) == ["Ingress/i0", "Ingress/i1", "Ingress/i2"]


def test_directory_is_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path, "d/b.yml", SERVICE.replace("web", "b"))
    write(tmp_path, "d/sub/a.yaml", SERVICE.replace("web", "suba"))
    write(
        tmp_path,
        "d/a.json",
        json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}),
    )
    write(tmp_path, "d/notes.txt", "not read")
    write(tmp_path, "d/.hidden/x.yaml", "::: not read either")
    result = kio.load_inputs([str(tmp_path / "d")])
    assert names(result) == ["Service/a", "Service/b", "Service/suba"]


def test_stdin(tmp_path: Path) -> None:
    result = kio.load_inputs(["-"], stdin=io.BytesIO(SERVICE.encode()))
    assert names(result) == ["Service/web"]
    assert str(result.objects[0].origin) == "<stdin>: document 1"


def test_unknown_kind_is_skipped_with_a_note(tmp_path: Path) -> None:
    text = SERVICE + "---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    result = kio.load_inputs([str(write(tmp_path, "a.yaml", text))])
    assert names(result) == ["Service/web"]
    assert result.notes == [
        f"{tmp_path}/a.yaml: document 2: skipped Widget w (example.com/v1):"
        " not a kind kubectl-gw reads"
    ]


def test_later_duplicate_replaces_earlier_with_a_note(tmp_path: Path) -> None:
    text = SERVICE + "---\n" + SERVICE.replace("port: 80", "port: 8080")
    result = kio.load_inputs([str(write(tmp_path, "a.yaml", text))])
    assert len(result.objects) == 1
    assert result.objects[0].obj["spec"]["ports"][0]["port"] == 8080
    assert "replaces the one in" in result.notes[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (SERVICE + "---\nkind: [unclosed\n", "a.yaml: document 2: "),
        ("a: b\n  c: d\n", "a.yaml: document 1: mapping values are not allowed"),
        (
            "- just\n- a list\n",
            "a.yaml: document 1: expected a Kubernetes object (a mapping), got a list",
        ),
        ("kind: Service\nmetadata: {name: x}\n", "a.yaml: document 1: missing apiVersion"),
        ("apiVersion: v1\nkind: Service\n", "a.yaml: document 1: Service has no metadata.name"),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: off}\n",
            "a.yaml: document 1: Service metadata.name must be a string, got false; quote it",
        ),
        ("a: 1\na: 2\n", "a.yaml: document 1: "),
        ("", "a.yaml: empty input, no Kubernetes objects in it"),
        ("# only a comment\n---\n", "a.yaml: empty input"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "a.yaml: not UTF-8 text (byte 0x89 at offset 0)"),
        (
            "apiVersion: x.io/v1\nkind: Widget\nmetadata: {name: w}\n",
            "no object of a kind kubectl-gw reads in the input (skipped: Widget w)",
        ),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = write(tmp_path, "a.yaml", content)
    with pytest.raises(InputError) as caught:
        kio.load_inputs([str(path)])
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or directory"):
        kio.load_inputs([str(tmp_path / "nope.yaml")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"directory holds no \.yaml, \.yml or \.json files"):
        kio.load_inputs([str(tmp_path / "empty")])


# --------------------------------------------------------------------------- writer


def test_yaml_output_is_sorted_by_kind_then_namespace_then_name() -> None:
    objs: list[Any] = [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "b", "namespace": "a"},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "a", "namespace": "b"},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "z", "namespace": "z"},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "c"},
        },
    ]
    text = kio.to_yaml(objs)
    order = [line for line in text.splitlines() if line.startswith("kind:")]
    assert order == ["kind: GatewayClass", "kind: Gateway", "kind: HTTPRoute", "kind: HTTPRoute"]
    assert text.index("namespace: a") < text.index("namespace: b")
    assert text.count("---\n") == 3


def test_top_level_and_metadata_key_order_is_canonical() -> None:
    obj: Any = {
        "spec": {"b": 1, "a": 2},
        "metadata": {"annotations": {"z": "1", "a": "2"}, "namespace": "n", "name": "x"},
        "kind": "Service",
        "apiVersion": "v1",
    }
    assert kio.to_yaml([obj]) == (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  namespace: n\n"
        "  annotations:\n    a: '2'\n    z: '1'\nspec:\n  b: 1\n  a: 2\n"
    )


def test_json_output_is_a_list() -> None:
    obj: Any = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}
    doc = json.loads(kio.to_json([obj]))
    assert doc == {"apiVersion": "v1", "kind": "List", "items": [obj]}


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "a.yaml"
    kio.write_atomic(target, "one\n")
    kio.write_atomic(target, "two\n")
    assert target.read_text() == "two\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.yaml"]


# Kubernetes-shaped values: strings that YAML would happily retype are the risk.
_scalars = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "yes",
            "no",
            "on",
            "off",
            "null",
            "~",
            "1.0",
            "0x1F",
            "010",
            "1e3",
            "",
            "true",
            "2024-01-01",
            "*",
            "- x",
            ": x",
            "#x",
            "'",
            '"',
        ]
    ),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.booleans(),
    st.none(),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    spec=st.dictionaries(st.text(min_size=1, max_size=8), _values, max_size=4),
    labels=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=3),
)
def test_yaml_round_trips_and_reruns_are_byte_identical(
    spec: dict[str, Any], labels: dict[str, str]
) -> None:
    obj: Any = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": "n", "labels": labels},
        "spec": spec,
    }
    text = kio.to_yaml([obj])
    assert kio.to_yaml([obj]) == text
    back = kio.load_inputs(["-"], stdin=io.BytesIO(text.encode())).objects[0].obj
    assert back == obj


def test_shared_sub_objects_are_written_in_full_without_aliases() -> None:
    shared = {"port": 80}
    objs: list[Any] = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": n}, "spec": shared}
        for n in ("a", "b")
    ]
    text = kio.to_yaml(objs)
    assert "&" not in text and "*" not in text
    assert text.count("port: 80") == 2


def test_timestamps_stay_strings_as_in_the_api_json(tmp_path: Path) -> None:
    text = SERVICE.replace(
        "  name: web\n", "  name: web\n  creationTimestamp: 2024-05-01T10:00:00Z\n"
    )
    obj = kio.load_inputs([str(write(tmp_path, "a.yaml", text))]).objects[0].obj
    assert obj["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"
    assert json.loads(kio.to_json([obj]))["items"][0]["metadata"]["creationTimestamp"] == (
        "2024-05-01T10:00:00Z"
    )


def test_multiline_strings_are_literal_blocks() -> None:
    obj: Any = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x"},
        "data": {"snippet": 'more_set_headers "A: b";\nreturn 200;\n'},
    }
    text = kio.to_yaml([obj])
    assert '  snippet: |\n    more_set_headers "A: b";\n    return 200;\n' in text
