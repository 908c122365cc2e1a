"""kubectl-gw: migrate Ingress and Emissary-ingress to the Gateway API and explain attachment."""

from __future__ import annotations

__version__ = "0.1.0"
