"""The ``raypipe`` command line: parse, call the Python API, render.

Exit codes: 0 ok, 1 pipeline failure, 2 usage or config error. A mistake in the
user's config or data prints one paragraph, never a traceback (``--log-level
DEBUG`` adds the traceback for bug reports).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import click

from raypipe.console import Console, stdout_to_stderr
from raypipe.errors import RaypipeError

log = logging.getLogger("raypipe")


#: The terminal of the running command (see :mod:`raypipe.console`).
_console: Console | None = None


def _setup_logging(level: str) -> None:
    """Start this command's :class:`~raypipe.console.Console`: raypipe's lines on the
    terminal, Ray's in a log file unless ``--log-level debug``; undone when the command ends."""
    global _console
    if _console is not None:
        _console.close()
    click_ctx = click.get_current_context(silent=True)
    name = click_ctx.command_path.replace("raypipe", "", 1).strip().replace(" ", "-") if click_ctx else "raypipe"
    # Descriptor redirection needs the real stderr (not a test runner's buffer).
    try:
        real = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        real = False
    _console = Console(name or "raypipe", verbose=level.upper() == "DEBUG" or not real, level=level)
    _console.start()
    if click_ctx is not None:
        click_ctx.call_on_close(_close_console)


def _close_console() -> None:
    global _console
    if _console is not None:
        _console.close()
        _console = None


def _err() -> Any:
    """Where raypipe's own stderr lines go: the terminal, even while Ray's go to the log file."""
    return _console.out if _console is not None else sys.stderr


@contextlib.contextmanager
def _stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """Send everything written to fd 1 to stderr (or the log file) while Ray works.

    Ray forwards worker output to the driver's stdout; with ``--json`` stdout must hold
    the JSON object alone, and by default Ray's lines belong in the log file, so the
    descriptor itself is redirected.
    """
    if not enabled and (_console is None or _console.verbose):
        yield
        return
    with (_console.ray_output() if _console is not None else stdout_to_stderr()):
        yield


def _fail(exc: BaseException, as_json: bool, log_level: str) -> None:
    from raypipe.runtime.cluster import ClusterUnreachable

    if isinstance(exc, ClusterUnreachable):  # the message names the address: no traceback
        exc = RaypipeError(str(exc))
    if isinstance(exc, RaypipeError):
        code, kind, message = exc.exit_code, type(exc).__name__, str(exc)
    else:
        code, kind, message = 1, type(exc).__name__, f"{type(exc).__name__}: {exc}"
    if log_level.upper() == "DEBUG" or not isinstance(exc, RaypipeError):
        traceback.print_exception(exc, file=_err())
    if as_json:
        click.echo(json.dumps({"status": "failed", "error": {"type": kind, "message": message}}))
    click.echo(f"error: {message}", file=_err())
    sys.exit(code)


class _Ctx:
    def __init__(self, address: str | None, profile: str | None, overrides: tuple[str, ...], as_json: bool, log_level: str):
        self.address = address
        self.profile = profile
        self.overrides = list(overrides)
        self.as_json = as_json
        self.log_level = log_level

    def load(self, path: str):
        from raypipe.config import load_config

        return load_config(path, profile=self.profile, overrides=self.overrides)


def _common(fn):
    """Options every command takes, also after the command name."""
    fn = click.option("--address", envvar="RAY_ADDRESS", default=None, help="Ray cluster to use (default: start a local Ray).")(fn)
    fn = click.option("--profile", default=None, help="Profile from the config's `profiles:` to overlay.")(fn)
    fn = click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override a config value (repeatable).")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout, logs on stderr.")(fn)
    fn = click.option(
        "--log-level",
        default="WARNING",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        help="Log verbosity on stderr.",
    )(fn)
    return fn


def _dashboard_option(fn):
    """``--dashboard/--no-dashboard``: the Ray dashboard of a local Ray (``cluster.dashboard``)."""
    return click.option("--dashboard/--no-dashboard", default=None,
                        help="Start the Ray dashboard with the local Ray (default: cluster.dashboard; unset: on for serve and ingest-stream, off for run and predict).")(fn)


def _with_dashboard(overrides: tuple[str, ...], dashboard: bool | None) -> list[str]:
    return list(overrides) + ([] if dashboard is None else [f"cluster.dashboard={str(dashboard).lower()}"])


def _print_endpoints() -> None:
    """Where the dashboard and the metrics of the Ray just used are, on stderr."""
    from raypipe.runtime.cluster import endpoints

    for line in endpoints().lines():
        click.echo(line, file=_err())


def _make_ctx(address, profile, overrides, as_json, log_level) -> _Ctx:
    _setup_logging(log_level)
    return _Ctx(address, profile, overrides, as_json, log_level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="raypipe")
def cli() -> None:
    """raypipe: one YAML file from raw data to a monitored prediction endpoint on Ray."""


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@_common
def validate(config: str, address, profile, overrides, as_json, log_level) -> None:
    """Check CONFIG without starting Ray: keys, types, paths, columns, label."""
    ctx = _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        from raypipe.config import check_config

        cfg = ctx.load(config)
        warnings = check_config(cfg, config)
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    if as_json:
        click.echo(json.dumps({"status": "ok", "config": config, "name": cfg.name, "warnings": warnings}))
        return
    for warning in warnings:
        click.echo(f"warning: {warning}", file=_err())
    click.echo(f"{config}: ok ({cfg.name}: {cfg.data.source.type} source, {len(cfg.features)} feature steps, task {cfg.model.task})")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--until",
    type=click.Choice(["ingest", "split", "transform", "train", "evaluate", "register"]),
    default=None,
    help="Stop after this stage (default: run every stage).",
)
@_dashboard_option
@_common
def run(config: str, until: str | None, dashboard: bool, address, profile, overrides, as_json, log_level) -> None:
    """Run the batch pipeline of CONFIG and print a summary."""
    _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        from raypipe import api

        with _stdout_to_stderr(as_json):
            result = api.run(config, until=until, address=address, profile=profile,
                             overrides=_with_dashboard(overrides, dashboard))
    except Exception as exc:  # noqa: BLE001 - rendered for the user (Interrupted: exit 130)
        _fail(exc, as_json, log_level)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(result.summary())
    _print_endpoints()


@cli.command("infer-schema")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write the schema YAML here (default: stdout).")
@click.option("--sample-rows", default=100_000, show_default=True, help="Rows read to infer types and nullability (a run with empty schema.columns reads as many).")
@_common
def infer_schema(config: str, output: str | None, sample_rows: int, address, profile, overrides, as_json, log_level) -> None:
    """Infer a `data.schema` section from CONFIG's source and print it as YAML."""
    _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        import yaml

        from raypipe import api

        with _stdout_to_stderr(True):
            schema = api.infer_schema(config, address=address, sample_rows=sample_rows, profile=profile, overrides=overrides)
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    text = yaml.safe_dump({"schema": schema}, sort_keys=False)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"wrote {output}", file=_err())
    elif as_json:
        click.echo(json.dumps({"schema": schema}))
    else:
        click.echo(text, nl=False)


@cli.command("ingest-stream")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--max-messages", type=click.IntRange(min=1), default=None, help="Per subscription, land at most N new messages, then stop.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S", help="Stop after S seconds.")
@click.option("--subscription", "only", multiple=True, metavar="NAME", help="Run only this subscription (repeatable; default: all).")
@_common
def ingest_stream(config: str, max_messages, duration_s, only, address, profile, overrides, as_json, log_level) -> None:
    """Land CONFIG's stream messages as Parquet micro-batches until Ctrl-C (or a bound).

    One Ray actor per subscription (raypipe:stream:<pipeline>:<name>); a batch is
    acknowledged only after its file is in place, and redelivered messages already
    landed are dropped. `raypipe run CONFIG` then reads the landing zone.
    """
    _make_ctx(address, profile, overrides, as_json, log_level)

    def on_event(kind: str, sub: str, detail: dict) -> None:
        if kind == "landed":
            dups = f" ({detail['duplicates']} redelivered, dropped)" if detail["duplicates"] else ""
            click.echo(f"{sub}: landed {detail['rows']} messages -> {detail['path']}{dups}", file=_err())
        else:
            error = f": {detail['error']}" if detail.get("error") else ""
            click.echo(f"{sub}: {detail.get('state')}{error}", file=_err())

    try:
        from raypipe import api

        with _stdout_to_stderr(as_json):
            summary = api.ingest_stream(config, address=address, max_messages=max_messages, duration_s=duration_s,
                                        subscriptions=list(only) or None, on_event=on_event, profile=profile, overrides=overrides)
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for name, sub in summary["subscriptions"].items():
            error = f", error: {sub['error']}" if sub.get("error") else ""
            click.echo(f"{name}: {sub['landed']} landed in {sub['files']} files, {sub['duplicates']} duplicates dropped ({sub['state']}{error})")
        click.echo(f"landed {summary['landed']} messages in {summary['seconds']:.1f} s")
    if summary.get("stopped_by"):
        # A requested stop is a success (exit 0) once the consumers flushed what they held.
        files = sum(sub["files"] for sub in summary["subscriptions"].values())
        click.echo(f"stopped ({summary['stopped_by']}): consumers stopped fetching, landed and acknowledged what they held; "
                   f"{summary['landed']} messages landed by this run in {files} files", file=_err())
    if summary["status"] != "ok":
        sys.exit(1)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--model", "model_ref", default=None, metavar="NAME@REF", help="Model to serve: NAME@ALIAS (followed live) or NAME@VERSION (default: serve.model, the champion).")
@click.option("--export-config", "export", type=click.Path(dir_okay=False), default=None, help="Write a Serve config for `serve deploy` to this file instead of deploying.")
@click.option("--fast-path/--no-fast-path", "fast_path", default=None,
              help="Serve's HAProxy ingress and throughput-optimized mode in the local Ray (default: serve.fast_path, on).")
@_dashboard_option
@_common
def serve(config: str, model_ref: str | None, export: str | None, fast_path: bool | None, dashboard: bool | None, address,
          profile, overrides, as_json, log_level) -> None:
    """Deploy the model of CONFIG as an autoscaling HTTP endpoint on Ray Serve.

    On a local Ray this blocks until Ctrl-C; on a remote cluster (--address,
    cluster.address or RAY_ADDRESS) it returns once the endpoint answers.
    """
    if fast_path is not None:
        overrides = (*overrides, f"serve.fast_path={str(fast_path).lower()}")
    ctx = _make_ctx(address, profile, _with_dashboard(overrides, dashboard), as_json, log_level)
    try:
        cfg = ctx.load(config)
        if export:
            import yaml

            from raypipe.serving.deploy import export_notes, export_serve_config

            body = export_serve_config(cfg, config, model_ref, profile, overrides)
            with open(export, "w", encoding="utf-8") as f:
                f.writelines(f"# {line}\n" for line in export_notes(cfg))
                yaml.safe_dump(body, f, sort_keys=False)
            click.echo(json.dumps({"status": "ok", "serve_config": export}) if as_json else
                       f"wrote {export}; deploy it with: serve deploy {export}")
            return
        from raypipe import api

        with _stdout_to_stderr(as_json):
            info = api.serve(cfg, model=model_ref, address=address)
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    remote = bool(address or cfg.cluster.address or os.environ.get("RAY_ADDRESS"))
    if as_json:
        click.echo(json.dumps({"status": "serving", **info}), nl=True)
    else:
        auth = ' -H "Authorization: Bearer $KEY"' if info["auth"] else ""
        click.echo(
            f"serving {info['model']['name']} version {info['model']['version']} (following {info['model']['ref']}) on {info['url']}\n"
            f"try: curl -s{auth} {info['url']}/model\n"
            f"     curl -s{auth} -H 'Content-Type: application/json' -d '{{\"instances\": [{{...}}]}}' {info['url']}/predict\n"
            f"API docs: {info['url']}/docs"
        )
    _print_endpoints()
    sys.stdout.flush()
    if remote:
        return
    if not as_json:
        click.echo("press Ctrl-C to stop", file=_err())
    _serve_until_stopped(cfg, info["model"]["name"])


def _serve_until_stopped(cfg, name: str) -> None:
    """Block until SIGINT or SIGTERM, then drain the endpoint, release Ray and fold the
    replicas' spilled log rows into the prediction log; one line says what was flushed."""
    import signal
    import time

    import ray
    from ray import serve as ray_serve

    from raypipe.monitor.log import FEEDBACK, PREDICTIONS, fold_spills
    from raypipe.runtime.haproxy import soft_stop
    from raypipe.runtime.signals import stop_on_signals
    from raypipe.runtime.storage import absolute_uri

    try:
        with stop_on_signals():  # after ray.init: replaces Ray's SIGTERM handler (its stack dump)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt as stop:
        signame = str(stop) or "SIGINT"
    # A second signal while draining would cut the drain short: ignore it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    try:
        # HAProxy first: it answers what it holds and refuses new connections; Serve's
        # shutdown would SIGKILL it with answers in flight.
        soft_stop()
        ray_serve.shutdown()  # stops the replicas, draining what they still hold
    finally:
        ray.shutdown()  # every replica is gone: their spills are unlocked
    root = f"{absolute_uri(cfg.monitor.log_uri).rstrip('/')}/{name}"
    folded = fold_spills(root, PREDICTIONS) if cfg.monitor.enabled else 0
    if cfg.monitor.enabled:
        fold_spills(root, FEEDBACK)
    click.echo(f"stopped ({signame}): endpoint drained, Ray released, prediction log flushed "
               f"({folded} rows folded from replica spills into {root})", err=True)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--input", "input_uri", required=True, help="Rows to predict: a CSV, Parquet or JSON Lines file, folder or glob (local or URI).")
@click.option("--output", "output_uri", required=True, help="Where to write predictions: a path ending in .csv, .parquet or .jsonl is one file; a path without extension is a folder of part files.")
@click.option("--model", "model_ref", default=None, metavar="NAME@REF", help="Model to use (default: serve.model, the champion).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output and its quarantine (together, atomically). Without it an existing output is an error.")
@click.option("--folder", is_flag=True, help="Write a folder of part files even when --output ends in .csv, .parquet or .jsonl.")
@click.option("--format", "output_format", type=click.Choice(["csv", "parquet", "jsonl"]), default=None, help="Format of a folder output without extension (default: parquet).")
@_common
def predict(config: str, input_uri: str, output_uri: str, model_ref: str | None, overwrite: bool, folder: bool, output_format: str | None,
            address, profile, overrides, as_json, log_level) -> None:
    """Batch inference with Ray Data: the same model bundle as the HTTP endpoint."""
    _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        from raypipe import api

        with _stdout_to_stderr(as_json):
            result = api.predict(config, input_uri, output_uri, model=model_ref, address=address, profile=profile, overrides=overrides,
                                     overwrite=overwrite, folder=folder, output_format=output_format)
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    if as_json:
        click.echo(json.dumps({"status": "ok", **result}))
        return
    r = result["rows"]
    click.echo(f"{result['model']['name']} version {result['model']['version']}: {r['predicted']:,} of {r['input']:,} rows predicted -> {result['output']}")
    if r["quarantined"]:
        click.echo(f"{r['quarantined']:,} rows broke the model's input schema -> {result['quarantine']}")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@_common
def retrain(config: str, address, profile, overrides, as_json, log_level) -> None:
    """Retrain now: the configured sources plus labeled production data, gated, promoted if better."""
    _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        from raypipe import api

        with _stdout_to_stderr(as_json):
            result = api.retrain(config, address=address, profile=profile, overrides=overrides,
                                 trigger={"kind": "manual", "by": "raypipe retrain"})
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    if as_json:
        click.echo(json.dumps(result, default=str))
        return
    model = result.get("model") or {}
    click.echo(f"retrain {result['run_id']}: {result['status']}, {result['production_rows']:,} labeled production rows; "
               f"version {model.get('version')} {'promoted to champion' if result['promoted'] else 'not promoted'}")
    for line in _gate_lines(result.get("gate")):
        click.echo(line)


@cli.group()
def monitor() -> None:
    """The live monitor of a served model."""


@monitor.command("status")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--url", default=None, help="Endpoint URL (default: http://serve.http.host:port).")
@click.option("--api-key-env", default=None, help="Environment variable holding an API key (default: the first of serve.auth.api_keys_env).")
@_common
def monitor_status(config: str, url: str | None, api_key_env: str | None, address, profile, overrides, as_json, log_level) -> None:
    """Drift, data quality and live performance per feature, from the endpoint's GET /monitor."""
    ctx = _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        body = _fetch_monitor(ctx.load(config), url, api_key_env, "monitor status")
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    if as_json:
        click.echo(json.dumps(body))
        return
    click.echo(_monitor_table(body))


def _fetch_monitor(cfg, url: str | None, api_key_env: str | None, command: str) -> dict:
    """The JSON of the endpoint's ``GET /monitor`` (``url`` or serve.http of ``cfg``)."""
    import requests

    host = "127.0.0.1" if cfg.serve.http.host in ("0.0.0.0", "::") else cfg.serve.http.host
    url = (url or f"http://{host}:{cfg.serve.http.port}").rstrip("/")
    env = api_key_env or cfg.serve.auth.api_keys_env
    key = (os.environ.get(env, "").split(",")[0].strip() if env else "")
    headers = {"Accept": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        r = requests.get(url + "/monitor", headers=headers, timeout=30)
    except requests.RequestException as exc:
        raise RaypipeError(f"{command}: cannot reach {url}/monitor ({exc.__class__.__name__}). "
                           "Hint: is `raypipe serve` running? Pass --url otherwise.") from None
    if r.status_code != 200:
        raise RaypipeError(f"{command}: {url}/monitor answered {r.status_code}: {r.text[:300]}")
    return r.json()


@monitor.command("report")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="monitor.html", show_default=True,
              help="Write the page here.")
@click.option("--url", default=None, help="Endpoint URL (default: http://serve.http.host:port).")
@click.option("--api-key-env", default=None, help="Environment variable holding an API key (default: the first of serve.auth.api_keys_env).")
@click.option("--from-json", "from_json", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Render a saved `raypipe monitor status --json` instead of asking the endpoint.")
@_common
def monitor_report(config: str, output: str, url: str | None, api_key_env: str | None, from_json: str | None, address, profile,
                   overrides, as_json, log_level) -> None:
    """Write the monitoring page (the page GET /monitor shows a browser) as one HTML file.

    Drift per feature over the windows, the live metric against its bounds, data-quality
    rates, alerts and the retraining history with each gate's decision, as inline-SVG
    plots: the file opens offline.
    """
    ctx = _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        from raypipe.monitor.page import render_monitor_html

        if from_json:
            with open(from_json, encoding="utf-8") as fh:
                body = json.load(fh)
        else:
            body = _fetch_monitor(ctx.load(config), url, api_key_env, "monitor report")
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(render_monitor_html(body))
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    model = body.get("model") or {}
    if as_json:
        click.echo(json.dumps({"status": "ok", "report": output, "model": model, "windows": body.get("windows")}))
    else:
        click.echo(f"wrote {output}: {model.get('name')} version {model.get('version')}, {body.get('windows', 0)} windows "
                   "(open it in a browser)")


def _monitor_table(body: dict) -> str:
    model = body.get("model") or {}
    lines = [f"model {model.get('name')} version {model.get('version')}"]
    if not body.get("monitoring"):
        return "\n".join(lines + ["monitoring is off for this endpoint"])
    drift = body["drift"]
    lines.append(f"logged rows {body['logged_rows']:,}, labeled {body['labelled_rows']:,}, windows {body['windows']} "
                 f"of {body['window_rows']} rows; drift {drift['method']} > {drift['threshold']} for "
                 f"{drift['alert_after']} window(s) (now {drift['consecutive_windows']})")
    last = body.get("last_window")
    if last:
        lines.append(f"last window #{last['window']} ({last['rows']} rows, champion v{last['champion']}):")
        lines.append(f"  {'feature':<20} {'score':>9} {'threshold':>9} {'state':<9} {'null':>6} {'out of range':>12}")
        for name, f in last["features"].items():
            score = "-" if f["score"] is None else f"{f['score']:.4f}"
            state = "DRIFTING" if f["drifting"] else "ok"
            oor = "-" if f["out_of_range_rate"] is None else f"{f['out_of_range_rate']:.3f}"
            lines.append(f"  {name:<20} {score:>9} {f['threshold']:>9} {state:<9} {f['null_rate']:>6.3f} {oor:>12}")
        if last.get("prediction"):
            p = last["prediction"]
            lines.append(f"  {'(prediction)':<20} {p['score'] if p['score'] is None else format(p['score'], '.4f'):>9} {p['threshold']:>9} "
                         f"{'DRIFTING' if p['drifting'] else 'ok':<9}")
        if last.get("live_metrics"):
            shown = {k: v for k, v in last["live_metrics"].items() if isinstance(v, (int, float))}
            lines.append("  live: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()) + f" ({last['labelled']} labeled rows)")
    rt = body["retrain"]
    lines.append(f"retraining: {'running' if rt['running'] else 'idle'}, {rt['count']} done")
    for h in rt["history"]:
        lines.append(f"  {h['trigger']}: {h['outcome']} (version {(h.get('model') or {}).get('version')}, "
                     f"{h.get('production_rows')} production rows){' ' + h['error'] if h.get('error') else ''}")
    for a in body.get("alerts", [])[-5:]:
        lines.append(f"alert {a['kind']}: {a['message']}")
    return "\n".join(lines)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False), help="Labeled rows to replay: a CSV file with the label column.")
@click.option("--url", default=None, help="The served endpoint (default: serve.http of CONFIG, e.g. http://127.0.0.1:8000).")
@click.option("--api-key-env", default=None, metavar="VAR", help="Environment variable holding the API key (the first of comma-separated keys; default: serve.auth.api_keys_env when set).")
@click.option("--batch-hours", type=click.IntRange(min=1), default=1, show_default=True, help="Rows (hours) per /predict call.")
@click.option("--wait-for-retrain/--no-wait-for-retrain", default=True, show_default=True,
              help="Pause while GET /monitor says a retrain is running, so retraining keeps pace with the simulated time.")
@click.option("--max-lag-rows", type=click.IntRange(min=0), default=None, metavar="N",
              help="With --wait-for-retrain, also wait while more than N sent rows are not yet read by the monitor (default: half of monitor.window_rows).")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N", help="Replay only the first N rows (in time order).")
@_common
def replay(config: str, input_path: str, url: str | None, api_key_env: str | None, batch_hours: int, wait_for_retrain: bool,
           max_lag_rows: int | None, limit: int | None, address, profile, overrides, as_json, log_level) -> None:
    """Replay labeled rows as live traffic: /predict each row in time order, then /feedback its label.

    Prints the RMSE of the served predictions per month, the model versions that
    answered, and the mean monthly RMSE. The replay compresses months into minutes, so
    by default it waits while the endpoint retrains (see --wait-for-retrain).
    """
    ctx = _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        from raypipe.monitor.replay import api_key_from_env, render
        from raypipe.monitor.replay import replay as run_replay

        cfg = ctx.load(config)
        key = api_key_from_env(api_key_env, cfg)
        progress = None if as_json else (lambda line: click.echo(line, file=_err()))
        if max_lag_rows is None:
            max_lag_rows = max(1, cfg.monitor.window_rows // 2)
        result = run_replay(cfg, input_path, url, api_key=key, batch_hours=batch_hours, wait_for_retrain=wait_for_retrain,
                            max_lag_rows=max_lag_rows, limit=limit, progress=progress)
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(render(result))
    if result.stopped_by:
        # A requested stop is a success (exit 0): what was sent is complete, predictions and labels.
        click.echo(f"stopped ({result.stopped_by}): sent {result.rows:,} of {result.rows_total:,} rows, each with its "
                   f"/feedback; the summary covers those rows", file=_err())


@cli.group()
def models() -> None:
    """Inspect and manage the model registry (CONFIG names the registry and model)."""


def _registry(ctx: _Ctx, config: str):
    from raypipe.registry import ModelRegistry

    cfg = ctx.load(config)
    return ModelRegistry(cfg.registry.uri), cfg.model_name


def _version_row(v) -> dict[str, Any]:
    primary = next((k for k in ("roc_auc", "rmse", "accuracy") if k in v.metrics), None)
    return {
        "version": v.version,
        "status": v.status,
        "aliases": list(v.aliases),
        "created_at": v.created_at,
        "run_id": v.run_id,
        "metric": f"{primary}={v.metrics[primary]:.4f}" if primary and v.metrics[primary] is not None else "",
    }


@models.command("list")
@click.argument("config", type=click.Path(dir_okay=False))
@_common
def models_list(config: str, address, profile, overrides, as_json, log_level) -> None:
    """List the registered versions of CONFIG's model."""
    ctx = _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        registry, name = _registry(ctx, config)
        rows = [_version_row(v) for v in registry.list_versions(name)]
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    if as_json:
        click.echo(json.dumps({"model": name, "versions": rows}))
        return
    click.echo(f"{'version':>7}  {'status':<10} {'aliases':<20} {'metric':<18} {'created_at':<26} run_id")
    for r in rows:
        click.echo(f"{r['version']:>7}  {r['status']:<10} {','.join(r['aliases']):<20} {r['metric']:<18} {r['created_at']:<26} {r['run_id']}")


@models.command("show")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("ref", default="champion")
@_common
def models_show(config: str, ref: str, address, profile, overrides, as_json, log_level) -> None:
    """Show one version (REF: a number, an alias or NAME@REF; default champion) and its events."""
    ctx = _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        registry, name = _registry(ctx, config)
        version = registry.get(name, ref)
        events = [e.to_dict() for e in registry.events(name) if e.version == version.version]
        lineage_path = f"{registry.local_path(name, version.version)}/lineage.json"
        with open(lineage_path, encoding="utf-8") as fh:
            lineage = json.load(fh)
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    body = {**version.to_dict(), "events": events, "lineage": {k: v for k, v in lineage.items() if k != "config"}}
    gated = next((e for e in reversed(events) if e["event"] in ("promoted", "rejected") and "gate" in e["details"]), None)
    body["gate"] = (gated or {}).get("details", {}).get("gate")
    # The parent: the champion this version was gated against (None for a first version).
    body["parent"] = (gated or {}).get("details", {}).get("champion_version")
    if as_json:
        click.echo(json.dumps(body, default=str))
        return
    click.echo(_version_text(body))


def _gate_lines(gate: dict[str, Any] | None) -> list[str]:
    """One line per gate check: ``  ok   rmse 57.2 <= 150.0: passed`` or ``  FAIL …``."""
    return [f"  {'ok  ' if r['passed'] else 'FAIL'} {r['message']}" for r in (gate or {}).get("reasons", [])]


def _version_text(body: dict[str, Any]) -> str:
    """``raypipe models show``: one version for a person (``--json`` has every field)."""
    lineage = body["lineage"]
    aliases = ", ".join(body["aliases"]) or "none"
    lines = [f"{body['model']} version {body['version']}: {body['status']} (aliases: {aliases})",
             f"  registered {body['created_at']} by {body.get('actor') or '?'}; run {body.get('run_id')}, "
             f"trigger {lineage.get('trigger') or body['tags'].get('trigger') or '?'}"]
    scalars = {k: v for k, v in body["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if scalars:
        lines.append("metrics (test):")
        lines += [f"  {k:<24} {v:.4f}" if isinstance(v, float) else f"  {k:<24} {v:,}" for k, v in scalars.items()]
    gate = body.get("gate")
    if gate:
        lines.append(f"gate: {'passed' if gate['passed'] else 'REJECTED'}")
        lines += _gate_lines(gate)
    else:
        lines.append("gate: not decided (registered without gating)")
    parent = body.get("parent")
    rows = lineage.get("rows") or {}
    packages = lineage.get("packages") or {}
    lines += ["lineage:",
              f"  data fingerprint  {lineage.get('data_fingerprint')}",
              f"  config hash       {lineage.get('config_hash')}",
              f"  parent            {f'version {parent} (the champion it was gated against)' if parent else 'none (no champion when it was gated)'}",
              "  rows              " + ", ".join(f"{k} {v:,}" for k, v in rows.items() if isinstance(v, int)),
              f"  git commit        {lineage.get('git_commit') or '?'}",
              "  packages          " + ", ".join(f"{k} {v}" for k, v in packages.items())]
    lines.append(f"artifacts ({body['uri']}):")
    lines += [f"  {path:<16} {f['size']:>12,} B  sha256 {f['sha256']}" for path, f in sorted(body["files"].items())]
    lines.append("events:")
    lines += [f"  {e['ts']}  {e['event']:<18} {e.get('reason') or ''}".rstrip() for e in body["events"]]
    return "\n".join(lines)


@models.command("promote")
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("ref")
@click.option("--reason", default="promoted by hand", show_default=True, help="Why, for the event log.")
@_common
def models_promote(config: str, ref: str, reason: str, address, profile, overrides, as_json, log_level) -> None:
    """Make version REF the champion (recorded in the event log)."""
    ctx = _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        registry, name = _registry(ctx, config)
        version = registry.promote(name, registry.get(name, ref).version, reason=reason)
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    click.echo(json.dumps({"model": name, "champion": version.version}) if as_json else f"{name}: version {version.version} is champion")


@models.command("rollback")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--reason", default="rolled back by hand", show_default=True, help="Why, for the event log.")
@_common
def models_rollback(config: str, reason: str, address, profile, overrides, as_json, log_level) -> None:
    """Restore the previous champion."""
    ctx = _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        registry, name = _registry(ctx, config)
        version = registry.rollback(name, reason=reason)
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    click.echo(json.dumps({"model": name, "champion": version.version}) if as_json else f"{name}: rolled back to version {version.version}")


@models.command("verify")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--version", "version", default=None, help="Check only this version (a number or an alias; default: every version).")
@click.option("--all-models", is_flag=True, help="Check every model of the registry, not only CONFIG's.")
@_common
def models_verify(config: str, version: str | None, all_models: bool, address, profile, overrides, as_json, log_level) -> None:
    """Check the registry: every artifact against its sha256, every event line, every alias.

    Exits 0 when everything checks out, 1 with one line per problem otherwise.
    """
    ctx = _make_ctx(address, profile, overrides, as_json, log_level)
    try:
        registry, name = _registry(ctx, config)
        report = registry.verify(None if all_models else name, version)
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        _fail(exc, as_json, log_level)
    problems = report["problems"]
    if as_json:
        click.echo(json.dumps({"status": "ok" if not problems else "failed", "registry": registry.uri, **report}))
    else:
        for problem in problems:
            click.echo(f"problem: {problem}", err=True)
        for a in report["abandoned"]:
            recorded = "" if a["recorded"] else " (not in the event log yet: the next write records it)"
            click.echo(f"note: {a['model']} version {a['version']} {a['reason']}{recorded}; it stays a candidate: "
                       f"promote it by hand after checking it (raypipe models promote), or leave it.", err=True)
        click.echo(f"registry {registry.uri}: {report['versions']} versions, {report['files']} files, "
                   f"{report['events']} events checked; {len(problems)} problems"
                   + (f", {len(report['abandoned'])} abandoned candidates" if report["abandoned"] else ""))
    if problems:
        sys.exit(1)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``raypipe`` console script."""
    try:
        return cli.main(args=argv, prog_name="raypipe", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", file=_err())
        sys.exit(130)


if __name__ == "__main__":
    main()
