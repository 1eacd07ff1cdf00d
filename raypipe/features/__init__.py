"""Feature transforms: the config's ``features:`` steps over Arrow/numpy batches.

Pure (never imports Ray): fitted in memory with :meth:`FeaturePipeline.fit_local`,
or on a Ray Dataset with :func:`raypipe.features.ray_fit.fit_on_dataset` (a
submodule, imported explicitly, so ``import raypipe.features`` stays Ray-free).

Each transform owns its parameters (:mod:`raypipe.features.steps`): the config's
``features:`` section is :data:`raypipe.features.steps.FeatureStep`, the union of
those parameter models. Features import nothing from the config.

>>> import pyarrow as pa
>>> from raypipe.features import FeaturePipeline
>>> fp = FeaturePipeline([{"type": "one_hot", "columns": ["c"]}], {"c": "category"})
>>> fp.fit_local(pa.table({"c": ["a", "b", "a"]})).feature_names
['c=a', 'c=b']
"""

from raypipe.features.expression import compile_expression, referenced_names
from raypipe.features.label import LabelEncoder
from raypipe.features.pipeline import FeaturePipeline
from raypipe.features.stats import StatRequest, compute_stats

__all__ = [
    "FeaturePipeline",
    "LabelEncoder",
    "StatRequest",
    "compute_stats",
    "compile_expression",
    "referenced_names",
]
