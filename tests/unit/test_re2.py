"""kubectl_gw.re2 agrees with the real Envoy on which regular expressions it can compile.

Every pattern Python compiles is also given to Envoy (``--mode validate`` with the pattern in a
route's ``safe_regex``): our verdict must be Envoy's, for a table of the constructs where Python
and RE2 differ and for patterns hypothesis composes from them.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_gw import re2

TABLE = [
    # RE2 accepts
    r"/api/v[0-9]+",
    r"(?i)/docs/.*",
    r"(?s:.)x",
    r"(?P<name>a)b",
    r"a+?b*?c??",
    r"x{2,3}?",
    r"[(?=]",
    r"\123",
    r"[\0]",
    r"\x41",
    r"\d+\.\d+",
    r"^/v[0-9]+/.*$",
    r"(?:a|b)+",
    r"a{2}",
    r"\Aabc",
    r"[]a]",
    r"[^]a]+",
    # RE2 refuses
    r"(?=a)a",
    r"a(?!b)",
    r"(?<=a)b",
    r"(?<!a)b",
    r"(a)\1",
    r"(?P<n>a)(?P=n)",
    r"a++",
    r"a*+",
    r"x{2,3}+",
    r"(?>ab)",
    r"(a)?(?(1)b|c)",
    r"(?x)a b",
    r"(?#note)a",
    r"abc\Z",
    r"(?a)\w",
    r"[\1]x",
    r"[\b]",
    r"\u0041",
    r"\N{DIGIT ONE}",
]


def envoy_accepts(envoy: Path, pattern: str, workdir: Path) -> bool:
    config = {
        "static_resources": {
            "listeners": [
                {
                    "name": "l",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters."
                                        "network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "s",
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy."
                                                    "extensions.filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "v",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {
                                                                "safe_regex": {"regex": pattern}
                                                            },
                                                            "direct_response": {"status": 200},
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                    },
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    }
    path = workdir / "validate.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(path), "-l", "critical"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0 and "error initializing configuration" not in done.stderr:
        raise RuntimeError(f"envoy --mode validate failed oddly: {done.stderr[-400:]}")
    return done.returncode == 0


def _compiles_in_python(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


@pytest.mark.envoy
def test_table_agrees_with_envoy(envoy_binary: Path, tmp_path: Path) -> None:
    refused = 0
    for pattern in TABLE:
        assert _compiles_in_python(pattern), pattern
        ours = re2.problem(pattern) is None
        assert ours == envoy_accepts(envoy_binary, pattern, tmp_path), (
            pattern,
            re2.problem(pattern),
        )
        refused += not ours
    assert refused >= 18  # the table exercises the refusals, not only the easy cases


FRAGMENTS = [
    "a", "b", "[ab]", "[^x]", "[]a]", ".", r"\d", r"\.", "(?:a)", "(a)", "(?P<g>b)",
    "*", "+", "?", "*?", "+?", "{2}", "{1,2}", "|", "^", "$",
    "(?=a)", "(?!a)", "(?<=a)", r"\1", "++", "(?i)", "(?s)", "(?x)", r"\Z", r"\A",
    r"[\1]", r"\u0041", r"\b", r"[\b]", r"\012", "{", "{,2}",
]  # fmt: skip


@pytest.mark.envoy
@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6).map("".join))
def test_composed_patterns_agree_with_envoy(envoy_binary: Path, pattern: str) -> None:
    if not _compiles_in_python(pattern):
        assert re2.problem(pattern) is not None
        return
    ours = re2.problem(pattern) is None
    with tempfile.TemporaryDirectory() as workdir:
        assert ours == envoy_accepts(envoy_binary, pattern, Path(workdir)), (
            pattern,
            re2.problem(pattern),
        )
