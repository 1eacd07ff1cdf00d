"""The README's Python API driver script, run as written in a fresh process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
ADULT_TEST_ROWS = 16_281


def _readme_script() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_driver_script_runs_as_written(tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "data" / "adult", tmp_path / "data" / "adult")
    # Ray's socket paths must stay under 107 bytes: a short folder of its own.
    ray_tmp = tempfile.mkdtemp(prefix="rp-api-", dir="/tmp")
    env = dict(os.environ, RAY_ADDRESS="", RAY_TMPDIR=ray_tmp)
    proc = subprocess.run([sys.executable, "-c", _readme_script()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    status, valid, auc = lines[0].split()
    assert status == "succeeded" and int(valid) == 32_561 + ADULT_TEST_ROWS and 0.9 < float(auc) < 1.0
    assert lines[1] == "[(1, 'champion')]"
    rows = eval(lines[2])  # the dict the script prints  # noqa: S307 - our own output
    assert rows == {"input": ADULT_TEST_ROWS, "predicted": ADULT_TEST_ROWS, "quarantined": 0}
    written = pq.read_table(tmp_path / "predictions.parquet")
    assert written.num_rows == ADULT_TEST_ROWS
