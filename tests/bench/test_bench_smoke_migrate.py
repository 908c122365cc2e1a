"""Smoke run of the migrate benchmark on a tiny corpus: it measures kubectl-gw, the I/O-floor
anchor and (when it can be built) ingress2gateway interleaved, and prints its lines. Timing is
never asserted here."""

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
    assert code == 0, text
    assert "corpus 30 Ingresses" in text
    assert re.search(r"^  kubectl gw migrate +median +\d+\.\d+ s   peak RSS", text, re.M)
    assert re.search(r"^ratio@30 kubectl-gw/io-floor: time \d+\.\d+  memory \d+", text, re.M)
    # against ingress2gateway: a ratio when it could be built, else a loud banner saying why
    assert re.search(r"^ratio@30 kubectl-gw/ingress2gateway: time \d+\.\d+", text, re.M) or (
        "UNAVAILABLE" in text and "not computed (unavailable)" in text
    )
