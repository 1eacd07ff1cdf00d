"""One-process training: the training loop in one Ray task, without a Ray Train worker group.

A run planned with one CPU worker gains nothing from Ray Train's machinery and pays
for it: a controller actor, a worker actor and their helpers are new Python
processes that import Ray Train and XGBoost (measured on the 2-core CI machine:
about 7 s before the training loop starts, every run). A Ray task runs in a pooled
worker process that stays warm between runs, so the same loop
(:func:`raypipe.train._worker.train_loop`) starts in well under a second.

What Ray Train gave and this keeps:

* checkpoints every ``checkpoint_every`` rounds and at the end, in the same layout
  under ``<storage_path>/<run_name>/checkpoint_NNNNNN[_final]/`` (the 2 newest kept);
* fault tolerance: the task is retried up to ``max_failures`` times when its
  process dies, and a retry resumes from the newest complete checkpoint;
* the datasets are materialized by the caller before the task starts, so the task
  holding its CPUs never waits on Ray Data for a block (the reason Ray Train runs
  keep a CPU reserve, see :mod:`raypipe.train._resources`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.fs

from ray.train import Checkpoint

from raypipe.runtime.storage import resolve
from raypipe.train._worker import (
    MODEL_FILENAME,
    STATE_FILENAME,
    LoopConfig,
    Matrices,
    build_matrices,
    train_loop,
)

_KEEP = 2  # checkpoints kept, as the Ray Train runs' CheckpointConfig(num_to_keep=2)


def run_dir(storage_path: str, run_name: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem and path of a run's folder (a local path or a URI)."""
    fs, root = resolve(storage_path, "model.training storage")
    return fs, f"{root.rstrip('/')}/{run_name}"


class LocalSession:
    """The session of a one-task run: whole datasets, checkpoints on ``fs``/``path``."""

    rank = 0

    def __init__(self, datasets: dict[str, Any], fs: pyarrow.fs.FileSystem, path: str):
        self._datasets = datasets
        self._fs = fs
        self._path = path
        self.last_checkpoint: str | None = None
        fs.create_dir(path, recursive=True)  # the run's folder exists from the start, as a Ray Train run's

    def shard(self, name: str) -> Any:
        return self._datasets[name]

    def matrices(self, cfg: LoopConfig) -> Matrices:
        return build_matrices(cfg, self)

    def checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint whose state file was written (written last)."""
        found = self._complete()
        return Checkpoint(found[-1], filesystem=self._fs) if found else None

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None, name: str | None = None) -> None:
        # Metrics are kept by the training callback (its history); only
        # checkpoints leave the process.
        if checkpoint_dir is None:
            return
        dest = f"{self._path}/{name}"
        self._fs.create_dir(dest, recursive=True)
        # The state file last: a checkpoint without it is incomplete (a crash mid-copy).
        for filename in (MODEL_FILENAME, STATE_FILENAME):
            with self._fs.open_output_stream(f"{dest}/{filename}") as out:
                out.write(Path(checkpoint_dir, filename).read_bytes())
        self.last_checkpoint = dest
        for old in self._complete()[:-_KEEP]:
            self._fs.delete_dir(old)

    def wait_persisted(self) -> None:
        """Checkpoints are written synchronously by :meth:`report`."""

    def _complete(self) -> list[str]:
        selector = pyarrow.fs.FileSelector(self._path, allow_not_found=True)
        dirs = sorted(
            info.path
            for info in self._fs.get_file_info(selector)
            if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_")
        )
        return [d for d in dirs if self._fs.get_file_info(f"{d}/{STATE_FILENAME}").type == pyarrow.fs.FileType.File]


def train_task(cfg: LoopConfig, datasets: dict[str, Any], storage_path: str, run_name: str) -> dict:
    """The Ray task body: the training loop on whole datasets; the result plus
    ``checkpoint_path`` (the final checkpoint's folder)."""
    fs, path = run_dir(storage_path, run_name)
    session = LocalSession(datasets, fs, path)
    out = train_loop(cfg, session)
    out["checkpoint_path"] = session.last_checkpoint or session.checkpoint().path
    return out
