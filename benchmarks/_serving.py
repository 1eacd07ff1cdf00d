"""What the serving pairs (``serve``, ``monitor``) share: the model, the endpoints, the load.

One Adult model (``configs/quickstart.yaml``, 50 rounds) is trained once per suite run into
``ctx.workdir/serving`` and promoted champion; each pair deploys it with its own config
(monitoring on or off). :func:`raypipe_endpoint` runs it on Ray Serve through
``serve_model``, :func:`bare_endpoint` under the bare FastAPI app of ``_bare_app`` in a
uvicorn subprocess; :func:`load` runs the load generator ``_load`` in a subprocess.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import yaml

from benchmarks._common import Context, Figure

REPO = Path(__file__).resolve().parents[1]
MODEL = "adult-bench"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, below the ephemeral range (so no
    loopback connection takes it before the server binds it: raypipe.runtime.cluster.free_port)."""
    from raypipe.runtime.cluster import free_port as _free

    return _free()


def adult_config(ctx: Context, monitor: bool) -> Any:
    """The quickstart config with absolute data paths, a registry under the workdir, one
    replica on a free loopback port, monitoring ``monitor`` (its log under the workdir)."""
    from raypipe.config import load_config

    root = ctx.workdir / "serving"
    root.mkdir(exist_ok=True)
    raw = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    raw.pop("profiles", None)
    raw["name"] = MODEL
    src, split = raw["data"]["source"], raw["data"]["split"]
    src["paths"] = [str(REPO / p) for p in src["paths"]]
    split["test_paths"] = [str(REPO / p) for p in split["test_paths"]]
    raw["model"].update(num_boost_round=50, training={"num_workers": 1})
    raw["registry"] = {"uri": str(root / "registry")}
    raw["output"] = {"uri": str(root / "runs")}
    raw["serve"] = {"http": {"host": "127.0.0.1", "port": free_port()},
                    "autoscaling": {"min_replicas": 1, "max_replicas": 1}}
    raw["monitor"] = {"enabled": monitor, "log_uri": str(root / "logs")}
    path = root / f"{MODEL}-monitor-{'on' if monitor else 'off'}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


def champion_path(cfg: Any) -> Path:
    """The champion bundle's folder; trains and promotes version 1 first if there is none."""
    from raypipe.pipeline import Pipeline
    from raypipe.registry import ModelRegistry, RegistryError

    registry = ModelRegistry(cfg.registry.uri)
    try:
        return registry.local_path(cfg.model_name, "champion")
    except RegistryError:
        result = Pipeline(cfg).run()
        assert result.status == "succeeded", f"training the benchmark model: {result.status}, see {result.report}"
        return registry.local_path(cfg.model_name, "champion")


def adult_row(cfg: Any) -> dict[str, Any]:
    """The first row of ``cfg``'s first data file as a ``/predict`` instance (typed, '?' as null)."""
    return adult_rows(cfg, 1)[0]


def adult_rows(cfg: Any, n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows of ``cfg``'s first data file as ``/predict`` instances (typed, '?' as null)."""
    schema, source = cfg.data.schema_, cfg.data.source
    rows = []
    with open(source.paths[0], newline="") as f:
        for record in csv.reader(f):
            if len(rows) == n:
                break
            values = [v.strip() for v in record]
            rows.append({name: None if value == "?" else int(value) if schema.columns[name].type == "int" else value
                         for name, value in zip(source.column_names, values) if name != schema.label})
    return rows


def post_json(url: str, body: Any) -> dict[str, Any]:
    """One POST of ``body`` as JSON; the decoded JSON answer."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout_s: float = 120.0) -> None:
    """Poll ``url`` (a GET route) until it answers 200."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def raypipe_endpoint(cfg: Any) -> Iterator[str]:
    """Deploy the champion with ``serve_model(cfg)``; yield the ``/predict`` URL; shut
    Serve (and the monitor actor) down after."""
    from ray import serve

    from raypipe.monitor.actor import stop_monitor
    from raypipe.serving import serve_model

    try:
        info = serve_model(cfg)
        wait_ready(f"{info['url']}/readyz")
        yield f"{info['url']}/predict"
    finally:
        serve.shutdown()
        stop_monitor(cfg.model_name)


@contextlib.contextmanager
def bare_endpoint(bundle: Path) -> Iterator[str]:
    """Run ``_bare_app`` on ``bundle`` under uvicorn (one worker, one XGBoost thread) in a
    subprocess; yield the ``/predict`` URL; terminate it after."""
    port = free_port()
    # One OpenMP thread for XGBoost, as Ray gives the replica (OMP_NUM_THREADS=1).
    env = {**os.environ, "RAYPIPE_BENCH_BUNDLE": str(bundle), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks._bare_app:app", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--log-level", "warning", "--no-access-log"],
        cwd=REPO, env=env,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
        yield f"http://127.0.0.1:{port}/predict"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load(mode: str, url: str, body: Any, **options: Any) -> dict[str, Any]:
    """Run ``python -m benchmarks._load MODE URL BODY --option value ...``; its JSON result."""
    args = [sys.executable, "-m", "benchmarks._load", mode, url, json.dumps(body)]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"benchmarks._load {mode} {url} exited with {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_same_predictions(body: Any, *urls: str) -> None:
    """Assert every endpoint answers ``body`` with the same predictions and probabilities."""
    answers = [post_json(url, body) for url in urls]
    for url, answer in zip(urls[1:], answers[1:]):
        assert answer["predictions"] == answers[0]["predictions"], (urls[0], answers[0], url, answer)
        assert answer.get("probabilities") == answers[0].get("probabilities"), (urls[0], answers[0], url, answer)


def errors_note(results: dict[str, list[dict[str, Any]]]) -> str:
    """``"; ERRORS: raypipe 3 (HTTP 503: ...)"`` for the sides whose runs had errors, else ``""``."""
    parts = []
    for side, runs in results.items():
        count = sum(r["errors"] for r in runs)
        if count:
            first = next(r["first_error"] for r in runs if r["errors"])
            parts.append(f"{side} {count} ({first})")
    return f"; ERRORS: {', '.join(parts)}" if parts else ""


def measure(urls: dict[str, str], repeats: int, mode: str, body: Any, **options: Any) -> dict[str, list[dict[str, Any]]]:
    """``repeats`` runs of :func:`load` against each URL, the sides taking turns."""
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in urls}
    for _ in range(repeats):
        for side, url in urls.items():
            results[side].append(load(mode, url, body, **options))
    return results


def load_figure(pair: str, what: str, unit: str, key: str, results: dict[str, list[dict[str, Any]]],
                target: str, note: str) -> Figure:
    """The figure of ``key`` (``p50_ms``, ``rps``, ...) of :func:`measure`'s runs, errors in the note."""
    samples = {side: [r[key] for r in runs] for side, runs in results.items()}
    return Figure(pair, what, unit, statistics.median(samples["raypipe"]), statistics.median(samples["baseline"]),
                  target, samples, note + errors_note(results))
