"""Watch the API server into a local cache: list, then watch from the list's resourceVersion.

One thread per kind. Events update the cache and call ``on_change`` (the controller debounces).
A watch that ends (server timeout) is resumed from the last resourceVersion seen (bookmarks
included); ``410 Gone`` (the version expired) or any connection error relists, with a backoff, so
an API server restart is survived without a manual step. A kind the server does not serve
(404: CRD not installed) counts as empty and is retried every ``missing_retry`` seconds.

An event that changes only an object's ``status`` (or its resourceVersion / managedFields), such
as the echo of our own status writes, updates the cache without calling ``on_change``: nothing the
controller computes reads ``status``, so it cannot change the result (Envoy Gateway's
generation-changed predicate, for every kind).

``kubernetes`` is reached only through ``kubectl_gw.kube.Cluster`` (imported lazily there).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from kubectl_gw.errors import ClusterError
from kubectl_gw.kube import Cluster
from kubectl_gw.model import KindInfo, KubeObject

log = logging.getLogger("kubectl_gw.controller.provider")

WATCH_TIMEOUT_SECONDS = 240

ObjectKey = tuple[str, str, str]
"""(kind, namespace, name)"""


@dataclass(frozen=True)
class Changes:
    """What changed since the previous :meth:`Provider.take_changes`, and the cache at that
    instant (one read under one lock: see there)."""

    kinds: frozenset[str]
    """Kinds with a spec change (status-only events are not changes)."""
    changed: Mapping[ObjectKey, KubeObject | None]
    """Every object with a spec change, as it is now (None: deleted)."""
    touched: frozenset[ObjectKey]
    """Every object with any event since, status-only ones too (a status written by someone
    else may need ours written again)."""
    objects: list[KubeObject]
    by_kind: Mapping[str, Mapping[tuple[str, str], KubeObject]]
    """The cache by kind, then (namespace, name)."""

    def get(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        return self.by_kind.get(kind, {}).get((namespace, name))


class _GoneError(Exception):
    """The watch's resourceVersion is too old (410): relist."""


class Provider:
    def __init__(
        self,
        cluster: Cluster,
        kinds: Sequence[KindInfo],
        on_change: Callable[[], None],
        *,
        missing_retry: float = 10.0,
        watch_timeout: int = WATCH_TIMEOUT_SECONDS,
        on_event: Callable[[str, KubeObject], None] | None = None,
    ) -> None:
        self.kinds = list(kinds)
        # one connection per kind (each lists, then watches) and a few spare: with fewer,
        # urllib3 discards connections at start-up and later requests redo their TLS
        self.cluster = cluster.with_pool(len(self.kinds) + 4)
        self.api = self.cluster.api
        self.on_change = on_change
        self.missing_retry = missing_retry
        self.watch_timeout = watch_timeout
        self.on_event = on_event  # every watch event: (ADDED|MODIFIED|DELETED, object)
        self._lock = threading.Lock()
        self._cache: dict[str, dict[tuple[str, str], KubeObject]] = {k.kind: {} for k in kinds}
        self._listed: set[str] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: dict[str, Any] = {}
        self._changed: set[ObjectKey] = set()  # spec changes since take_changes
        self._touched: set[ObjectKey] = set()  # any event since take_changes
        self._first_listed: set[str] = set()  # kinds listed for the first time since
        self.relists = 0
        self.events = 0
        self.expired: dict[str, int] = {}  # plural → how many 410s (resourceVersion too old)
        self.errors = 0  # watch/list failures (connection refused, reset, 5xx): relisted
        self.listed_at: dict[str, float] = {}  # plural → monotonic time of its last full list

    # -------------------------------------------------------------- public

    def start(self) -> None:
        for info in self.kinds:
            thread = threading.Thread(
                target=self._run, args=(info,), name=f"watch-{info.plural}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            responses = list(self._responses.values())
        for response in responses:
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.release_conn()
        for thread in self._threads:
            thread.join(2)

    def synced(self) -> bool:
        with self._lock:
            return len(self._listed) == len(self.kinds)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.synced():
                return True
            time.sleep(0.02)
        return self.synced()

    def objects(self) -> list[KubeObject]:
        with self._lock:
            return [obj for kind in self._cache.values() for obj in kind.values()]

    def take_changes(self) -> Changes:
        """What changed since the last call and every object, read at the same instant: an
        object that arrives between two separate reads would be among the objects while it is
        not among the changes, and the incremental path would reuse results it invalidates."""
        with self._lock:
            changed, self._changed = self._changed, set()
            touched, self._touched = self._touched, set()
            first, self._first_listed = self._first_listed, set()
            by_kind = {kind: dict(items) for kind, items in self._cache.items()}
        return Changes(
            kinds=frozenset(first | {key[0] for key in changed}),
            changed={key: by_kind.get(key[0], {}).get(key[1:]) for key in changed},
            touched=frozenset(touched | changed),
            objects=[obj for items in by_kind.values() for obj in items.values()],
            by_kind=by_kind,
        )

    def get(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        with self._lock:
            return self._cache.get(kind, {}).get((namespace, name))

    # -------------------------------------------------------------- per kind

    def _run(self, info: KindInfo) -> None:
        backoff = 0.2
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list(info)
                    backoff = 0.2
                version = self._watch(info, version)
            except _GoneError:
                log.info("watch of %s expired (410); relisting", info.plural)
                with self._lock:
                    self.expired[info.plural] = self.expired.get(info.plural, 0) + 1
                version = None
            except ClusterError as err:
                version = None
                if err.status == 404:
                    self._replace(info, [], listed=True)
                    self._stop.wait(self.missing_retry)
                    continue
                if self._stop.is_set():
                    return
                self.errors += 1
                log.warning("watching %s: %s; retrying in %.1f s", info.plural, err, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as err:  # connection reset, API server restart, bad chunk
                version = None
                if self._stop.is_set():
                    return
                self.errors += 1
                log.warning("watching %s: %s; relisting in %.1f s", info.plural, err, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _list(self, info: KindInfo) -> str:
        found = self.cluster.request("GET", self.cluster.collection_path(info, None))
        items = cast(list[KubeObject], found.get("items") or [])
        for item in items:
            item.setdefault("apiVersion", info.api_version)
            item.setdefault("kind", info.kind)
        self._replace(info, items, listed=True)
        self.relists += 1
        self.listed_at[info.plural] = time.monotonic()
        return str((found.get("metadata") or {}).get("resourceVersion", ""))

    def _replace(self, info: KindInfo, items: list[KubeObject], *, listed: bool) -> None:
        fresh = {_key(obj): obj for obj in items}
        with self._lock:
            old = self._cache.get(info.kind) or {}
            keys = old.keys() ^ fresh.keys()
            keys.update(
                key for key, obj in fresh.items() if key in old and _spec_changed(old[key], obj)
            )
            self._cache[info.kind] = fresh
            self._touched.update(
                (info.kind, *key) for key in fresh if fresh[key] is not old.get(key)
            )
            self._changed.update((info.kind, *key) for key in keys)
            changed = bool(keys)
            if listed:
                first = info.kind not in self._listed
                self._listed.add(info.kind)
                if first:  # even an empty kind: its first listing is a change
                    self._first_listed.add(info.kind)
                changed = changed or first
        if changed:
            self.on_change()

    def _watch(self, info: KindInfo, version: str) -> str:
        api = self.api
        query = [
            ("watch", "1"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.watch_timeout)),
        ]
        if version:
            query.append(("resourceVersion", version))
        params = api.param_serialize(
            method="GET",
            resource_path=self.cluster.collection_path(info, None),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            result = api.call_api(*params, _request_timeout=(5, self.watch_timeout + 30))
        except Exception as err:
            status = getattr(err, "status", None)
            if status == 410:
                raise _GoneError() from err
            raise ClusterError(f"watch {info.plural}: {err}", status=status) from err
        response = result.response
        if response.status == 410:
            raise _GoneError()
        if response.status != 200:
            body = response.data[:200] if response.data else b""
            raise ClusterError(
                f"watch {info.plural}: {response.status}: {body!r}", status=response.status
            )
        with self._lock:
            self._responses[info.kind] = response
        try:
            for event in _events(response):
                version = self._apply(info, event, version)
                if self._stop.is_set():
                    break
        finally:
            with self._lock:
                self._responses.pop(info.kind, None)
            with contextlib.suppress(Exception):
                response.release_conn()
        return version

    def _apply(self, info: KindInfo, event: dict[str, Any], version: str) -> str:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _GoneError()
            raise ClusterError(
                f"watch {info.plural}: {obj.get('message', obj)}", status=obj.get("code")
            )
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind == "BOOKMARK":
            return new_version
        obj.setdefault("apiVersion", info.api_version)
        obj.setdefault("kind", info.kind)
        key = _key(cast(KubeObject, obj))
        with self._lock:
            cache = self._cache.setdefault(info.kind, {})
            if kind == "DELETED":
                changed = cache.pop(key, None) is not None
            else:
                before = cache.get(key)
                changed = before is None or _spec_changed(before, cast(KubeObject, obj))
                cache[key] = cast(KubeObject, obj)
            self._touched.add((info.kind, *key))
            if changed:
                self._changed.add((info.kind, *key))
        self.events += 1
        if self.on_event is not None:
            self.on_event(str(kind), cast(KubeObject, obj))
        if changed:
            self.on_change()
        return new_version


_VOLATILE_METADATA = frozenset({"resourceVersion", "managedFields"})


def _spec_changed(before: KubeObject, after: KubeObject) -> bool:
    """True unless the two differ only in ``status``, resourceVersion or managedFields."""
    if before == after:
        return False
    a: dict[str, Any] = dict(before)
    b: dict[str, Any] = dict(after)
    for field in a.keys() | b.keys():
        if field == "status":
            continue
        if field == "metadata":
            ma = a.get("metadata") or {}
            mb = b.get("metadata") or {}
            if {k: v for k, v in ma.items() if k not in _VOLATILE_METADATA} != {
                k: v for k, v in mb.items() if k not in _VOLATILE_METADATA
            }:
                return True
        elif a.get(field) != b.get(field):
            return True
    return False


def _key(obj: KubeObject) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))


def _events(response: Any) -> Iterator[dict[str, Any]]:
    """JSON watch events, one per line, as they arrive."""
    pending = b""
    for chunk in response.stream(65536, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield cast(dict[str, Any], json.loads(line))
    if pending.strip():
        yield cast(dict[str, Any], json.loads(pending))
