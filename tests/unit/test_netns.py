"""The pure parts of the test network: route parsing, subnet choice, stale namespace names.

The real namespace (root, iproute2) is exercised in tests/cluster/test_envoy_backends.py.
"""

from __future__ import annotations

import ipaddress
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.realparts import netns

# `ip -4 -o route show table all` on a host with one test network (198.18.0.0/24) up.
ROUTES = """\
default via 203.0.113.1 dev eth0
203.0.113.0/24 dev eth0 proto kernel scope link src 203.0.113.7
198.18.0.0/24 dev kgw77h0 proto kernel scope link src 198.18.0.1
local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1
local 198.18.0.1 dev kgw77h0 table local proto kernel scope host src 198.18.0.1
broadcast 198.18.0.255 dev kgw77h0 table local proto kernel scope link src 198.18.0.1
unreachable 198.18.2.0/23 proto static
"""


def test_routes_in_use_reads_every_table_entry_but_the_default() -> None:
    assert [str(n) for n in netns.routes_in_use(ROUTES)] == [
        "203.0.113.0/24",
        "198.18.0.0/24",
        "127.0.0.0/8",
        "198.18.0.1/32",
        "198.18.0.255/32",
        "198.18.2.0/23",
    ]
    assert netns.routes_in_use("") == []


def test_choose_subnet_skips_routed_subnets() -> None:
    used = netns.routes_in_use(ROUTES)
    # 198.18.0.0/24 is routed, 198.18.2.0/23 covers X = 2 and 3.
    assert netns.choose_subnet_index(used) == 1
    used.append(ipaddress.IPv4Network("198.18.1.128/25"))
    assert netns.choose_subnet_index(used) == 4
    assert netns.choose_subnet_index([ipaddress.IPv4Network("198.18.0.0/15")]) is None
    assert netns.choose_subnet_index([ipaddress.IPv4Network("10.0.0.0/8")]) == 0


@given(
    st.lists(
        st.builds(
            lambda third, prefix: ipaddress.IPv4Network(f"198.18.{third}.0/{prefix}", strict=False),
            st.integers(0, 255),
            st.integers(16, 32),
        ),
        max_size=40,
    )
)
def test_chosen_subnet_never_overlaps_a_route(used: list[ipaddress.IPv4Network]) -> None:
    index = netns.choose_subnet_index(used)
    if index is None:
        assert all(any(netns.subnet_for(i).overlaps(n) for n in used) for i in range(256))
        return
    chosen = netns.subnet_for(index)
    assert chosen.prefixlen == 24 and chosen.subnet_of(netns.SUPERNET)
    assert not any(chosen.overlaps(n) for n in used)
    assert all(any(netns.subnet_for(i).overlaps(n) for n in used) for i in range(index))


def test_subnet_for_bounds() -> None:
    assert str(netns.subnet_for(0)) == "198.18.0.0/24"
    assert str(netns.subnet_for(255)) == "198.18.255.0/24"
    with pytest.raises(ValueError, match=r"0\.\.255"):
        netns.subnet_for(256)


def test_stale_namespaces_are_ours_with_a_dead_pid() -> None:
    listing = netns.namespace_names(
        "kgw-100-0 (id: 3)\nkgw-100-1\nkgw-200-0 (id: 1)\nother-ns\nkgw-x-1\n"
        f"kgw-{os.getpid()}-0 (id: 0)\n\n"
    )
    assert listing == [
        "kgw-100-0",
        "kgw-100-1",
        "kgw-200-0",
        "other-ns",
        "kgw-x-1",
        f"kgw-{os.getpid()}-0",
    ]
    assert netns.stale_namespaces(listing, lambda pid: pid == 200) == ["kgw-100-0", "kgw-100-1"]
    # This process's own namespaces are never stale, whatever the liveness check says.
    assert netns.stale_namespaces(listing, lambda pid: False) == [
        "kgw-100-0",
        "kgw-100-1",
        "kgw-200-0",
    ]


def test_pid_alive() -> None:
    assert netns.pid_alive(os.getpid())
    assert not netns.pid_alive(2**22 + 1)  # above the kernel's pid_max limit
