"""The only module that talks to the API server, and the only one that imports ``kubernetes``.

``kubernetes`` costs about half a second to import, so it is imported inside the functions
that need it: ``--help``, completion and every offline command never load it. Objects go in
and out as plain dicts (raw JSON), which also avoids the client's slow model deserialisation.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kubectl_gw.errors import ClusterError
from kubectl_gw.model import KindInfo, KubeObject, split_api_version

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

FIELD_MANAGER = "kubectl-gw"


@dataclass(frozen=True)
class KubeTarget:
    """What the kubectl-style flags asked for; resolved lazily by ``connect``."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    all_namespaces: bool = False
    request_timeout: float | None = None


def kubeconfig_paths(explicit: str | None) -> list[str]:
    """kubectl's order: ``--kubeconfig``, else every path in ``KUBECONFIG``, else ~/.kube/config."""
    if explicit:
        return [explicit]
    env = os.environ.get("KUBECONFIG", "")
    paths = [p for p in env.split(os.pathsep) if p]
    return paths or [str(Path.home() / ".kube" / "config")]


@dataclass
class Cluster:
    """A connected API client plus the namespace and context the flags resolved to."""

    api: ApiClient
    context: str
    namespace: str  # the effective default namespace (-n, else the context's, else default)
    all_namespaces: bool
    request_timeout: float | None

    def with_pool(self, size: int) -> Cluster:
        """The same cluster through a client whose connection pool keeps ``size`` connections:
        one per thread that talks at once (watches, status workers). With fewer, urllib3
        discards the extra connections and every later request pays a new TLS handshake."""
        import copy

        from kubernetes.client import ApiClient

        configuration = copy.copy(self.api.configuration)
        configuration.connection_pool_maxsize = size
        return dataclasses.replace(self, api=ApiClient(configuration))

    # ------------------------------------------------------------------ raw requests

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        """Send one request; return the decoded JSON body, or raise ``ClusterError``."""
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": accept, "Content-Type": content_type}
        try:
            params = self.api.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(*params, _request_timeout=self.request_timeout)
            response.read()
        except ApiException as err:
            raise ClusterError(
                _api_error_message(method, path, err.status, err.body), status=err.status
            ) from err
        except Exception as err:  # urllib3 connection failures and the like
            host = self.api.configuration.host
            reason = _first_line(err)
            raise ClusterError(f"cannot reach the API server at {host}: {reason}") from err
        if not 200 <= response.status <= 299:
            raise ClusterError(
                _api_error_message(method, path, response.status, response.data),
                status=response.status,
            )
        return json.loads(response.data) if response.data else None

    # ------------------------------------------------------------------ typed helpers

    def server_version(self) -> dict[str, str]:
        return cast(dict[str, str], self.request("GET", "/version"))

    def collection_path(self, info: KindInfo, namespace: str | None, version: str = "") -> str:
        version = version or info.versions[0]
        base = f"/apis/{info.group}/{version}" if info.group else f"/api/{version}"
        if info.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{info.plural}"
        return f"{base}/{info.plural}"

    def list_objects(self, info: KindInfo, namespace: str | None) -> list[KubeObject]:
        """Every object of a kind in ``namespace`` (or all namespaces for None), with their
        apiVersion and kind filled in (list items lack them)."""
        found = self.request("GET", self.collection_path(info, namespace))
        api_version = info.api_version
        items = cast(list[dict[str, Any]], found.get("items") or [])
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", info.kind)
        return cast(list[KubeObject], items)

    def get_object(self, info: KindInfo, namespace: str | None, name: str) -> KubeObject | None:
        try:
            obj = self.request("GET", f"{self.collection_path(info, namespace)}/{name}")
        except ClusterError as err:
            if err.status == 404:
                return None
            raise
        return cast(KubeObject, obj)

    def apply(
        self,
        obj: KubeObject,
        info: KindInfo,
        *,
        dry_run: bool = False,
        force: bool = False,
        field_manager: str = FIELD_MANAGER,
    ) -> KubeObject:
        """Server-side apply one object (``dry_run`` sends ``dryRun=All``)."""
        _group, version = split_api_version(obj["apiVersion"])
        namespace = obj["metadata"].get("namespace") if info.namespaced else None
        path = f"{self.collection_path(info, namespace, version)}/{obj['metadata']['name']}"
        query = [("fieldManager", field_manager), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        result = self.request(
            "PATCH", path, query=query, body=obj, content_type="application/apply-patch+yaml"
        )
        return cast(KubeObject, result)


def connect(target: KubeTarget) -> Cluster:
    """Load the kubeconfig the way kubectl does and return a client for the chosen context."""
    try:
        from kubernetes import config as kconfig
        from kubernetes.config.config_exception import ConfigException
    except ImportError as err:  # e.g. a zipapp on a Python its bundled client cannot run on
        raise ClusterError(f"the Kubernetes client cannot be loaded: {_first_line(err)}") from err

    paths = kubeconfig_paths(target.kubeconfig)
    existing = [p for p in paths if Path(p).is_file()]
    if not existing:
        raise ClusterError(f"no kubeconfig found (looked at {os.pathsep.join(paths)})")
    joined = os.pathsep.join(existing)
    try:
        contexts, current = kconfig.list_kube_config_contexts(config_file=joined)
        chosen = target.context or (current or {}).get("name")
        if not chosen:
            raise ClusterError("kubeconfig has no current-context; pass --context")
        by_name = {c["name"]: c for c in contexts or []}
        if chosen not in by_name:
            raise ClusterError(f'context "{chosen}" does not exist in the kubeconfig')
        api = kconfig.new_client_from_config(
            config_file=joined, context=chosen, persist_config=False
        )
    except ConfigException as err:
        raise ClusterError(f"kubeconfig: {_first_line(err)}") from err
    except (OSError, ValueError) as err:
        raise ClusterError(f"kubeconfig: {_first_line(err)}") from err
    context_ns = (by_name[chosen].get("context") or {}).get("namespace")
    return Cluster(
        api=api,
        context=chosen,
        namespace=target.namespace or context_ns or "default",
        all_namespaces=target.all_namespaces,
        request_timeout=target.request_timeout,
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _api_error_message(method: str, path: str, status: int | None, body: Any) -> str:
    """The API server's own Status message when it sent one, kubectl style."""
    message = ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip().startswith("{"):
        try:
            message = str(json.loads(body).get("message") or "")
        except ValueError:
            message = ""
    message = message or (str(body).strip().splitlines() or [""])[0]
    return f"{method} {path}: {status}: {message}" if message else f"{method} {path}: {status}"


# --------------------------------------------------------------------------- metadata-only reads
# Added for `migrate`: Secret metadata without the Secret data. The API server answers these with
# PartialObjectMetadata(List) (name, namespace, labels, annotations, ...; never `data`). Plain
# JSON is deliberately not an accepted fallback, so a server that cannot do this answers 406
# instead of sending the data.

_METADATA_ACCEPT = "application/json;as={kind};g=meta.k8s.io;v=v1"


def _metadata_request(
    cluster: Cluster, path: str, *, kind: str, query: list[tuple[str, str]] | None = None
) -> Any:
    return cluster.request("GET", path, query=query, accept=_METADATA_ACCEPT.format(kind=kind))


def list_metadata(
    cluster: Cluster, info: KindInfo, namespace: str | None, *, field_selector: str | None = None
) -> list[KubeObject]:
    """The metadata of every object of a kind (``PartialObjectMetadataList``), as objects with
    the kind's own apiVersion and kind and only a ``metadata`` field."""
    query = [("fieldSelector", field_selector)] if field_selector else None
    path = cluster.collection_path(info, namespace)
    found = _metadata_request(cluster, path, kind="PartialObjectMetadataList", query=query)
    items = cast(list[dict[str, Any]], (found or {}).get("items") or [])
    return [_as_metadata_only(item, info) for item in items]


def get_metadata(
    cluster: Cluster, info: KindInfo, namespace: str | None, name: str
) -> KubeObject | None:
    """One object's metadata (``PartialObjectMetadata``), or None when it does not exist."""
    path = f"{cluster.collection_path(info, namespace)}/{name}"
    try:
        found = _metadata_request(cluster, path, kind="PartialObjectMetadata")
    except ClusterError as err:
        if err.status == 404:
            return None
        raise
    return _as_metadata_only(cast(dict[str, Any], found), info)


def _as_metadata_only(item: dict[str, Any], info: KindInfo) -> KubeObject:
    meta = dict(item.get("metadata") or {})
    meta.pop("managedFields", None)
    return cast(KubeObject, {"apiVersion": info.api_version, "kind": info.kind, "metadata": meta})
