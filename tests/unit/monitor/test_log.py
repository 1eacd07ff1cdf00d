"""The prediction log: buffered writes, whole files only, PII, the feedback join."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from raypipe.monitor.log import FEEDBACK, PREDICTIONS, LogWriter, feedback_rows, labeled_rows, prediction_rows, read_all, read_new


def _rows(ids, version=1, pii=(), mode="hash"):
    inputs = pa.table({"age": [30 + i for i in range(len(ids))], "email": [f"u{i}@x.org" for i in range(len(ids))]})
    out = {"prediction": np.array([">50K"] * len(ids), dtype=object), "probability": np.linspace(0.6, 0.9, len(ids))}
    return prediction_rows(inputs, out, ids, version, pii, mode)


def test_buffered_writes_and_reads(tmp_path):
    writer = LogWriter(str(tmp_path / "m"), PREDICTIONS, "w1", flush_rows=5, flush_s=3600)
    writer.append(_rows(["a", "b", "c"]))
    assert read_all(str(tmp_path / "m"), PREDICTIONS) is None  # buffered, below flush_rows
    writer.append(_rows(["d", "e", "f"]))  # 6 >= 5: one file
    table, paths = read_new(str(tmp_path / "m"), PREDICTIONS, set())
    assert table.column("prediction_id").to_pylist() == ["a", "b", "c", "d", "e", "f"] and len(paths) == 1
    writer.append(_rows(["g"]))
    writer.close()
    again, more = read_new(str(tmp_path / "m"), PREDICTIONS, set(paths))
    assert again.column("prediction_id").to_pylist() == ["g"] and writer.rows_written == 7
    assert not list((tmp_path / "m").rglob(".*.tmp"))


def test_pii_is_hashed_or_dropped():
    hashed = _rows(["a"], pii=["email"])
    assert hashed.column("email").to_pylist() == [hashlib.sha256(b"u0@x.org").hexdigest()]
    dropped = _rows(["a"], pii=["email"], mode="drop")
    assert "email" not in dropped.column_names and dropped.column("age").to_pylist() == [30]


def test_labeled_rows_join_newest_label(tmp_path):
    root = str(tmp_path / "m")
    preds = LogWriter(root, PREDICTIONS, "w1")
    preds.append(_rows(["a", "b", "c"]))
    preds.close()
    fb = LogWriter(root, FEEDBACK, "w1")
    fb.append(feedback_rows([{"prediction_id": "a", "label": "<=50K"}, {"prediction_id": "c", "label": 1.5}]))
    fb.append(feedback_rows([{"prediction_id": "a", "label": ">50K"}, {"prediction_id": "zz", "label": True}]))
    fb.close()
    joined = labeled_rows(root).sort_by("prediction_id")
    assert joined.column("prediction_id").to_pylist() == ["a", "c"]  # b has no label, zz no prediction
    assert joined.column("label").to_pylist() == [">50K", "1.5"]
