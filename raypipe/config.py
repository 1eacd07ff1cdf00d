"""Typed configuration: the YAML file as frozen pydantic models, and its loader.

The loader reads YAML, interpolates ``${VAR}`` / ``${VAR:-default}`` from the
environment, overlays a profile, applies ``--set dotted.path=value`` overrides and
validates the result into :class:`PipelineConfig`. Every mistake becomes a
:class:`~raypipe.errors.ConfigError` that names the file, the dotted path, what was
expected, what was given and, for unknown keys or ``type`` names, the closest
valid name.

This module is pure: it never imports Ray, so ``raypipe validate`` is instant.

Example::

    cfg = load_config("configs/quickstart.yaml", profile="test", overrides=["model.num_boost_round=50"])
    cfg.model.task  # 'binary_classification'
"""

from __future__ import annotations

import copy
import os
import re
import types
import typing
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from raypipe.errors import ConfigError, did_you_mean

__all__ = ["PipelineConfig", "load_config", "check_config", "SOURCE_TYPES", "FEATURE_TYPES"]


class _Model(BaseModel):
    """Base of every config model: immutable, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _paths(value: Any) -> Any:
    # A single path is the common case in YAML; accept it as a one-element list.
    return [value] if isinstance(value, str) else value


# --------------------------------------------------------------------------- cluster


class ClusterConfig(_Model):
    address: str | None = Field(
        None, description="Ray address to connect to ('auto', 'ray://host:10001'); null starts a local Ray."
    )
    runtime_env: dict[str, Any] = Field(
        default_factory=dict, description="Ray runtime_env for the job (pip, env_vars, working_dir, ...)."
    )
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs of the local Ray started when address is null (default: all)."
    )


# --------------------------------------------------------------------------- sources


class _SourceBase(_Model):
    name: str | None = Field(None, description="Name of the source in metrics and quarantine records (default: its type).")
    columns: list[str] | None = Field(None, description="Keep only these columns (after renames); null keeps all.")
    rename: dict[str, str] = Field(default_factory=dict, description="Rename columns: {old_name: new_name}.")


class _FileSource(_SourceBase):
    paths: list[str] = Field(
        ..., min_length=1, description="Files, folders or globs; local paths or any pyarrow/fsspec URI (s3://, gs://, ...)."
    )

    _coerce_paths = field_validator("paths", mode="before")(_paths)


class CsvSource(_FileSource):
    type: Literal["csv"] = Field(description="Delimited text files read in parallel by Ray Data.")
    delimiter: str = Field(",", min_length=1, max_length=1, description="Field delimiter.")
    header: bool = Field(True, description="Whether the first line of each file names the columns.")
    column_names: list[str] | None = Field(
        None, description="Column names when the files have no header (required when header is false)."
    )
    na_values: list[str] = Field(
        default_factory=lambda: ["", "NA", "N/A", "null", "NULL"],
        description="Tokens read as missing values (after whitespace trimming), e.g. ['?'].",
    )
    trim_whitespace: bool = Field(True, description="Strip spaces around each field (Adult has a space after each comma).")
    encoding: str = Field("utf8", description="Text encoding of the files.")

    @model_validator(mode="after")
    def _names_without_header(self) -> CsvSource:
        if not self.header and not self.column_names:
            raise ValueError("header is false, so column_names must list the columns in file order")
        return self


class ParquetSource(_FileSource):
    type: Literal["parquet"] = Field(description="Parquet files or datasets.")


class JsonSource(_FileSource):
    type: Literal["json", "jsonl"] = Field(
        description="JSON files: 'jsonl' is one object per line; 'json' is newline-delimited too, or a top-level array."
    )


class TextSource(_FileSource):
    type: Literal["text"] = Field(description="Log lines parsed into columns by a regular expression with named groups.")
    pattern: str = Field(..., description=r"Regex with named groups, e.g. '(?P<ts>\S+) (?P<level>\w+) (?P<msg>.*)'.")
    encoding: str = Field("utf-8", description="Text encoding of the files.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression ({exc})") from exc
        if not compiled.groupindex:
            raise ValueError("pattern has no named groups; name each column, e.g. (?P<level>\\w+)")
        return value


_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
# YAML reads an unquoted 2024-01-01 as a date: accept dates and datetimes as written.
SqlBound = Union[int, float, datetime, date, str]


def _identifier(value: str) -> str:
    if not re.fullmatch(_IDENTIFIER, value):
        raise ValueError("expected a plain column name (letters, digits, _)")
    return value


class SqlPartition(_Model):
    column: str = Field(
        ..., description="Numeric, date or timestamp column of the table/query whose range is split into partitions."
    )
    num_partitions: int = Field(4, ge=1, le=10_000, description="Number of range queries, each read by its own Ray task.")
    lower: SqlBound | None = Field(
        None, description="Start of the range to split (default: SELECT MIN(column)); rows below it still go to the first partition."
    )
    upper: SqlBound | None = Field(
        None, description="End of the range to split (default: SELECT MAX(column)); rows above it still go to the last partition."
    )

    _column = field_validator("column")(_identifier)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> SqlPartition:
        lo, hi = self.lower, self.upper
        if lo is not None and hi is not None:
            if type(lo) is not type(hi) and not {type(lo), type(hi)} <= {int, float}:
                raise ValueError(f"lower and upper must be of one kind, got {lo!r} and {hi!r}")
            if lo > hi:
                raise ValueError(f"lower ({lo!r}) is above upper ({hi!r})")
        return self


class SqlIncremental(_Model):
    column: str = Field(
        ...,
        description="Watermark column (an increasing id or timestamp): each run reads only rows above the last "
        "committed value; rows where it is null are never read.",
    )
    state_uri: str | None = Field(
        None,
        description="Folder (local or pyarrow/fsspec URI) of the watermark file <source name>.json "
        "(default: <output.uri>/state/<pipeline name>).",
    )
    start: SqlBound | None = Field(None, description="Watermark of the first run: only rows above it are read (default: all rows).")

    _column = field_validator("column")(_identifier)


class SqlSource(_SourceBase):
    type: Literal["sql"] = Field(description="A SQL table or query read by Ray Data over a DB-API connection.")
    url: str = Field(
        ...,
        description="Database URL: sqlite:///path.db (built in), postgresql://user@host/db, mysql://user@host/db. "
        "Keep the password out of it: see password_env.",
    )
    password_env: str | None = Field(
        None,
        description="Environment variable holding the database password (default: PGPASSWORD for PostgreSQL, "
        "MYSQL_PWD for MySQL); read on the driver, never written to reports.",
    )
    query: str | None = Field(None, description="SELECT statement to run (exclusive with table).")
    table: str | None = Field(None, description="Table to read whole (exclusive with query).")
    partition: SqlPartition | None = Field(
        None, description="Read in parallel: the range of a numeric or time column split into num_partitions queries."
    )
    incremental: SqlIncremental | None = Field(
        None, description="Read only rows newer than the watermark committed by the last successful run."
    )

    @model_validator(mode="after")
    def _query_or_table(self) -> SqlSource:
        if (self.query is None) == (self.table is None):
            raise ValueError("give exactly one of 'query' or 'table'")
        if self.table is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", self.table):
            raise ValueError(f"table must be a plain identifier, got {self.table!r}")
        return self


class ApiAuth(_Model):
    token_env: str = Field(..., description="Environment variable holding the token (read on the driver; never logged).")
    header: str = Field("Authorization", description="Header that carries the token.")
    scheme: str | None = Field("Bearer", description="Prefix of the header value ('Bearer'); null sends the bare token (API keys).")


_PAGINATION_FIELDS = {
    "none": set(),
    "next_link": {"next_path"},
    "page": {"page_param", "start_page", "size_param", "page_size", "total_pages_path", "total_records_path"},
    "cursor": {"cursor_param", "cursor_path"},
}


class ApiPagination(_Model):
    type: Literal["none", "next_link", "page", "cursor"] = Field(
        "none",
        description="none: one request; next_link: follow the next URL (body or Link header); page: a page-number "
        "parameter (read in parallel when the total is known); cursor: pass the cursor of each response to the next.",
    )
    next_path: str | None = Field(None, description="next_link: dotted path of the next URL in the body (default: the Link header's rel=next).")
    page_param: str = Field("page", description="page: query parameter of the page number.")
    start_page: int = Field(1, ge=0, description="page: number of the first page.")
    size_param: str | None = Field(None, description="page: query parameter of the page size (sent with page_size).")
    page_size: int | None = Field(None, ge=1, description="page: records per page; a shorter page is the last.")
    total_pages_path: str | None = Field(
        None, description="page: dotted path of the page count in the first response; with it pages are read in parallel."
    )
    total_records_path: str | None = Field(
        None, description="page: dotted path of the record count in the first response (needs page_size); enables parallel reads."
    )
    cursor_param: str = Field("cursor", description="cursor: query parameter that sends the cursor.")
    cursor_path: str | None = Field(None, description="cursor: dotted path of the next cursor in the body; empty or null ends.")
    max_pages: int = Field(10_000, ge=1, description="Safety limit: more pages than this is an error, not a silent cut.")

    @model_validator(mode="after")
    def _fields_fit_type(self) -> ApiPagination:
        foreign = sorted(self.model_fields_set - _PAGINATION_FIELDS[self.type] - {"type", "max_pages"})
        if foreign:
            owners = ", ".join(sorted(t for t, fields in _PAGINATION_FIELDS.items() if foreign[0] in fields))
            raise ValueError(f"{foreign[0]} applies to pagination type {owners}, not {self.type!r}")
        if self.type == "cursor" and not self.cursor_path:
            raise ValueError("pagination type 'cursor' needs cursor_path (where the next cursor is in the body)")
        if self.total_records_path and not self.page_size:
            raise ValueError("total_records_path needs page_size (to count the pages)")
        if self.size_param and not self.page_size:
            raise ValueError("size_param needs page_size (the value to send)")
        return self


class ApiSource(_SourceBase):
    type: Literal["api"] = Field(description="Records of a JSON HTTP API, page by page, read by Ray Data tasks.")
    url: str = Field(..., description="URL of the first page (http:// or https://).")
    params: dict[str, str | int | float | bool] = Field(default_factory=dict, description="Query parameters of every request (no secrets: see auth).")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers (no secrets: see auth).")
    auth: ApiAuth | None = Field(None, description="Token header, the token read from an environment variable.")
    records_path: str | None = Field(
        None, description="Dotted path of the list of records in each response ('data.items'); null: the body is the list."
    )
    pagination: ApiPagination = Field(default_factory=ApiPagination, description="How to get from one page to the next.")
    max_retries: int = Field(5, ge=0, description="Retries of a request that got 429, a 5xx or no response.")
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles per retry (a Retry-After header wins).")
    max_backoff_s: float = Field(30.0, ge=0, description="Longest delay between retries, Retry-After included.")
    rate_limit_per_s: float | None = Field(None, gt=0, description="Most requests per second, over all read tasks together.")
    timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for each response.")
    concurrency: int = Field(4, ge=1, description="Read tasks for addressable pages (page pagination with a known total).")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"https?://[^/\s]+", value, flags=re.IGNORECASE):
            raise ValueError("url must start with http:// or https:// and name a host")
        return value


# --------------------------------------------------------------------------- streams
# `raypipe ingest-stream` lands broker messages as Parquet micro-batches under
# landing_uri; `raypipe run` reads what has landed (see raypipe/streams).

_SUB_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _SubscriptionBase(_Model):
    name: str | None = Field(
        None,
        pattern=_SUB_NAME,
        description="Subscription name: its landing folder, its actor raypipe:stream:<pipeline>:<name> and its "
        "default client id (default: the broker type).",
    )

    @property
    def key(self) -> str:
        """The subscription's name, or its type when unnamed."""
        return self.name or self.type  # type: ignore[attr-defined]


class MqttSubscription(_SubscriptionBase):
    type: Literal["mqtt"] = Field(description="MQTT topics (Mosquitto, ...), QoS 1 or 2, in a persistent session.")
    url: str = Field(
        "mqtt://127.0.0.1:1883", description="Broker URL mqtt://[user@]host:port; the password comes from password_env."
    )
    password_env: str | None = Field(None, description="Environment variable holding the broker password.")
    topics: list[str] = Field(..., min_length=1, description="Topic filters, wildcards allowed: ['sensors/+/temperature', 'plant/#'].")
    qos: Literal[1] = Field(
        1,
        description="Subscription QoS: 1, acknowledged only after the batch has landed (QoS 0 can lose messages; "
        "with QoS 2 the client takes a message over before it has landed).",
    )
    client_id: str | None = Field(
        None, description="Fixed client id of the persistent session (default: raypipe-<pipeline>-<name>)."
    )
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description="MQTT version; 5 lets a batch hold up to 65535 unacknowledged messages, 3.1.1 only the broker's inflight limit."
    )
    session_expiry_s: int = Field(
        7 * 24 * 3600, ge=1, description="How long the broker keeps the session (and unacknowledged messages) after a disconnect."
    )
    id_field: str = Field(
        "id",
        description="Field of the JSON payload holding the publisher's message id; the landed id is '<topic>:<id>' "
        "(MQTT's own packet ids are reused over time). A payload without it gets '<topic>:sha256:<hash>'.",
    )
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive interval.")

    _coerce_topics = field_validator("topics", mode="before")(_paths)


class NatsSubscription(_SubscriptionBase):
    type: Literal["nats"] = Field(description="A NATS JetStream stream, read by a durable pull consumer.")
    url: str = Field("nats://127.0.0.1:4222", description="Server URL nats://[user@]host:port (password from password_env).")
    password_env: str | None = Field(None, description="Environment variable holding the NATS password or token.")
    stream: str = Field(..., description="JetStream stream to read (it must exist).")
    subject: str | None = Field(None, description="Subject filter within the stream (wildcards allowed); null reads all.")
    durable: str | None = Field(None, description="Durable consumer name (default: raypipe-<pipeline>-<name>); created if missing.")
    deliver: Literal["all", "new"] = Field("all", description="Where a new durable consumer starts: all stored messages, or new ones.")
    ack_wait_s: float = Field(
        30, gt=0, description="Seconds before JetStream redelivers an unacknowledged message (a crashed consumer's, too)."
    )
    max_ack_pending: int = Field(
        50_000, ge=1, description="Most unacknowledged messages at once; at least landing batch_max_messages."
    )


class RedisSubscription(_SubscriptionBase):
    type: Literal["redis"] = Field(description="A Redis stream read with XREADGROUP by a consumer group, XACK after landing.")
    url: str = Field("redis://127.0.0.1:6379/0", description="Server URL redis://[user@]host:port/db (password from password_env).")
    password_env: str | None = Field(None, description="Environment variable holding the Redis password.")
    stream: str = Field(..., description="Stream key.")
    group: str | None = Field(None, description="Consumer group (default: raypipe-<pipeline>); created if missing.")
    consumer: str | None = Field(None, description="Consumer name within the group (default: the subscription name).")
    start: Literal["earliest", "latest"] = Field("earliest", description="Where a new group starts: the first entry, or new entries.")
    payload_field: str | None = Field(
        None, description="Entry field holding the payload (parsed by `format`); null: the entry's fields are the columns."
    )


class KafkaSubscription(_SubscriptionBase):
    type: Literal["kafka"] = Field(description="Kafka topics read by repeated bounded ray.data.read_kafka reads (one task per partition).")
    bootstrap_servers: list[str] = Field(..., min_length=1, description="Broker addresses, host:port.")
    topics: list[str] = Field(..., min_length=1, description="Topics to read.")
    start_offset: Literal["earliest"] | int = Field(
        "earliest", description="Offset of partitions with nothing landed yet: 'earliest' or an offset number."
    )
    consumer_config: dict[str, Any] = Field(
        default_factory=dict,
        description="librdkafka consumer settings passed to read_kafka (security.protocol, sasl.*; secrets via ${ENV}).",
    )
    timeout_ms: int | None = Field(10_000, ge=1, description="Longest a read task polls for the end offset of its partition.")
    poll_interval_s: float = Field(5.0, gt=0, description="Seconds between two bounded reads when the last one found nothing.")

    _coerce_servers = field_validator("bootstrap_servers", "topics", mode="before")(_paths)


Subscription = Annotated[
    Union[MqttSubscription, NatsSubscription, RedisSubscription, KafkaSubscription], Field(discriminator="type")
]
BROKER_TYPES = ("mqtt", "nats", "redis", "kafka")


class StreamSource(_SourceBase):
    type: Literal["stream"] = Field(
        description="Messages landed by `raypipe ingest-stream` as Parquet micro-batches; `raypipe run` reads what has landed."
    )
    landing_uri: str = Field(
        ..., description="Landing zone folder (local or pyarrow URI): <landing_uri>/<subscription>/date=YYYY-MM-DD/hour=HH/part-N.parquet."
    )
    subscriptions: list[Subscription] = Field(..., min_length=1, description="What to consume: one Ray actor per subscription.")
    format: Literal["json", "raw"] = Field(
        "json",
        description="json: a payload's top-level fields become string columns (typed by data.schema; a payload that "
        "is not a JSON object lands with its text and is quarantined); raw: the payload text in `_payload`.",
    )
    batch_max_messages: int = Field(10_000, ge=1, description="A micro-batch is landed when it holds this many messages ...")
    batch_max_seconds: float = Field(2.0, gt=0, description="... or when its first message is this old.")
    dedup_files: int = Field(
        1000,
        ge=1,
        description="Landed files per subscription whose message ids are remembered to drop redelivered messages "
        "(a batch is acknowledged right after it lands, so only the latest can come back).",
    )
    num_cpus: float = Field(0.25, ge=0, description="CPUs reserved by each consumer actor.")
    max_restarts: int = Field(-1, ge=-1, description="Restarts of a consumer actor whose process died (-1: no limit).")

    @model_validator(mode="after")
    def _unique_names(self) -> StreamSource:
        keys = [s.key for s in self.subscriptions]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"subscription names must be unique; give each a `name:` (repeated: {', '.join(twice)})")
        for sub in self.subscriptions:
            if isinstance(sub, NatsSubscription) and sub.max_ack_pending < self.batch_max_messages:
                raise ValueError(
                    f"subscription {sub.key!r}: max_ack_pending ({sub.max_ack_pending}) must be at least "
                    f"batch_max_messages ({self.batch_max_messages}), or batches never fill"
                )
        return self


class UnionSource(_SourceBase):
    type: Literal["union"] = Field(description="Rows of several sources, stacked (columns aligned by name).")
    sources: list[Source] = Field(..., min_length=1, description="The sources to stack.")


Source = Annotated[
    Union[CsvSource, ParquetSource, JsonSource, TextSource, SqlSource, ApiSource, StreamSource, UnionSource],
    Field(discriminator="type"),
]
UnionSource.model_rebuild()

SOURCE_TYPES = ("csv", "parquet", "json", "jsonl", "text", "sql", "api", "stream", "union")

# --------------------------------------------------------------------------- schema

ColumnType = Literal["int", "float", "string", "category", "bool", "datetime"]


class ColumnSpec(_Model):
    type: ColumnType = Field(..., description="Logical type; values that cannot be converted are quarantined.")
    nullable: bool = Field(False, description="Whether missing values are allowed (else the row is quarantined).")
    min: float | None = Field(None, description="Smallest allowed value (numeric columns).")
    max: float | None = Field(None, description="Largest allowed value (numeric columns).")
    allowed: list[str] | None = Field(None, description="Allowed values (string and category columns).")
    regex: str | None = Field(None, description="Regex every value must fully match (string and category columns).")
    pii: bool = Field(False, description="Personal data: hashed or left out of prediction logs.")
    format: str | None = Field(None, description="strptime format of datetime columns (default ISO 8601).")
    description: str | None = Field(None, description="What the column means, for people.")

    @model_validator(mode="after")
    def _rules_fit_type(self) -> ColumnSpec:
        numeric = self.type in ("int", "float")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max apply to int and float columns, not {self.type!r}")
        if (self.allowed is not None or self.regex is not None) and self.type not in ("string", "category"):
            raise ValueError(f"allowed/regex apply to string and category columns, not {self.type!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex is not a valid regular expression ({exc})") from exc
        return self


class SchemaConfig(_Model):
    label: str | None = Field(None, description="The target column (must be declared in columns when columns are given).")
    weight: str | None = Field(None, description="Optional sample-weight column.")
    id: str | None = Field(None, description="Optional row id column carried through to predictions.")
    columns: dict[str, ColumnSpec] = Field(
        default_factory=dict,
        description="Declared columns in order. Empty: inferred from the data (see `raypipe infer-schema`).",
    )
    extra_columns: Literal["error", "drop", "keep"] = Field(
        "drop", description="What to do with source columns not declared here."
    )


class ValidationConfig(_Model):
    max_invalid_fraction: float = Field(
        0.01, ge=0, le=1, description="The run fails when more than this share of rows is quarantined."
    )
    quarantine_uri: str | None = Field(
        None, description="Where quarantined rows are written as Parquet (default: <output.uri>/<run_id>/quarantine)."
    )


_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def absolute_uri(path: str) -> str:
    """``path`` made absolute against the current directory unless it is a URI (``s3://…``):
    relative paths mean the directory ``raypipe`` runs in, not a Ray worker's."""
    return path if "://" in path else os.path.abspath(path)


def parse_span(text: str) -> float:
    """Seconds in a span such as ``'90d'``, ``'12h'``, ``'2w'``, ``'30m'`` or ``'45s'``.

    >>> parse_span("90d")
    7776000.0
    """
    m = _SPAN.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"expected a positive span like '90d', '12h', '2w', '30m' or '45s', got {text!r}")
    return float(m.group(1)) * _SPAN_SECONDS[m.group(2)]


class SplitConfig(_Model):
    method: Literal["random", "time", "files"] = Field("random", description="How rows are split into train/valid/test.")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="Share of rows in the test split (random and time).")
    valid_fraction: float = Field(0.1, ge=0, lt=1, description="Share of rows in the validation split.")
    seed: int = Field(42, description="Seed of the hash-based random split.")
    key_columns: list[str] | None = Field(
        None, description="Columns hashed for the random split (default: all input columns); same key, same split."
    )
    time_column: str | None = Field(None, description="Column ordering rows in time (method: time).")
    window: str | None = Field(
        None,
        description="Method time: keep only the rows within this span of the newest time value, e.g. '90d' "
        "(older rows are counted as outside_window, not split).",
    )
    valid_from: str | None = Field(None, description="First timestamp of the validation split (method: time).")
    test_from: str | None = Field(None, description="First timestamp of the test split (method: time).")
    test_paths: list[str] = Field(
        default_factory=list, description="Files whose rows form the test split (method: files)."
    )
    valid_paths: list[str] = Field(
        default_factory=list,
        description="Files whose rows form the validation split (method: files); if empty, carved from train.",
    )

    _coerce_paths = field_validator("test_paths", "valid_paths", mode="before")(_paths)

    @field_validator("valid_from", "test_from", mode="before")
    @classmethod
    def _iso(cls, value: Any) -> Any:
        # YAML reads an unquoted 2012-07-01 as a date: take it as the ISO text it was.
        return value.isoformat() if hasattr(value, "isoformat") else value

    @model_validator(mode="after")
    def _consistent(self) -> SplitConfig:
        if self.test_fraction + self.valid_fraction >= 1:
            raise ValueError(
                f"test_fraction + valid_fraction must be below 1, got {self.test_fraction} + {self.valid_fraction}"
            )
        if self.method == "time" and not self.time_column:
            raise ValueError("method 'time' needs time_column")
        if self.method == "files" and not self.test_paths:
            raise ValueError("method 'files' needs test_paths (the files that hold the test rows)")
        if self.window is not None:
            if self.method != "time":
                raise ValueError("window needs method 'time' (it keeps the newest span of time_column)")
            parse_span(self.window)
        return self


class DataConfig(_Model):
    source: Source = Field(..., description="Where the rows come from; chosen by `type`.")
    schema_: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema", description="Declared columns and roles.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="Quarantine policy.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Train/valid/test split.")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- features


class _Step(_Model):
    columns: list[str] = Field(..., min_length=1, description="Input columns of the step.")


class ImputeStep(_Step):
    type: Literal["impute"] = Field(description="Fill missing values with a statistic of the training split.")
    strategy: Literal["mean", "median", "most_frequent", "constant"] = Field("median", description="What to fill with.")
    fill_value: float | str | None = Field(None, description="The value for strategy 'constant'.")
    add_indicator: bool = Field(False, description="Also emit <col>__missing (1.0 where the value was missing).")

    @model_validator(mode="after")
    def _constant_needs_value(self) -> ImputeStep:
        if self.strategy == "constant" and self.fill_value is None:
            raise ValueError("strategy 'constant' needs fill_value")
        return self


class OneHotStep(_Step):
    type: Literal["one_hot"] = Field(description="One 0/1 column per category seen in training.")
    max_categories: int | None = Field(
        None, ge=1, description="Keep the most frequent categories; the rest go to <col>=__other__."
    )


class OrdinalStep(_Step):
    type: Literal["ordinal"] = Field(description="Integer codes by category order (sorted, or `order`).")
    order: dict[str, list[str]] = Field(default_factory=dict, description="Explicit category order per column.")


class CategoricalStep(_Step):
    type: Literal["categorical"] = Field(
        description="Native XGBoost categoricals (codes, enable_categorical); unknown values become missing."
    )
    max_categories: int | None = Field(None, ge=1, description="Keep the most frequent categories; others are missing.")


class StandardScaleStep(_Step):
    type: Literal["standard_scale"] = Field(description="(x - mean) / std of the training split.")


class MinMaxScaleStep(_Step):
    type: Literal["minmax_scale"] = Field(description="(x - min) / (max - min) of the training split.")


class RobustScaleStep(_Step):
    type: Literal["robust_scale"] = Field(description="(x - median) / IQR of the training split.")


class ClipStep(_Step):
    type: Literal["clip"] = Field(description="Clip to fixed bounds or to training-split quantiles.")
    min: float | None = Field(None, description="Fixed lower bound.")
    max: float | None = Field(None, description="Fixed upper bound.")
    lower_quantile: float | None = Field(None, ge=0, le=1, description="Lower bound fitted as this quantile.")
    upper_quantile: float | None = Field(None, ge=0, le=1, description="Upper bound fitted as this quantile.")


class Log1pStep(_Step):
    type: Literal["log1p"] = Field(description="log(1 + x); values below -1 become missing.")


class BucketizeStep(_Step):
    type: Literal["bucketize"] = Field(description="Bucket index by fixed boundaries or training-split quantiles.")
    boundaries: list[float] | None = Field(None, description="Sorted bucket edges.")
    num_buckets: int | None = Field(None, ge=2, description="Quantile buckets fitted on the training split.")

    @model_validator(mode="after")
    def _one_of(self) -> BucketizeStep:
        if (self.boundaries is None) == (self.num_buckets is None):
            raise ValueError("give exactly one of 'boundaries' or 'num_buckets'")
        if self.boundaries is not None and sorted(self.boundaries) != self.boundaries:
            raise ValueError(f"boundaries must be sorted ascending, got {self.boundaries}")
        return self


DATETIME_PARTS = ("year", "month", "day", "hour", "minute", "weekday", "dayofyear", "is_weekend")


class DatetimePartsStep(_Step):
    type: Literal["datetime_parts"] = Field(description="Numeric parts of datetime columns as <col>_<part>.")
    parts: list[Literal["year", "month", "day", "hour", "minute", "weekday", "dayofyear", "is_weekend"]] = Field(
        default_factory=lambda: ["hour", "weekday", "month"], description="Which parts to emit."
    )
    drop_original: bool = Field(True, description="Remove the datetime column after extracting its parts.")


class ExpressionStep(_Model):
    type: Literal["expression"] = Field(description="A derived column from a safe arithmetic expression.")
    name: str = Field(..., description="Name of the new column.")
    expr: str = Field(
        ..., description="Expression over columns: + - * / ** %, comparisons, and/or/not, where(), log, sqrt, abs, ..."
    )


class DropStep(_Step):
    type: Literal["drop"] = Field(description="Remove columns from the features.")


FeatureStep = Annotated[
    Union[
        ImputeStep,
        OneHotStep,
        OrdinalStep,
        CategoricalStep,
        StandardScaleStep,
        MinMaxScaleStep,
        RobustScaleStep,
        ClipStep,
        Log1pStep,
        BucketizeStep,
        DatetimePartsStep,
        ExpressionStep,
        DropStep,
    ],
    Field(discriminator="type"),
]

FEATURE_TYPES = (
    "impute",
    "one_hot",
    "ordinal",
    "categorical",
    "standard_scale",
    "minmax_scale",
    "robust_scale",
    "clip",
    "log1p",
    "bucketize",
    "datetime_parts",
    "expression",
    "drop",
)

# --------------------------------------------------------------------------- model / tune / evaluate

Task = Literal["binary_classification", "multiclass", "regression"]


class TrainingConfig(_Model):
    num_workers: int | Literal["auto"] = Field("auto", description="Training workers: 1 trains in one Ray task, 2 or more as a Ray Train worker group; 'auto' is 1 on a one-node cluster, else sized from the cluster.")
    use_gpu: bool = Field(False, description="One GPU per worker and XGBoost device=cuda.")
    cpus_per_worker: float | None = Field(None, gt=0, description="CPUs per worker (default: sized from the cluster).")
    report_every: int = Field(10, ge=1, description="Report metrics (the training rows scored too) every N boosting rounds.")
    checkpoint_every: int = Field(50, ge=1, description="Checkpoint every K rounds (and at the end).")
    max_failures: int = Field(1, ge=0, description="Worker failures tolerated; training resumes from the last checkpoint.")


class ModelConfig(_Model):
    task: Task = Field("binary_classification", description="What is predicted; sets the XGBoost objective.")
    params: dict[str, Any] = Field(default_factory=dict, description="XGBoost parameters (max_depth, eta, ...).")
    num_boost_round: int = Field(300, ge=1, description="Maximum boosting rounds.")
    early_stopping_rounds: int | None = Field(20, ge=1, description="Stop when the validation metric stalls this long.")
    positive_class: str | None = Field(
        None, description="Label value that is the positive class (binary); default: the larger of the two sorted values."
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Ray Train resources and cadence.")


class SearchDim(_Model):
    type: Literal["randint", "uniform", "loguniform", "choice", "grid"] = Field(..., description="Distribution.")
    low: float | None = Field(None, description="Lower bound (randint, uniform, loguniform).")
    high: float | None = Field(None, description="Upper bound (randint exclusive).")
    values: list[Any] | None = Field(None, description="Values (choice, grid).")

    @model_validator(mode="after")
    def _shape(self) -> SearchDim:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"'{self.type}' needs a non-empty 'values' list")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"'{self.type}' needs low < high, got low={self.low} high={self.high}")
        return self


class TuneConfig(_Model):
    enabled: bool = Field(False, description="Tune hyperparameters with Ray Tune instead of one training run.")
    num_samples: int = Field(16, ge=1, description="Trials to run.")
    max_concurrent_trials: int = Field(2, ge=1, description="Trials running at once.")
    scheduler: Literal["asha", "fifo"] = Field("asha", description="ASHA stops weak trials early; FIFO runs all.")
    search: Literal["random", "optuna"] = Field("random", description="Search algorithm (optuna when installed).")
    search_space: dict[str, SearchDim] = Field(default_factory=dict, description="XGBoost parameter → distribution.")


class VsChampionGate(_Model):
    enabled: bool = Field(True, description="Compare with the champion re-scored on the same evaluation data.")
    min_delta: float = Field(0.0, description="The candidate may be worse than the champion by at most this much.")


class GatesConfig(_Model):
    min: dict[str, float] = Field(default_factory=dict, description="Metric → smallest acceptable value.")
    max: dict[str, float] = Field(default_factory=dict, description="Metric → largest acceptable value.")
    vs_champion: VsChampionGate = Field(default_factory=VsChampionGate, description="Champion comparison.")


class EvaluateConfig(_Model):
    primary_metric: str | None = Field(None, description="Metric for early stopping, tuning and the champion gate.")
    metrics: list[str] = Field(default_factory=list, description="Metrics to report (default: all for the task).")
    slices: list[str] = Field(default_factory=list, description="Columns whose values get metrics of their own.")
    threshold: float | Literal["tune"] = Field(0.5, description="Decision threshold (binary), or 'tune' on validation.")
    cv_folds: int | None = Field(
        None, ge=2, description="Also cross-validate on the training split: k folds trained in parallel, mean and std per metric."
    )
    gates: GatesConfig = Field(default_factory=GatesConfig, description="Promotion gates.")


class RegistryConfig(_Model):
    uri: str = Field("./raypipe-registry", description="Registry root: a folder or any pyarrow/fsspec URI.")
    model_name: str | None = Field(None, description="Registered model name (default: the config's name).")


# --------------------------------------------------------------------------- serve / monitor / retrain


class HttpConfig(_Model):
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")


class AutoscalingConfig(_Model):
    min_replicas: int = Field(1, ge=0, description="Fewest replicas.")
    max_replicas: int = Field(4, ge=1, description="Most replicas.")
    target_ongoing_requests: float = Field(2, gt=0, description="Requests per replica the autoscaler aims for.")
    upscale_delay_s: float = Field(5, ge=0, description="Seconds of high load before adding replicas.")
    downscale_delay_s: float = Field(30, ge=0, description="Seconds of low load before removing replicas.")


class BatchingConfig(_Model):
    max_batch_size: int = Field(64, ge=1, description="Requests merged into one prediction call.")
    wait_timeout_ms: float = Field(
        0, ge=0, description="How long to wait to fill a batch. 0: predict as soon as a request waits; requests "
        "arriving while a batch runs form the next one, so batches still grow under load without adding latency at low load."
    )


class AuthConfig(_Model):
    api_keys_env: str | None = Field(None, description="Environment variable holding comma-separated API keys.")
    api_keys_file: str | None = Field(None, description="File with one API key per line (a mounted secret).")


class ServeConfig(_Model):
    http: HttpConfig = Field(default_factory=HttpConfig, description="Where the endpoint listens.")
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig, description="Replica autoscaling.")
    batching: BatchingConfig = Field(default_factory=BatchingConfig, description="Dynamic request batching.")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API-key authentication.")
    max_request_bytes: int = Field(1_000_000, ge=1, description="Larger bodies get 413.")
    max_instances: int = Field(1000, ge=1, description="Most rows per request.")
    canary_fraction: float = Field(
        0.0, ge=0, le=1, description="Share of requests answered by the 'challenger' alias's version (when it exists)."
    )
    shadow: str | None = Field(
        None, description="Alias or version mirrored in shadow: it predicts every request, the champion answers."
    )
    model: str = Field("champion", description="Alias (followed live) or version number served by default.")
    replica_cpus: float = Field(0.5, gt=0, description="CPUs reserved per replica.")
    max_ongoing_requests: int = Field(32, ge=1, description="Requests in flight per replica (the batching queue).")
    reload_interval_s: float = Field(2.0, gt=0, description="How often replicas check the registry for a moved alias.")


class DriftConfig(_Model):
    method: Literal["psi", "ks", "js"] = Field("psi", description="Drift statistic per feature.")
    threshold: float = Field(0.2, gt=0, description="Drift score above which a feature is drifting.")
    consecutive_windows: int = Field(1, ge=1, description="Windows over threshold before an alert.")


class MonitorConfig(_Model):
    enabled: bool = Field(True, description="Log predictions and run the monitor actors.")
    sample_rate: float = Field(1.0, ge=0, le=1, description="Share of predictions logged.")
    window_rows: int = Field(2000, ge=1, description="Rows per monitoring window.")
    window_s: float | None = Field(None, gt=0, description="Also close a window after this many seconds.")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift detection.")
    log_uri: str = Field("./raypipe-logs", description="Where the prediction log is written (Parquet).")
    flush_s: float = Field(2.0, gt=0, description="Replicas write buffered log rows at least this often.")
    flush_rows: int = Field(5000, ge=1, description="Replicas write a log file once this many rows are buffered.")
    poll_s: float = Field(1.0, gt=0, description="How often the monitor actor reads new log files.")
    pii: Literal["hash", "drop"] = Field("hash", description="What the log does with columns marked pii.")
    webhook_env: str | None = Field(None, description="Environment variable holding a webhook URL for alerts.")


class PerformanceTrigger(_Model):
    metric: str = Field(..., description="Live metric watched (rmse, auc, accuracy, ...).")
    min: float | None = Field(None, description="Retrain when the metric falls below this.")
    max: float | None = Field(None, description="Retrain when the metric rises above this.")


class RetrainConfig(_Model):
    on_drift: bool = Field(False, description="Retrain after a drift alert.")
    on_performance: PerformanceTrigger | None = Field(None, description="Retrain when live performance crosses a bound.")
    schedule_s: float | None = Field(None, gt=0, description="Retrain every this many seconds.")
    cooldown_s: float = Field(600, ge=0, description="Least time between two retrains.")
    data_window: str | None = Field(
        None, description="Retrain on the newest span of data only (by data.split.time_column), e.g. '90d' or '12h'."
    )
    cooldown_rows: int = Field(
        0, ge=0, description="Least predictions logged since the last retrain (or the monitor's start) before the next."
    )
    gate_fraction: float = Field(
        0.1, gt=0, lt=1, description="Newest share of the retraining rows held out to gate candidate vs champion."
    )
    valid_fraction: float = Field(0.1, gt=0, lt=1, description="Share before the gate rows used for early stopping.")

    @field_validator("data_window")
    @classmethod
    def _span(cls, value: str | None) -> str | None:
        if value is not None:
            parse_span(value)
        return value
    auto_promote: bool = Field(True, description="Promote a candidate that passes its gates.")

    @field_validator("data_window")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+(s|m|h|d|w)", value):
            raise ValueError(f"data_window must look like '90d', '12h', '30m', got {value!r}")
        return value


class OutputConfig(_Model):
    uri: str = Field("./raypipe-runs", description="Where run reports and quarantined rows are written.")


# --------------------------------------------------------------------------- root


class PipelineConfig(_Model):
    """The whole pipeline, as written in one YAML file."""

    version: Literal[1] = Field(1, description="Config format version.")
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Pipeline name (letters, digits, . _ -).")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Which Ray to run on.")
    data: DataConfig = Field(..., description="Ingest, validation and split.")
    features: list[FeatureStep] = Field(default_factory=list, description="Transform steps, fitted on the train split.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="What to train.")
    tune: TuneConfig = Field(default_factory=TuneConfig, description="Hyperparameter tuning.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Metrics and gates.")
    registry: RegistryConfig = Field(default_factory=RegistryConfig, description="Model registry.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="HTTP endpoint.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="Monitoring.")
    retrain: RetrainConfig = Field(default_factory=RetrainConfig, description="Retraining policy.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Run outputs.")
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Named overlays merged over this file with --profile NAME."
    )

    @property
    def model_name(self) -> str:
        """The registered model name."""
        return self.registry.model_name or self.name


# --------------------------------------------------------------------------- loading

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _loc(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _interpolate(node: Any, where: str, path: tuple = ()) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, where, path + (k,)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, where, path + (i,)) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{where}: {_loc(path)}: environment variable ${{{name}}} is not set. "
            f"Hint: export {name}=... or write ${{{name}:-default}}."
        )

    return _ENV.sub(sub, node)


def _deep_merge(base: dict, overlay: dict) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_SET_PATH = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)((?:\[\d+\])*)")


def _apply_override(raw: dict, override: str, where: str) -> None:
    if "=" not in override:
        raise ConfigError(f"{where}: --set {override!r}: expected dotted.path=value, e.g. model.num_boost_round=50.")
    dotted, _, text = override.partition("=")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: --set {dotted}: value {text!r} is not valid YAML ({exc}).") from exc
    keys: list[str | int] = []
    for part in dotted.split("."):
        match = _SET_PATH.fullmatch(part)
        if not match:
            raise ConfigError(f"{where}: --set {dotted}: {part!r} is not a key (expected name or name[index]).")
        keys.append(match.group(1))
        keys.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
    node: Any = raw
    for i, key in enumerate(keys[:-1]):
        nxt = keys[i + 1]
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                raise ConfigError(f"{where}: --set {dotted}: {_loc(tuple(keys[: i + 1]))} has no such list item.")
            node = node[key]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: --set {dotted}: {_loc(tuple(keys[:i]))} is not a mapping.")
            node = node.setdefault(key, [] if isinstance(nxt, int) else {})
    last = keys[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"{where}: --set {dotted}: no list item [{last}].")
    elif not isinstance(node, dict):
        raise ConfigError(f"{where}: --set {dotted}: {_loc(tuple(keys[:-1]))} is not a mapping.")
    node[last] = value


def _unwrap(annotation: Any, raw: Any) -> Any:
    """The model class an annotation holds for this raw value (through Optional, list, dict, unions)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0], raw)
    if origin in (Union, types.UnionType):
        candidates = [a for a in typing.get_args(annotation) if a is not type(None)]
        tagged = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel) and "type" in c.model_fields]
        if tagged and isinstance(raw, dict):
            for cls in tagged:
                if raw.get("type") in typing.get_args(cls.model_fields["type"].annotation):
                    return cls
            return None
        for cand in candidates:
            found = _unwrap(cand, raw)
            if found is not None:
                return found
        return None
    return annotation


def _model_at(loc: tuple, raw: Any) -> type[BaseModel] | None:
    """Walk a pydantic error location to the model class that owns its last key."""
    cls: Any = PipelineConfig
    node = raw
    for part in loc[:-1]:
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            field = cls.model_fields.get(part) or next(
                (f for f in cls.model_fields.values() if f.alias == part), None
            )
            if field is None:
                return None
            node = node.get(part) if isinstance(node, dict) else None
            cls = _unwrap(field.annotation, node)
        else:
            origin = typing.get_origin(cls)
            if origin in (list, dict):
                args = typing.get_args(cls)
                try:
                    node = node[part]
                except (KeyError, IndexError, TypeError):
                    node = None
                cls = _unwrap(args[-1], node)
            else:
                return None
        if cls is None:
            return None
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


_TAGS = set(SOURCE_TYPES) | set(FEATURE_TYPES) | set(BROKER_TYPES)


def _clean_loc(loc: tuple) -> tuple:
    # pydantic puts the union tag into the location (features.2.impute.strategy);
    # users wrote features[2].strategy.
    return tuple(
        p for i, p in enumerate(loc) if not (i and p in _TAGS and (isinstance(loc[i - 1], int) or loc[i - 1] == "source"))
    )


def _format_errors(exc: PydanticValidationError, raw: dict, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]))
        etype = err["type"]
        got = err.get("input")
        if etype == "extra_forbidden":
            owner = _model_at(loc, raw)
            known = [f.alias or n for n, f in owner.model_fields.items()] if owner else []
            parent = _loc(loc[:-1]) if loc[:-1] else "the top level"
            lines.append(
                f"{where}: {_loc(loc)}: unknown key '{loc[-1]}' in {parent}.{did_you_mean(loc[-1], known)}"
                + (f" Expected one of: {', '.join(sorted(known))}." if known else "")
            )
        elif etype == "union_tag_invalid":
            expected = err.get("ctx", {}).get("expected_tags", "")
            tags = [t.strip().strip("'") for t in str(expected).split(",")]
            tag = err.get("ctx", {}).get("tag")
            lines.append(
                f"{where}: {_loc(loc)}.type: unknown type '{tag}'.{did_you_mean(tag, tags)} Expected one of: {', '.join(tags)}."
            )
        elif etype == "union_tag_not_found":
            lines.append(f"{where}: {_loc(loc)}: missing 'type' key (expected one of: {', '.join(sorted(_TAGS))}).")
        elif etype == "missing":
            lines.append(f"{where}: {_loc(loc)}: required key is missing.")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = "" if isinstance(got, dict) else f" Got {got!r}."
            lines.append(f"{where}: {_loc(loc)}: {msg}.{shown}")
    return "\n".join(lines)


def parse_config(raw: Any, where: str = "<config>", profile: str | None = None, overrides: list[str] | tuple = ()) -> PipelineConfig:
    """Validate an already-parsed YAML mapping (see :func:`load_config`).

    Raises:
        ConfigError: the mapping, profile or an override is invalid.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a YAML mapping at the top level, got {type(raw).__name__}.")
    raw = _interpolate(raw, where)
    if profile:
        profiles = raw.get("profiles") or {}
        if profile not in profiles:
            raise ConfigError(
                f"{where}: --profile {profile!r} is not defined in profiles.{did_you_mean(profile, profiles)}"
                f" Defined: {', '.join(profiles) or 'none'}."
            )
        overlay = profiles[profile]
        if not isinstance(overlay, dict):
            raise ConfigError(f"{where}: profiles.{profile}: expected a mapping, got {type(overlay).__name__}.")
        raw = _deep_merge(raw, overlay)
    raw = copy.deepcopy(raw)
    for override in overrides:
        _apply_override(raw, override, where)
    try:
        return PipelineConfig.model_validate(raw)
    except PydanticValidationError as exc:
        raise ConfigError(_format_errors(exc, raw, where)) from None


def load_config(path: str | os.PathLike, profile: str | None = None, overrides: list[str] | tuple = ()) -> PipelineConfig:
    """Read, interpolate, overlay and validate a pipeline config file.

    Args:
        path: the YAML file.
        profile: name of an entry of ``profiles:`` merged over the file.
        overrides: ``dotted.path=value`` strings (``features[0].strategy=mean``);
            values are parsed as YAML scalars.

    Raises:
        ConfigError: the file is missing, not YAML, or does not validate; the
            message names the file and the dotted path of each problem.
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the config file ({exc.strerror or exc}).") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    return parse_config(raw, where, profile, overrides)


# --------------------------------------------------------------------------- static checks


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _local_paths(source: Any) -> list[str]:
    if isinstance(source, UnionSource):
        return [p for s in source.sources for p in _local_paths(s)]
    if isinstance(source, SqlSource):
        if source.url.startswith("sqlite:///"):
            return [source.url.removeprefix("sqlite:///")]
        return []
    return [p for p in getattr(source, "paths", []) if _is_local(p)]


def _source_columns(source: Any) -> list[str] | None:
    """Columns a source declares without reading it (CSV column_names), renamed and selected."""
    if source.columns is not None:
        return list(source.columns)
    if isinstance(source, CsvSource) and source.column_names:
        return [source.rename.get(c, c) for c in source.column_names]
    if isinstance(source, TextSource):
        return [source.rename.get(c, c) for c in re.compile(source.pattern).groupindex]
    return None


def check_config(cfg: PipelineConfig, where: str = "<config>") -> list[str]:
    """Check what can be checked without Ray or reading data.

    Local input paths exist, referenced columns are declared, roles make sense.
    Returns warnings (strings); raises :class:`ConfigError` listing every problem.
    """
    import glob

    problems: list[str] = []
    warnings: list[str] = []
    for p in _local_paths(cfg.data.source):
        local = p.removeprefix("file://")
        if not (os.path.exists(local) or glob.glob(local)):
            problems.append(f"data.source: path '{p}' does not exist (relative paths are from {os.getcwd()}).")

    schema = cfg.data.schema_
    declared = list(schema.columns)
    src_cols = _source_columns(cfg.data.source)
    if declared and src_cols is not None:
        for col in declared:
            if col not in src_cols:
                problems.append(
                    f"data.schema.columns.{col}: not produced by the source (its columns: {', '.join(src_cols)}).{did_you_mean(col, src_cols)}"
                )
    known = declared or src_cols
    if schema.label is None:
        problems.append("data.schema.label: no label column declared (expected the name of the target column).")
    for role in ("label", "weight", "id"):
        col = getattr(schema, role)
        if col and known and col not in known:
            problems.append(f"data.schema.{role}: column '{col}' is not declared.{did_you_mean(col, known)}")

    split = cfg.data.split
    if split.method == "time" and known and split.time_column not in known:
        problems.append(f"data.split.time_column: column '{split.time_column}' is not declared.{did_you_mean(split.time_column, known)}")
    if split.method == "files":
        all_paths = [os.path.basename(p) for p in _local_paths(cfg.data.source)] + [
            p for p in getattr(cfg.data.source, "paths", [])
        ]
        for p in split.test_paths + split.valid_paths:
            if all_paths and os.path.basename(p) not in all_paths and p not in all_paths:
                problems.append(f"data.split: '{p}' is not one of the source's paths.")

    if declared:
        # The feature pipeline itself walks the steps (pure, no data read): the same
        # checks, the same messages as at fit time, step outputs included.
        from raypipe.features import FeaturePipeline

        try:
            FeaturePipeline(
                cfg.features,
                {name: spec.type for name, spec in schema.columns.items()},
                exclude=[c for c in (schema.weight, schema.id) if c],
                label=schema.label if schema.label in schema.columns else None,
                task=cfg.model.task,
                positive_class=cfg.model.positive_class,
            )
        except ConfigError as exc:
            problems.append(str(exc))
    if known:
        for col in cfg.evaluate.slices:
            if col not in known:
                problems.append(f"evaluate.slices: column '{col}' is not declared.{did_you_mean(col, known)}")
    else:
        warnings.append("data.schema.columns is empty: columns will be inferred at run time (see `raypipe infer-schema`).")

    if cfg.model.training.use_gpu and cfg.model.params.get("device", "cuda") not in ("cuda", "gpu"):
        problems.append("model.params.device: use_gpu is true but params.device is not 'cuda'.")
    if problems:
        raise ConfigError("\n".join(f"{where}: {p}" for p in problems))
    return warnings
