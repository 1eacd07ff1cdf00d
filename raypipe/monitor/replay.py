"""Replay a labeled file as live traffic through a served endpoint: the closed loop, end to end.

``raypipe replay CONFIG --input FILE`` reads the rows of FILE in time order (the config's
``data.split.time_column``; file order where there is none), sends each row (or each group
of ``batch_hours`` rows) to ``POST /predict`` with the model's input columns only (the label
and the columns the schema does not declare, such as label leaks, are left out), then sends
the row's true label to ``POST /feedback`` for the prediction ids it got back. Every
prediction is recorded with its month, label and the model version that answered, and the
replay ends with the RMSE of the served predictions per calendar month.

Why ``wait_for_retrain``: the replay compresses months of traffic into minutes, so without
it the endpoint would serve thousands of simulated hours with a stale model while one
retraining run takes a few real seconds, and the measured error would mostly reflect how
fast this machine trains, not the retraining policy. After each feedback call the replay
reads ``GET /monitor`` and, while it says ``retrain.running``, sends nothing (polling every
``poll_s``): simulated time stops while the model retrains, as if training took no time
compared with an hour of traffic. When the monitor reports the run finished with a promoted
version (the newest of ``retrain.last`` / ``retrain.history``: ``promoted`` or ``outcome:
promoted``, and its ``version`` or ``model.version``), the replay also waits, up to
``swap_timeout_s``, for ``GET /model`` to report that version, so the next rows are answered
by the new champion.

The monitor reads the prediction log a few seconds behind the traffic (the replicas flush
it every ``monitor.flush_s``, the monitor polls every ``monitor.poll_s``), so a replay at full
speed would run a window or more ahead of the drift checks and the retraining data.
``max_lag_rows`` bounds that: when ``GET /monitor`` reports ``logged_rows``, the replay
also waits while more than ``max_lag_rows`` of the rows it sent (times
``monitor.sample_rate``) are not logged yet. When ``logged_rows`` stops moving for
``stall_s`` the bound is dropped with a warning rather than hanging.

Pure Python (``requests`` and numpy); no Ray. Errors raise :class:`ReplayError` with the
server's answer; the CLI prints it and exits 1.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from raypipe.errors import ConfigError, RaypipeError
from raypipe.runtime.signals import StopRequest, stop_requested

__all__ = ["ReplayError", "ReplayResult", "MonthStats", "read_rows", "replay", "default_url", "api_key_from_env", "render"]

_BODY_CHARS = 2000


class ReplayError(RaypipeError):
    """The endpoint refused a call, answered something unexpected or could not be reached."""


@dataclass
class MonthStats:
    """The served predictions of one calendar month."""

    month: str
    rows: int
    rmse: float
    versions: list[Any]

    def to_dict(self) -> dict[str, Any]:
        return {"month": self.month, "rows": self.rows, "rmse": self.rmse, "versions": self.versions}


@dataclass
class ReplayResult:
    """What a replay sent and how well the served predictions did."""

    input: str
    url: str
    rows: int
    requests: int
    months: list[MonthStats]
    mean_monthly_rmse: float | None
    rmse: float | None
    versions: dict[str, int]
    model: dict[str, Any] | None
    retrains: list[dict[str, Any]] = field(default_factory=list)
    waited_s: float = 0.0
    duration_s: float = 0.0
    predictions: list[float] = field(default_factory=list, repr=False)
    labels: list[float] = field(default_factory=list, repr=False)
    stopped_by: str | None = None   # the signal that stopped the replay early (None: every row was sent)
    rows_total: int | None = None   # rows the input held (``rows`` were sent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "stopped" if self.stopped_by else "ok",
            "stopped_by": self.stopped_by,
            "rows_total": self.rows_total,
            "input": self.input,
            "url": self.url,
            "rows": self.rows,
            "requests": self.requests,
            "months": [m.to_dict() for m in self.months],
            "mean_monthly_rmse": self.mean_monthly_rmse,
            "rmse": self.rmse,
            "versions": self.versions,
            "model": self.model,
            "retrains": self.retrains,
            "waited_for_retrain_s": round(self.waited_s, 3),
            "duration_s": round(self.duration_s, 3),
        }


# --------------------------------------------------------------------------- input


def _convert(value: str, kind: str | None) -> Any:
    """A CSV cell as the JSON value the endpoint expects: numbers for numeric columns.

    A cell that does not convert is sent as its text, for the endpoint to judge (422).
    """
    text = value.strip()
    if text == "":
        return None
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            number = float(text)
            return number if math.isfinite(number) else None
        if kind == "bool":
            low = text.lower()
            if low in ("true", "1", "yes", "t", "y"):
                return True
            if low in ("false", "0", "no", "f", "n"):
                return False
            return text
    except ValueError:
        return text
    return text


def _parse_time(value: str, fmt: str | None, where: str) -> datetime:
    try:
        when = datetime.strptime(value, fmt) if fmt else datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{where}: cannot read the time value {value!r} (format {fmt or 'ISO 8601'}).") from None
    return when.replace(tzinfo=None) if when.tzinfo is None else when


def read_rows(cfg: Any, path: str, limit: int | None = None) -> tuple[list[dict[str, Any]], list[float], list[str], list[str]]:
    """The rows of ``path`` in time order: (instances, labels, months, input column names).

    Instances hold the schema's columns other than the label (the id included; columns
    the schema does not declare, such as ``casual``/``registered`` in bike sharing, are
    left out). Without declared columns every column but the label is sent.

    Raises:
        ConfigError: the file is missing or lacks the label or time column.
    """
    schema = cfg.data.schema_
    label = schema.label
    if not label:
        raise ConfigError("replay needs data.schema.label: the true values are sent as feedback.")
    time_col = getattr(cfg.data.split, "time_column", None)
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--input: cannot read {path} ({exc.strerror}).") from None
    with f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ConfigError(f"--input: {path} is empty.") from None
        declared = schema.columns
        if label not in header:
            raise ConfigError(f"--input: {path} has no label column {label!r} (columns: {', '.join(header)}).")
        if time_col and time_col not in header:
            raise ConfigError(f"--input: {path} has no time column {time_col!r} (data.split.time_column).")
        weight = getattr(schema, "weight", None)
        inputs = [h for h in header if h not in (label, weight) and (not declared or h in declared)]
        missing = [c for c in declared if c not in header and c not in (label, weight) and not declared[c].nullable and c != schema.id]
        if missing:
            raise ConfigError(f"--input: {path} lacks the input column(s) {', '.join(missing)} of the config's schema.")
        kinds = {c: (declared[c].type if c in declared else None) for c in inputs}
        index = {h: i for i, h in enumerate(header)}
        fmt = declared[time_col].format if time_col and time_col in declared else None
        rows: list[tuple[str, int, dict[str, Any], float]] = []
        parsed: dict[str, datetime] = {}
        for line, cells in enumerate(reader, start=2):
            if not cells or all(not c.strip() for c in cells):
                continue                                   # an empty line holds no row
            if len(cells) != len(header):
                raise ConfigError(f"--input: {path} line {line} has {len(cells)} fields, the header {len(header)}.")
            raw_label = cells[index[label]].strip()
            try:
                y = float(raw_label)
            except ValueError:
                raise ConfigError(f"--input: {path} line {line}: label {label}={raw_label!r} is not a number.") from None
            key = cells[index[time_col]].strip() if time_col else ""
            if time_col and key not in parsed:
                parsed[key] = _parse_time(key, fmt, f"--input: {path} line {line}")
            rows.append((key, len(rows), {c: _convert(cells[index[c]], kinds[c]) for c in inputs}, y))
    if time_col:
        rows.sort(key=lambda r: (parsed[r[0]], r[1]))       # stable: file order within one time value
        months = [f"{parsed[r[0]].year:04d}-{parsed[r[0]].month:02d}" for r in rows]
    else:
        months = ["all"] * len(rows)
    if limit is not None:
        rows, months = rows[:limit], months[:limit]
    return [r[2] for r in rows], [r[3] for r in rows], months, inputs


# --------------------------------------------------------------------------- HTTP


def default_url(cfg: Any) -> str:
    """``http://host:port`` of the config's ``serve.http`` (a wildcard host becomes 127.0.0.1)."""
    host = cfg.serve.http.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.serve.http.port}"


def api_key_from_env(var: str | None, cfg: Any = None) -> str | None:
    """The API key to send: the first of the comma-separated keys in ``var``.

    Without ``var``, the config's ``serve.auth.api_keys_env`` is used when it is set in
    the environment (the endpoint and the replay then share the key); else no key.

    Raises:
        ConfigError: ``var`` was named but is unset or empty.
    """
    if var:
        value = os.environ.get(var, "")
        keys = [k.strip() for k in value.split(",") if k.strip()]
        if not keys:
            raise ConfigError(f"--api-key-env: the environment variable {var} is unset or empty.")
        return keys[0]
    env = getattr(getattr(getattr(cfg, "serve", None), "auth", None), "api_keys_env", None) if cfg is not None else None
    if env:
        keys = [k.strip() for k in os.environ.get(env, "").split(",") if k.strip()]
        return keys[0] if keys else None
    return None


class _Client:
    def __init__(self, url: str, api_key: str | None, timeout_s: float, session: Any = None):
        import requests

        self.requests = requests
        self.url = url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers.update({"Accept": "application/json"})
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s
        self.calls = 0

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        self.calls += 1
        try:
            resp = self.session.request(method, self.url + path, json=body, timeout=self.timeout_s)
        except self.requests.RequestException as exc:
            raise ReplayError(f"{method} {self.url}{path}: cannot reach the endpoint ({type(exc).__name__}: {exc}). "
                              "Hint: is `raypipe serve CONFIG` running, and is --url right?") from None
        if resp.status_code != 200:
            text = resp.text
            if len(text) > _BODY_CHARS:
                text = text[:_BODY_CHARS] + f"... ({len(resp.text)} characters)"
            raise ReplayError(f"{method} {path} answered {resp.status_code}: {text}")
        try:
            out = resp.json()
        except ValueError:
            raise ReplayError(f"{method} {path} answered 200 with a body that is not JSON: {resp.text[:_BODY_CHARS]}") from None
        if not isinstance(out, dict):
            raise ReplayError(f"{method} {path} answered 200 with {type(out).__name__} JSON, expected an object.")
        return out

    def close(self) -> None:
        self.session.close()


def _retrain_state(report: dict[str, Any]) -> dict[str, Any]:
    state = report.get("retrain")
    return state if isinstance(state, dict) else {}


# --------------------------------------------------------------------------- replay


def _groups(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _rmse(pred: np.ndarray, label: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - label) ** 2)))


def replay(
    cfg: Any,
    input_path: str,
    url: str | None = None,
    *,
    api_key: str | None = None,
    batch_hours: int = 1,
    wait_for_retrain: bool = True,
    limit: int | None = None,
    poll_s: float = 0.5,
    retrain_timeout_s: float = 1800.0,
    max_lag_rows: int | None = None,
    stall_s: float = 30.0,
    swap_timeout_s: float = 10.0,
    timeout_s: float = 60.0,
    session: Any = None,
    progress: Callable[[str], None] | None = None,
) -> ReplayResult:
    """Send ``input_path`` through the endpoint at ``url`` as predictions plus feedback.

    Args:
        cfg: the pipeline config (schema, label, time column, default URL).
        input_path: a local CSV file with the label column.
        url: the endpoint (default: ``serve.http`` of ``cfg``).
        api_key: sent as ``Authorization: Bearer <key>``.
        batch_hours: rows per ``/predict`` call (one row is one hour in bike sharing).
        wait_for_retrain: pause while ``GET /monitor`` says ``retrain.running`` (see the
            module docstring for why).
        limit: send only the first ``limit`` rows (in time order).
        poll_s: seconds between two ``/monitor`` polls while a retrain runs.
        retrain_timeout_s: give up (ReplayError) when one retrain runs longer than this.
        max_lag_rows: with ``wait_for_retrain``, also wait while more than this many sent
            rows are not yet in the monitor's ``logged_rows`` (None: no bound).
        stall_s: drop the lag bound when ``logged_rows`` does not move for this long.
        swap_timeout_s: how long to wait for ``GET /model`` to report a promoted version.
        timeout_s: per HTTP call.
        session: a ``requests.Session``-like object (tests); default a new keep-alive session.
        progress: called with one line per finished month and per retrain.

    SIGINT or SIGTERM stops the replay after the group in flight (its ``/feedback`` is sent);
    the result covers the rows sent and ``stopped_by`` names the signal.

    Raises:
        ConfigError: unreadable input, missing label/time column, bad arguments.
        ReplayError: a call failed; the message names the call, the status and the body,
            and how many rows had been sent.
    """
    if batch_hours < 1:
        raise ConfigError(f"--batch-hours must be at least 1, got {batch_hours}.")
    say = progress or (lambda _line: None)
    started = time.perf_counter()
    instances, labels, months, _inputs = read_rows(cfg, input_path, limit)
    client = _Client(url or default_url(cfg), api_key, timeout_s, session)
    preds = np.empty(len(instances), dtype=np.float64)
    versions: list[Any] = [None] * len(instances)
    model: dict[str, Any] | None = None
    retrains: list[dict[str, Any]] = []
    waited = 0.0
    sync = _MonitorSync(client, poll_s, retrain_timeout_s, swap_timeout_s, max_lag_rows,
                        float(getattr(cfg.monitor, "sample_rate", 1.0)), stall_s, say)
    sent = 0
    try:
        if wait_for_retrain:
            try:
                wait_for_retrain = sync.start()
            except ReplayError as exc:
                raise ReplayError(f"{exc} (nothing sent; --no-wait-for-retrain replays without GET /monitor)") from None
        # A stop signal ends the replay between two groups: the group in flight gets its
        # /feedback, so every answered prediction is labeled; the summary covers the rows sent.
        with stop_requested() as stop:
            sync.stop = stop
            for start, end in _groups(len(instances), batch_hours):
                if stop:
                    break
                try:
                    model = _one_group(client, instances, labels, preds, versions, start, end)
                    sent = end
                    if wait_for_retrain:
                        waited += sync.after(end, months[end - 1], retrains)
                except ReplayError as exc:
                    raise ReplayError(f"{exc} (replay stopped after {sent:,} of {len(instances):,} rows)") from None
                if end == len(instances) or months[end] != months[end - 1] or stop:
                    m = months[end - 1]
                    idx = [i for i in range(end) if months[i] == m]
                    say(f"{m}: {len(idx):,} rows, RMSE {_rmse(preds[idx], np.asarray(labels, np.float64)[idx]):.1f}, "
                        f"versions {', '.join(str(v) for v in _distinct(versions[i] for i in idx))}")
    finally:
        client.close()
    result = _summarize(input_path, client.url, preds[:sent], labels[:sent], months[:sent], versions[:sent], model, retrains)
    result.stopped_by, result.rows_total = stop.signal, len(instances)
    result.requests = client.calls
    result.waited_s = waited
    result.duration_s = time.perf_counter() - started
    return result


def _one_group(client: _Client, instances, labels, preds, versions, start: int, end: int) -> dict[str, Any]:
    n = end - start
    out = client.call("POST", "/predict", {"instances": instances[start:end]})
    predictions, ids, model = out.get("predictions"), out.get("prediction_ids"), out.get("model")
    if not isinstance(predictions, list) or len(predictions) != n:
        raise ReplayError(f"POST /predict answered {_count(predictions)} prediction(s) for {n} instance(s): {_short(out)}")
    if not isinstance(ids, list) or len(ids) != n:
        raise ReplayError(f"POST /predict answered {_count(ids)} prediction id(s) for {n} instance(s): {_short(out)}")
    try:
        preds[start:end] = np.asarray(predictions, dtype=np.float64)
    except (TypeError, ValueError):
        raise ReplayError(f"POST /predict answered predictions that are not numbers: {_short(out)}") from None
    version = model.get("version") if isinstance(model, dict) else None
    versions[start:end] = [version] * n
    items = [{"prediction_id": pid, "label": _label_value(labels[start + j])} for j, pid in enumerate(ids)]
    fb = client.call("POST", "/feedback", {"items": items})
    if fb.get("accepted") != n:
        raise ReplayError(f"POST /feedback accepted {fb.get('accepted')!r} of {n} label(s): {_short(fb)}")
    return model if isinstance(model, dict) else {}


def _last_retrain(state: dict[str, Any]) -> dict[str, Any]:
    """The newest finished retrain: ``retrain.last``, else the end of ``retrain.history``."""
    last = state.get("last")
    if isinstance(last, dict):
        return last
    history = state.get("history")
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        return history[-1]
    return {}


def _promoted_version(last: dict[str, Any]) -> Any:
    """The version a finished retrain promoted, or None."""
    if not (last.get("promoted") is True or last.get("outcome") == "promoted"):
        return None
    version = last.get("version")
    if version is None and isinstance(last.get("model"), dict):
        version = last["model"].get("version")
    return version


class _MonitorSync:
    """Keeps the replay in step with the endpoint's monitor (see the module docstring)."""

    def __init__(self, client: _Client, poll_s: float, retrain_timeout_s: float, swap_timeout_s: float,
                 max_lag_rows: int | None, sample_rate: float, stall_s: float, say: Callable[[str], None]):
        self.client = client
        self.poll_s = poll_s
        self.retrain_timeout_s = retrain_timeout_s
        self.swap_timeout_s = swap_timeout_s
        self.max_lag_rows = max_lag_rows
        self.sample_rate = sample_rate
        self.stall_s = stall_s
        self.say = say
        self.seen_count: int | None = None
        self.stop: StopRequest = StopRequest()   # a stop signal ends a wait at its next poll
        self.logged_base: int | None = None     # logged_rows that were there before the replay

    def start(self) -> bool:
        """Read the monitor once before any traffic: retrains and logged rows that were already there.

        Returns False (nothing to wait for) when the endpoint says it has no monitor.
        """
        report = self.client.call("GET", "/monitor")
        if report.get("monitoring") is False:
            self.say("warning: GET /monitor says the endpoint has no monitor: no retraining to wait for")
            return False
        count = _retrain_state(report).get("count")
        self.seen_count = count if isinstance(count, int) and not isinstance(count, bool) else None
        logged = report.get("logged_rows")
        self.logged_base = logged if isinstance(logged, int) and not isinstance(logged, bool) else None
        return True

    def _lag(self, report: dict[str, Any], sent: int) -> int:
        logged = report.get("logged_rows")
        if self.max_lag_rows is None or not isinstance(logged, int) or isinstance(logged, bool):
            return 0
        if self.logged_base is None:
            self.logged_base = 0
        return int(sent * self.sample_rate) - (logged - self.logged_base)

    def after(self, sent: int, month: str, retrains: list[dict[str, Any]]) -> float:
        """Poll ``/monitor`` after ``sent`` rows; wait while a retrain runs or the log lags. Seconds waited."""
        t0 = time.perf_counter()
        report = self.client.call("GET", "/monitor")
        state = _retrain_state(report)
        was_running = False
        run_started = None
        last_logged, moved_at = report.get("logged_rows"), time.perf_counter()
        while True:
            running = bool(state.get("running"))
            lag = self._lag(report, sent)
            if (not running and lag <= (self.max_lag_rows or 0)) or self.stop:
                break
            now = time.perf_counter()
            if running:
                was_running = True
                run_started = run_started or now
                if now - run_started > self.retrain_timeout_s:
                    raise ReplayError(f"a retrain has been running for more than {self.retrain_timeout_s:.0f} s "
                                      f"(GET /monitor: retrain {state}).")
            elif report.get("logged_rows") != last_logged:
                last_logged, moved_at = report.get("logged_rows"), now
            elif now - moved_at > self.stall_s:
                self.say(f"warning: the monitor's logged_rows stayed at {last_logged} for {self.stall_s:.0f} s "
                         f"({lag} sent rows not logged); no longer waiting for the prediction log")
                self.max_lag_rows = None
                break
            if running:
                last_logged, moved_at = report.get("logged_rows"), now
            time.sleep(self.poll_s)
            report = self.client.call("GET", "/monitor")
            state = _retrain_state(report)
        count = state.get("count")
        count = count if isinstance(count, int) and not isinstance(count, bool) else None
        if was_running or (count is not None and self.seen_count is not None and count > self.seen_count):
            last = _last_retrain(state)
            version = _promoted_version(last)
            retrains.append({"month": month, "after_rows": sent, "count": count,
                             "waited_s": round(time.perf_counter() - t0, 3), "last": last})
            outcome = f"promoted version {version}" if version is not None else str(last.get("outcome") or last.get("status") or "finished")
            self.say(f"retrain {count if count is not None else len(retrains)} during {month} (after {sent:,} rows): {outcome}")
            if version is not None:
                _wait_swap(self.client, version, self.poll_s, self.swap_timeout_s)
        if count is not None:
            self.seen_count = count
        return time.perf_counter() - t0


def _wait_swap(client: _Client, version: Any, poll_s: float, timeout_s: float) -> None:
    """Wait until GET /model reports ``version`` (the endpoint follows the moved alias)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        info = client.call("GET", "/model")
        if str(info.get("version")) == str(version) or time.perf_counter() > deadline:
            return
        time.sleep(poll_s)


def _label_value(y: float) -> Any:
    return int(y) if float(y).is_integer() else y


def _count(value: Any) -> str:
    return str(len(value)) if isinstance(value, list) else "no"


def _short(body: Any) -> str:
    import json

    text = json.dumps(body)
    return text if len(text) <= _BODY_CHARS else text[:_BODY_CHARS] + "..."


def _distinct(values) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _summarize(input_path: str, url: str, preds: np.ndarray, labels: list[float], months: list[str],
               versions: list[Any], model: dict[str, Any] | None, retrains: list[dict[str, Any]]) -> ReplayResult:
    y = np.asarray(labels, dtype=np.float64)
    month_arr = np.asarray(months, dtype=object)
    stats = []
    for m in _distinct(months):
        mask = month_arr == m
        stats.append(MonthStats(m, int(mask.sum()), _rmse(preds[mask], y[mask]),
                                _distinct(v for v, keep in zip(versions, mask) if keep)))
    per_version: dict[str, int] = {}
    for v in versions:
        per_version[str(v)] = per_version.get(str(v), 0) + 1
    return ReplayResult(
        input=input_path,
        url=url,
        rows=len(labels),
        requests=0,
        months=stats,
        mean_monthly_rmse=float(np.mean([s.rmse for s in stats])) if stats else None,
        rmse=_rmse(preds, y) if len(y) else None,
        versions=per_version,
        model=model,
        retrains=retrains,
        predictions=preds.tolist(),
        labels=list(labels),
    )


def render(result: ReplayResult) -> str:
    """The per-month table and the totals, for people."""
    lines = [f"replayed {result.rows:,} rows of {result.input} through {result.url} "
             f"({result.requests:,} HTTP calls, {result.duration_s:.1f} s, {result.waited_s:.1f} s waiting for retraining)",
             "", "| month | rows | RMSE | model versions |", "|---|---:|---:|---|"]
    for m in result.months:
        lines.append(f"| {m.month} | {m.rows:,} | {m.rmse:.1f} | {', '.join(str(v) for v in m.versions)} |")
    if result.mean_monthly_rmse is not None:
        lines.append(f"| **mean of {len(result.months)} months** | {result.rows:,} | **{result.mean_monthly_rmse:.1f}** | |")
    lines.append("")
    lines.append(f"overall RMSE {result.rmse:.1f}; retrains seen: {len(result.retrains)}; "
                 f"rows per version: {', '.join(f'v{k}: {v:,}' for k, v in result.versions.items())}"
                 if result.rmse is not None else "no rows")
    return "\n".join(lines)
