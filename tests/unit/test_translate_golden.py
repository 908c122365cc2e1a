"""Golden tests of the pure pipeline: Gateway API objects → attachment → IR → Envoy xDS JSON.

Each ``tests/golden/translate/<case>/input.yaml`` is run through the attachment engine (for the
default controller name), :mod:`controller.gatewayapi_to_ir` (port offset 10000, listen address
0.0.0.0) and :mod:`controller.translate`; the result must equal ``expected.json``. Set
``KGW_UPDATE_GOLDEN=1`` to rewrite the expected files, then review every diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller import gatewayapi_to_ir, translate
from controller.run import DEFAULT_CONTROLLER_NAME
from kubectl_gw.io import load_inputs

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "translate"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").is_file())
OPTIONS = gatewayapi_to_ir.BuildOptions(listen_address="0.0.0.0", port_offset=10000)


def render(case: str) -> str:
    objects = [item.obj for item in load_inputs([str(GOLDEN / case / "input.yaml")]).objects]
    _result, built = gatewayapi_to_ir.compute_and_build(
        objects, frozenset({DEFAULT_CONTROLLER_NAME}), OPTIONS
    )
    return translate.to_json(translate.translate(built.ir))


@pytest.mark.parametrize("case", CASES)
def test_translate_golden(case: str) -> None:
    expected_path = GOLDEN / case / "expected.json"
    got = render(case)
    if os.environ.get("KGW_UPDATE_GOLDEN") == "1":
        expected_path.write_text(got)
    assert expected_path.is_file(), f"{expected_path} missing; run with KGW_UPDATE_GOLDEN=1"
    assert got == expected_path.read_text(), f"{case}: xDS output differs from {expected_path}"


def test_cases_exist() -> None:
    assert len(CASES) >= 5
