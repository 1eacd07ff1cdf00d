"""raypipe.runtime.storage: relative paths when the working directory is replaced under
the process (a `ray job submit --working-dir` driver on raylets that share a machine)."""

from __future__ import annotations

import os
import shutil

import pytest

from raypipe.runtime import storage


def test_a_replaced_working_directory_is_reentered_by_its_path(tmp_path, monkeypatch):
    job = tmp_path / "_ray_pkg_1"
    job.mkdir()
    monkeypatch.chdir(job)
    assert storage.working_dir() == str(job)
    # What each node's runtime-env agent does to a job's package: delete, unpack again.
    shutil.rmtree(job)
    job.mkdir()
    with pytest.raises(FileNotFoundError):
        os.getcwd()
    assert storage.absolute_uri("data/part0.csv") == str(job / "data" / "part0.csv")
    assert os.getcwd() == str(job)


def test_a_working_directory_that_never_comes_back_is_named(tmp_path, monkeypatch):
    job = tmp_path / "_ray_pkg_2"
    job.mkdir()
    monkeypatch.chdir(job)
    storage.working_dir()
    monkeypatch.setattr(storage, "_REAPPEAR_S", 0.2)
    shutil.rmtree(job)
    with pytest.raises(FileNotFoundError, match=f"the working directory {job} was deleted"):
        storage.absolute_uri("data/part0.csv")
