"""The consumer actors: fetch, drop what has landed, land a micro-batch, then acknowledge.

One :class:`StreamConsumer` actor per subscription, named
``raypipe:stream:<pipeline>:<subscription>`` in the ``raypipe`` namespace (so the
dashboard and other drivers find it), restarted by Ray when its process dies
(``max_restarts``). Its constructor starts the loop in a thread, so a restarted
actor resumes by itself: it reopens the landing zone (ids of the newest files,
the client's resume state) and the broker hands back what was never acknowledged.

Exactly-once effect, step by step::

    fetch ─► drop ids already landed or already in the batch ─► batch full or old enough
          ─► write part-N.parquet (tmp, fsync, rename) ─► acknowledge every fetched message

A crash before the rename loses nothing (nothing was acknowledged); a crash between
the rename and the acknowledgement makes the broker redeliver messages that have
landed, and their ids are dropped on the way in.

Example (a driver; ``raypipe ingest-stream`` does this)::

    summary = ingest_stream(cfg, max_messages=10_000)   # blocks; Ctrl-C stops it cleanly
    summary["landed"]   # rows landed by this run, over every subscription
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from raypipe.errors import ConfigError, StageError, did_you_mean
from raypipe.runtime.cluster import connect
from raypipe.runtime.signals import ignore_stop_signals, stop_on_signals, stop_signal
from raypipe.runtime.storage import absolute_uri, is_local
from raypipe.streams.client import make_client
from raypipe.streams.landing import LandingZone, Message
from raypipe.streams.secret import Secret

__all__ = [
    "StreamConsumer",
    "ConsumerLoop",
    "ConsumerHandle",
    "ACTOR_NAMESPACE",
    "actor_name",
    "plan_subscriptions",
    "stream_sources",
    "start_consumers",
    "stop_consumers",
    "ingest_stream",
]

log = logging.getLogger("raypipe.streams")

#: Ray namespace of the consumer actors.
ACTOR_NAMESPACE = "raypipe"
#: Faults :meth:`StreamConsumer.inject_fault` knows (for tests and failure drills).
FAULTS = ("exit_before_ack",)


def actor_name(pipeline: str, subscription: str) -> str:
    """The name of a subscription's consumer actor."""
    return f"raypipe:stream:{pipeline}:{subscription}"


def stream_sources(source: Any) -> list[Any]:
    """The ``type: stream`` sources of a ``data.source`` (inside unions too)."""
    if source.type == "stream":
        return [source]
    if source.type == "union":
        return [s for inner in source.sources for s in stream_sources(inner)]
    return []


def _absolute(source: Any) -> Any:
    if not is_local(source.landing_uri):
        return source
    # The actor's working directory is not the driver's.
    return source.model_copy(update={"landing_uri": absolute_uri(source.landing_uri)})


class ConsumerLoop:
    """The fetch → land → acknowledge loop of one subscription (plain Python, one thread).

    Args:
        pipeline: the pipeline name.
        source: the :class:`~raypipe.config.StreamSource` (absolute ``landing_uri``).
        subscription: the name of one of its subscriptions.
        password: the broker password read on the driver.
        until_rows: stop once the subscription's landing folder holds this many
            rows (a bounded run); None runs until :meth:`stop`.
    """

    def __init__(self, pipeline: str, source: Any, subscription: str, password: Secret | None = None, until_rows: int | None = None):
        self.pipeline = pipeline
        self.source = source
        self.sub = next(s for s in source.subscriptions if s.key == subscription)
        self.password = password
        self.until_rows = until_rows
        self.state = "starting"
        self.error: str | None = None
        self.counts = {"received": 0, "landed": 0, "duplicates": 0, "acked": 0, "ack_failures": 0, "files": 0}
        self.files: deque[dict[str, Any]] = deque(maxlen=1000)
        self.fault: str | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the loop to land and acknowledge what it holds, then end."""
        self._stop.set()

    def status(self, since_seq: int = -1) -> dict[str, Any]:
        """Counters since this process started, state, last error, and files landed after ``since_seq``."""
        return {
            "subscription": self.sub.key,
            "type": self.sub.type,
            "state": self.state,
            "error": self.error,
            "pid": os.getpid(),
            **self.counts,
            "new_files": [f for f in list(self.files) if f["seq"] > since_seq],  # list(): one atomic copy
        }

    def run(self) -> None:
        """The loop; returns after :meth:`stop`, at the bound, or on an error it cannot retry."""
        try:
            self._run()
        except Exception as exc:  # reported through status(); the actor stays up for inspection
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("stream %s failed", self.sub.key)

    # ------------------------------------------------------------------ the loop

    def _connect(self, client: Any) -> bool:
        delay = 0.5
        while not self._stop.is_set():
            try:
                client.connect()
            except Exception as exc:
                self.state, self.error = "connecting", f"{type(exc).__name__}: {exc}"
                log.warning("stream %s: %s (retrying in %.1f s)", self.sub.key, self.error, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.state, self.error = "running", None
            return True
        return False

    def _run(self) -> None:
        src = self.source
        zone = LandingZone(src.landing_uri, self.sub.key, src.dedup_files).open()
        remaining = None if self.until_rows is None else self.until_rows - zone.count_rows()
        client = make_client(self.pipeline, self.sub, self.password, zone.state)
        if not self._connect(client):
            return
        batch: list[Message] = []
        ids: set[str] = set()
        fetched: list[Message] = []  # batch + duplicates: all acknowledged after landing
        first_at: float | None = None
        while not self._stop.is_set():
            room = src.batch_max_messages - len(batch)
            if remaining is not None:
                room = min(room, remaining - len(batch))
                if room <= 0 and not fetched:
                    self.state = "finished"
                    break
            wait = src.batch_max_seconds if first_at is None else first_at + src.batch_max_seconds - time.monotonic()
            try:
                msgs = client.fetch(room, min(max(wait, 0.01), 0.5)) if room > 0 else []
            except Exception as exc:
                self.state, self.error = "reconnecting", f"{type(exc).__name__}: {exc}"
                log.warning("stream %s: %s", self.sub.key, self.error)
                try:
                    client.close()
                except Exception:
                    pass
                if not self._connect(client):
                    break
                continue
            for m in msgs:
                if zone.is_landed(m.id) or m.id in ids:
                    self.counts["duplicates"] += 1
                else:
                    batch.append(m)
                    ids.add(m.id)
                fetched.append(m)
            self.counts["received"] += len(msgs)
            if fetched and first_at is None:
                first_at = time.monotonic()
            due = first_at is not None and time.monotonic() - first_at >= src.batch_max_seconds
            if fetched and (due or room <= len(msgs)):
                if not self._flush(client, zone, batch, fetched):
                    fetched = []  # stopped before it landed: nothing acknowledged, the broker keeps it
                    break
                if remaining is not None:
                    remaining -= len(batch)
                batch, ids, fetched, first_at = [], set(), [], None
        if fetched:
            self._flush(client, zone, batch, fetched)
        if self.state not in ("finished", "failed"):
            self.state = "stopped"
        client.close()

    def _flush(self, client: Any, zone: LandingZone, batch: list[Message], fetched: list[Message]) -> bool:
        """Land the batch, then acknowledge everything fetched. False when stopped before it landed."""
        if batch:
            delay = 0.5
            while True:
                try:
                    landed = zone.land(batch, self.source.format, client.resume_state(fetched))
                    break
                except Exception as exc:  # a full disk, a store that is down: keep the batch, retry
                    self.state, self.error = "landing_failed", f"{type(exc).__name__}: {exc}"
                    log.warning("stream %s: landing failed: %s (retrying in %.1f s)", self.sub.key, exc, delay)
                    if self._stop.wait(delay):
                        return False  # not landed, not acknowledged: the broker keeps the messages
                    delay = min(delay * 2, 30.0)
            self.state, self.error = "running", None
            self.counts["landed"] += landed.rows
            self.counts["files"] += 1
            self.files.append({"seq": landed.seq, "path": landed.path, "rows": landed.rows, "duplicates": len(fetched) - len(batch)})
        if self.fault == "exit_before_ack" and batch:
            os._exit(1)  # the process dies between landing and acknowledging
        try:
            client.ack(fetched)
            self.counts["acked"] += len(fetched)
        except Exception as exc:  # the broker redelivers; the ids are dropped then
            self.counts["ack_failures"] += 1
            self.error = f"acknowledge failed: {type(exc).__name__}: {exc}"
            log.warning("stream %s: %s", self.sub.key, self.error)
        return True


@ray.remote
class StreamConsumer:
    """A Ray actor consuming one subscription into the landing zone (see :class:`ConsumerLoop`).

    Create it through :func:`start_consumers`, which names it and sets
    ``max_restarts``; a restarted actor resumes on its own.
    """

    def __init__(self, pipeline: str, source: Any, subscription: str, password: Secret | None = None, until_rows: int | None = None):
        self._loop = ConsumerLoop(pipeline, source, subscription, password, until_rows)
        self._thread = threading.Thread(target=self._loop.run, name=f"raypipe-stream-{subscription}", daemon=True)
        self._thread.start()

    def status(self, since_seq: int = -1) -> dict[str, Any]:
        """State and counters of this incarnation, and the files landed after ``since_seq``."""
        return self._loop.status(since_seq)

    def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Land and acknowledge what is held, disconnect, and return the final status."""
        self._loop.stop()
        self._thread.join(timeout_s)
        return self._loop.status()

    def inject_fault(self, fault: str) -> None:
        """Arm a fault for tests and failure drills: ``exit_before_ack`` kills the process
        right after the next batch lands, before it is acknowledged (Ray then restarts it)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        self._loop.fault = fault


@dataclass
class ConsumerHandle:
    """A started consumer: its actor, names and the rows its folder held at start."""

    actor: Any
    name: str
    subscription: str
    source: Any
    rows_at_start: int


def _password(sub: Any) -> Secret:
    env = getattr(sub, "password_env", None)
    if env is None:
        return Secret(None)
    if env not in os.environ:
        raise ConfigError(
            f"data.source.subscriptions: {sub.key}: password_env names {env}, which is not set. "
            f"Hint: export {env}=... before starting raypipe."
        )
    return Secret(os.environ[env])


def plan_subscriptions(cfg: Any, only: list[str] | None = None) -> list[tuple[Any, Any]]:
    """The (stream source, subscription) pairs to run, checked without Ray.

    Raises:
        ConfigError: no stream source, a subscription name used twice, an unknown
            name in ``only``, a ``password_env`` that is not set.
    """
    sources = [_absolute(s) for s in stream_sources(cfg.data.source)]
    if not sources:
        raise ConfigError(
            f"data.source.type: ingest-stream needs a 'stream' source, got '{cfg.data.source.type}'. "
            "Hint: see the Streams section of the README."
        )
    subs = [(src, sub) for src in sources for sub in src.subscriptions]
    keys = [sub.key for _, sub in subs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"data.source: subscription names must be unique across stream sources (repeated: {', '.join(twice)}).")
    if only:
        unknown = [n for n in only if n not in keys]
        if unknown:
            raise ConfigError(f"--subscription {unknown[0]}: no such subscription.{did_you_mean(unknown[0], keys)} Expected one of: {', '.join(keys)}.")
        subs = [(src, sub) for src, sub in subs if sub.key in only]
    for _, sub in subs:
        _password(sub)
    return subs


def start_consumers(
    cfg: Any, max_messages: int | None = None, only: list[str] | None = None, restart_existing: bool = False
) -> list[ConsumerHandle]:
    """Start one named consumer actor per subscription of the config's stream sources.

    Args:
        cfg: a :class:`~raypipe.config.PipelineConfig` whose ``data.source`` is, or
            holds, ``type: stream`` sources. Ray must be initialized.
        max_messages: land at most this many new messages per subscription, then stop.
        only: subscription names to start (default: all).
        restart_existing: kill consumers of the same names left running (otherwise
            an error: two writers must never share a landing folder).

    Raises:
        ConfigError: no stream source, an unknown name in ``only``, a missing password.
        StageError: a consumer of the same name is already running.
    """
    handles = []
    for src, sub in plan_subscriptions(cfg, only):
        name = actor_name(cfg.name, sub.key)
        try:
            existing = ray.get_actor(name, namespace=ACTOR_NAMESPACE)
        except ValueError:
            existing = None
        if existing is not None:
            if not restart_existing:
                raise StageError(f"{name} is already running (another `raypipe ingest-stream`?). Stop it first.")
            ray.kill(existing, no_restart=True)
        rows = LandingZone(src.landing_uri, sub.key).count_rows()
        actor = StreamConsumer.options(
            name=name,
            namespace=ACTOR_NAMESPACE,
            max_restarts=src.max_restarts,
            num_cpus=src.num_cpus,
        ).remote(cfg.name, src, sub.key, _password(sub), None if max_messages is None else rows + max_messages)
        handles.append(ConsumerHandle(actor, name, sub.key, src, rows))
    return handles


def stop_consumers(handles: list[ConsumerHandle], timeout_s: float = 60.0) -> dict[str, dict[str, Any]]:
    """Stop consumers cleanly (land, acknowledge, disconnect), then end their actors.

    Returns each subscription's final status (``{"state": "lost", ...}`` for an
    actor that could not be reached).
    """
    refs = {h.subscription: h.actor.stop.remote(timeout_s) for h in handles}
    out: dict[str, dict[str, Any]] = {}
    for h in handles:
        try:
            out[h.subscription] = ray.get(refs[h.subscription], timeout=timeout_s + 10)
        except Exception as exc:
            out[h.subscription] = {"subscription": h.subscription, "state": "lost", "error": f"{type(exc).__name__}: {exc}"}
        ray.kill(h.actor, no_restart=True)
    return out


def ingest_stream(
    cfg: Any,
    address: str | None = None,
    max_messages: int | None = None,
    duration_s: float | None = None,
    only: list[str] | None = None,
    on_event: Callable[[str, str, dict[str, Any]], None] | None = None,
    poll_s: float = 1.0,
) -> dict[str, Any]:
    """Run the consumers of ``cfg`` until SIGINT/SIGTERM, ``duration_s``, or every one reached ``max_messages``.

    On SIGINT or SIGTERM each consumer stops fetching, lands and acknowledges the batch it
    holds, and disconnects; a second signal during that flush is ignored.

    Args:
        cfg: the pipeline config (with a ``type: stream`` source).
        address: Ray address (else ``cluster.address``, ``RAY_ADDRESS``, or a local Ray).
        max_messages: per subscription, land at most this many new messages, then stop.
        duration_s: stop after this many seconds.
        only: subscription names to run (default: all).
        on_event: called as ``on_event(kind, subscription, detail)`` with kind
            ``"landed"`` (detail: ``path``, ``rows``, ``duplicates``) or ``"state"``
            (detail: the status, when its state or error changes).

    Returns:
        ``{"status", "stopped_by", "seconds", "landed", "subscriptions": {name: {"landed", "files",
        "duplicates", "state", "error", "actor"}}}``; ``landed`` counts rows added to
        the landing zone by this run (restarts included); ``stopped_by`` names the signal
        that stopped it (None when it ended by itself).
    """
    plan_subscriptions(cfg, only)  # config mistakes before Ray starts
    connect(address, **cfg.cluster.connect_options(service=True))
    started = time.monotonic()
    handles = start_consumers(cfg, max_messages, only)
    stopped_by: str | None = None
    since = {h.subscription: -1 for h in handles}
    seen: dict[str, tuple[Any, Any]] = {}
    totals = {h.subscription: {"files": 0, "duplicates": 0} for h in handles}
    finals: dict[str, dict[str, Any]] = {}
    try:
        with stop_on_signals():  # after ray.init: SIGTERM too (Ray's handler would sys.exit)
            _poll(handles, since, seen, totals, on_event, duration_s, started, poll_s)
    except KeyboardInterrupt:
        stopped_by = stop_signal() or "SIGINT"
        log.info("%s: stopping the consumers (they land and acknowledge what they hold)", stopped_by)
    finally:
        # A second signal while the consumers flush would cut the flush short.
        with ignore_stop_signals():
            finals = stop_consumers(handles)
    subs: dict[str, dict[str, Any]] = {}
    for h in handles:
        final = finals.get(h.subscription, {})
        for f in final.get("new_files", []):
            if f["seq"] > since[h.subscription]:
                totals[h.subscription]["files"] += 1
                totals[h.subscription]["duplicates"] += f["duplicates"]
                if on_event:
                    on_event("landed", h.subscription, f)
        subs[h.subscription] = {
            "landed": LandingZone(h.source.landing_uri, h.subscription).count_rows() - h.rows_at_start,
            "files": totals[h.subscription]["files"],
            "duplicates": totals[h.subscription]["duplicates"],
            "state": final.get("state"),
            "error": final.get("error"),
            "actor": h.name,
        }
    failed = any(s["state"] in ("failed", "lost") for s in subs.values())
    return {
        "status": "failed" if failed else "ok",
        "stopped_by": stopped_by,
        "seconds": round(time.monotonic() - started, 3),
        "landed": sum(s["landed"] for s in subs.values()),
        "subscriptions": subs,
    }


def _poll(handles: list[ConsumerHandle], since: dict[str, int], seen: dict[str, tuple[Any, Any]],
          totals: dict[str, dict[str, int]], on_event: Callable[[str, str, dict[str, Any]], None] | None,
          duration_s: float | None, started: float, poll_s: float) -> None:
    """Report the consumers' landed files and state changes until all are done or time is up."""
    while True:
        done = 0
        for h in handles:
            try:
                status = ray.get(h.actor.status.remote(since[h.subscription]), timeout=30)
            except ray.exceptions.ActorDiedError as exc:  # out of restarts, or its constructor failed
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                status = {"subscription": h.subscription, "state": "failed", "error": f"ActorDiedError: {first}", "new_files": []}
            except Exception as exc:  # restarting
                status = {"subscription": h.subscription, "state": "restarting", "error": type(exc).__name__, "new_files": []}
            for f in status.pop("new_files", []):
                since[h.subscription] = max(since[h.subscription], f["seq"])
                totals[h.subscription]["files"] += 1
                totals[h.subscription]["duplicates"] += f["duplicates"]
                if on_event:
                    on_event("landed", h.subscription, f)
            key = (status.get("state"), status.get("error"))
            if seen.get(h.subscription) != key:
                seen[h.subscription] = key
                if on_event:
                    on_event("state", h.subscription, status)
            done += status.get("state") in ("finished", "failed")
        if done == len(handles) or (duration_s is not None and time.monotonic() - started >= duration_s):
            return
        time.sleep(poll_s)
