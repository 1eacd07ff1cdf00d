"""Config loading: typed models, precise errors, interpolation, profiles, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raypipe.config import PipelineConfig, check_config, load_config, parse_config
from raypipe.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def _raw() -> dict:
    return yaml.safe_load(QUICKSTART.read_text())


def _error(raw: dict, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "q.yaml", **kw)
    return str(info.value)


def test_quickstart_loads_into_typed_frozen_models():
    cfg = load_config(QUICKSTART)
    assert isinstance(cfg, PipelineConfig)
    assert cfg.data.source.type == "csv"
    assert cfg.data.source.na_values == ["?"]
    assert cfg.data.schema_.label == "income"
    assert cfg.data.schema_.columns["age"].min == 17
    assert [s.type for s in cfg.features] == ["impute", "categorical", "expression", "log1p"]
    assert cfg.model_name == "adult-income"
    with pytest.raises(Exception):
        cfg.name = "other"  # frozen


def test_every_spec_section_has_defaults_and_descriptions():
    cfg = parse_config({"name": "x", "data": {"source": {"type": "parquet", "paths": "a.parquet"}}})
    for section in ("cluster", "data", "features", "model", "tune", "evaluate", "registry", "serve", "monitor", "retrain", "profiles"):
        assert hasattr(cfg, section)
    assert cfg.data.source.paths == ["a.parquet"]

    def walk(model_cls, seen):
        if model_cls in seen:
            return
        seen.add(model_cls)
        for name, field in model_cls.model_fields.items():
            assert field.description, f"{model_cls.__name__}.{name} has no description"
            for arg in _model_args(field.annotation):
                walk(arg, seen)

    walk(PipelineConfig, set())


def _model_args(annotation):
    import typing

    from pydantic import BaseModel

    stack, out = [annotation], []
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, BaseModel):
            out.append(a)
        stack.extend(typing.get_args(a))
    return out


def test_misspelled_key_names_path_and_suggestion():
    raw = _raw()
    raw["model"]["num_boost_rounds"] = 10
    msg = _error(raw)
    assert "q.yaml: model.num_boost_rounds: unknown key 'num_boost_rounds'" in msg
    assert "Did you mean 'num_boost_round'?" in msg


def test_unknown_feature_type_gets_did_you_mean_with_list_index():
    raw = _raw()
    raw["features"][1]["type"] = "categorcal"
    msg = _error(raw)
    assert "features[1].type: unknown type 'categorcal'. Did you mean 'categorical'?" in msg


def test_unknown_key_inside_feature_step_and_nested_union():
    raw = _raw()
    raw["features"][0]["strategi"] = "mean"
    assert "features[0].strategi: unknown key 'strategi' in features[0]. Did you mean 'strategy'?" in _error(raw)
    raw = _raw()
    raw["data"]["source"] = {"type": "union", "sources": [{"type": "csv", "paths": "a.csv", "delimter": ";"}]}
    assert "data.source.sources[0].delimter: unknown key 'delimter'" in _error(raw)


def test_unknown_source_type_and_bad_values():
    raw = _raw()
    raw["data"]["source"]["type"] = "cvs"
    assert "data.source.type: unknown type 'cvs'. Did you mean 'csv'?" in _error(raw)
    raw = _raw()
    raw["data"]["split"]["test_fraction"] = 2
    assert "data.split.test_fraction: Input should be less than 1. Got 2." in _error(raw)
    raw = _raw()
    raw["data"]["schema"]["columns"]["age"]["min"] = 200
    assert "data.schema.columns.age: min (200.0) is greater than max (100.0)" in _error(raw)


def test_model_validators_explain_themselves():
    raw = _raw()
    raw["data"]["source"]["header"] = False
    del raw["data"]["source"]["column_names"]
    assert "column_names must list the columns" in _error(raw)
    raw = _raw()
    raw["features"][0] = {"type": "impute", "columns": ["age"], "strategy": "constant"}
    assert "strategy 'constant' needs fill_value" in _error(raw)
    raw = _raw()
    raw["features"].append({"type": "bucketize", "columns": ["age"], "boundaries": [3, 1]})
    assert "boundaries must be sorted" in _error(raw)


def test_env_interpolation(monkeypatch):
    monkeypatch.setenv("RP_DATA", "data/adult/adult.data")
    monkeypatch.delenv("RP_MISSING", raising=False)
    raw = _raw()
    raw["data"]["source"]["paths"] = ["${RP_DATA}", "${RP_MISSING:-data/adult/adult.test}"]
    cfg = parse_config(raw)
    assert cfg.data.source.paths == ["data/adult/adult.data", "data/adult/adult.test"]
    raw["registry"]["uri"] = "s3://bucket/${RP_MISSING}"
    msg = _error(raw)
    assert "registry.uri: environment variable ${RP_MISSING} is not set" in msg


def test_set_overrides_with_dotted_paths_and_indices():
    cfg = parse_config(
        _raw(),
        overrides=["model.num_boost_round=7", "features[0].strategy=most_frequent", "model.params.eta=0.3", "cluster.address=auto"],
    )
    assert cfg.model.num_boost_round == 7
    assert cfg.features[0].strategy == "most_frequent"
    assert cfg.model.params["eta"] == 0.3
    assert cfg.cluster.address == "auto"
    assert "--set 'model': expected dotted.path=value" in _error(_raw(), overrides=["model"])
    assert "features[9] has no such list item" in _error(_raw(), overrides=["features[9].type=drop"])
    # An override is validated like the file: a wrong type is reported at its path.
    assert "model.num_boost_round: Input should be a valid integer" in _error(_raw(), overrides=["model.num_boost_round=many"])


def test_profiles_overlay_and_unknown_profile():
    cfg = parse_config(_raw(), profile="test")
    assert cfg.model.num_boost_round == 20
    assert cfg.model.params["max_depth"] == 6  # deep merge keeps untouched keys
    assert cfg.registry.uri == "./raypipe-registry-test"
    msg = _error(_raw(), profile="tset")
    assert "--profile 'tset' is not defined in profiles. Did you mean 'test'?" in msg


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping at the top level, got list"):
        load_config(bad)


def test_check_config_accepts_quickstart(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert check_config(load_config(QUICKSTART), "quickstart.yaml") == []


def test_check_config_finds_every_problem(monkeypatch):
    monkeypatch.chdir(ROOT)
    raw = _raw()
    raw["data"]["source"]["paths"] = ["data/adult/adult.dat"]
    raw["data"]["split"]["test_paths"] = ["data/adult/adult.dat"]
    raw["data"]["schema"]["label"] = "incme"
    raw["features"].append({"type": "standard_scale", "columns": ["hours_per_wek"]})
    raw["evaluate"]["slices"] = ["sexx"]
    with pytest.raises(ConfigError) as info:
        check_config(parse_config(raw), "q.yaml")
    msg = str(info.value)
    assert "q.yaml: data.source: path 'data/adult/adult.dat' does not exist" in msg
    assert "data.schema.label: column 'incme' is not declared. Did you mean 'income'?" in msg
    assert "features[4].columns: column 'hours_per_wek' is not a feature at this step. Did you mean 'hours_per_week'?" in msg
    assert "evaluate.slices: column 'sexx' is not declared. Did you mean 'sex'?" in msg


def test_check_config_walks_feature_steps(monkeypatch):
    monkeypatch.chdir(ROOT)
    raw = _raw()
    raw["features"].append({"type": "drop", "columns": ["income"]})
    with pytest.raises(ConfigError, match=r"features\[4\].columns: column 'income' is the label and cannot be a feature"):
        check_config(parse_config(raw), "q.yaml")
    raw = _raw()
    raw["features"].append({"type": "expression", "name": "x", "expr": "agee * 2"})
    with pytest.raises(ConfigError, match=r"features\[4\].expr: column 'agee' is not a feature at this step. Did you mean 'age'\?"):
        check_config(parse_config(raw), "q.yaml")
    raw = _raw()
    raw["features"][1]["columns"].remove("race")  # a text column left unencoded
    with pytest.raises(ConfigError, match="race"):
        check_config(parse_config(raw), "q.yaml")


def test_model_seed_defaults_to_the_split_seed():
    raw = {"name": "x", "data": {"source": {"type": "parquet", "paths": "a.parquet"}}}
    cfg = parse_config(raw)
    assert cfg.model.seed is None and cfg.model_seed == cfg.data.split.seed == 42
    assert parse_config(raw, overrides=["data.split.seed=7"]).model_seed == 7
    cfg = parse_config(raw, overrides=["data.split.seed=7", "model.seed=3"])
    assert (cfg.model_seed, cfg.data.split.seed) == (3, 7)
    assert "command line: --set model.seed=abc: model.seed: Input should be a valid integer" in _error(raw, overrides=["model.seed=abc"])
