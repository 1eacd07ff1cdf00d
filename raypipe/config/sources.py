"""The ``data.source`` section: where rows come from, one model per ``type``.

Files (csv, parquet, json, text), SQL, HTTP APIs, broker streams landed by
``raypipe ingest-stream``, and unions of those. :data:`Source` is the union,
told apart by ``type``; :data:`SOURCE_TYPES` lists the names.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from raypipe.config.base import ConfigModel, as_list

__all__ = [
    "Source",
    "SOURCE_TYPES",
    "CsvSource",
    "ParquetSource",
    "JsonSource",
    "TextSource",
    "SqlBound",
    "SqlPartition",
    "SqlIncremental",
    "SqlSource",
    "ApiAuth",
    "ApiPagination",
    "ApiSource",
    "Subscription",
    "BROKER_TYPES",
    "MqttSubscription",
    "NatsSubscription",
    "RedisSubscription",
    "KafkaSubscription",
    "StreamSource",
    "UnionSource",
]


class _SourceBase(ConfigModel):
    name: str | None = Field(None, description="Name of the source in metrics and quarantine records (default: its type).")
    columns: list[str] | None = Field(None, description="Keep only these columns (after renames); null keeps all.")
    rename: dict[str, str] = Field(default_factory=dict, description="Rename columns: {old_name: new_name}.")


class _FileSource(_SourceBase):
    paths: list[str] = Field(
        ..., min_length=1, description="Files, folders or globs; local paths or any pyarrow/fsspec URI (s3://, gs://, ...)."
    )

    _coerce_paths = field_validator("paths", mode="before")(as_list)


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


class SqlPartition(ConfigModel):
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


class SqlIncremental(ConfigModel):
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


class ApiAuth(ConfigModel):
    token_env: str = Field(..., description="Environment variable holding the token (read on the driver; never logged).")
    header: str = Field("Authorization", description="Header that carries the token.")
    scheme: str | None = Field("Bearer", description="Prefix of the header value ('Bearer'); null sends the bare token (API keys).")


_PAGINATION_FIELDS = {
    "none": set(),
    "next_link": {"next_path"},
    "page": {"page_param", "start_page", "size_param", "page_size", "total_pages_path", "total_records_path"},
    "cursor": {"cursor_param", "cursor_path"},
}


class ApiPagination(ConfigModel):
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


class _SubscriptionBase(ConfigModel):
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

    _coerce_topics = field_validator("topics", mode="before")(as_list)


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

    _coerce_servers = field_validator("bootstrap_servers", "topics", mode="before")(as_list)


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
