"""CRD bundles for the test cluster, fetched at test time from the Go module proxy.

Nothing here is committed: ``go mod download -json MODULE@VERSION`` puts the module in the Go
module cache and prints its ``Dir``; the resolved directories are remembered in
``~/.cache/kubectl-gw/crds.json`` (keyed by ``module@version``) so later runs need no Go at all.

Bundles (see ``BUNDLES``):

- ``gateway-api-standard``: Gateway API standard channel, plus its ``*_vap_safeupgrades.yaml``
  ValidatingAdmissionPolicy and binding (not CRDs, applied all the same);
- ``gateway-api-experimental``: the whole experimental channel (not installed by the session);
- ``gateway-api-experimental-x``: only the ``gateway.networking.x-k8s.io`` CRDs of the
  experimental channel, which do not clash with the standard ones;
- ``envoy-gateway``: the 8 ``gateway.envoyproxy.io`` CRDs (never EG's bundled Gateway API copy);
- ``emissary``: Emissary's ``getambassador.io`` CRDs trimmed to v3alpha1 (no conversion webhook).

Objects are applied with server-side apply (the big CRDs exceed the client-side apply annotation
limit), then each CRD is awaited until ``Established=True`` and its kind shows in discovery.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

FIELD_MANAGER = "kubectl-gw-tests"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
CRD_API_VERSION = "apiextensions.k8s.io/v1"
EMISSARY_VERSION_KEPT = "v3alpha1"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Module:
    path: str
    version: str

    def __str__(self) -> str:
        return f"{self.path}@{self.version}"


# Newest patches the module proxy served on go1.26 when this was written: gateway-api v1.7.0
# needs go1.27, so stay on v1.6.x; envoyproxy/gateway v1.9.1; emissary/v3 tops out at v3.10.0
# (the v4 tags still say module .../v3, so the proxy cannot serve them by tag).
GATEWAY_API = Module("sigs.k8s.io/gateway-api", "v1.6.3")
ENVOY_GATEWAY = Module("github.com/envoyproxy/gateway", "v1.9.1")
EMISSARY = Module("github.com/emissary-ingress/emissary/v3", "v3.10.0")

X_K8S_GROUP = "gateway.networking.x-k8s.io"
EG_CRD_DIR = "charts/gateway-helm/charts/crds/crds/generated"


class CRDError(RuntimeError):
    """A bundle could not be fetched, parsed, applied or established."""


def _keep_all(obj: Obj) -> bool:
    return True


def _only_x_k8s(obj: Obj) -> bool:
    return is_crd(obj) and obj["spec"].get("group") == X_K8S_GROUP


def _identity(obj: Obj) -> Obj:
    return obj


@dataclass(frozen=True)
class Bundle:
    name: str
    label: str
    module: Module
    patterns: tuple[str, ...]
    keep: Callable[[Obj], bool] = _keep_all
    transform: Callable[[Obj], Obj] = _identity
    expect_files: int | None = None


def trim_emissary_crd(crd: Obj) -> Obj:
    """Keep only v3alpha1 (served and stored) and drop the conversion webhook (reference §6.3).

    Emissary's CRDs store v2 and convert through a webhook service that does not exist on a bare
    apiserver, so v3alpha1 objects could not be created without this.
    """
    if not is_crd(crd):
        return crd
    out = copy.deepcopy(crd)
    spec = out["spec"]
    kept = [v for v in spec.get("versions", []) if v.get("name") == EMISSARY_VERSION_KEPT]
    if len(kept) != 1:
        raise CRDError(f"{crd['metadata']['name']}: no single {EMISSARY_VERSION_KEPT} version")
    kept[0]["served"] = True
    kept[0]["storage"] = True
    spec["versions"] = kept
    spec.pop("conversion", None)
    return out


BUNDLES: dict[str, Bundle] = {
    bundle.name: bundle
    for bundle in (
        Bundle(
            "gateway-api-standard",
            f"gateway-api standard {GATEWAY_API.version}",
            GATEWAY_API,
            ("config/crd/standard/gateway.networking.k8s.io_*.yaml",),
        ),
        Bundle(
            "gateway-api-experimental",
            f"gateway-api experimental {GATEWAY_API.version}",
            GATEWAY_API,
            ("config/crd/experimental/gateway.networking*.yaml",),
        ),
        Bundle(
            "gateway-api-experimental-x",
            "experimental x-k8s",
            GATEWAY_API,
            (f"config/crd/experimental/{X_K8S_GROUP}_*.yaml",),
            keep=_only_x_k8s,
        ),
        Bundle(
            "envoy-gateway",
            f"envoy-gateway {ENVOY_GATEWAY.version}",
            ENVOY_GATEWAY,
            (f"{EG_CRD_DIR}/gateway.envoyproxy.io_*.yaml",),
            expect_files=8,
        ),
        Bundle(
            "emissary",
            f"emissary {EMISSARY.version} trimmed",
            EMISSARY,
            ("pkg/api/getambassador.io/crds.yaml",),
            transform=trim_emissary_crd,
            expect_files=1,
        ),
    )
}

# What the session cluster installs: standard Gateway API (+ VAP), the x-k8s experimental CRDs,
# Envoy Gateway's own CRDs and trimmed Emissary.
SESSION_BUNDLES: tuple[str, ...] = (
    "gateway-api-standard",
    "gateway-api-experimental-x",
    "envoy-gateway",
    "emissary",
)


def is_crd(obj: Obj) -> bool:
    return (
        obj.get("apiVersion") == CRD_API_VERSION and obj.get("kind") == "CustomResourceDefinition"
    )


# --- fetching ----------------------------------------------------------------------------------


def cache_file() -> Path:
    return Path.home() / ".cache" / "kubectl-gw" / "crds.json"


def _read_cache() -> dict[str, str]:
    try:
        data = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_cache(data: dict[str, str]) -> None:
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".crds.", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    Path(tmp).replace(path)


def module_dir(module: Module) -> Path:
    """The module's directory in the Go module cache, downloading it if needed."""
    key = str(module)
    cached = _read_cache().get(key)
    if cached and Path(cached).is_dir():
        return Path(cached)
    from tests.realparts.bins import BuildError, run_go

    try:
        with tempfile.TemporaryDirectory(prefix="kgw-gomod-") as tmp:
            # Outside any module, so no go.mod or go.sum is touched.
            proc = run_go(["mod", "download", "-json", key], cwd=Path(tmp), timeout=600)
    except BuildError as exc:
        raise CRDError(f"cannot download {key}: {exc}") from exc
    info = json.loads(proc.stdout)
    if info.get("Error"):
        raise CRDError(f"cannot download {key}: {info['Error']}")
    directory = Path(info["Dir"])
    data = _read_cache()
    data[key] = str(directory)
    _write_cache(data)
    return directory


def bundle_files(name: str) -> list[Path]:
    bundle = BUNDLES[name]
    root = module_dir(bundle.module)
    files = sorted({p for pattern in bundle.patterns for p in root.glob(pattern)})
    if not files:
        raise CRDError(f"bundle {name}: no files match {bundle.patterns} in {root}")
    if bundle.expect_files is not None and len(files) != bundle.expect_files:
        raise CRDError(
            f"bundle {name}: expected {bundle.expect_files} files in {root}, found {len(files)}"
        )
    return files


def _parse_yaml(path: Path) -> list[Obj]:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    with path.open() as handle:
        return [doc for doc in yaml.load_all(handle) if isinstance(doc, dict)]


_PARSED: dict[Path, str] = {}


def load_yaml_documents(path: Path) -> list[Obj]:
    """The mapping documents of a YAML file, as fresh dicts the caller may change.

    Files in the Go module cache never change (their directory names carry the version), so the
    parsed form is kept as JSON in memory and in ``~/.cache/kubectl-gw/crds-parsed/``: pure-Python
    YAML parsing of the ~5 MB of CRDs takes seconds, JSON loading a fraction of that.
    """
    text = _PARSED.get(path)
    if text is None:
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
        cached = cache_file().parent / "crds-parsed" / f"{digest}.json"
        try:
            text = cached.read_text()
        except OSError:
            text = json.dumps(_parse_yaml(path), default=str)
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".parsed.", suffix=".json", dir=cached.parent)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            Path(tmp).replace(cached)
        _PARSED[path] = text
    docs = json.loads(text)
    return [doc for doc in docs if isinstance(doc, dict)]


def load_bundle(name: str) -> list[Obj]:
    """All objects of bundle NAME, filtered and transformed, in file order."""
    if name not in BUNDLES:
        raise CRDError(f"unknown bundle {name!r}; known: {', '.join(BUNDLES)}")
    bundle = BUNDLES[name]
    objects: list[Obj] = []
    for path in bundle_files(name):
        objects += [bundle.transform(obj) for obj in load_yaml_documents(path) if bundle.keep(obj)]
    return objects


def crd_names(objects: Iterable[Obj]) -> list[str]:
    return [obj["metadata"]["name"] for obj in objects if is_crd(obj)]


# --- applying ----------------------------------------------------------------------------------


class _Discovery:
    """apiVersion/kind -> (plural, namespaced), read from /api/v1 and /apis/GROUP/VERSION."""

    def __init__(self, api_client: ApiClient) -> None:
        self._client = api_client
        self._groups: dict[str, dict[str, tuple[str, bool]]] = {}

    def _load(self, api_version: str) -> dict[str, tuple[str, bool]]:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        data = api_request(self._client, "GET", path)
        kinds: dict[str, tuple[str, bool]] = {}
        for res in data.get("resources", []):
            if "/" not in res["name"]:
                kinds[res["kind"]] = (res["name"], bool(res["namespaced"]))
        return kinds

    def lookup(self, api_version: str, kind: str, refresh: bool = False) -> tuple[str, bool]:
        if refresh or api_version not in self._groups:
            self._groups[api_version] = self._load(api_version)
        try:
            return self._groups[api_version][kind]
        except KeyError:
            raise CRDError(f"the apiserver does not serve {kind} in {api_version}") from None

    def object_path(self, obj: Obj) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        try:
            plural, namespaced = self.lookup(api_version, kind)
        except Exception:
            plural, namespaced = self.lookup(api_version, kind, refresh=True)
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        name = obj["metadata"]["name"]
        if namespaced:
            namespace = obj["metadata"].get("namespace", "default")
            return f"{prefix}/namespaces/{namespace}/{plural}/{name}"
        return f"{prefix}/{plural}/{name}"


def api_request(
    api_client: ApiClient,
    method: str,
    path: str,
    body: Obj | None = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str | None = None,
    timeout: float = 60.0,
) -> Obj:
    """One raw API request through the product's ``kube.Cluster.request`` (raw JSON: the typed
    APIs would deserialise megabyte CRDs into models). Failures raise ``ApiException`` with
    the HTTP status and the API server's message as body, as the tests expect."""
    from kubernetes.client.exceptions import ApiException

    from kubectl_gw.errors import ClusterError
    from kubectl_gw.kube import Cluster

    cluster = Cluster(
        api=api_client,
        context="",
        namespace="default",
        all_namespaces=False,
        request_timeout=timeout,
    )
    try:
        result = cluster.request(
            method, path, query=query, body=body, content_type=content_type or "application/json"
        )
    except ClusterError as err:
        raise ApiException(status=err.status or 0, reason=str(err), body=str(err)) from err
    return result if isinstance(result, dict) else {}


def server_side_apply(api_client: ApiClient, obj: Obj, discovery: _Discovery | None = None) -> Obj:
    """Server-side apply one object (field manager ``kubectl-gw-tests``, force conflicts)."""
    from kubernetes.client.exceptions import ApiException

    path = (discovery or _Discovery(api_client)).object_path(obj)
    query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
    try:
        return api_request(api_client, "PATCH", path, obj, query, APPLY_CONTENT_TYPE)
    except ApiException as exc:
        raise CRDError(
            f"server-side apply of {obj['kind']} {obj['metadata']['name']} failed: "
            f"{exc.status} {exc.reason}: {(exc.body or '')[:2000]}"
        ) from exc


def _crd_ready(api_client: ApiClient, crd: Obj) -> bool:
    from kubernetes.client.exceptions import ApiException

    name = crd["metadata"]["name"]
    try:
        live = api_request(
            api_client, "GET", f"/apis/{CRD_API_VERSION}/customresourcedefinitions/{name}"
        )
    except ApiException:
        return False
    conditions = live.get("status", {}).get("conditions", [])
    if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
        return False
    spec = crd["spec"]
    plural = spec["names"]["plural"]
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        try:
            listing = api_request(api_client, "GET", f"/apis/{spec['group']}/{version['name']}")
        except ApiException:
            return False
        if plural not in {r.get("name") for r in listing.get("resources", [])}:
            return False
    return True


def wait_established(api_client: ApiClient, crds: Iterable[Obj], timeout: float = 90.0) -> None:
    """Wait until every CRD has ``Established=True`` and discovery lists its resource."""
    pending = [crd for crd in crds if is_crd(crd)]
    deadline = time.monotonic() + timeout
    while pending:
        pending = [crd for crd in pending if not _crd_ready(api_client, crd)]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(crd_names(pending))
            raise CRDError(f"CRDs not Established within {timeout:.0f} s: {names}")
        time.sleep(0.2)


def apply_objects(api_client: ApiClient, objects: list[Obj], timeout: float = 90.0) -> None:
    """Server-side apply OBJECTS in order, then wait for every CRD among them to be Established."""
    discovery = _Discovery(api_client)
    for obj in objects:
        server_side_apply(api_client, obj, discovery)
    wait_established(api_client, objects, timeout)


@dataclass
class InstallReport:
    """What ``install_bundles`` applied: CRD counts per bundle, other objects, seconds taken."""

    crds: dict[str, int]
    others: dict[str, int]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.crds.values())

    def summary(self) -> str:
        parts = ", ".join(f"{BUNDLES[name].label}: {n}" for name, n in self.crds.items())
        return f"CRDs Established: {self.total} ({parts}) in {self.seconds:.1f} s"


def install_bundles(
    api_client: ApiClient, names: Iterable[str] = SESSION_BUNDLES, timeout: float = 120.0
) -> InstallReport:
    """Load, apply and await the named bundles."""
    start = time.monotonic()
    crds: dict[str, int] = {}
    others: dict[str, int] = {}
    objects: list[Obj] = []
    for name in names:
        loaded = load_bundle(name)
        crds[name] = len(crd_names(loaded))
        others[name] = len(loaded) - crds[name]
        objects += loaded
    apply_objects(api_client, objects, timeout)
    return InstallReport(crds, others, time.monotonic() - start)


def main() -> int:
    """Print each bundle's files and object counts (fetching modules as needed)."""
    status = 0
    for name in BUNDLES:
        try:
            objects = load_bundle(name)
            files = bundle_files(name)
        except CRDError as exc:
            print(f"{name}: error: {exc}")
            status = 1
            continue
        print(f"{name}: {len(crd_names(objects))} CRDs, {len(objects)} objects")
        for path in files:
            print(f"  {path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
