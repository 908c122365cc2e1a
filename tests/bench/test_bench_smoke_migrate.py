"""Smoke run of the migrate benchmark on a tiny corpus: it builds (or finds) ingress2gateway,
runs both tools interleaved and prints its lines. Timing is never asserted here.

Without the ingress2gateway binary there is no ratio, so this test fails, unless
``KGW_BENCH_SKIP_I2GW=1`` says explicitly to measure kubectl-gw alone.
"""

from __future__ import annotations

import os
import re

from tests.bench import bench_migrate, corpus


def test_corpus_is_deterministic_and_mixed() -> None:
    first = corpus.generate(200)
    assert first == corpus.generate(200)
    assert first != corpus.generate(200, seed=1)
    ingresses = [o for o in first if o["kind"] == "Ingress"]
    assert len(ingresses) == 200
    hosts = [r["host"] for i in ingresses for r in i["spec"]["rules"]]
    assert len(set(hosts)) < len(hosts)  # shared hosts
    assert any(h.startswith("*.") for h in hosts)
    assert any("tls" in i["spec"] for i in ingresses)
    assert any("ingressClassName" not in i["spec"] for i in ingresses)
    keys = {k for i in ingresses for k in (i["metadata"].get("annotations") or {})}
    for wanted in ("canary", "rewrite-target", "ssl-redirect", "configuration-snippet"):
        assert f"{corpus.PREFIX}/{wanted}" in keys


def test_migrate_bench_runs_and_reports() -> None:
    skip = os.environ.get(bench_migrate.SKIP_ENV) == "1"
    text, code = bench_migrate.run((30,), runs=1, skip_i2gw=skip)
    print(text)
    if not skip:
        assert code == 0, text  # ingress2gateway could not be built: see the banner
        assert re.search(
            r"^ratio@30 kubectl-gw/ingress2gateway: time \d+\.\d+  memory \d+", text, re.M
        )
        assert f"ingress2gateway {bench_migrate.I2GW_VERSION}" in text
    else:
        assert "ratio@30: not computed (ingress2gateway skipped)" in text
    assert re.search(r"^  kubectl gw migrate +median +\d+\.\d+ s   peak RSS", text, re.M)
    assert "corpus 30 Ingresses" in text
