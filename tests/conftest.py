"""Shared pytest wiring: the real-parts plugins and the end-of-run summary of their facts."""

from __future__ import annotations

import pytest

from tests.realparts import facts

pytest_plugins = [
    "tests.realparts.cluster_fixtures",
    "tests.realparts.envoy_fixtures",
]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if facts.FACTS:
        terminalreporter.section("kubectl-gw real parts")
        for line in facts.FACTS:
            terminalreporter.write_line(line)
