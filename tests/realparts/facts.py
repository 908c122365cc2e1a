"""Facts about the real parts a test run used, printed at the end of the pytest run.

The foundation promises that the test log shows what was built or found, how many CRDs
became Established, and which requests real backends answered; fixtures record those
lines here and ``tests/conftest.py`` prints them in the terminal summary.
"""

from __future__ import annotations

FACTS: list[str] = []


def record(line: str) -> None:
    """Remember one line for the end-of-run summary (and show it at once on stderr)."""
    FACTS.append(line)
