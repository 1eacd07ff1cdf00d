"""The quickstart as a new user runs it: the real console script, a fresh local Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADULT_ROWS = 32_561 + 16_281


def test_raypipe_run_quickstart_json(tmp_path):
    env = dict(os.environ, RAY_ADDRESS="")
    raypipe = Path(sys.executable).with_name("raypipe")
    proc = subprocess.run(
        [str(raypipe), "run", "configs/quickstart.yaml", "--json", "--until", "transform",
         "--set", f"output.uri={tmp_path}/runs", "--set", "cluster.num_cpus=2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # stdout holds the JSON object and nothing else
    rows = result["rows"]
    assert rows["ingested"] == ADULT_ROWS
    assert rows["ingested"] == rows["valid"] + rows["quarantined"]
    assert rows["valid"] == rows["train"] + rows["valid_split"] + rows["test"]
    assert result["status"] == "succeeded"
    assert result["stages_run"] == ["ingest", "split", "transform"]
    assert "capital_net" in result["features"]
    report = json.loads(Path(result["report"]).read_text())
    assert report["rows"] == rows
