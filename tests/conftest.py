"""Shared fixtures: one local Ray cluster per test session.

Starting Ray costs seconds on this machine, so every test marked ``ray`` shares the
cluster started here (2 CPUs, random ports: port 6379 belongs to Redis).
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster shared by the whole session, in the environment raypipe
    gives a local Ray it starts for serving (``LOCAL_RAY_ENV`` and Serve's fast path,
    ``serve.fast_path``'s default)."""
    import ray

    from raypipe.runtime.cluster import use_local_ray_env

    if not ray.is_initialized():
        use_local_ray_env(serve_fast_path=True)
        ray.init(
            address="local",
            num_cpus=int(os.environ.get("RAYPIPE_TEST_CPUS", "2")),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    # Ray is shut down at interpreter exit; other session fixtures may still use it.


def pytest_collection_modifyitems(config, items):
    # Tests under tests/integration and tests/e2e use the shared cluster.
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.ray)
        if f"{os.sep}e2e{os.sep}" in path:
            item.add_marker(pytest.mark.e2e)
