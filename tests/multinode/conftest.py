"""A Ray cluster of several nodes on this machine (``ray.cluster_utils.Cluster``).

Each node is its own raylet with 1 CPU, so placement, shard balance and node loss are
real Ray behaviour, not mocks. The cluster gets its own ``RAY_TMPDIR`` (short: Ray's
socket paths must be short) and an explicit GCS port (never 6379, which Redis owns).
Run with ``pytest -m multinode tests/multinode`` (not part of the default run: starting
three raylets costs tens of seconds on a 2-core machine).
"""

from __future__ import annotations

import os
import tempfile

import pytest

from _net import free_port


@pytest.fixture(scope="session")
def multinode():
    """(cluster, head, workers): a head node (with the dashboard, at
    ``cluster.dashboard_url``) and two worker nodes of 1 CPU each, the driver connected.
    Tests that remove a node add one back before they end."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("multinode: this process already runs a one-node Ray (run `pytest -m multinode tests/multinode` alone)")
    from raypipe.runtime.cluster import use_local_ray_env

    tmp = tempfile.mkdtemp(prefix="rpmn-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = tmp
    use_local_ray_env()  # before the raylets start: they inherit it
    # Serve's proxy sends every request to a replica on its own node while that one has
    # room; the tier checks that replicas on two nodes answer, so routing picks among all.
    os.environ["RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"] = "0"
    # The head runs the dashboard: `ray job submit` talks to its job server, and the
    # tests read actor placement from its state API.
    dashboard_port = free_port()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "gcs_server_port": free_port(), "include_dashboard": True,
                        "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port,
                        # Ray's fixed default (52365) may be held by another Ray on the machine;
                        # then the head's agent never registers and `ray job submit` answers
                        # "No available agent to submit job" (seen with a second cluster running).
                        "dashboard_agent_listen_port": free_port(),
                        "object_store_memory": 200 * 1024 * 1024},
    )
    cluster.dashboard_url = f"http://127.0.0.1:{dashboard_port}"
    workers = [cluster.add_node(num_cpus=1, object_store_memory=200 * 1024 * 1024) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    yield cluster, cluster.head_node, workers
    ray.shutdown()
    cluster.shutdown()
