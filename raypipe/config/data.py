"""The ``data`` section: its source, the declared schema, the quarantine policy and the split."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from raypipe.config.base import ConfigModel, as_list, parse_span
from raypipe.config.sources import Source

__all__ = ["ColumnType", "ColumnSpec", "SchemaConfig", "ValidationConfig", "SplitConfig", "DataConfig"]

ColumnType = Literal["int", "float", "string", "category", "bool", "datetime"]


class ColumnSpec(ConfigModel):
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


class SchemaConfig(ConfigModel):
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


class ValidationConfig(ConfigModel):
    max_invalid_fraction: float = Field(
        0.01, ge=0, le=1, description="The run fails when more than this share of rows is quarantined."
    )
    quarantine_uri: str | None = Field(
        None, description="Where quarantined rows are written as Parquet (default: <output.uri>/<run_id>/quarantine)."
    )


class SplitConfig(ConfigModel):
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

    _coerce_paths = field_validator("test_paths", "valid_paths", mode="before")(as_list)

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


class DataConfig(ConfigModel):
    source: Source = Field(..., description="Where the rows come from; chosen by `type`.")
    schema_: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema", description="Declared columns and roles.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="Quarantine policy.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Train/valid/test split.")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
