"""Fixtures of the feature unit tests: rows of every schema type, with nulls and a constant column.

(pytest runs with --import-mode=importlib, so test modules cannot import a helper
module; the rows and their schema types come as fixtures.)
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

TYPES = {
    "age": "int",
    "hours": "float",
    "const": "float",
    "color": "category",
    "city": "category",
    "member": "bool",
    "seen": "datetime",
    "email": "string",
    "income": "category",
    "weight": "float",
    "row_id": "int",
}


def make_table(n: int = 240, seed: int = 7) -> pa.Table:
    """Rows typed as validated data: int64, float64, string, bool, timestamp[us]."""
    rng = np.random.default_rng(seed)
    age = rng.integers(17, 90, n)
    age_mask = rng.random(n) < 0.1
    hours = np.round(rng.gamma(2.0, 15.0, n), 1)
    hours[rng.random(n) < 0.15] = np.nan
    colors = rng.choice(["red", "green", "blue", "black"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    colors[rng.random(n) < 0.12] = None
    cities = rng.choice([f"c{i:02d}" for i in range(12)], n).astype(object)
    start = dt.datetime(2024, 1, 1)
    seen = [start + dt.timedelta(hours=int(h)) for h in rng.integers(0, 24 * 400, n)]
    seen = [None if i % 17 == 0 else s for i, s in enumerate(seen)]
    return pa.table(
        {
            "age": pa.array(age, mask=age_mask, type=pa.int64()),
            "hours": pa.array(hours, from_pandas=True),
            "const": pa.array(np.full(n, 3.5)),
            "color": pa.array(list(colors), type=pa.string()),
            "city": pa.array(list(cities), type=pa.string()),
            "member": pa.array(rng.random(n) < 0.3),
            "seen": pa.array(seen, type=pa.timestamp("us")),
            "email": pa.array([f"u{i}@x.org" for i in range(n)]),
            "income": pa.array(rng.choice(["<=50K", ">50K"], n, p=[0.75, 0.25]).tolist()),
            "weight": pa.array(rng.random(n) + 0.5),
            "row_id": pa.array(np.arange(n, dtype=np.int64)),
        }
    )


def make_unseen() -> pa.Table:
    """Rows from a later day: new categories, all-missing values, extreme numbers."""
    return pa.table(
        {
            "age": pa.array([200, None, -5], type=pa.int64()),
            "hours": pa.array([1e6, None, -3.0]),
            "const": pa.array([3.5, 7.0, None]),
            "color": pa.array(["purple", None, "red"]),
            "city": pa.array(["zz", "c03", None]),
            "member": pa.array([True, None, False]),
            "seen": pa.array([dt.datetime(2030, 6, 1, 12), None, dt.datetime(2024, 2, 29)], type=pa.timestamp("us")),
            "email": pa.array(["a@b", None, "c@d"]),
            "income": pa.array([">50K", "<=50K", ">50K"]),
            "weight": pa.array([1.0, 1.0, 1.0]),
            "row_id": pa.array([1000, 1001, 1002], type=pa.int64()),
        }
    )


@pytest.fixture(scope="session")
def types() -> dict[str, str]:
    """Schema types of the rows (label income, weight, row_id included)."""
    return dict(TYPES)


@pytest.fixture(scope="session")
def table() -> pa.Table:
    """240 validated rows of every schema type, with nulls and a constant column."""
    return make_table()


@pytest.fixture(scope="session")
def unseen() -> pa.Table:
    """3 rows with new categories, missing values and out-of-range numbers."""
    return make_unseen()
