"""Golden cases of the ingress-nginx provider: tests/golden/ingress-nginx/<case>/.

Each case holds ``input.yaml`` (the source objects), optionally ``options.json`` (fields of
``MigrateOptions``), ``expected.yaml`` (the Gateway API objects) and ``report.json`` (the
report). ``KGW_UPDATE_GOLDEN=1`` rewrites the expectations; review every changed file.

Every case is also checked against the provider's promises (``check_contract``): each
annotation under the prefix reported exactly once per converted Ingress, every path either in
the output or an error/unsupported entry, outputs that exist, names that are valid and unique.
``tests/cluster/test_ingress_nginx_valid.py`` applies every ``expected.yaml`` to a real API
server with server-side dry run.
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
from converters.ingress_nginx import convert
from converters.report import Conversion
from kubectl_gw import __version__
from kubectl_gw.io import dump_data, load_inputs, to_yaml
from kubectl_gw.model import KubeObject, ObjectRef
from tests import gwapi_limits

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ingress-nginx"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").is_file())
UPDATE = os.environ.get("KGW_UPDATE_GOLDEN") == "1"
VERSION_MARK = "kubectl-gw-<version>"
PREFIX = "nginx.ingress.kubernetes.io/"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def case_options(case: Path) -> MigrateOptions:
    path = case / "options.json"
    if not path.is_file():
        return MigrateOptions()
    data: dict[str, Any] = json.loads(path.read_text())
    if "gateway" in data:
        data["gateway"] = ExistingGateway(**data["gateway"])
    if "ingress_classes" in data:
        data["ingress_classes"] = tuple(data["ingress_classes"])
    return MigrateOptions(**data)


def case_inputs(case: Path) -> list[KubeObject]:
    return [item.obj for item in load_inputs([str(case / "input.yaml")]).objects]


def normalise(text: str) -> str:
    return text.replace(f"kubectl-gw-{__version__}", VERSION_MARK)


def expected_objects(case: Path) -> list[KubeObject]:
    if not (case / "expected.yaml").read_text().strip():
        return []
    return [item.obj for item in load_inputs([str(case / "expected.yaml")]).objects]


def check_contract(objects: list[KubeObject], result: Conversion) -> None:
    """What the provider promises for any input."""
    emitted = {ObjectRef.of(o) for o in result.objects}
    assert len(emitted) == len(result.objects), "two outputs share kind/namespace/name"
    too_long = gwapi_limits.violations(result.objects)
    assert not too_long, f"lists past Gateway API limits: {too_long}"
    for obj in result.objects:
        name = obj["metadata"]["name"]
        assert DNS_SUBDOMAIN.match(name) and len(name) <= 253, name
        labels = obj["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/managed-by") == "kubectl-gw", name
    entries = result.report.entries
    by_source: dict[ObjectRef, Counter[str]] = {}
    for entry in entries:
        by_source.setdefault(entry.source, Counter())[entry.key] += 1
        for out in entry.outputs:
            assert out in emitted, f"{entry.source} {entry.key} names missing output {out}"
    for source, keys in by_source.items():
        repeated = [k for k, n in keys.items() if n > 1]
        assert not repeated, f"{source}: keys reported more than once: {repeated}"
    for obj in objects:
        if obj.get("kind") != "Ingress":
            continue
        ref = ObjectRef.of(obj)
        keys = by_source.get(ref, Counter())
        assert keys, f"{ref} is not in the report"
        annotations = obj["metadata"].get("annotations") or {}
        for key in annotations:
            if key.startswith(PREFIX):
                assert keys[key] == 1, f"{ref}: annotation {key} reported {keys[key]} times"
        if any(
            e.status == "ignored"
            and e.key in ("spec.ingressClassName", "kubernetes.io/ingress.class")
            for e in entries
            if e.source == ref
        ):
            continue
        for i, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
            for j, _path in enumerate(((rule or {}).get("http") or {}).get("paths") or []):
                key = f"spec.rules[{i}].http.paths[{j}]"
                found = [e for e in entries if e.source == ref and e.key == key]
                assert len(found) == 1, f"{ref} {key}: {len(found)} entries"
                entry = found[0]
                if entry.status in ("converted", "partial"):
                    assert entry.outputs, f"{ref} {key} is converted but names no output"
                else:
                    assert entry.status in ("error", "unsupported", "ignored"), entry


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    case = GOLDEN / name
    objects = case_inputs(case)
    result = convert(objects, case_options(case))
    check_contract(objects, result)
    got_yaml = normalise(to_yaml(result.objects))
    got_report = normalise(dump_data(result.report.to_data(), "json"))
    expected_yaml, expected_report = case / "expected.yaml", case / "report.json"
    if UPDATE:
        expected_yaml.write_text(got_yaml)
        expected_report.write_text(got_report)
    assert expected_yaml.is_file(), f"{name}: no expected.yaml (run with KGW_UPDATE_GOLDEN=1)"
    assert got_yaml == expected_yaml.read_text(), f"{name}: output differs from expected.yaml"
    assert got_report == expected_report.read_text(), f"{name}: report differs"


def test_every_case_is_deterministic_under_input_order() -> None:
    for name in CASES:
        case = GOLDEN / name
        objects = case_inputs(case)
        forward = convert(objects, case_options(case))
        backward = convert(list(reversed(objects)), case_options(case))
        assert to_yaml(forward.objects) == to_yaml(backward.objects), name
        assert forward.report.to_data() == backward.report.to_data() or name.startswith("order-"), (
            name
        )


def test_cases_exist() -> None:
    assert len(CASES) >= 20
