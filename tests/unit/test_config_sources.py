"""Config of the ``sql`` (partition, incremental) and ``api`` sources: defaults and precise errors."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from raypipe.config import check_config, load_config, parse_config
from raypipe.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _source(source: dict):
    return parse_config({"name": "t", "data": {"source": source}}, "s.yaml").data.source


def _error(source: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config({"name": "t", "data": {"source": source}}, "s.yaml")
    return str(info.value)


SQL = {"type": "sql", "url": "postgresql://app@db/shop", "table": "orders"}
API = {"type": "api", "url": "https://api.example.com/v1/items"}


def test_sql_partition_and_incremental_defaults():
    src = _source({**SQL, "partition": {"column": "id"}, "incremental": {"column": "updated_at", "start": date(2024, 1, 1)}})
    assert (src.partition.column, src.partition.num_partitions, src.partition.lower, src.partition.upper) == ("id", 4, None, None)
    assert (src.incremental.column, src.incremental.state_uri, src.incremental.start) == ("updated_at", None, date(2024, 1, 1))
    assert src.password_env is None
    bounded = _source({**SQL, "partition": {"column": "id", "num_partitions": 8, "lower": 1, "upper": 1_000_000}})
    assert (bounded.partition.lower, bounded.partition.upper) == (1, 1_000_000)


def test_sql_partition_and_incremental_errors():
    assert _error({**SQL, "partition": {"column": "id; DROP TABLE x"}}) == (
        "s.yaml: data.source.partition.column: expected a plain column name (letters, digits, _). Got 'id; DROP TABLE x'."
    )
    assert _error({**SQL, "partition": {"column": "id", "lower": 10, "upper": 1}}) == (
        "s.yaml: data.source.partition: lower (10) is above upper (1)."
    )
    assert "lower and upper must be of one kind" in _error({**SQL, "partition": {"column": "id", "lower": 1, "upper": "z"}})
    assert "num_partitions" in _error({**SQL, "partition": {"column": "id", "num_partitions": 0}})
    assert (
        "s.yaml: data.source.incremental.colum: unknown key 'colum' in data.source.incremental. Did you mean 'column'?"
        in _error({**SQL, "incremental": {"colum": "id"}})
    )
    assert "data.source.incremental.column: required key is missing" in _error({**SQL, "incremental": {}})


def test_api_defaults():
    src = _source({**API, "records_path": "data.items", "auth": {"token_env": "API_TOKEN"}})
    assert src.pagination.type == "none" and src.pagination.max_pages == 10_000
    assert (src.auth.header, src.auth.scheme) == ("Authorization", "Bearer")
    assert (src.max_retries, src.backoff_s, src.rate_limit_per_s, src.timeout_s, src.concurrency) == (5, 0.5, None, 30.0, 4)
    page = _source({**API, "pagination": {"type": "page", "page_size": 100, "size_param": "per_page", "total_records_path": "meta.total"}})
    assert (page.pagination.page_param, page.pagination.start_page) == ("page", 1)


@pytest.mark.parametrize(
    "source, message",
    [
        ({**API, "url": "ftp://x/y"}, "data.source.url: url must start with http:// or https:// and name a host. Got 'ftp://x/y'."),
        ({**API, "pagination": {"type": "cursor"}}, "data.source.pagination: pagination type 'cursor' needs cursor_path"),
        ({**API, "pagination": {"type": "page", "cursor_path": "next"}}, "cursor_path applies to pagination type cursor, not 'page'"),
        ({**API, "pagination": {"type": "next_link", "page_size": 10}}, "page_size applies to pagination type page, not 'next_link'"),
        ({**API, "pagination": {"type": "page", "total_records_path": "total"}}, "total_records_path needs page_size"),
        ({**API, "pagination": {"type": "pages"}}, "data.source.pagination.type: Input should be 'none', 'next_link', 'page' or 'cursor'"),
        ({**API, "rate_limit_per_s": 0}, "data.source.rate_limit_per_s: Input should be greater than 0"),
        ({**API, "auth": {"token": "secret"}}, "unknown key 'token' in data.source.auth. Did you mean 'token_env'?"),
        ({**API, "retries": 3}, "unknown key 'retries' in data.source. Did you mean 'max_retries'?"),
        ({"type": "apii", "url": "http://x"}, "data.source.type: unknown type 'apii'. Did you mean 'api'?"),
    ],
)
def test_api_errors(source, message):
    assert message in _error(source)


@pytest.mark.parametrize("name", ["postgres-example.yaml", "api-example.yaml"])
def test_example_configs_validate(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(ROOT / "configs" / name)
    check_config(cfg, name)
    assert cfg.data.source.type in ("sql", "api")
