"""The lineage manifest of a run and the schema a bundle records."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import ray

from raypipe.config import PipelineConfig, local_paths

__all__ = ["lineage", "bundle_schema"]

def bundle_schema(cfg: PipelineConfig, schema: Any) -> dict[str, Any]:
    return {
        "task": cfg.model.task,
        "label": schema.label,
        "weight": schema.weight,
        "id": schema.id,
        "columns": {name: spec.model_dump(mode="json", exclude_none=True) for name, spec in schema.columns.items()},
    }


def lineage(cfg: PipelineConfig, state: Any) -> dict[str, Any]:

    config = cfg.model_dump(mode="json", by_alias=True)
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    packages = {}
    for pkg in ("raypipe", "ray", "xgboost", "pyarrow", "numpy", "pydantic"):
        try:
            packages[pkg] = version(pkg)
        except PackageNotFoundError:
            packages[pkg] = None
    return {
        "run_id": state.run_id,
        "trigger": state.trigger,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "config": config,
        "config_hash": hashlib.sha256(canonical.encode()).hexdigest(),
        "data_fingerprint": _fingerprint(cfg, state),
        "rows": dict(state.rows),
        "git_commit": commit,
        "packages": packages,
        "python": platform.python_version(),
        "seeds": _seeds(cfg),
        "cluster": {k: v for k, v in ray.cluster_resources().items() if not k.startswith("node:")},
        "num_workers": state.training.num_workers,
        "training_rows": dict(state.training.rows),
    }


def _fingerprint(cfg: PipelineConfig, state: Any) -> str:
    """Hash of what identifies the input: source files (path, size, mtime) and row counts."""
    h = hashlib.sha256()
    h.update(json.dumps(cfg.data.source.model_dump(mode="json"), sort_keys=True).encode())
    for pattern in local_paths(cfg.data.source):
        for path in sorted(glob.glob(pattern.removeprefix("file://"), recursive=True)) or [pattern]:
            try:
                st = os.stat(path)
                h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(path.encode())
    h.update(json.dumps(state.rows, sort_keys=True).encode())
    return h.hexdigest()


def _seeds(cfg: PipelineConfig) -> dict[str, Any]:
    """Every source of randomness of a run and the seed it used."""
    split = cfg.data.split.seed
    model = cfg.model_seed
    seeds: dict[str, Any] = {
        "split": split,
        "model": model,
        "model_seed_from": "model.seed" if cfg.model.seed is not None else "data.split.seed",
        "xgboost": model,
    }
    if cfg.tune.enabled:
        seeds["tune_searcher"] = model
    if cfg.evaluate.cv_folds:
        seeds["cv_folds"] = split
    return seeds
