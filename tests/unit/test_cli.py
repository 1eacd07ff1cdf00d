"""The CLI without Ray: validate, exit codes, messages without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from raypipe.cli import cli

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
