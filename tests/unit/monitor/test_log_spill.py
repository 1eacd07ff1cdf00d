"""A prediction is on disk before it is answered: kill -9 of a writer loses no row."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa

from raypipe.monitor.log import PREDICTIONS, LogWriter, fold_spills, read_all


def _killed_writer(root: str, rows: int, flush_rows: int) -> int:
    code = (
        "import os, pyarrow as pa\n"
        "from raypipe.monitor.log import LogWriter\n"
        f"w = LogWriter({root!r}, 'predictions', 'w1', flush_rows={flush_rows}, flush_s=3600)\n"
        f"for i in range({rows}):\n"
        "    w.append(pa.table({'prediction_id': [str(i)], 'x': [i]}))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    return subprocess.run([sys.executable, "-c", code], check=False).returncode


def test_rows_of_a_killed_writer_are_folded_once(tmp_path):
    root = str(tmp_path / "log")
    assert _killed_writer(root, rows=137, flush_rows=50) == -9
    table = read_all(root, PREDICTIONS)  # 100 flushed + 37 from the spill
    ids = table.column("prediction_id").to_pylist()
    assert (len(ids), len(set(ids))) == (137, 137)
    assert fold_spills(root, PREDICTIONS) == 0  # folded once, spill gone
    assert os.listdir(tmp_path / "log" / "predictions" / ".spill") == []


def test_a_live_writers_spill_is_left_alone_and_close_empties_it(tmp_path):
    root = str(tmp_path / "log")
    w = LogWriter(root, PREDICTIONS, "w2", flush_rows=10, flush_s=3600)
    for i in range(25):
        w.append(pa.table({"prediction_id": [f"b{i}"], "x": [i]}))
    assert read_all(root, PREDICTIONS).num_rows == 20
    w.close()
    assert read_all(root, PREDICTIONS).num_rows == 25
    assert os.listdir(tmp_path / "log" / "predictions" / ".spill") == []


def test_a_torn_last_frame_is_dropped(tmp_path):
    root = str(tmp_path / "log")
    w = LogWriter(root, PREDICTIONS, "w3", flush_rows=100, flush_s=3600)
    for i in range(3):
        w.append(pa.table({"prediction_id": [f"c{i}"], "x": [i]}))
    spill = tmp_path / "log" / "predictions" / ".spill" / "w3-00000001.spill"
    with open(spill, "ab") as fh:
        fh.write(b"\x40\x00\x00\x00\x00\x00\x00\x00half")  # killed mid-write: never answered
    os.close(w._spill[0])  # the writer "dies": its lock goes with its descriptor
    w._spill = None
    w._closed.set()
    assert fold_spills(root, PREDICTIONS) == 3
    assert sorted(read_all(root, PREDICTIONS).column("prediction_id").to_pylist()) == ["c0", "c1", "c2"]
