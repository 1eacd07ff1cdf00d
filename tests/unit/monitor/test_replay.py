"""`raypipe replay` against a fake endpoint (http.server in a thread): no Ray.

The fake implements POST /predict, POST /feedback, GET /monitor and GET /model like the
SPEC, records every call, and can simulate a retrain (``retrain.running`` for a while,
then a promoted version 2) or answer an error.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from raypipe.cli import cli
from raypipe.config import load_config
from raypipe.errors import ConfigError
from raypipe.monitor.replay import ReplayError, read_rows, replay

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "bike-sharing.yaml"
HOUR_2012 = ROOT / "data" / "bike-sharing" / "hour-2012.csv"
HEADER = ["instant", "dteday", "season", "yr", "mnth", "hr", "holiday", "weekday", "workingday", "weathersit",
          "temp", "atemp", "hum", "windspeed", "casual", "registered", "cnt"]


class FakeEndpoint:
    """State of the fake server; the handler below reads and writes it under a lock."""

    def __init__(self, retrain_after: int | None = None, retrain_s: float = 0.0, fail_predict_at: int | None = None,
                 api_key: str | None = None, report_style: str = "history", flush_s: float | None = None,
                 monitoring: bool = True, sigterm_at_call: int | None = None):
        self.lock = threading.Lock()
        self.sigterm_at_call = sigterm_at_call      # this /predict call sends SIGTERM to the replaying process
        self.version = 1
        self.predicted: list[dict] = []             # every instance, in arrival order
        self.predictions: dict[str, tuple[dict, float, int]] = {}   # id -> (instance, prediction, version)
        self.feedback: dict[str, float] = {}
        self.predict_calls = 0
        self.predicted_while_running = 0
        self.monitor_polls = 0
        self.retrain_after = retrain_after          # start a retrain once this many rows are labeled
        self.retrain_s = retrain_s
        self.retrain_started: float | None = None
        self.retrain_count = 0
        self.fail_predict_at = fail_predict_at
        self.api_key = api_key
        self.auth_seen: set[str | None] = set()
        self.report_style = report_style            # "history" (the actor's report) or "last" (the brief's)
        self.flush_s = flush_s                      # None: every row is logged at once
        self.flushed, self.last_flush = 0, time.monotonic()
        self.max_lag = 0                            # most sent-but-unlogged rows seen at a /predict
        self.monitoring = monitoring

    def logged_rows(self) -> int:
        if self.flush_s is None:
            return len(self.predicted)
        if time.monotonic() - self.last_flush >= self.flush_s:
            self.flushed, self.last_flush = len(self.predicted), time.monotonic()
        return self.flushed

    def retrain_report(self) -> dict:
        running = self.running()
        done = {"trigger": "drift", "outcome": "promoted", "model": {"name": "bike-sharing", "version": self.version}}
        if self.report_style == "last":
            return {"running": running, "count": self.retrain_count,
                    "last": {"promoted": True, "version": self.version} if self.retrain_count else None}
        return {"running": running, "current": {"kind": "drift"} if running else None, "count": self.retrain_count,
                "history": [done] if self.retrain_count else [], "rows_since_last": 0}

    def running(self) -> bool:
        if self.retrain_started is None:
            return False
        if time.monotonic() - self.retrain_started < self.retrain_s:
            return True
        self.retrain_started = None                 # finished: promote version 2
        self.retrain_count += 1
        self.version += 1
        return False

    @staticmethod
    def predict_value(row: dict, version: int) -> float:
        # Deterministic, version dependent, not integer: exercises the RMSE arithmetic.
        return (row["hr"] * 7.25 + row["temp"] * 100.0) * (1.0 if version == 1 else 1.5) + 0.125


def _handler(state: FakeEndpoint):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"               # keep-alive, like the real endpoint
        disable_nagle_algorithm = True              # else each answer waits for a delayed ACK (~40 ms)

        def log_message(self, *args):               # quiet
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _denied(self) -> bool:
            auth = self.headers.get("Authorization")
            state.auth_seen.add(auth)
            if state.api_key and auth != f"Bearer {state.api_key}":
                self._send(401, {"error": {"type": "unauthorized", "message": "a valid API key is required", "details": []}})
                return True
            return False

        def _body(self) -> dict:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        def do_GET(self):
            if self._denied():
                return
            with state.lock:
                if self.path == "/monitor":
                    state.monitor_polls += 1
                    if not state.monitoring:
                        self._send(200, {"model": {"name": "bike-sharing", "version": state.version}, "monitoring": False})
                        return
                    self._send(200, {"logged_rows": state.logged_rows(), "drift": {"threshold": 0.2},
                                     "retrain": state.retrain_report(), "monitoring": True})
                elif self.path == "/model":
                    self._send(200, {"name": "bike-sharing", "version": state.version})
                else:
                    self._send(404, {"error": {"type": "not_found", "message": self.path, "details": []}})

        def do_POST(self):
            if self._denied():
                return
            body = self._body()
            with state.lock:
                if self.path == "/predict":
                    rows = body["instances"]
                    state.predict_calls += 1
                    if state.predict_calls == state.sigterm_at_call:
                        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the replay waits for this answer
                    if state.fail_predict_at is not None and len(state.predicted) + len(rows) > state.fail_predict_at:
                        self._send(422, {"error": {"type": "schema_violation", "message": "1 of 1 row(s) break the model's input schema.",
                                                   "details": [{"field": "instances[0].temp", "expected": "a number", "got": "the string 'x'"}]}})
                        return
                    if state.running():
                        state.predicted_while_running += len(rows)
                    state.max_lag = max(state.max_lag, len(state.predicted) - state.logged_rows())
                    ids, preds = [], []
                    for row in rows:
                        pid = f"p{len(state.predicted)}"
                        pred = state.predict_value(row, state.version)
                        state.predicted.append(row)
                        state.predictions[pid] = (row, pred, state.version)
                        ids.append(pid)
                        preds.append(pred)
                    self._send(200, {"predictions": preds, "prediction_ids": ids, "model": {"name": "bike-sharing", "version": state.version}})
                elif self.path == "/feedback":
                    items = body["items"]
                    for item in items:
                        assert item["prediction_id"] in state.predictions
                        state.feedback[item["prediction_id"]] = item["label"]
                    if state.retrain_after is not None and state.retrain_started is None and state.retrain_count == 0 \
                            and len(state.feedback) >= state.retrain_after:
                        state.retrain_started = time.monotonic()
                    self._send(200, {"accepted": len(items)})
                else:
                    self._send(404, {"error": {"type": "not_found", "message": self.path, "details": []}})

    return Handler


@pytest.fixture
def endpoint(request):
    """Start a fake endpoint: endpoint(**FakeEndpoint kwargs) -> (state, url)."""
    servers = []

    def start(**kwargs):
        state = FakeEndpoint(**kwargs)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return state, f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def cfg():
    return load_config(str(CONFIG))


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADER, lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
    return path


def _tiny_rows() -> list[dict]:
    """40 hourly rows over Jan 31 - Feb 1 2012, written out of time order."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(40):
        day, hr = ("2012-01-31", i) if i < 24 else ("2012-02-01", i - 24)
        casual, registered = int(rng.integers(0, 50)), int(rng.integers(0, 400))
        rows.append({"instant": 9000 + i, "dteday": day, "season": 1, "yr": 1, "mnth": 1 if i < 24 else 2, "hr": hr,
                     "holiday": 0, "weekday": 2 if i < 24 else 3, "workingday": 1, "weathersit": int(rng.integers(1, 4)),
                     "temp": round(float(rng.uniform(0.1, 0.5)), 2), "atemp": round(float(rng.uniform(0.1, 0.5)), 4),
                     "hum": round(float(rng.uniform(0.3, 0.9)), 2), "windspeed": round(float(rng.uniform(0, 0.4)), 4),
                     "casual": casual, "registered": registered, "cnt": casual + registered})
    order = list(range(40))
    rng.shuffle(order)
    return [rows[i] for i in order]


def _expected_monthly(state: FakeEndpoint, by_instant: dict[int, dict]) -> dict[str, float]:
    """Monthly RMSE from the server's own record of what it answered, in time order, with numpy."""
    preds, labels = defaultdict(list), defaultdict(list)
    answered = sorted(state.predictions.values(), key=lambda t: (t[0]["dteday"], t[0]["hr"]))
    for row, pred, _version in answered:
        month = row["dteday"][:7]
        preds[month].append(pred)
        labels[month].append(float(by_instant[row["instant"]]["cnt"]))
    return {m: float(np.sqrt(np.mean((np.array(preds[m]) - np.array(labels[m])) ** 2))) for m in preds}


def test_replay_sends_every_row_once_and_the_true_labels(cfg, endpoint, tmp_path):
    rows = _tiny_rows()
    path = _write_csv(tmp_path / "tiny.csv", rows)
    state, url = endpoint()
    result = replay(cfg, str(path), url, batch_hours=3, poll_s=0.01)

    assert result.rows == len(rows) == len(state.predicted) == len(state.feedback)
    assert state.predict_calls == -(-len(rows) // 3)
    # time order: dteday, then file order within a day (the fake file's hours are shuffled
    # within each day, so compare with a stable sort on dteday only)
    expected_order = [r["instant"] for r in sorted(rows, key=lambda r: r["dteday"])]
    assert [r["instant"] for r in state.predicted] == expected_order
    by_instant = {r["instant"]: r for r in rows}
    for row in state.predicted:                    # the inputs only: no label, no leak columns
        assert set(row) == set(HEADER) - {"cnt", "casual", "registered"}
        assert isinstance(row["hr"], int) and isinstance(row["temp"], float) and row["weathersit"] in ("1", "2", "3")
    for pid, label in state.feedback.items():      # the true count of the row that was predicted
        row = state.predictions[pid][0]
        assert label == by_instant[row["instant"]]["cnt"]
    assert result.versions == {"1": len(rows)}
    assert [m.month for m in result.months] == ["2012-01", "2012-02"]
    assert [m.rows for m in result.months] == [24, 16]


def test_monthly_rmse_matches_numpy(cfg, endpoint, tmp_path):
    rows = _tiny_rows()
    path = _write_csv(tmp_path / "tiny.csv", rows)
    state, url = endpoint()
    result = replay(cfg, str(path), url, poll_s=0.01)
    expected = _expected_monthly(state, {r["instant"]: r for r in rows})
    got = {m.month: m.rmse for m in result.months}
    assert got.keys() == expected.keys()
    for month in expected:
        assert got[month] == pytest.approx(expected[month], rel=1e-12, abs=0)
    assert result.mean_monthly_rmse == pytest.approx(float(np.mean(list(expected.values()))), rel=1e-12, abs=0)
    # the recorded predictions are the served ones, in time order
    served = [state.predictions[f"p{i}"][1] for i in range(len(rows))]
    assert result.predictions == served


@pytest.mark.parametrize("style", ["history", "last"])
def test_waits_while_retrain_running_then_uses_the_new_version(cfg, endpoint, tmp_path, style):
    rows = _tiny_rows()
    path = _write_csv(tmp_path / "tiny.csv", rows)
    state, url = endpoint(retrain_after=10, retrain_s=0.6, report_style=style)
    lines: list[str] = []
    t0 = time.monotonic()
    result = replay(cfg, str(path), url, poll_s=0.05, progress=lines.append)

    assert time.monotonic() - t0 >= 0.6
    assert state.predicted_while_running == 0     # nothing sent while the model retrained
    assert result.waited_s >= 0.5
    versions = [state.predictions[f"p{i}"][2] for i in range(len(rows))]
    assert versions == [1] * 10 + [2] * 30         # the new champion answers from the next row on
    assert result.versions == {"1": 10, "2": 30}
    assert len(result.retrains) == 1 and result.retrains[0]["after_rows"] == 10
    assert any("retrain 1" in line and "promoted version 2" in line for line in lines)
    assert result.months[0].versions == [1, 2]


def test_no_wait_keeps_sending_during_a_retrain(cfg, endpoint, tmp_path):
    rows = _tiny_rows()
    path = _write_csv(tmp_path / "tiny.csv", rows)
    state, url = endpoint(retrain_after=10, retrain_s=30)
    result = replay(cfg, str(path), url, wait_for_retrain=False)
    assert result.rows == len(rows)
    assert state.predicted_while_running == len(rows) - 10
    assert state.monitor_polls == 0
    assert result.retrains == [] and result.versions == {"1": 40}   # the fake's retrain is still running


def test_lag_bound_keeps_the_replay_close_to_the_monitor(cfg, endpoint, tmp_path):
    path = _write_csv(tmp_path / "tiny.csv", _tiny_rows())
    state, url = endpoint(flush_s=0.05)
    replay(cfg, str(path), url, poll_s=0.01, max_lag_rows=5)
    assert 0 < state.max_lag <= 5                 # never more than 5 sent rows unread by the monitor
    state, url = endpoint(flush_s=1e9)            # the log never moves ...
    replay(cfg, str(path), url, poll_s=0.01)      # ... and without a bound the replay does not care
    assert state.max_lag == 39


def test_stalled_log_drops_the_lag_bound_with_a_warning(cfg, endpoint, tmp_path):
    path = _write_csv(tmp_path / "tiny.csv", _tiny_rows())
    state, url = endpoint(flush_s=1e9)            # logged_rows never moves
    lines: list[str] = []
    result = replay(cfg, str(path), url, poll_s=0.01, max_lag_rows=3, stall_s=0.2, progress=lines.append)
    assert result.rows == 40 == len(state.feedback)
    assert any("logged_rows stayed at 0" in line for line in lines)


def test_endpoint_without_monitor_replays_with_a_warning(cfg, endpoint, tmp_path):
    path = _write_csv(tmp_path / "tiny.csv", _tiny_rows())
    state, url = endpoint(monitoring=False)
    lines: list[str] = []
    result = replay(cfg, str(path), url, poll_s=0.01, progress=lines.append)
    assert result.rows == 40 and state.monitor_polls == 1
    assert any("no monitor" in line for line in lines)


def test_error_answer_stops_the_replay_with_the_body(cfg, endpoint, tmp_path):
    path = _write_csv(tmp_path / "tiny.csv", _tiny_rows())
    state, url = endpoint(fail_predict_at=5)
    with pytest.raises(ReplayError) as err:
        replay(cfg, str(path), url, poll_s=0.01)
    msg = str(err.value)
    assert "POST /predict answered 422" in msg and "schema_violation" in msg and "instances[0].temp" in msg
    assert "after 5 of 40 rows" in msg
    assert len(state.feedback) == 5


def test_unreachable_endpoint_is_a_clear_error(cfg, tmp_path):
    path = _write_csv(tmp_path / "tiny.csv", _tiny_rows())
    with pytest.raises(ReplayError, match="cannot reach the endpoint"):
        replay(cfg, str(path), "http://127.0.0.1:9", timeout_s=2)


def test_input_without_label_is_a_config_error(cfg, tmp_path):
    path = tmp_path / "nolabel.csv"
    path.write_text("instant,dteday,hr\n1,2012-01-01,0\n")
    with pytest.raises(ConfigError, match="no label column 'cnt'"):
        read_rows(cfg, str(path))


def test_real_2012_file_all_rows_and_labels(cfg, endpoint):
    """The shipped hour-2012.csv, a day per request: every row sent once, every label right."""
    with open(HOUR_2012, newline="") as f:
        file_rows = list(csv.DictReader(f))
    state, url = endpoint()
    result = replay(cfg, str(HOUR_2012), url, batch_hours=24, wait_for_retrain=False)
    assert result.rows == len(file_rows) == len(state.predicted) == 8734
    cnt = {int(r["instant"]): int(r["cnt"]) for r in file_rows}
    assert sorted(r["instant"] for r in state.predicted) == sorted(cnt)
    for pid, label in state.feedback.items():
        assert label == cnt[state.predictions[pid][0]["instant"]]
    assert [m.month for m in result.months] == [f"2012-{m:02d}" for m in range(1, 13)]
    assert sum(m.rows for m in result.months) == 8734
    expected = _expected_monthly(state, {k: {"cnt": v} for k, v in cnt.items()})
    for m in result.months:
        assert m.rmse == pytest.approx(expected[m.month], rel=1e-12, abs=0)


def test_cli_json_with_api_key(endpoint, tmp_path, monkeypatch):
    rows = _tiny_rows()
    path = _write_csv(tmp_path / "tiny.csv", rows)
    state, url = endpoint(api_key="k-123")
    monkeypatch.setenv("BIKE_KEY", "k-123,other")
    monkeypatch.chdir(ROOT)
    res = CliRunner().invoke(cli, ["replay", "configs/bike-sharing.yaml", "--input", str(path), "--url", url,
                                   "--api-key-env", "BIKE_KEY", "--batch-hours", "4", "--limit", "20", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["status"] == "ok" and out["rows"] == 20 and len(state.predicted) == 20
    assert out["months"][0]["month"] == "2012-01" and out["months"][0]["versions"] == [1]
    assert out["mean_monthly_rmse"] == pytest.approx(np.mean([m["rmse"] for m in out["months"]]))
    assert state.auth_seen == {"Bearer k-123"}


def test_cli_error_exits_1_and_prints_table_on_success(endpoint, tmp_path, monkeypatch):
    path = _write_csv(tmp_path / "tiny.csv", _tiny_rows())
    monkeypatch.chdir(ROOT)
    state, url = endpoint(api_key="secret")
    res = CliRunner().invoke(cli, ["replay", "configs/bike-sharing.yaml", "--input", str(path), "--url", url])
    assert res.exit_code == 1
    assert "answered 401" in res.stderr and "Traceback" not in res.stderr
    state, url = endpoint()
    res = CliRunner().invoke(cli, ["replay", "configs/bike-sharing.yaml", "--input", str(path), "--url", url])
    assert res.exit_code == 0, res.output
    assert "| 2012-01 | 24 |" in res.stdout and "mean of 2 months" in res.stdout


def test_sigterm_stops_after_the_group_in_flight_with_its_feedback(endpoint, tmp_path, monkeypatch):
    path = _write_csv(tmp_path / "tiny.csv", _tiny_rows())
    monkeypatch.chdir(ROOT)
    state, url = endpoint(sigterm_at_call=3)
    before = signal.getsignal(signal.SIGTERM)
    res = CliRunner().invoke(cli, ["replay", "configs/bike-sharing.yaml", "--input", str(path), "--url", url,
                                   "--batch-hours", "4", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # The third group (rows 9-12) was in flight: answered and labeled, then nothing more sent.
    assert (out["status"], out["stopped_by"], out["rows"], out["rows_total"]) == ("stopped", "SIGTERM", 12, 40)
    assert (state.predict_calls, len(state.predicted), len(state.feedback)) == (3, 12, 12)
    assert "stopped (SIGTERM): sent 12 of 40 rows, each with its /feedback; the summary covers those rows" in res.stderr
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
