"""How the replica hands rows to the model: alone (no batch queue) or through ``@serve.batch``,
and request isolation inside a merged call. No HTTP, no cluster: the replica class's own
methods on a bare instance, with a stand-in model whose ``predict`` fails on a marked row."""

from __future__ import annotations

import asyncio

import numpy as np
import pyarrow as pa
import pytest

from raypipe.serving.app import Endpoint, Loaded

Replica = Endpoint.func_or_class


class _Bundle:
    """``predict`` doubles ``x``; a row with ``x < 0`` makes the whole call fail."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, table: pa.Table) -> dict[str, np.ndarray]:
        x = table.column("x").to_numpy()
        self.calls.append(table.num_rows)
        if (x < 0).any():
            raise ValueError("negative x")
        return {"prediction": x * 2}


def _model(bundle: _Bundle, version: int = 1) -> Loaded:
    return Loaded("m", version, bundle, None, None, {})


def _table(*xs: float) -> pa.Table:
    return pa.table({"x": pa.array(xs, pa.float64())})


def test_merged_call_isolates_the_failing_request():
    bundle = _Bundle()
    model = _model(bundle)
    out = Replica._predict_items([(model, _table(1, 2)), (model, _table(-1)), (model, _table(3))])
    assert out[0]["prediction"].tolist() == [2, 4]
    assert isinstance(out[1], ValueError) and "negative" in str(out[1])
    assert out[2]["prediction"].tolist() == [6]
    assert bundle.calls == [4, 2, 1, 1]  # the merged call, then each request alone


def test_one_call_per_model_version():
    a, b = _Bundle(), _Bundle()
    one, two = _model(a, 1), _model(b, 2)  # the replica's Loaded objects: grouped by identity
    out = Replica._predict_items([(one, _table(1)), (two, _table(5)), (one, _table(2))])
    assert [o["prediction"].tolist() for o in out] == [[2], [10], [4]]
    assert a.calls == [2] and b.calls == [1]


def _replica(in_flight: int, direct: bool) -> tuple[object, list]:
    replica = object.__new__(Replica)
    replica._in_flight, replica._direct_when_alone = in_flight, direct
    queued: list = []

    async def batch(item):  # stands in for the @serve.batch queue: records what reached it
        queued.append(item)
        return Replica._predict_items([item])[0]

    replica._predict_batch = batch
    return replica, queued


@pytest.mark.parametrize("in_flight, direct, via_queue", [(1, True, False), (2, True, True), (1, False, True)])
def test_alone_skips_the_batch_queue(in_flight, direct, via_queue):
    # Alone (no other /predict in the replica) with no batch wait: predicted at once, the same
    # answer; another request in flight, or a configured wait, goes through the batch queue.
    replica, queued = _replica(in_flight, direct)
    model = _model(_Bundle())
    out = asyncio.run(Replica._predict(replica, model, _table(1.5, 2)))
    assert out["prediction"].tolist() == [3, 4]
    assert len(queued) == (1 if via_queue else 0)
    failed = asyncio.run(Replica._predict(replica, model, _table(-1)))
    assert isinstance(failed, ValueError)  # returned, not raised, on both paths: the caller answers 422


def test_a_request_arriving_in_the_same_turn_goes_to_the_batch_queue():
    # A request the event loop already holds reaches its handler during the one turn the
    # lone request yields: both then go through the queue, where they can merge.
    replica, queued = _replica(1, True)

    async def main():
        asyncio.get_running_loop().call_soon(setattr, replica, "_in_flight", 2)
        return await Replica._predict(replica, _model(_Bundle()), _table(4))

    assert asyncio.run(main())["prediction"].tolist() == [8]
    assert len(queued) == 1
