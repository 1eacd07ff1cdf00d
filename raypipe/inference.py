"""Batch inference with a :class:`~raypipe.bundle.ModelBundle` on Ray Data.

The bundle is shipped to an actor pool as bytes (no shared filesystem needed) and
rebuilt once per actor; each batch goes through :meth:`ModelBundle.predict`, the
same code the HTTP endpoint runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from raypipe.bundle import ModelBundle

__all__ = ["predict_dataset", "prediction_table", "collect"]


def prediction_table(bundle: ModelBundle, batch: pa.Table, keep: Sequence[str] = ()) -> pa.Table:
    """``keep`` columns of ``batch`` followed by ``prediction`` and ``probability`` columns.

    Binary: ``probability`` is P(positive class). Multiclass: ``probability`` is a
    list per row (class order of the bundle) and ``probability_<class>`` columns
    are not added, to keep the output schema stable for any class count.
    """
    out = bundle.predict(batch)
    arrays = [batch.column(c) for c in keep]
    names = list(keep)
    pred = out["prediction"]
    arrays.append(pa.array(pred.tolist() if pred.dtype == object else pred))
    names.append("prediction")
    if "probability" in out:
        proba = out["probability"]
        if proba.ndim == 1:
            arrays.append(pa.array(proba))
        else:
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(proba.ravel()), proba.shape[1]))
        names.append("probability")
    return pa.Table.from_arrays(arrays, names=names)


class _Predictor:
    """Ray Data actor: one bundle per process, reused for every batch."""

    def __init__(self, files: dict[str, bytes], keep: list[str]):
        self.bundle = ModelBundle.from_files(files)
        self.keep = keep

    def __call__(self, batch: pa.Table) -> pa.Table:
        return prediction_table(self.bundle, batch, self.keep)


def predict_dataset(
    bundle: ModelBundle,
    ds: Any,
    keep: Sequence[str] = (),
    concurrency: int | tuple[int, int] = 1,
    batch_size: int | None = 4096,
    num_cpus: float = 1,
) -> Any:
    """Lazily add predictions to ``ds`` (a ``ray.data.Dataset`` of validated rows).

    Args:
        bundle: the model.
        ds: rows typed as the bundle's schema.
        keep: columns carried through (an id, the label, slice columns).
        concurrency: size of the actor pool (an int, or (min, max) to autoscale).
        batch_size: rows per prediction call.
        num_cpus: CPUs reserved per actor.
    """
    return ds.map_batches(
        _Predictor,
        fn_constructor_kwargs={"files": bundle.to_files(), "keep": list(keep)},
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=_actor_pool(concurrency),
        num_cpus=num_cpus,
        zero_copy_batch=True,
    )


def _actor_pool(concurrency: int | tuple[int, int]) -> Any:
    from ray.data import ActorPoolStrategy

    if isinstance(concurrency, tuple):
        return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    return ActorPoolStrategy(size=concurrency)


def collect(ds: Any) -> pa.Table:
    """Gather a (small) dataset's rows on the driver as one Arrow table."""
    import ray

    return pa.concat_tables(ray.get(ds.to_arrow_refs()), promote_options="default")
