"""Emissary's rules reproduced by the provider: canary weights, service syntax, paths."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from converters.emissary.groups import WeightError, shares
from converters.emissary.matching import duration, glob_compatible, path_plan, re2_escape
from converters.emissary.service import ServiceError, parse


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([None], [100]),
        ([None, 10], [90, 10]),
        ([None, None, None], [33, 33, 34]),
        ([None, 15, None], [42, 15, 43]),
        ([None, 100], [0, 100]),
        ([30, 20], [30, 20]),
        ([None, None, None, None, 99], [0, 0, 0, 1, 99]),
    ],
)
def test_shares_follow_emissary(weights: list[int | None], expected: list[int]) -> None:
    assert shares(weights) == expected


@given(st.lists(st.one_of(st.none(), st.integers(0, 40)), min_size=2, max_size=8))
def test_shares_add_up_to_100_with_an_unweighted_member(weights: list[int | None]) -> None:
    if sum(w for w in weights if w is not None) > 100:
        with pytest.raises(WeightError):
            shares(weights)
        return
    got = shares(weights)
    assert all(0 <= s <= 100 for s in got)
    for w, s in zip(weights, got, strict=True):
        if w is not None:
            assert s == w
    if None in weights:
        assert sum(got) == 100


def test_weight_over_100_is_an_error() -> None:
    with pytest.raises(WeightError):
        shares([None, 101])
    with pytest.raises(WeightError):
        shares([70, 60])


@given(st.text(alphabet="/abcxyz.-_+*?()[]{}|^$\\", min_size=1, max_size=12))
def test_string_prefix_regex_is_exact(prefix: str) -> None:
    """The strict conversion matches exactly the paths that start with the prefix."""
    regex = re.compile(re2_escape(prefix) + ".*")
    for path in (prefix, prefix + "kind", prefix[:-1], "/" + prefix):
        assert bool(regex.fullmatch(path)) == path.startswith(prefix)


def test_man_does_not_become_pathprefix() -> None:
    plan = path_plan({"prefix": "/man", "service": "x"}, eg=True)
    assert plan.match == {"type": "RegularExpression", "value": "/man.*"}
    assert plan.regex_rewrite == {"pattern": "^/man", "substitution": "/"}
    plan = path_plan({"prefix": "/man/", "service": "x"}, eg=True)
    assert plan.match == {"type": "PathPrefix", "value": "/man/"}
    assert plan.rewrite == {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}


@pytest.mark.parametrize(
    ("text", "kind", "name", "namespace", "port"),
    [
        ("quote", "service", "quote", "ns", 80),
        ("quote:8080", "service", "quote", "ns", 8080),
        ("https://quote", "service", "quote", "ns", 443),
        ("quote.other", "service", "quote", "other", 80),
        ("quote.other.svc.cluster.local:9000", "service", "quote", "other", 9000),
        ("httpbin.org", "external", "httpbin.org", "", 80),
        ("127.0.0.1:8877", "local", "127.0.0.1", "", 8877),
    ],
)
def test_service_syntax(text: str, kind: str, name: str, namespace: str, port: int) -> None:
    t = parse(text, "ns", set(), set())
    assert (t.kind, t.name, t.namespace, t.port) == (kind, name, namespace, port)


@pytest.mark.parametrize("text", ["", "ftp://x", "x:99999", "bad_name"])
def test_bad_service(text: str) -> None:
    with pytest.raises(ServiceError):
        parse(text, "ns", set(), set())


def test_host_globs() -> None:
    assert glob_compatible("*", "a.example.com")
    assert glob_compatible("*.example.com", "a.example.com")
    assert not glob_compatible("*.example.com", "example.com")
    assert glob_compatible("shop.example.*", "shop.example.com")
    assert not glob_compatible("a.example.com", "b.example.com")


@pytest.mark.parametrize(
    ("ms", "text"), [(0, "0s"), (3000, "3s"), (1500, "1s500ms"), (120000, "2m"), (3600000, "1h")]
)
def test_durations(ms: int, text: str) -> None:
    assert duration(ms) == text
