"""Pair ``ingest``: ingest + validate + split + fit + transform of an Adult-like table.

Measured (wall seconds, median of ``ctx.repeats``), once for a CSV file and once for
the same rows in Parquet (2,000,000 rows; 50,000 under ``--quick``; ``--ingest-rows N`` for
another size, e.g. 20,000,000 to see how the ratio moves with the size):

* raypipe: ``Pipeline(cfg).run(until="transform")`` with a schema rule on every column
  (type, min/max, allowed values, nullable), a seeded random split (0.7/0.1/0.2) and five
  feature steps (impute constant, categorical, expression, log1p, standard scale) fitted
  on the train split; the transform stage computes the train and valid features into the
  object store (what training reads; the test split is scored later, through the bundle).
* baseline: one process. ``pyarrow.csv.read_csv`` (declared column types) or
  ``pyarrow.parquet.read_table``, the same checks with ``pyarrow.compute``, a seeded
  uniform split of the same fractions, the same statistics fitted on the train split
  (sorted categories, mean/std) and the same transforms applied to the train and valid
  splits (float32 feature columns plus the 0/1 label).

Both sides must agree on the ingested and valid row counts (exactly), the split sizes
(within 1% of the rows: the two sides draw different random splits) and the feature
count. Ratio = raypipe / baseline seconds; the target is ``<= 1.5``. In full mode a small
untimed run first warms Ray's worker processes (imports), as a long-lived cluster is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks._common import ADULT_CATEGORIES, Context, Figure, adult_like, median_time

#: Validation rules of every Adult-like column: exactly the generator's ranges and values.
COLUMNS: dict[str, dict[str, Any]] = {
    "age": {"type": "int", "min": 17, "max": 90},
    "fnlwgt": {"type": "int", "min": 12_000, "max": 1_500_000},
    "education_num": {"type": "int", "min": 1, "max": 16},
    "capital_gain": {"type": "int", "min": 0, "max": 99_999},
    "capital_loss": {"type": "int", "min": 0, "max": 4_356},
    "hours_per_week": {"type": "int", "min": 1, "max": 99},
    **{name: {"type": "category", "allowed": [v for v in values if v is not None], "nullable": None in values}
       for name, values in ADULT_CATEGORIES.items()},
    "income": {"type": "category", "allowed": ["<=50K", ">50K"]},
}
LABEL, POSITIVE = "income", ">50K"
NULLABLE = [c for c, rule in COLUMNS.items() if rule.get("nullable")]
CATEGORICAL = list(ADULT_CATEGORIES)
SCALED = ["age", "hours_per_week"]
LOGGED = ["capital_gain", "capital_loss"]
FEATURES = [
    {"type": "impute", "columns": NULLABLE, "strategy": "constant", "fill_value": "Unknown"},
    {"type": "categorical", "columns": CATEGORICAL},
    {"type": "expression", "name": "capital_net", "expr": "capital_gain - capital_loss"},
    {"type": "log1p", "columns": LOGGED},
    {"type": "standard_scale", "columns": SCALED},
]
TEST_FRACTION, VALID_FRACTION, SEED = 0.2, 0.1, 42
#: Split name -> its row count's key in ``RunResult.rows`` (and in the results compared here).
SPLIT_KEYS = {"train": "train", "valid": "valid_split", "test": "test"}


def adult_config(name: str, source: dict[str, Any], workdir: Path, **sections: Any):
    """The pipeline config of this benchmark over ``source`` (also used by ``pair_predict``).

    ``sections`` are extra top-level config sections (``model``, ...); registry and run
    outputs go under ``workdir``.
    """
    from raypipe.config import parse_config

    return parse_config({
        "name": name,
        "data": {
            "source": source,
            "schema": {"label": LABEL, "columns": COLUMNS},
            "split": {"method": "random", "test_fraction": TEST_FRACTION, "valid_fraction": VALID_FRACTION, "seed": SEED},
        },
        "features": FEATURES,
        "model": {"task": "binary_classification", "positive_class": POSITIVE, **sections.pop("model", {})},
        "registry": {"uri": str(workdir / "registry")},
        "output": {"uri": str(workdir / "runs")},
        **sections,
    })


# --------------------------------------------------------------------------- raypipe side


def run_raypipe(cfg) -> dict[str, Any]:
    """``Pipeline(cfg).run(until="transform")``: counts and feature count."""
    from raypipe.pipeline import Pipeline

    result = Pipeline(cfg).run(until="transform")
    return {"ingested": result.rows["ingested"], "valid": result.rows["valid"],
            **{key: result.rows[key] for key in SPLIT_KEYS.values()},
            "features": len(result.features), "durations_s": result.durations_s}


# --------------------------------------------------------------------------- baseline


def _read(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    types = {c: pa.int64() if rule["type"] == "int" else pa.string() for c, rule in COLUMNS.items()}
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))


def _invalid(table: pa.Table) -> pa.ChunkedArray:
    """True where a row breaks a rule of :data:`COLUMNS` (types: the reader's or a cast)."""
    bad = pc.is_null(table[LABEL]).fill_null(False)  # all False: only to start the OR chain
    for name, rule in COLUMNS.items():
        column = pc.cast(table[name], pa.int64() if rule["type"] == "int" else pa.string())
        checks = [] if rule.get("nullable") else [pc.is_null(column)]
        if "min" in rule:
            checks.append(pc.less(column, rule["min"]))
        if "max" in rule:
            checks.append(pc.greater(column, rule["max"]))
        if "allowed" in rule:
            checks.append(pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=pa.array(rule["allowed"])))))
        for check in checks:
            bad = pc.or_(bad, pc.fill_null(check, False))
    return bad


def _fit(train: pa.Table) -> dict[str, Any]:
    """The statistics raypipe's steps learn, from the train split only."""
    stats: dict[str, Any] = {}
    for name in CATEGORICAL:
        column = pc.fill_null(train[name], "Unknown") if name in NULLABLE else train[name]
        stats[name] = pc.unique(column).drop_null().sort()
    for name in SCALED:
        x = train[name].to_numpy().astype(np.float64)
        stats[name] = (x.mean(), x.std())
    return stats


def _transform(table: pa.Table, stats: dict[str, Any]) -> pa.Table:
    """Float32 features in raypipe's order (input columns, then ``capital_net``) and the label."""
    out: dict[str, np.ndarray] = {}
    for name, rule in COLUMNS.items():
        if name == LABEL:
            continue
        if rule["type"] == "int":
            x = table[name].to_numpy().astype(np.float64)
            if name in SCALED:
                mean, std = stats[name]
                x = (x - mean) / (std or 1.0)
            elif name in LOGGED:
                x = np.log1p(x)
            out[name] = x
        else:
            column = pc.fill_null(table[name], "Unknown") if name in NULLABLE else table[name]
            codes = pc.index_in(column, value_set=stats[name]).to_numpy(zero_copy_only=False)
            out[name] = codes.astype(np.float64)  # null (unknown) -> NaN
    out["capital_net"] = (table["capital_gain"].to_numpy() - table["capital_loss"].to_numpy()).astype(np.float64)
    arrays = {name: pa.array(x.astype(np.float32)) for name, x in out.items()}
    arrays[LABEL] = pa.array(pc.equal(table[LABEL], POSITIVE).to_numpy(zero_copy_only=False).astype(np.float64))
    return pa.table(arrays)


def run_baseline(path: Path) -> dict[str, Any]:
    """Read, check, split, fit on train, transform train and valid: counts and feature count."""
    table = _read(path)
    valid = table.filter(pc.invert(_invalid(table)))
    u = np.random.default_rng(SEED).random(valid.num_rows)
    splits = {
        "train": valid.filter(u >= TEST_FRACTION + VALID_FRACTION),
        "valid": valid.filter((u >= TEST_FRACTION) & (u < TEST_FRACTION + VALID_FRACTION)),
        "test": valid.filter(u < TEST_FRACTION),
    }
    stats = _fit(splits["train"])
    transformed = {name: _transform(splits[name], stats) for name in ("train", "valid")}
    return {"ingested": table.num_rows, "valid": valid.num_rows, **{SPLIT_KEYS[n]: t.num_rows for n, t in splits.items()},
            "features": transformed["train"].num_columns - 1}


# --------------------------------------------------------------------------- the pair


def _check(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    for key in ("ingested", "valid", "features"):
        assert ours[key] == theirs[key], f"{key}: raypipe {ours[key]} != baseline {theirs[key]}"
    for key in SPLIT_KEYS.values():
        assert abs(ours[key] - theirs[key]) <= 0.01 * ours["valid"] + 50, f"split {key}: raypipe {ours[key]}, baseline {theirs[key]}"


def write_data(ctx: Context, rows: int) -> dict[str, Path]:
    """The Adult-like table as ``adult.csv`` and ``adult.parquet`` under the workdir."""
    table = adult_like(rows)
    paths = {"CSV": ctx.workdir / "adult.csv", "Parquet": ctx.workdir / "adult.parquet"}
    pacsv.write_csv(table, paths["CSV"])
    pq.write_table(table, paths["Parquet"])
    return paths


def run(ctx: Context) -> list[Figure]:
    rows = ctx.ingest_rows or ctx.size(2_000_000, 50_000)
    paths = write_data(ctx, rows)
    if not ctx.quick:  # a smoke run skips the warm-up: its timings are not read
        warm = ctx.workdir / "warmup.parquet"
        pq.write_table(adult_like(5_000, seed=1), warm)
        run_raypipe(adult_config("bench-ingest-warmup", {"type": "parquet", "paths": [str(warm)]}, ctx.workdir))

    figures = []
    for fmt, path in paths.items():
        cfg = adult_config(f"bench-ingest-{fmt.lower()}", {"type": fmt.lower(), "paths": [str(path)]}, ctx.workdir)
        outcome: dict[str, Any] = {}
        ray_s, ray_samples = median_time(lambda: outcome.update(run_raypipe(cfg)), ctx.repeats, warmup=ctx.warmup)
        base = {}
        base_s, base_samples = median_time(lambda: base.update(run_baseline(path)), ctx.repeats, warmup=ctx.warmup)
        _check(outcome, base)
        stages = ", ".join(f"{k} {v:.1f}" for k, v in outcome["durations_s"].items())
        figures.append(Figure(
            pair="ingest", what=f"ingest+transform {fmt}" + (f", {rows:,} rows" if ctx.ingest_rows else ""), unit="s", raypipe=ray_s, baseline=base_s, target="<= 1.5",
            samples={"raypipe": ray_samples, "baseline": base_samples},
            note=(f"{rows:,} rows, {path.stat().st_size / 1e6:.0f} MB {fmt}, {outcome['features']} features; "
                  f"raypipe stages (last run, s): {stages}; baseline is single-process pyarrow/numpy"),
        ))
    return figures
