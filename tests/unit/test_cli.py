"""The CLI without Ray: validate, exit codes, messages without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from raypipe.cli import cli

from _net import free_port

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_validate_quickstart_ok(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = _invoke("validate", "configs/quickstart.yaml")
    assert result.exit_code == 0, result.output
    assert "configs/quickstart.yaml: ok (adult-income: csv source, 4 feature steps" in result.output


def test_validate_misspelled_key_exits_2_with_path_and_suggestion(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["data"]["validaton"] = raw["data"].pop("validation")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = _invoke("validate", bad)
    assert result.exit_code == 2
    assert f"error: {bad}: data.validaton: unknown key 'validaton' in data. Did you mean 'validation'?" in result.output
    assert "Traceback" not in result.output


def test_validate_json_output_is_one_object(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["validate", "configs/quickstart.yaml", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"status": "ok", "config": "configs/quickstart.yaml", "name": "adult-income", "warnings": []}


def test_validate_set_and_profile_options(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = _invoke("validate", "configs/quickstart.yaml", "--profile", "nope")
    assert result.exit_code == 2
    assert "--profile 'nope' is not defined in profiles" in result.output
    result = _invoke("validate", "configs/quickstart.yaml", "--set", "features[1].columns=[sexx]")
    assert result.exit_code == 2
    assert "features[1].columns: column 'sexx' is not a feature at this step. Did you mean 'sex'?" in result.output


def test_missing_config_file_is_a_config_error(tmp_path):
    result = _invoke("validate", tmp_path / "missing.yaml")
    assert result.exit_code == 2
    assert "cannot read the config file" in result.output


def test_help_everywhere():
    for args in ([], ["validate"], ["run"], ["infer-schema"]):
        result = _invoke(*args, "--help")
        assert result.exit_code == 0
        assert "Usage:" in result.output
    assert "--profile" in _invoke("run", "--help").output


def test_usage_error_exits_2():
    assert _invoke("run").exit_code == 2
    assert _invoke("no-such-command").exit_code == 2


def test_set_errors_are_blamed_on_the_command_line(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["validate", "configs/quickstart.yaml", "--set", "model.num_boost_round=abc"])
    assert result.exit_code == 2
    assert ("error: command line: --set model.num_boost_round=abc: model.num_boost_round: Input should be a valid "
            "integer, unable to parse string as an integer. Got 'abc'.") in result.output
    result = CliRunner().invoke(cli, ["validate", "configs/quickstart.yaml", "--set", "model.nmu_boost_round=3"])
    assert "error: command line: --set model.nmu_boost_round=3: model.nmu_boost_round: unknown key" in result.output
    assert "configs/quickstart.yaml" not in result.output


def test_export_config_names_the_environment_the_cluster_needs(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "serve.yaml"
    result = _invoke("serve", "configs/quickstart.yaml", "--export-config", out)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    notes = [line for line in text.splitlines() if line.startswith("#")]
    assert notes[2] == ("#   RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0 RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0 "
                        "RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1 "
                        "RAY_SERVE_HAPROXY_RETRY_ON='conn-failure empty-response response-timeout' ray start ...")
    assert yaml.safe_load(text)["applications"][0]["import_path"] == "raypipe.serving.app:build"
    result = _invoke("serve", "configs/quickstart.yaml", "--no-fast-path", "--export-config", out)
    assert result.exit_code == 0, result.output
    notes = [line for line in out.read_text().splitlines() if line.startswith("#")]
    assert "HA_PROXY" not in notes[2] and notes[-1] == "# serve.fast_path is false: Ray's own Python proxy answers on http_options."


def _registry_with_two_versions(tmp_path):
    """adult-income v1 (promoted, first) and v2 (rejected against v1), artifacts on disk."""
    from raypipe.registry import ModelRegistry

    reg = ModelRegistry(str(tmp_path / "registry"))
    for number, auc in ((1, 0.9), (2, 0.8)):
        art = tmp_path / f"art{number}"
        art.mkdir()
        (art / "model.ubj").write_bytes(b"booster %d" % number)
        (art / "lineage.json").write_text(json.dumps({
            "run_id": f"r{number}", "trigger": "manual" if number == 1 else "drift", "config": {"secret": "not shown"},
            "config_hash": "c" * 64, "data_fingerprint": f"{number}" * 64, "rows": {"ingested": 100, "train": 70},
            "git_commit": "abc1234", "packages": {"ray": "2.60.0", "xgboost": "3.0.0"}}))
        reg.register("adult-income", art, metrics={"roc_auc": auc, "rows": 30}, run_id=f"r{number}")
    v1 = {"passed": True, "reasons": [{"passed": True, "message": "roc_auc 0.9 >= 0.85: passed"}]}
    reg.promote("adult-income", 1, reason="gates passed", details={"gate": v1, "champion_version": None})
    v2 = {"passed": False, "reasons": [{"passed": False, "message": "roc_auc 0.8 >= 0.85: failed"}]}
    reg.reject("adult-income", 2, reason="gates failed", details={"gate": v2, "champion_version": 1})
    return reg


def test_models_show_reads_as_text_and_json_keeps_every_field(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.chdir(ROOT)
    _registry_with_two_versions(tmp_path)
    where = ("--set", f"registry.uri={tmp_path / 'registry'}")
    text = _invoke("models", "show", QUICKSTART, "2", *where)
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0] == "adult-income version 2: rejected (aliases: none)"
    assert lines[1].endswith("run r2, trigger drift")
    assert "  roc_auc                  0.8000" in lines and "  rows                     30" in lines
    assert lines[lines.index("gate: REJECTED") + 1] == "  FAIL roc_auc 0.8 >= 0.85: failed"
    assert f"  data fingerprint  {'2' * 64}" in lines and f"  config hash       {'c' * 64}" in lines
    assert "  parent            version 1 (the champion it was gated against)" in lines
    assert "  rows              ingested 100, train 70" in lines
    digest = hashlib.sha256(b"booster 2").hexdigest()
    assert f"  model.ubj                   9 B  sha256 {digest}" in lines
    assert [ln.split()[1] for ln in lines[lines.index("events:") + 1:]] == ["registered", "rejected"]
    assert "{" not in text.output and "not shown" not in text.output

    first = _invoke("models", "show", QUICKSTART, *where)  # default: the champion
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[0] == "adult-income version 1: champion (aliases: champion)"
    assert "  parent            none (no champion when it was gated)" in first.output.splitlines()
    assert "  ok   roc_auc 0.9 >= 0.85: passed" in first.output.splitlines()

    as_json = _invoke("models", "show", QUICKSTART, "2", "--json", *where)
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.output)
    assert (body["version"], body["status"], body["parent"], body["gate"]["passed"]) == (2, "rejected", 1, False)
    assert body["files"]["model.ubj"] == {"sha256": digest, "size": 9}
    assert body["lineage"]["data_fingerprint"] == "2" * 64 and "config" not in body["lineage"]
    assert [e["event"] for e in body["events"]] == ["registered", "rejected"]


def test_monitor_report_renders_a_saved_status_and_names_an_unreachable_endpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    saved = tmp_path / "status.json"
    saved.write_text(json.dumps({"model": {"name": "adult-income", "version": 3}, "monitoring": True, "windows": 0,
                                 "logged_rows": 5, "labelled_rows": 0, "window_rows": 100,
                                 "drift": {"method": "psi", "threshold": 0.2, "consecutive_windows": 0, "alert_after": 1},
                                 "last_window": None, "history": [], "alerts": [], "retrain": {"running": True, "count": 0, "history": []}}))
    out = tmp_path / "monitor.html"
    result = _invoke("monitor", "report", QUICKSTART, "--from-json", saved, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {out}: adult-income version 3, 0 windows (open it in a browser)\n"
    page = out.read_text()
    assert "<h1>raypipe monitor: adult-income version 3</h1>" in page and "<h2>Retraining (0 done, running)</h2>" in page
    port = free_port()  # a port nobody listens on
    down = _invoke("monitor", "report", QUICKSTART, "--url", f"http://127.0.0.1:{port}", "-o", tmp_path / "x.html")
    assert down.exit_code == 1 and not (tmp_path / "x.html").exists()
    assert f"error: monitor report: cannot reach http://127.0.0.1:{port}/monitor (ConnectionError)" in down.output
