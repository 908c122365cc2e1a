"""The ADS server: one gRPC service that programs Envoy, state-of-the-world and delta.

``AdsServer.set_resources(resources)`` publishes a new target (a :class:`translate.Resources`);
every connected Envoy is then walked to it in an order that never sends traffic to a cluster
Envoy does not know or has not warmed (reference §3.2, make-before-break):

1. secrets Envoy asked for; clusters = what Envoy has + the target (additions and changes
   only); then the endpoints of every EDS cluster Envoy now has, waiting until Envoy subscribed
   to (and ACKed) the load assignment of each of them, i.e. until they are warm (a DNS cluster
   resolves its own names and never asks for one, so it is not waited for);
2. route configurations Envoy already asked for, then listeners, then the route
   configurations and secrets the new listeners asked for;
3. only then the removals: clusters = the target, and their endpoints.

One response is in flight per stream at a time: the next one goes out only after Envoy
answered the previous one. Every step is re-evaluated from the top on each event (a new
target, an ACK, a subscription change), so a request Envoy makes in the middle (new EDS or RDS
names) is served before anything that depends on it.

A NACK (a request echoing our nonce with ``error_detail``) is logged and remembered: Envoy keeps
its last good configuration, we treat that as what it has, never resend the same rejected
content, and stop the walk for that target (removals included) until a different target comes.

Per type there is a version (a counter) and per response a nonce; resources carry a content
hash as their version in delta responses. ACK tracking is per stream and per type.

SotW: a wildcard type (CDS, LDS) response holds every resource; a named type (EDS, RDS, SDS)
response holds every subscribed resource we have. Delta: only changed resources, and for the
wildcard types the names removed.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import (
    ads_pb2_grpc,
    discovery_pb2,
)

from controller import translate
from controller.translate import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
)

log = logging.getLogger("kubectl_gw.controller.xds")

WILDCARD_TYPES = frozenset({CLUSTER_TYPE, LISTENER_TYPE})
ALL_TYPES = (CLUSTER_TYPE, ENDPOINT_TYPE, SECRET_TYPE, ROUTE_TYPE, LISTENER_TYPE)


@dataclass(frozen=True)
class _Entry:
    """One resource ready to send: packed once, versioned by its content."""

    name: str
    version: str
    packed: Any  # google.protobuf.any_pb2.Any
    eds: bool = False  # a cluster whose endpoints come over EDS (not STRICT/LOGICAL_DNS etc.)
    message: Any = None  # what was packed (the translator's memo reuses unchanged messages)


@dataclass(frozen=True)
class Snapshot:
    generation: int
    by_type: Mapping[str, Mapping[str, _Entry]]

    def of(self, type_url: str) -> Mapping[str, _Entry]:
        return self.by_type.get(type_url, {})


def make_snapshot(
    generation: int, resources: translate.Resources, previous: Snapshot | None = None
) -> Snapshot:
    """``previous``: a resource whose message is the very same object as there is not packed
    again (messages are never mutated once translated)."""
    by_type: dict[str, dict[str, _Entry]] = {}
    for type_url in ALL_TYPES:
        entries: dict[str, _Entry] = {}
        before = previous.of(type_url) if previous is not None else {}
        items = resources.raw(type_url)
        for name in sorted(items):
            message = items[name]
            found = before.get(name)
            if found is None or found.message is not message:
                if isinstance(message, translate.Wire):
                    packed = message.packed()
                    digest = hashlib.sha256(message.data).hexdigest()[:16]
                    entries[name] = _Entry(name, digest, packed, False, message)
                    continue
                packed = translate.pack(message)
                digest = hashlib.sha256(packed.value).hexdigest()[:16]
                eds = type_url == CLUSTER_TYPE and _is_eds_cluster(message)
                found = _Entry(name, digest, packed, eds, message)
            entries[name] = found
        by_type[type_url] = entries
    return Snapshot(generation, by_type)


def _is_eds_cluster(message: Any) -> bool:
    return bool(
        message.WhichOneof("cluster_discovery_type") == "type"
        and message.type == cluster_pb2.Cluster.EDS
    )


@dataclass(frozen=True)
class Nack:
    stream: str
    type_url: str
    version: str
    message: str
    at: float


@dataclass(frozen=True)
class Push:
    """One response sent: the resources in it (SotW: all of them; delta: the changed ones)
    and, in delta, the names removed."""

    stream: str
    type_url: str
    delta: bool
    names: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass
class _TypeState:
    requested: bool = False  # Envoy has asked for this type at least once
    subscribed: set[str] = field(default_factory=set)  # named types only
    sent: dict[str, _Entry] = field(default_factory=dict)  # what Envoy has or is being sent
    acked: dict[str, _Entry] = field(default_factory=dict)  # what Envoy accepted
    pending_nonce: str | None = None
    last_nonce: str = ""  # the nonce of the last response Envoy answered
    pending: dict[str, _Entry] = field(default_factory=dict)
    rejected: dict[str, str] | None = None  # name → version of the content last NACKed
    version: int = 0
    acked_version: str = ""


class _Stream:
    def __init__(self, server: AdsServer, delta: bool, peer: str) -> None:
        self.server = server
        self.delta = delta
        self.peer = peer
        self.node_id = ""
        self.node_cluster = ""
        self.types: dict[str, _TypeState] = {t: _TypeState() for t in ALL_TYPES}
        self.out: queue.Queue[Any] = queue.Queue()
        self.synced_generation = 0
        self.failed_generation = 0
        self.closed = False

    @property
    def label(self) -> str:
        return f"{self.node_id or '?'}@{self.peer}"

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.out.put(None)

    # -------------------------------------------------------------- requests

    def on_request(self, request: Any) -> None:
        """Handle one DiscoveryRequest / DeltaDiscoveryRequest (the server lock is held)."""
        if request.HasField("node") and not self.node_id:
            self.node_id = request.node.id
            self.node_cluster = request.node.cluster
        type_url = request.type_url
        state = self.types.get(type_url)
        if state is None:
            log.debug("%s asked for unserved type %s", self.label, type_url)
            return
        first = not state.requested
        state.requested = True
        if self.delta:
            self._delta_subscription(state, type_url, request, first)
        elif type_url not in WILDCARD_TYPES:
            names = set(request.resource_names)
            for gone in state.subscribed - names:
                state.sent.pop(gone, None)
                state.acked.pop(gone, None)
            state.subscribed = names
        nonce = request.response_nonce
        if state.pending_nonce is not None and nonce == state.pending_nonce:
            if request.HasField("error_detail"):
                self._nack(state, type_url, request)
            else:
                state.acked = {**state.acked, **state.pending}
                if type_url in WILDCARD_TYPES:
                    state.acked = dict(state.pending)
                state.acked_version = str(state.version)
                state.rejected = None
            state.last_nonce = nonce
            state.pending_nonce = None
            state.pending = {}
        elif (
            nonce
            and nonce == state.last_nonce
            and not self.delta
            and type_url not in WILDCARD_TYPES
        ):
            # A repeated request (a new watch on the same names, e.g. a cluster re-created by a
            # CDS update, waits for an EDS response): answer it in full again.
            state.sent = {}

    def _delta_subscription(
        self, state: _TypeState, type_url: str, request: Any, first: bool
    ) -> None:
        if first:
            for name, version in request.initial_resource_versions.items():
                # What Envoy already has from an earlier stream: our versions are content hashes.
                state.sent[name] = state.acked[name] = _Entry(name, version, None)
        if type_url in WILDCARD_TYPES:
            return
        for name in request.resource_names_subscribe:
            state.subscribed.add(name)
            if not first:
                state.sent.pop(name, None)  # (re)subscription: Envoy wants it sent again
        for name in request.resource_names_unsubscribe:
            state.subscribed.discard(name)
            state.sent.pop(name, None)
            state.acked.pop(name, None)

    def _nack(self, state: _TypeState, type_url: str, request: Any) -> None:
        detail = request.error_detail.message
        nack = Nack(self.label, type_url, str(state.version), detail, time.time())
        self.server.record_nack(nack)
        log.warning(
            "Envoy %s rejected %s version %s: %s (keeping its last good config)",
            self.label,
            translate.SHORT_TYPE_NAMES.get(type_url, type_url),
            state.version,
            detail,
        )
        state.rejected = {n: e.version for n, e in state.pending.items()}
        state.sent = dict(state.acked)
        self.failed_generation = max(self.failed_generation, self.server.generation)

    # -------------------------------------------------------------- the walk

    def advance(self, snapshot: Snapshot | None) -> None:
        """Send what the ordering allows now, if anything (the server lock is held).

        Endpoints and secrets Envoy subscribed to are answered at once (they never route
        traffic anywhere new, and Envoy may hold its CDS/LDS ACK until they arrive); clusters,
        routes, listeners and removals follow the make-before-break chain, one type at a time.
        """
        if snapshot is None or self.closed:
            return
        clusters = self.types[CLUSTER_TYPE]
        endpoints = self.types[ENDPOINT_TYPE]
        secrets = self.types[SECRET_TYPE]
        routes = self.types[ROUTE_TYPE]
        listeners = self.types[LISTENER_TYPE]
        target_clusters = snapshot.of(CLUSTER_TYPE)
        target_routes = snapshot.of(ROUTE_TYPE)
        target_secrets = snapshot.of(SECRET_TYPE)
        target_listeners = snapshot.of(LISTENER_TYPE)

        # Answer subscriptions: endpoints and secrets of everything Envoy has or will get.
        self._offer(ENDPOINT_TYPE, {**_real(endpoints.acked), **snapshot.of(ENDPOINT_TYPE)})
        self._offer(SECRET_TYPE, {**_real(secrets.acked), **target_secrets})

        # 1. clusters: what Envoy has plus the target (additions and changes, no removals).
        # In delta, what Envoy has includes the clusters it reported on a reconnect (we hold
        # no message for them, and send none: only their names stay until the removals).
        if not clusters.requested:
            return  # Envoy has not started yet
        have = dict(clusters.acked) if self.delta else _real(clusters.acked)
        before = dict(clusters.sent)
        if self._step(CLUSTER_TYPE, {**have, **target_clusters}):
            # An EDS cluster Envoy already had and now gets changed is a new cluster object in
            # Envoy that stays warming (holding the CDS ACK, and so every route change queued
            # behind it) until a load assignment arrives, and Envoy asks for none: the name is
            # subscribed already. Send its endpoints again now, unchanged as they may be.
            updated = {
                name
                for name, entry in clusters.sent.items()
                if entry.eds and name in before and before[name].version != entry.version
            }
            if updated & set(endpoints.sent):
                for name in updated:
                    endpoints.sent.pop(name, None)
                self._offer(ENDPOINT_TYPE, {**_real(endpoints.acked), **snapshot.of(ENDPOINT_TYPE)})
            return
        warm = _eds_clusters(clusters.acked, target_clusters)
        if not (warm <= endpoints.subscribed and warm <= set(endpoints.acked)):
            return  # wait until Envoy has the endpoints of every EDS cluster (warming done)
        # 2. routes Envoy asked for, then listeners (whose new route names come back to here)
        if self._step(ROUTE_TYPE, self._named(ROUTE_TYPE, target_routes)):
            return
        if not listeners.requested:
            return  # Envoy asks for listeners once its clusters are initialised
        if self._step(LISTENER_TYPE, dict(target_listeners)):
            return
        if not set(target_routes) <= set(routes.acked):
            return  # new listeners have not asked for (or ACKed) their routes yet
        if not set(target_secrets) <= set(secrets.acked) or secrets.pending_nonce is not None:
            return
        if endpoints.pending_nonce is not None:
            return
        # 3. removals, now that nothing routes to them
        if self._step(CLUSTER_TYPE, dict(target_clusters)):
            return
        if self.synced_generation != snapshot.generation:
            self.synced_generation = snapshot.generation
            log.debug("Envoy %s synced to generation %d", self.label, snapshot.generation)
            self.server.notify()

    def _offer(self, type_url: str, available: Mapping[str, _Entry]) -> None:
        state = self.types[type_url]
        if state.pending_nonce is None:
            want = self._named(type_url, available)
            if _needs_send(type_url, state, want) and not (
                state.rejected is not None and _same(state.rejected, want, state)
            ):
                self._send(type_url, state, want)

    def _step(self, type_url: str, want: dict[str, _Entry]) -> bool:
        """Send ``want`` if Envoy lacks it; True while this step is not done (stop the chain)."""
        state = self.types[type_url]
        if state.pending_nonce is not None:
            return True
        if not _needs_send(type_url, state, want):
            return False
        if state.rejected is not None and _same(state.rejected, want, state):
            return True  # the same content was rejected: keep the last good, stop here
        self._send(type_url, state, want)
        return True

    def _named(self, type_url: str, available: Mapping[str, _Entry]) -> dict[str, _Entry]:
        subscribed = self.types[type_url].subscribed
        return {n: e for n, e in available.items() if n in subscribed and e.packed is not None}

    def _send(self, type_url: str, state: _TypeState, want: dict[str, _Entry]) -> None:
        state.version += 1
        nonce = self.server.next_nonce()
        state.pending_nonce = nonce
        version = str(state.version)
        if self.delta:
            changed = [
                e for n, e in sorted(want.items()) if _version(state.sent.get(n)) != e.version
            ]
            response = discovery_pb2.DeltaDiscoveryResponse(
                system_version_info=version, type_url=type_url, nonce=nonce
            )
            for entry in changed:
                response.resources.append(
                    discovery_pb2.Resource(
                        name=entry.name, version=entry.version, resource=entry.packed
                    )
                )
            if type_url in WILDCARD_TYPES:
                response.removed_resources.extend(sorted(set(state.sent) - set(want)))
            state.pending = (
                dict(want) if type_url in WILDCARD_TYPES else {e.name: e for e in changed}
            )
        else:
            response = discovery_pb2.DiscoveryResponse(
                version_info=version,
                type_url=type_url,
                nonce=nonce,
                resources=[e.packed for _, e in sorted(want.items())],
            )
            state.pending = dict(want)
        if type_url in WILDCARD_TYPES:
            state.sent = dict(want)
        else:
            state.sent = {**state.sent, **want}
        sent_names = (
            tuple(r.name for r in response.resources) if self.delta else tuple(sorted(want))
        )
        removed = tuple(response.removed_resources) if self.delta else ()
        log.debug(
            "→ %s %s v%s nonce %s (%d resources, %d removed)",
            self.label,
            translate.SHORT_TYPE_NAMES.get(type_url, type_url),
            version,
            nonce,
            len(sent_names),
            len(removed),
        )
        self.server.count_push(Push(self.label, type_url, self.delta, sent_names, removed))
        self.out.put(response)


def _real(entries: Mapping[str, _Entry]) -> dict[str, _Entry]:
    """Entries we can resend (those learnt from a delta reconnect carry no message)."""
    return {n: e for n, e in entries.items() if e.packed is not None}


def _eds_clusters(acked: Mapping[str, _Entry], target: Mapping[str, _Entry]) -> set[str]:
    """The clusters Envoy accepted that take their endpoints from EDS, i.e. that stay warming
    until it has their load assignment. A DNS cluster resolves its names itself and never asks
    for one. A cluster learnt from a delta reconnect (no message) has the target's type when the
    target holds the same name; otherwise Envoy warmed it on its earlier stream."""
    out: set[str] = set()
    for name, entry in acked.items():
        known = entry if entry.packed is not None else target.get(name)
        if known is not None and known.version == entry.version and known.eds:
            out.add(name)
    return out


def _gone(state: _TypeState, target: Mapping[str, _Entry]) -> set[str]:
    return {n for n in state.subscribed if n not in target}


def _version(entry: _Entry | None) -> str | None:
    return entry.version if entry is not None else None


def _needs_send(type_url: str, state: _TypeState, want: Mapping[str, _Entry]) -> bool:
    if type_url in WILDCARD_TYPES and (set(state.sent) != set(want) or state.version == 0):
        # (an empty first answer too: Envoy's initialisation waits for one)
        return True
    return any(_version(state.sent.get(n)) != e.version for n, e in want.items())


def _same(rejected: Mapping[str, str], want: Mapping[str, _Entry], state: _TypeState) -> bool:
    """Would we send again exactly what Envoy rejected last time?"""
    for name, entry in want.items():
        if _version(state.sent.get(name)) != entry.version and rejected.get(name) != entry.version:
            return False
    return True


class AdsServer:
    """The ADS gRPC server (see the module docstring)."""

    def __init__(self, max_streams: int = 16) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._streams: list[_Stream] = []
        self._snapshot: Snapshot | None = None
        self._generation = 0
        self._nonces = itertools.count(1)
        self._server: Any = None
        self._max_streams = max_streams
        self.port = 0
        self.nacks: list[Nack] = []
        self.pushes: dict[str, int] = {}  # responses sent, per short type name
        self.sent: collections.deque[Push] = collections.deque(maxlen=2000)  # the last ones

    # -------------------------------------------------------------- life cycle

    def start(self, address: str = "127.0.0.1:0") -> int:
        """Serve on ``host:port`` (port 0 picks one); return the bound port."""
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_streams * 2 + 2),
            options=[
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ],
        )
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), server)
        port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot bind the xDS server to {address}")
        server.start()
        self._server = server
        self.port = int(port)
        log.info("xDS (ADS) server listening on %s", address.rsplit(":", 1)[0] + f":{port}")
        return self.port

    def stop(self, grace: float = 0.5) -> None:
        with self._lock:
            for stream in self._streams:
                stream.close()
        if self._server is not None:
            self._server.stop(grace).wait(grace + 2)
            self._server = None

    # -------------------------------------------------------------- publishing

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def snapshot(self) -> Snapshot | None:
        """The current target (what every Envoy is being walked to)."""
        return self._snapshot

    def set_resources(self, resources: translate.Resources) -> int:
        """Publish a new target; return its generation (for :meth:`wait_synced`)."""
        with self._lock:
            self._generation += 1
            self._snapshot = make_snapshot(self._generation, resources, self._snapshot)
            for stream in self._streams:
                stream.advance(self._snapshot)
            self._changed.notify_all()
            return self._generation

    def wait_synced(self, generation: int, timeout: float, min_streams: int = 1) -> bool:
        """Wait until at least ``min_streams`` streams are connected and every connected
        stream has applied ``generation`` (or a later one). False on timeout or on a NACK."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                live = [s for s in self._streams if not s.closed]
                if len(live) >= min_streams:
                    if any(s.failed_generation >= generation for s in live):
                        return False
                    if all(s.synced_generation >= generation for s in live):
                        return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)

    def rejection(self, generation: int) -> str | None:
        """Envoy's message if a live stream NACKed ``generation`` (or a later one)."""
        with self._lock:
            if any(s.failed_generation >= generation for s in self._streams if not s.closed):
                return self.nacks[-1].message if self.nacks else "rejected"
            return None

    def stream_count(self) -> int:
        with self._lock:
            return sum(1 for s in self._streams if not s.closed)

    def acked_names(self, type_url: str) -> list[set[str]]:
        """Per live stream, the resource names Envoy ACKed for a type (for tests)."""
        with self._lock:
            return [set(s.types[type_url].acked) for s in self._streams if not s.closed]

    # -------------------------------------------------------------- internals

    def notify(self) -> None:
        self._changed.notify_all()

    def next_nonce(self) -> str:
        return str(next(self._nonces))

    def record_nack(self, nack: Nack) -> None:
        self.nacks.append(nack)
        del self.nacks[:-100]
        self._changed.notify_all()

    def count_push(self, push: Push) -> None:
        key = translate.SHORT_TYPE_NAMES.get(push.type_url, push.type_url)
        self.pushes[key] = self.pushes.get(key, 0) + 1
        self.sent.append(push)

    def serve_stream(
        self, request_iterator: Iterator[Any], context: Any, delta: bool
    ) -> Iterator[Any]:
        stream = _Stream(self, delta, str(context.peer()))
        with self._lock:
            self._streams.append(stream)
        context.add_callback(stream.close)
        reader = threading.Thread(
            target=self._read, args=(stream, request_iterator), name="xds-reader", daemon=True
        )
        reader.start()
        try:
            while True:
                item = stream.out.get()
                if item is None:
                    return
                yield item
        finally:
            stream.close()
            with self._lock:
                if stream in self._streams:
                    self._streams.remove(stream)
                self._changed.notify_all()

    def _read(self, stream: _Stream, request_iterator: Iterator[Any]) -> None:
        try:
            for request in request_iterator:
                with self._lock:
                    first_node = not stream.node_id
                    stream.on_request(request)
                    if first_node and stream.node_id:
                        log.info(
                            "Envoy %s connected (%s)",
                            stream.label,
                            "delta" if stream.delta else "SotW",
                        )
                    stream.advance(self._snapshot)
        except grpc.RpcError:
            pass
        except Exception:  # a bug in the walk must not leave Envoy hanging silently
            log.exception("xDS stream %s failed", stream.label)
        finally:
            log.info("Envoy %s disconnected", stream.label)
            stream.close()
            with self._lock:
                self._changed.notify_all()


class _Servicer:
    """The ADS methods; grpc looks them up by name."""

    def __init__(self, server: AdsServer) -> None:
        self._server = server

    def StreamAggregatedResources(  # noqa: N802 - gRPC method name
        self, request_iterator: Iterator[Any], context: Any
    ) -> Iterator[Any]:
        return self._server.serve_stream(request_iterator, context, delta=False)

    def DeltaAggregatedResources(  # noqa: N802 - gRPC method name
        self, request_iterator: Iterator[Any], context: Any
    ) -> Iterator[Any]:
        return self._server.serve_stream(request_iterator, context, delta=True)
