"""Golden cases of the Emissary provider: tests/golden/emissary/<case>/.

Each case holds ``input.yaml`` (the source objects; a case named ``examples`` reads
``examples/emissary/`` instead), optionally ``options.json`` (fields of ``MigrateOptions``, plus
``port_map`` for ``EmissaryOptions``), ``expected.yaml`` (the Gateway API objects) and
``report.json`` (the report). ``KGW_UPDATE_GOLDEN=1`` rewrites the expectations; review every
changed file.

Every case is also checked against the provider's promises (``check_contract``): every top-level
spec field of every Emissary resource (CRD or annotation-embedded) reported exactly once, every
path of an ``ambassador``-class Ingress reported, outputs that exist, names that are valid and
unique, every object stamped. ``tests/cluster/test_emissary_valid.py`` applies every
``expected.yaml`` (and the v3alpha1 inputs) to a real API server with server-side dry run.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from converters.api import ExistingGateway, MigrateOptions
from converters.emissary import EmissaryOptions, convert_with
from converters.report import Conversion
from kubectl_gw import __version__
from kubectl_gw.io import dump_data, load_inputs, to_yaml
from kubectl_gw.model import KubeObject, ObjectRef
from tests import gwapi_limits

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "emissary"
EXAMPLES = ROOT / "examples" / "emissary"
CASES = sorted(
    p.name for p in GOLDEN.iterdir() if (p / "input.yaml").is_file() or p.name == "examples"
)
UPDATE = os.environ.get("KGW_UPDATE_GOLDEN") == "1"
VERSION_MARK = "kubectl-gw-<version>"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
EMISSARY = "getambassador.io"


def case_options(case: Path) -> tuple[MigrateOptions, EmissaryOptions]:
    path = case / "options.json"
    if not path.is_file():
        return MigrateOptions(), EmissaryOptions()
    data: dict[str, Any] = json.loads(path.read_text())
    extra = EmissaryOptions()
    if "port_map" in data:
        extra = EmissaryOptions(tuple((int(k), int(v)) for k, v in data.pop("port_map")))
    if "gateway" in data:
        data["gateway"] = ExistingGateway(**data["gateway"])
    return MigrateOptions(**data), extra


def case_inputs(case: Path) -> list[KubeObject]:
    source = EXAMPLES if case.name == "examples" else case / "input.yaml"
    objects = [item.obj for item in load_inputs([str(source)]).objects]
    out = []
    for obj in objects:  # as ``migrate -f`` does: namespace-less objects go to "default"
        meta = obj.get("metadata") or {}
        if obj["kind"] != "Namespace" and "namespace" not in meta:
            obj = {**obj, "metadata": {**meta, "namespace": "default"}}
        out.append(obj)
    return out


def normalise(text: str) -> str:
    return text.replace(f"kubectl-gw-{__version__}", VERSION_MARK)


def run(case: Path, objects: list[KubeObject] | None = None) -> Conversion:
    options, extra = case_options(case)
    return convert_with(objects if objects is not None else case_inputs(case), options, extra)


def embedded(obj: KubeObject) -> list[ObjectRef]:
    """The resources in a getambassador.io/config annotation (parsed here independently)."""
    from ruamel.yaml import YAML

    text = ((obj.get("metadata") or {}).get("annotations") or {}).get("getambassador.io/config")
    if not text:
        return []
    refs = []
    try:
        docs = list(YAML(typ="safe", pure=True).load_all(text))
    except Exception:  # malformed YAML: the provider reports it on the parent
        return []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("name"):
            api = str(doc.get("apiVersion"))
            if api.startswith("ambassador/"):
                api = f"{EMISSARY}/v2"
            refs.append(
                ObjectRef(
                    api,
                    str(doc["kind"]),
                    str(doc.get("namespace") or obj["metadata"]["namespace"]),
                    str(doc["name"]),
                )
            )
    return refs


def check_contract(objects: list[KubeObject], result: Conversion) -> None:
    emitted = {ObjectRef.of(o) for o in result.objects}
    assert len(emitted) == len(result.objects), "two outputs share kind/namespace/name"
    too_long = gwapi_limits.violations(result.objects)
    assert not too_long, f"lists past Gateway API limits: {too_long}"
    for obj in result.objects:
        name = obj["metadata"]["name"]
        assert DNS_SUBDOMAIN.match(name) and len(name) <= 253, name
        labels = obj["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/managed-by") == "kubectl-gw", name
        assert obj["metadata"].get("namespace"), name
    by_source: dict[ObjectRef, Counter[str]] = {}
    for entry in result.report.entries:
        by_source.setdefault(entry.source, Counter())[entry.key] += 1
        for out in entry.outputs:
            assert out in emitted, f"{entry.source} {entry.key} names missing output {out}"
        if entry.status == "converted" and entry.source.kind == "Mapping":
            pass
    for source, keys in by_source.items():
        repeated = [k for k, n in keys.items() if n > 1]
        assert not repeated, f"{source}: keys reported more than once: {repeated}"
    for obj in objects:
        ref = ObjectRef.of(obj)
        if ref.api_version.startswith(f"{EMISSARY}/"):
            keys = by_source.get(ref, Counter())
            assert keys, f"{ref} is not in the report"
            for top in obj.get("spec") or {}:
                written = [
                    k
                    for k in keys
                    if k == f"spec.{top}" or k.startswith((f"spec.{top}.", f"spec.{top}["))
                ]
                assert written, f"{ref}: spec.{top} is not reported"
        for inner in embedded(obj):
            assert inner in by_source, f"embedded {inner} is not reported"
        if obj["kind"] == "Ingress" and ref in by_source:
            for i, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
                for j, _p in enumerate(((rule or {}).get("http") or {}).get("paths") or []):
                    key = f"spec.rules[{i}].http.paths[{j}]"
                    assert by_source[ref][key] == 1, f"{ref} {key} not reported once"


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    case = GOLDEN / name
    objects = case_inputs(case)
    result = run(case, objects)
    check_contract(objects, result)
    got_yaml = normalise(to_yaml(result.objects))
    got_report = normalise(dump_data(result.report.to_data(), "json"))
    expected_yaml, expected_report = case / "expected.yaml", case / "report.json"
    if UPDATE:
        case.mkdir(exist_ok=True)
        expected_yaml.write_text(got_yaml)
        expected_report.write_text(got_report)
    assert expected_yaml.is_file(), f"{name}: no expected.yaml (run with KGW_UPDATE_GOLDEN=1)"
    assert got_yaml == expected_yaml.read_text(), f"{name}: output differs from expected.yaml"
    assert got_report == expected_report.read_text(), f"{name}: report differs"


@pytest.mark.parametrize("name", CASES)
def test_deterministic_under_input_order(name: str) -> None:
    case = GOLDEN / name
    objects = case_inputs(case)
    forward = run(case, objects)
    backward = run(case, list(reversed(objects)))
    assert to_yaml(forward.objects) == to_yaml(backward.objects)
    assert forward.report.to_data() == backward.report.to_data()


def test_cases_exist() -> None:
    assert len(CASES) >= 20
