"""pytest plugin: a real etcd + kube-apiserver with the session CRDs, started on first use.

Fixtures:

- ``kube_cluster`` (session): a :class:`~tests.realparts.controlplane.ControlPlane` with Gateway
  API standard (+ its VAP), the x-k8s experimental CRDs, Envoy Gateway's CRDs and trimmed Emissary
  installed. If anything cannot be built or started, the tests that use it **fail** (never skip).
- ``kube_crds`` (session): the :class:`~tests.realparts.crds.InstallReport` of that install.
- ``kube_api`` (session): a ``kubernetes.client.ApiClient`` for the cluster.
- ``namespace`` (function): a fresh ``t-<8 hex>`` namespace, deleted fire-and-forget afterwards
  (without kube-controller-manager it stays Terminating).

Nothing starts unless a test asks for one of these fixtures, so unit-only sessions stay offline.
Mark such tests ``@pytest.mark.cluster``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.realparts import facts

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.realparts.controlplane import ControlPlane
    from tests.realparts.crds import InstallReport

_REPORT_KEY = pytest.StashKey["InstallReport"]()


def _start_cluster(request: pytest.FixtureRequest) -> ControlPlane:
    from tests.realparts import controlplane, crds
    from tests.realparts.bins import ensure_binaries

    step = "building or finding the test binaries (python -m tests.realparts.bins ensure)"
    plane: ControlPlane | None = None
    try:
        bins = ensure_binaries()
        facts.record(bins.describe("kube-apiserver"))
        facts.record(bins.describe("etcd"))
        step = "starting etcd + kube-apiserver"
        plane = controlplane.start(bins)
        facts.record(
            f"control plane: kube-apiserver {bins.kube_version} at {plane.server} + etcd "
            f"{bins.etcd_version}, ready in {plane.started_seconds:.1f} s"
        )
        step = "installing the session CRDs"
        with contextlib.closing(plane.api_client()) as client:
            report = crds.install_bundles(client)
        facts.record(report.summary())
        request.config.stash[_REPORT_KEY] = report
        return plane
    except Exception as exc:
        detail = f"\n{plane.logs_tail()}" if plane is not None else ""
        if plane is not None:
            plane.stop()
        reason = f"test cluster unavailable while {step}: {exc}"
    facts.record(reason.splitlines()[0])
    # Outside the except block, so the report shows the reason alone, not a chained traceback.
    pytest.fail(reason + detail, pytrace=False)


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """The session's control plane (started on first use, stopped at session end)."""
    plane = _start_cluster(request)
    try:
        yield plane
    finally:
        began = time.monotonic()
        plane.stop()
        facts.record(f"control plane stopped in {time.monotonic() - began:.1f} s")


@pytest.fixture(scope="session")
def kube_crds(request: pytest.FixtureRequest, kube_cluster: ControlPlane) -> InstallReport:
    """What the session installed: CRD counts per bundle."""
    return request.config.stash[_REPORT_KEY]


@pytest.fixture(scope="session")
def kube_api(kube_cluster: ControlPlane) -> Iterator[ApiClient]:
    """An ApiClient for the session cluster."""
    with contextlib.closing(kube_cluster.api_client()) as client:
        yield client


@pytest.fixture
def namespace(kube_api: ApiClient) -> Iterator[str]:
    """A fresh namespace ``t-<8 hex>``; deleted without waiting afterwards."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            core.delete_namespace(name, _request_timeout=10)
