"""Hostname and precedence rules of the attachment engine, case by case and by property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller import attachment as att
from controller import hostnames as hn
from controller import precedence as prec


@pytest.mark.parametrize(
    ("listener", "route", "expected"),
    [
        ("www.example.com", "www.example.com", "www.example.com"),
        ("*.example.com", "sub.domain.example.com", "sub.domain.example.com"),
        ("www.example.com", "*.example.com", "www.example.com"),
        ("*.com", "*.example.com", "*.example.com"),
        (None, None, "*"),
        (None, "a.example.com", "a.example.com"),
        ("*.example.com", "example.com", None),
        ("a.example.com", "b.example.com", None),
        ("*.example.com", "*.example.org", None),
        ("WWW.Example.com", "www.example.COM", "www.example.com"),
    ],
)
def test_intersection_table(listener: str | None, route: str | None, expected: str | None) -> None:
    assert hn.intersect(listener, route) == expected
    assert hn.intersect(route, listener) == expected  # symmetric


def test_effective_hostnames_keep_only_the_intersection() -> None:
    assert hn.effective("*.example.com", ["a.example.com", "x.org", "*.b.example.com"]) == [
        "a.example.com",
        "*.b.example.com",
    ]
    assert hn.effective("*.example.com", []) == ["*.example.com"]
    assert hn.effective("a.example.com", ["b.example.com"]) == []


def test_listener_isolation_prefers_the_most_specific_hostname() -> None:
    candidates = [None, "*.example.com", "*.foo.example.com", "a.foo.example.com"]
    assert hn.best_listener_hostname("a.foo.example.com", candidates) == "a.foo.example.com"
    assert hn.best_listener_hostname("b.foo.example.com", candidates) == "*.foo.example.com"
    assert hn.best_listener_hostname("x.example.com", candidates) == "*.example.com"
    assert hn.best_listener_hostname("example.org", candidates) == "*"
    assert hn.best_listener_hostname("example.org", ["a.example.com"]) is None


_label = st.text("abcxyz", min_size=1, max_size=3)
_precise = st.lists(_label, min_size=1, max_size=4).map(".".join)
_wild = st.lists(_label, min_size=1, max_size=3).map(lambda ls: "*." + ".".join(ls))
_host = st.one_of(_precise, _wild, st.just("*"))


@given(_host, _host)
def test_intersection_is_covered_by_both_sides(a: str, b: str) -> None:
    got = hn.intersect(a, b)
    if got is None:
        assert not hn.covers(a, b) and not hn.covers(b, a)
    else:
        assert hn.covers(a, got) and hn.covers(b, got)
        assert got in (a, b)


@given(_precise, _host)
def test_a_request_host_matches_iff_covered(host: str, pattern: str) -> None:
    labels_ok = (
        pattern == "*"
        or pattern == host
        or (pattern.startswith("*.") and host.endswith(pattern[1:]) and host != pattern[2:])
    )
    assert hn.matches(pattern, host) == labels_ok


def _m(path: str = "/", kind: str = "PathPrefix", **kw: object) -> prec.HTTPMatch:
    got = prec.http_match({"path": {"type": kind, "value": path}, **kw})
    assert isinstance(got, prec.HTTPMatch), got
    return got


ORDER = prec.RouteOrder("", "ns", "r")


def test_http_precedence_order() -> None:
    matches = [
        _m("/", headers=[{"name": "a", "value": "1"}]),
        _m("/a", "Exact"),
        _m("/a/b"),
        _m("/a"),
        _m("/a", method="GET"),
        _m("/a", queryParams=[{"name": "q", "value": "1"}]),
        _m("/a.*", "RegularExpression"),
    ]
    keys = sorted((prec.http_key("*", m, ORDER, 0, i), i) for i, m in enumerate(matches))
    # Exact, then RegularExpression (Envoy Gateway's order), then the longest PathPrefix first
    assert [i for _, i in keys] == [1, 6, 2, 4, 5, 3, 0]


def test_hostname_beats_path() -> None:
    specific = prec.http_key("a.example.com", _m("/"), ORDER, 0, 0)
    wildcard = prec.http_key("*.example.com", _m("/long/path"), ORDER, 0, 0)
    assert specific < wildcard
    assert prec.deciding_reason(specific, wildcard, prec.HTTP_KEY_REASONS) == (
        "a longer non-wildcard hostname"
    )


def test_route_tie_breaks() -> None:
    old = prec.RouteOrder("2020-01-01T00:00:00Z", "z", "z")
    new = prec.RouteOrder("2021-01-01T00:00:00Z", "a", "a")
    unknown = prec.RouteOrder("", "a", "a")
    a, b, c = (prec.http_key("*", _m("/"), o, 0, 0) for o in (old, new, unknown))
    assert a < b < c
    assert prec.deciding_reason(a, b, prec.HTTP_KEY_REASONS) == "an older creationTimestamp"
    other = prec.http_key("*", _m("/"), prec.RouteOrder("", "a", "b"), 0, 0)
    assert prec.deciding_reason(c, other, prec.HTTP_KEY_REASONS) == (
        "an earlier namespace/name alphabetically"
    )


def test_prefix_is_segment_aware() -> None:
    req = prec.Request("http", "h", 80, "/abcd")
    assert not prec.http_request_matches(_m("/abc"), req)
    assert prec.http_request_matches(_m("/abc"), prec.Request("http", "h", 80, "/abc/d"))
    assert prec.http_request_matches(_m("/abc/"), prec.Request("http", "h", 80, "/abc"))
    assert prec.http_covers(_m("/abc"), _m("/abc/d", "Exact"))
    assert not prec.http_covers(_m("/abc"), _m("/abcd"))
    assert not prec.http_covers(_m("/x", "Exact"), _m("/x"))


def test_request_matching_headers_query_method() -> None:
    match = _m(
        "/api",
        method="POST",
        headers=[
            {"name": "X-Env", "value": "prod"},
            {"type": "RegularExpression", "name": "v", "value": "[0-9]+"},
        ],
        queryParams=[{"name": "debug", "value": "1"}],
    )
    ok = prec.Request(
        "http", "h", 80, "/api/x", "POST", (("x-env", "prod"), ("v", "42")), (("debug", "1"),)
    )
    assert prec.http_request_matches(match, ok)
    assert not prec.http_request_matches(match, prec.Request("http", "h", 80, "/api/x", "GET"))
    wrong = prec.Request("http", "h", 80, "/api", "POST", (("x-env", "prod"), ("v", "4a")), ())
    assert not prec.http_request_matches(match, wrong)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"path": {"type": "Glob", "value": "/"}}, "not supported"),
        ({"path": {"value": "no-slash"}}, 'must start with "/"'),
        ({"method": "FETCH"}, "not supported"),
        ({"headers": [{"type": "Fuzzy", "name": "a", "value": "b"}]}, "not supported"),
        ({"path": {"type": "RegularExpression", "value": "("}}, "invalid regular expression"),
        ("nope", "must be an object"),
    ],
)
def test_unsupported_matches_say_why(raw: object, problem: str) -> None:
    got = prec.http_match(raw)
    assert isinstance(got, str) and problem in got


def test_grpc_matching() -> None:
    match = prec.grpc_match({"method": {"service": "shop.Cart", "method": "Add"}})
    assert isinstance(match, prec.GRPCMatch)
    assert prec.grpc_request_matches(match, prec.Request("http", "h", 80, "/shop.Cart/Add", "POST"))
    assert not prec.grpc_request_matches(match, prec.Request("http", "h", 80, "/shop.Cart/Del"))
    any_method = prec.grpc_match({"method": {"service": "shop.Cart"}})
    assert isinstance(any_method, prec.GRPCMatch)
    assert prec.grpc_covers(any_method, match) and not prec.grpc_covers(match, any_method)


# --------------------------------------------------------------------------- shadowing


def _naive_shadow(kind: str, entries: list[att.RoutingEntry]) -> list[int | None]:
    """The definition: an entry is shadowed by the first earlier entry, itself not shadowed,
    whose hostname covers its own and whose match covers its own (any for TCP/UDP, the same SNI
    for TLS). Quadratic on purpose: the engine buckets candidates by hostname instead."""
    winners: list[int | None] = []
    for i, entry in enumerate(entries):
        found: int | None = None
        for j in range(i):
            earlier = entries[j]
            if winners[j] is not None or not hn.covers(earlier.hostname, entry.hostname):
                continue
            if kind in ("TCPRoute", "UDPRoute"):
                covered = True
            elif kind == "TLSRoute":
                covered = earlier.hostname == entry.hostname
            else:
                assert isinstance(earlier.match, prec.HTTPMatch)
                assert isinstance(entry.match, prec.HTTPMatch)
                covered = prec.http_covers(earlier.match, entry.match)
            if covered:
                found = j
                break
        winners.append(found)
    return winners


_small_host = st.one_of(
    st.sampled_from(["a.x", "b.x", "a.b.x", "x"]),
    st.sampled_from(["*.x", "*.b.x", "*"]),
)
_small_match = st.sampled_from(
    [
        _m("/"),
        _m("/a"),
        _m("/a", "Exact"),
        _m("/a/b"),
        _m("/", headers=[{"name": "h", "value": "1"}]),
        _m("/a", method="GET"),
    ]
)


@given(
    st.sampled_from(["HTTPRoute", "TLSRoute", "TCPRoute"]),
    st.lists(st.tuples(_small_host, _small_match), max_size=40),
    st.booleans(),
)
def test_shadowing_equals_the_first_covering_earlier_entry(
    kind: str, raw: list[tuple[str, prec.HTTPMatch]], in_key_order: bool
) -> None:
    # The engine passes entries in key order, where a covering hostname always comes first;
    # out of order too, so that wildcard winners are exercised.
    entries: list[att.RoutingEntry] = []
    for n, (host, match) in enumerate(raw):
        order = prec.RouteOrder("", "ns", f"r{n:03}")
        http = kind == "HTTPRoute"
        key = prec.http_key(host, match, order, 0, 0) if http else prec.plain_key(host, order, 0, 0)
        route = att.ObjKey(kind, "ns", f"r{n:03}")
        entries.append(
            att.RoutingEntry(0, route, 0, None, 0, host, match if http else None, [], key=key)
        )
    if in_key_order:
        entries.sort(key=lambda e: e.key)
    expected = _naive_shadow(kind, entries)
    att._shadow(kind, entries)
    index = {id(e): i for i, e in enumerate(entries)}
    got = [None if e.shadowed_by is None else index[id(e.shadowed_by)] for e in entries]
    assert got == expected
    assert all((e.shadowed_by is None) == (e.shadow_reason == "") for e in entries)
