"""Unit tests of raypipe.data.split: deterministic, layout-independent assignment; fractions."""

from __future__ import annotations

import datetime as dt
import math
import os

import numpy as np
import pyarrow as pa
import pytest

from raypipe.config import SplitConfig
from raypipe.data import provenance as prov
from raypipe.data.split import (
    SPLIT_COLUMN,
    TEST,
    TRAIN,
    VALID,
    SplitPlan,
    assign_files,
    assign_random,
    assign_time,
    match_files,
    normalize_paths,
    row_hash,
    time_thresholds,
)
from raypipe.errors import SchemaError


def people(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": np.arange(n, dtype=np.int64),
            "age": rng.integers(17, 90, n),
            "w": rng.normal(size=n),
            "sex": rng.choice(["Male", "Female"], n).tolist(),
            "when": pa.array(rng.integers(0, 10**15, n), pa.timestamp("us")),
        }
    )


def by_id(table: pa.Table, codes: np.ndarray) -> dict[int, int]:
    return dict(zip(table["id"].to_pylist(), codes.tolist()))


def test_random_split_ignores_row_order_and_batching():
    t = people(3000)
    whole = by_id(t, assign_random(t, test_fraction=0.2, valid_fraction=0.1, seed=7))
    perm = np.random.default_rng(1).permutation(t.num_rows)
    shuffled = t.take(pa.array(perm))
    # Arbitrary uneven batches, with chunked columns inside each.
    cuts = [0, 1, 17, 900, 901, 2500, 3000]
    pieces = {}
    for lo, hi in zip(cuts, cuts[1:]):
        part = pa.concat_tables([shuffled.slice(lo, (hi - lo) // 2), shuffled.slice(lo + (hi - lo) // 2, hi - lo - (hi - lo) // 2)])
        pieces.update(by_id(part, assign_random(part, test_fraction=0.2, valid_fraction=0.1, seed=7)))
    assert pieces == whole


def test_random_split_fractions_within_sampling_error():
    n = 20000
    codes = assign_random(people(n), test_fraction=0.2, valid_fraction=0.1, seed=42)
    for code, p in ((TEST, 0.2), (VALID, 0.1), (TRAIN, 0.7)):
        share = float(np.mean(codes == code))
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n), (code, share)


def test_seed_changes_the_split_and_same_seed_repeats_it():
    t = people(2000)
    a = assign_random(t, test_fraction=0.2, valid_fraction=0.1, seed=1)
    assert np.array_equal(a, assign_random(t, test_fraction=0.2, valid_fraction=0.1, seed=1))
    b = assign_random(t, test_fraction=0.2, valid_fraction=0.1, seed=2)
    assert np.mean(a != b) > 0.2


def test_hash_is_value_based_not_type_layout_based():
    # The same values with or without nulls elsewhere in the batch hash alike;
    # -0.0 and 0.0 are one value; identical rows share a split.
    t1 = pa.table({"k": pa.array([1, 2, 3], pa.int64()), "f": [0.0, 1.5, None]})
    t2 = pa.table({"k": pa.array([3, 1, None], pa.int64()), "f": [None, -0.0, 2.0]})
    h1, h2 = row_hash(t1, ["k", "f"], 5), row_hash(t2, ["k", "f"], 5)
    assert h1[0] == h2[1] and h1[2] == h2[0]
    dup = pa.table({"x": ["a", "b", "a"]})
    codes = assign_random(dup, test_fraction=0.5, valid_fraction=0.2, seed=3)
    assert codes[0] == codes[2]


def test_key_columns_choose_the_hash_inputs():
    t = people(500)
    a = assign_random(t, test_fraction=0.3, valid_fraction=0.0, seed=9, key_columns=["sex"])
    # Keyed on sex alone: every row of one sex lands in one split.
    for sex in ("Male", "Female"):
        mask = np.array(t["sex"].to_pylist()) == sex
        assert len(set(a[mask].tolist())) == 1
    with pytest.raises(SchemaError, match="key_columns: column 'sx'"):
        assign_random(t, test_fraction=0.3, valid_fraction=0.0, seed=9, key_columns=["sx"])


def test_time_split_with_explicit_thresholds():
    t = pa.table({"ts": pa.array([dt.datetime(2024, 1, d) for d in (1, 10, 20, 25, 31)] + [None], pa.timestamp("us"))})
    codes = assign_time(t, "ts", valid_from="2024-01-20", test_from="2024-01-25T00:00:00")
    assert codes.tolist() == [TRAIN, TRAIN, VALID, TEST, TEST, TRAIN]


def test_time_thresholds_leave_the_latest_fractions():
    values = np.arange(1000)
    valid_from, test_from = time_thresholds(values, 0.2, 0.1)
    assert (valid_from, test_from) == (700, 800)
    t = pa.table({"t": pa.array(values, pa.int64())})
    codes = assign_time(t, "t", valid_from, test_from)
    assert np.bincount(codes).tolist() == [700, 100, 200]
    assert time_thresholds(values, 0.0, 0.0) == (None, None)


def test_files_split(tmp_path):
    base = str(tmp_path)
    test_paths = normalize_paths(["data/adult.test"], base)
    assert test_paths == [os.path.join(base, "data", "adult.test")]
    files = [os.path.join(base, "data", "adult.data")] * 4000 + [os.path.join(base, "data", "adult.test")] * 1000
    t = pa.table({"x": np.arange(5000), prov.FILE: files})
    codes = assign_files(t, test_paths=test_paths, valid_fraction=0.1, seed=42)
    assert np.sum(codes == TEST) == 1000
    assert np.all(codes[4000:] == TEST)
    carved = float(np.mean(codes[:4000] == VALID))
    assert abs(carved - 0.1) < 4 * math.sqrt(0.09 / 4000)
    with_valid = assign_files(t, test_paths=test_paths, valid_paths=normalize_paths(["data/adult.data"], base))
    assert np.bincount(with_valid).tolist() == [0, 4000, 1000]


def test_match_files_exact_folder_and_glob():
    files = ["/d/a.csv", "/d/sub/b.csv", "/e/c.csv", "bucket/x/part-0.parquet"]
    assert match_files(files, ["/d/sub"]).tolist() == [False, True, False, False]
    assert match_files(files, ["/d/*.csv"]).tolist() == [True, True, False, False]  # fnmatch: * crosses '/'
    assert match_files(files, normalize_paths(["s3://bucket/x"])).tolist() == [False, False, False, True]


def test_split_plan_adds_the_split_column():
    cfg = SplitConfig(method="random", test_fraction=0.25, valid_fraction=0.25, seed=1)
    t = people(100)
    out = SplitPlan.of(cfg)(t)
    assert out.column_names[-1] == SPLIT_COLUMN and out.schema.field(SPLIT_COLUMN).type == pa.int8()
    assert out[SPLIT_COLUMN].to_pylist() == assign_random(t, test_fraction=0.25, valid_fraction=0.25, seed=1).tolist()
