"""The monitor actor: windows of the prediction log, drift/quality/performance checks,
alerts, metrics and the retraining policy, for one served model.

A named, detached Ray actor (``raypipe:monitor:<model>`` in namespace ``raypipe``,
``max_restarts=-1``), visible in the Ray dashboard. It keeps no state that the log
does not hold: a restarted actor re-reads the log files (predictions and feedback),
so nothing logged is lost. Every ``monitor.poll_s`` it reads new log files, closes
windows (``monitor.window_rows`` / ``window_s``), checks each against the champion's
reference profile (:func:`raypipe.monitor.drift.check_window`), emits metrics,
records alerts in the registry's event log (and POSTs them to a webhook), and applies
the ``retrain`` policy: after ``drift.consecutive_windows`` drifting windows, when a
live metric crosses its bound, or on a schedule; never two at once, not within the
cooldown. The retraining runs as a Ray task on the cluster: the monitor is handed the
function to run (:func:`raypipe.loop.retrain`, by whoever starts it), since retraining is
the pipeline, a floor above monitoring.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import ray
from ray.util import metrics

from raypipe.bundle import ModelBundle, input_columns
from raypipe.config import PipelineConfig
from raypipe.monitor.drift import ReferenceProfile, check_window
from raypipe.monitor.log import FEEDBACK, PREDICTIONS, read_new
from raypipe.monitor.window import WindowBuffer
from raypipe.registry import ModelRegistry
from raypipe.runtime.storage import absolute_uri

__all__ = ["monitor_name", "Monitor", "start_monitor", "stop_monitor"]

log = logging.getLogger("raypipe.monitor")

_LABELS_KEPT = 2_000_000  # feedback labels held for the window joins (bounded memory)
_HISTORY_KEPT = 100  # windows summarised in report()["history"] (what the monitoring page plots)


def monitor_name(model: str) -> str:
    """The actor name of a model's monitor."""
    return f"raypipe:monitor:{model}"


#: What a monitor runs to retrain: ``retrain(cfg, trigger) -> result dict`` (see
#: :func:`raypipe.loop.retrain` for the keys it returns).
Retrain = Callable[[PipelineConfig, dict[str, Any]], dict[str, Any]]


def _retrain_task(retrain: Retrain, config: dict[str, Any], trigger: dict[str, Any]) -> dict[str, Any]:
    try:
        return retrain(PipelineConfig.model_validate(config), trigger)
    except Exception as exc:  # the outcome is recorded, not raised into the monitor
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "trigger": trigger, "promoted": False}


class Monitor:
    """See the module docstring. Created by :func:`start_monitor`.

    Args:
        config: the pipeline config as JSON (paths absolute).
        retrain: what to run when the policy triggers a retraining; ``None`` records the
            trigger (event and alert) without retraining.
    """

    def __init__(self, config: dict[str, Any], retrain: Retrain | None = None):
        self.config = config
        self.retrain_fn = retrain
        cfg = PipelineConfig.model_validate(config)
        self.cfg = cfg
        self.name = cfg.model_name
        self.registry = ModelRegistry(cfg.registry.uri)
        mon = cfg.monitor
        self.root = f"{mon.log_uri.rstrip('/')}/{self.name}"
        self.buffer = WindowBuffer(rows=mon.window_rows, seconds=mon.window_s)
        self.seen_predictions: set[str] = set()
        self.seen_feedback: set[str] = set()
        self.labels: dict[str, str] = {}
        # Ids of logged predictions: only a label joined to one counts as a labeled row.
        self.logged_ids: dict[str, None] = {}
        self.logged_rows = 0
        self.windows = 0
        self.reports: deque[dict[str, Any]] = deque(maxlen=20)
        self.history: deque[dict[str, Any]] = deque(maxlen=_HISTORY_KEPT)
        self.alerts: deque[dict[str, Any]] = deque(maxlen=50)
        self.consecutive = 0
        self.rows_since_retrain = 0
        self.last_retrain_at = -math.inf
        self.retrain_ref: Any = None
        self.retrain_started: dict[str, Any] | None = None
        self.retrains: list[dict[str, Any]] = []
        self._reference: tuple[int, Any] | None = None
        self._lock = threading.RLock()
        self._gauge_drift = metrics.Gauge("raypipe_feature_drift", "Drift score per feature in the last window.",
                                          tag_keys=("model", "feature", "method"))
        self._gauge_alert = metrics.Gauge("raypipe_drift_alert", "1 while drift is alerting.", tag_keys=("model",))
        self._gauge_live = metrics.Gauge("raypipe_live_metric", "Live metric of the last window.", tag_keys=("model", "metric"))
        self._retrains_total = metrics.Counter("raypipe_retrains_total", "Retraining runs by trigger and outcome.",
                                               tag_keys=("model", "trigger", "outcome"))
        self._started_at = time.monotonic()
        self._stopped = threading.Event()
        threading.Thread(target=self._loop, name="raypipe-monitor", daemon=True).start()

    # ------------------------------------------------------------------ loop

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self.poll()
                self._republish()
            except Exception:
                log.exception("monitor %s: poll failed", self.name)
            self._stopped.wait(self.cfg.monitor.poll_s)

    def _republish(self) -> None:
        """Set the last window's gauges again: Ray's export drops a gauge that was not
        recorded for a while, and "drift now" must stay scrapeable between windows."""
        with self._lock:
            last = self.reports[-1] if self.reports else None
            alerting = self.consecutive >= self.cfg.monitor.drift.consecutive_windows
        if last is None:
            return
        for feature, drift in (last.get("features") or {}).items():
            if drift.get("score") is not None:
                self._gauge_drift.set(float(drift["score"]), tags={"model": self.name, "feature": feature,
                                                                   "method": drift.get("method") or ""})
        for metric, value in (last.get("live_metrics") or {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._gauge_live.set(float(value), tags={"model": self.name, "metric": metric})
        self._gauge_alert.set(1.0 if alerting else 0.0, tags={"model": self.name})

    def stop(self) -> None:
        """Stop polling and cancel a running retrain (before the actor is killed)."""
        self._stopped.set()
        with self._lock:
            if self.retrain_ref is not None:
                ray.cancel(self.retrain_ref, force=True, recursive=True)
                self.retrain_ref = None

    def poll(self) -> int:
        """Read new log files, check closed windows, apply the policy; returns windows closed."""
        with self._lock:
            feedback, paths = read_new(self.root, FEEDBACK, self.seen_feedback)
            if feedback is not None:
                self.labels.update(zip(feedback.column("prediction_id").to_pylist(), feedback.column("label").to_pylist()))
                while len(self.labels) > _LABELS_KEPT:
                    self.labels.pop(next(iter(self.labels)))
                self.seen_feedback.update(paths)
            preds, paths = read_new(self.root, PREDICTIONS, self.seen_predictions)
            windows = []
            if preds is not None:
                self.logged_rows += preds.num_rows
                self.logged_ids.update(dict.fromkeys(preds.column("prediction_id").to_pylist()))
                while len(self.logged_ids) > _LABELS_KEPT:
                    self.logged_ids.pop(next(iter(self.logged_ids)))
                self.rows_since_retrain += preds.num_rows
                windows += self.buffer.append(preds)
                self.seen_predictions.update(paths)
            windows += self.buffer.poll()
            for window in windows:
                self._check(window)
            self._collect_retrain()
            r = self.cfg.retrain
            if r.schedule_s and time.monotonic() - max(self.last_retrain_at, self._started_at) >= r.schedule_s:
                self._maybe_retrain({"kind": "schedule", "every_s": r.schedule_s})
            return len(windows)

    # ------------------------------------------------------------------ checks

    def _reference_for(self, version: int) -> Any:
        if self._reference is None or self._reference[0] != version:
            bundle = ModelBundle.load(self.registry.local_path(self.name, version))
            features = list(input_columns(bundle.schema))
            features = [f for f in features if f != bundle.schema.get("id")]
            classes = list(bundle.features.label_encoder.classes) if bundle.task != "regression" else None
            self._reference = (version, (ReferenceProfile(bundle.profile), features, bundle.task, bundle.threshold, classes))
        return self._reference[1]

    def _labels_for(self, table: pa.Table, task: str, classes: list | None) -> np.ndarray:
        text = [self.labels.get(pid) for pid in table.column("prediction_id").to_pylist()]
        if task == "regression":
            return np.array([float(v) if v is not None else np.nan for v in text], dtype=np.float64)
        index = {str(c): i for i, c in enumerate(classes or [])}
        return np.array([index.get(v, np.nan) if v is not None else np.nan for v in text], dtype=np.float64)

    def _check(self, window: Any) -> None:
        champion = self.registry.get(self.name, "champion").version
        profile, features, task, threshold, classes = self._reference_for(champion)
        table = window.table
        if task == "regression":
            predictions = table.column("prediction").to_numpy(zero_copy_only=False)
        elif "probability" in table.column_names:
            col = table.column("probability")
            predictions = np.asarray(col.to_pylist(), dtype=np.float64)
        else:
            predictions = None
        labels = self._labels_for(table, task, classes)
        labels = labels if np.isfinite(labels).any() else None
        mon = self.cfg.monitor
        report = check_window(profile, table, method=mon.drift.method, threshold=mon.drift.threshold,
                              features=[f for f in features if f in table.column_names],
                              predictions=predictions, labels=labels if predictions is not None else None,
                              task=task, decision_threshold=threshold)
        self.windows += 1
        body = report.to_dict()
        body.update(window=self.windows, closed_by=window.reason, champion=champion,
                    versions=sorted(set(table.column("model_version").to_pylist())))
        self.reports.append(body)
        self.history.append(_window_summary(body))
        for feature, drift in report.features.items():
            if drift.score is not None:
                self._gauge_drift.set(drift.score, tags={"model": self.name, "feature": feature, "method": drift.method or ""})
        for metric, value in (report.live_metrics or {}).items():
            if isinstance(value, (int, float)) and value is not None and math.isfinite(value):
                self._gauge_live.set(float(value), tags={"model": self.name, "metric": metric})
        self.consecutive = self.consecutive + 1 if report.drift_detected else 0
        alerting = self.consecutive >= mon.drift.consecutive_windows
        self._gauge_alert.set(1.0 if alerting else 0.0, tags={"model": self.name})
        evidence = {"window": self.windows, "rows": report.rows, "drifting": list(report.drifting),
                    "scores": {f: d.score for f, d in report.features.items() if d.drifting},
                    "consecutive_windows": self.consecutive, "champion": champion}
        if alerting:
            self._alert("drift", f"{len(report.drifting)} feature(s) drifting for {self.consecutive} window(s): "
                        f"{', '.join(report.drifting) or 'predictions'}", evidence)
        quality = {f: d.null_rate for f, d in report.features.items()
                   if d.reference_null_rate is not None and d.null_rate - d.reference_null_rate > 0.1}
        if quality:
            self._alert("quality", f"null rate up by more than 0.1 in {', '.join(quality)}", {"window": self.windows, "null_rate": quality})
        triggers = []
        if alerting and self.cfg.retrain.on_drift:
            triggers.append({"kind": "drift", **evidence})
        perf = self.cfg.retrain.on_performance
        if perf is not None and report.live_metrics:
            value = report.live_metrics.get(perf.metric)
            if value is not None and ((perf.max is not None and value > perf.max) or (perf.min is not None and value < perf.min)):
                message = f"live {perf.metric} {value:.4g} outside [{perf.min}, {perf.max}] over {report.labelled} labeled rows"
                self._alert("performance", message, {"window": self.windows, perf.metric: value})
                triggers.append({"kind": "performance", "metric": perf.metric, "value": value, "window": self.windows,
                                 "labelled": report.labelled, "champion": champion})
        if triggers:
            self._maybe_retrain(triggers[0] if len(triggers) == 1 else {**triggers[0], "also": triggers[1:]})

    def _alert(self, kind: str, message: str, details: dict[str, Any]) -> None:
        alert = {"kind": kind, "message": message, "details": details, "time": time.time()}
        self.alerts.append(alert)
        log.warning("monitor %s: %s alert: %s", self.name, kind, message)
        try:
            self.registry.log_event(self.name, "alert", reason=f"{kind}: {message}", details=details)
        except Exception:
            log.exception("monitor %s: cannot record the alert", self.name)
        url = os.environ.get(self.cfg.monitor.webhook_env) if self.cfg.monitor.webhook_env else None
        if url:
            try:
                req = urllib.request.Request(url, data=json.dumps({"model": self.name, **alert}, default=str).encode(),
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=5).close()
            except Exception as exc:  # a webhook outage never stops monitoring
                log.warning("monitor %s: webhook failed: %s", self.name, exc)

    # ------------------------------------------------------------------ retraining

    def _maybe_retrain(self, trigger: dict[str, Any]) -> bool:
        r = self.cfg.retrain
        if self.retrain_ref is not None:
            return False
        if self.rows_since_retrain < r.cooldown_rows or time.monotonic() - self.last_retrain_at < r.cooldown_s:
            return False
        self.registry.log_event(self.name, "retrain_triggered", reason=f"{trigger['kind']} (monitor)", details=trigger)
        if self.retrain_fn is None:
            self._alert("retrain", f"{trigger['kind']}: retraining is due, but this monitor was started without a "
                        "retrain function (start it with raypipe.serve or raypipe.loop.start_closed_loop)", trigger)
        else:
            self.retrain_started = {**trigger, "started_at": time.time()}
            task = ray.remote(_retrain_task).options(num_cpus=0, name=f"raypipe:retrain:{self.name}")
            self.retrain_ref = task.remote(self.retrain_fn, self.config, trigger)
        self.rows_since_retrain = 0
        self.last_retrain_at = time.monotonic()
        self.consecutive = 0
        return True

    def _collect_retrain(self) -> None:
        if self.retrain_ref is None:
            return
        ready, _ = ray.wait([self.retrain_ref], timeout=0)
        if not ready:
            return
        try:
            result = ray.get(self.retrain_ref)
        except Exception as exc:
            result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "promoted": False}
        self.retrain_ref = None
        outcome = "promoted" if result.get("promoted") else ("failed" if result.get("status") == "failed" else "rejected")
        kind = (self.retrain_started or {}).get("kind", "?")
        self._retrains_total.inc(tags={"model": self.name, "trigger": kind, "outcome": outcome})
        record = {"trigger": kind, "outcome": outcome, "model": result.get("model"), "run_id": result.get("run_id"),
                  "production_rows": result.get("production_rows"), "error": result.get("error"),
                  "metrics": result.get("metrics"), "gate": result.get("gate"),
                  "window": (self.retrain_started or {}).get("window"), "finished_at": time.time()}
        self.retrains.append(record)
        self.registry.log_event(self.name, "retrain_finished", (result.get("model") or {}).get("version"),
                                reason=f"{kind}: {outcome}", details=record)
        self.retrain_started = None

    def retrain_now(self, reason: str = "manual") -> bool:
        """Trigger a retraining now (cooldown included); False when one is running or cooling down."""
        with self._lock:
            return self._maybe_retrain({"kind": reason})

    # ------------------------------------------------------------------ reading

    def report(self) -> dict[str, Any]:
        """What ``GET /monitor`` and ``raypipe monitor status`` show."""
        with self._lock:
            mon = self.cfg.monitor
            return {
                "logged_rows": self.logged_rows,
                "labelled_rows": sum(1 for pid in self.labels if pid in self.logged_ids),
                "windows": self.windows,
                "window_rows": mon.window_rows,
                "drift": {"method": mon.drift.method, "threshold": mon.drift.threshold,
                          "consecutive_windows": self.consecutive, "alert_after": mon.drift.consecutive_windows},
                "last_window": self.reports[-1] if self.reports else None,
                "history": list(self.history),
                "performance": (None if self.cfg.retrain.on_performance is None else
                                self.cfg.retrain.on_performance.model_dump(mode="json")),
                "alerts": list(self.alerts)[-10:],
                "retrain": {"running": self.retrain_ref is not None, "current": self.retrain_started,
                            "count": len(self.retrains), "history": self.retrains[-10:],
                            "rows_since_last": self.rows_since_retrain},
            }

    def counts(self) -> dict[str, int]:
        """Rows logged so far (for the served == logged check)."""
        with self._lock:
            return {"logged_rows": self.logged_rows, "windows": self.windows}


def _window_summary(report: dict[str, Any]) -> dict[str, Any]:
    """One closed window in a few numbers (``report()["history"]``): drift score and
    data-quality rates per feature, the live metrics, the champion that was checked."""
    features = report.get("features") or {}

    def per_feature(key: str) -> dict[str, Any]:
        return {name: f.get(key) for name, f in features.items()}

    return {"window": report.get("window"), "rows": report.get("rows"), "labelled": report.get("labelled"),
            "champion": report.get("champion"), "drifting": list(report.get("drifting") or []),
            "drift": per_feature("score"), "null_rate": per_feature("null_rate"),
            "out_of_range_rate": per_feature("out_of_range_rate"), "unseen_rate": per_feature("unseen_rate"),
            "prediction_drift": (report.get("prediction") or {}).get("score"), "live_metrics": report.get("live_metrics")}


def _absolute_paths(node: Any) -> None:
    """Make the local paths of a config's data section absolute, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("paths", "test_paths", "valid_paths") and isinstance(value, list):
                node[key] = [absolute_uri(p) for p in value]
            elif key in ("landing_uri", "state_uri", "quarantine_uri") and isinstance(value, str):
                node[key] = absolute_uri(value)
            else:
                _absolute_paths(value)
    elif isinstance(node, list):
        for item in node:
            _absolute_paths(item)


def start_monitor(cfg: PipelineConfig, retrain: Retrain | None = None) -> Any:
    """Get or create the model's monitor actor (detached, restarted on failure).

    Args:
        cfg: the pipeline config.
        retrain: what the monitor runs when its policy triggers a retraining (the
            closed loop passes :func:`raypipe.loop.retrain`); ``None``: alert only.
    """
    config = cfg.model_dump(mode="json", by_alias=True)
    # Paths the actor resolves must not depend on its working directory.
    for section, key in (("registry", "uri"), ("monitor", "log_uri"), ("output", "uri")):
        config[section][key] = absolute_uri(config[section][key])
    _absolute_paths(config["data"])
    actor = ray.remote(Monitor).options(
        name=monitor_name(cfg.model_name), namespace="raypipe", lifetime="detached", get_if_exists=True,
        max_restarts=-1, max_task_retries=-1, num_cpus=0, max_concurrency=4,
    )
    return actor.remote(config, retrain)


def stop_monitor(model: str) -> bool:
    """Stop and remove a model's monitor actor (and its running retrain); False if none."""
    try:
        actor = ray.get_actor(monitor_name(model), namespace="raypipe")
    except ValueError:
        return False
    ray.get(actor.stop.remote())
    ray.kill(actor, no_restart=True)
    return True
