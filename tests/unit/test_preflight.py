"""Preflight: each problem a run would hit late is one clear error before Ray starts."""

from __future__ import annotations

import json

import pytest

from raypipe.config import load_config
from raypipe.errors import ConfigError, StageError
from raypipe.pipeline.preflight import preflight
from raypipe.registry import ModelRegistry


def _config(tmp_path, label: str = "diagnosis", **extra: str):
    (tmp_path / "data.csv").write_text("radius,texture,diagnosis\n1.0,2.0,M\n2.0,3.0,B\n")
    body = {
        "version": 1,
        "name": "cancer",
        "data": {"source": {"type": "csv", "paths": [str(tmp_path / "data.csv")]}, "schema": {"label": label}},
        "model": {"task": "binary_classification", "positive_class": "M"},
        "registry": {"uri": extra.get("registry", str(tmp_path / "reg"))},
        "output": {"uri": extra.get("output", str(tmp_path / "out"))},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(body))
    return load_config(path)


def test_clean_config_passes_and_leaves_no_probe(tmp_path):
    preflight(_config(tmp_path))
    assert sorted(p.name for p in (tmp_path / "reg").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_misspelled_label_is_named_from_the_header(tmp_path):
    with pytest.raises(ConfigError, match=r"data.schema.label: column 'diagnosys' is not in the source .*radius, texture, "
                                          r"diagnosis\)\. Did you mean 'diagnosis'\?"):
        preflight(_config(tmp_path, label="diagnosys"))


def test_unwritable_registry_is_one_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StageError, match=r"preflight: registry.uri .*afile/reg: not writable"):
        preflight(_config(tmp_path, registry=str(tmp_path / "afile" / "reg")))


def test_unreadable_aliases_and_damaged_champion(tmp_path):
    cfg = _config(tmp_path)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in ("features.json", "schema.json", "profile.json", "metrics.json", "params.json", "lineage.json"):
        (bundle / name).write_text("{}")
    (bundle / "model.ubj").write_bytes(b"{not a model")  # a truncated file
    reg = ModelRegistry(tmp_path / "reg")
    reg.register("cancer", bundle, {}, "r-1")
    reg.promote("cancer", 1)
    with pytest.raises(StageError, match=r"preflight: the champion cancer@1 does not load: model bundle .*/versions/1/model.ubj: not a readable XGBoost model \(12 bytes"):
        preflight(cfg)
    (tmp_path / "reg" / "cancer" / "aliases.json").write_text("{garbage")
    with pytest.raises(StageError, match=r"preflight: registry .*: cannot read model 'cancer': .*aliases.json is not valid JSON"):
        preflight(cfg)


def test_damaged_watermark_state(tmp_path):
    state = tmp_path / "out" / "state" / "cancer"
    state.mkdir(parents=True)
    (state / "csv.json").write_text('{"column": "ts", "ty')
    with pytest.raises(StageError, match=r"preflight: watermark file .*csv.json: unreadable"):
        preflight(_config(tmp_path))
