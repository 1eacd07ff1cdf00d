"""Feature steps: one family module per kind of transform, and the one list of them.

Each step type lives in its family's module as three classes: its parameters (a
pydantic :class:`~raypipe.features.steps.base.StepParams` model, the ``features[i]``
entry of the config), its unfitted :class:`Step` and its :class:`FittedStep`:

* :mod:`~raypipe.features.steps.impute`: ``impute``;
* :mod:`~raypipe.features.steps.encoders`: ``one_hot``, ``ordinal``, ``categorical``;
* :mod:`~raypipe.features.steps.scalers`: ``standard_scale``, ``minmax_scale``, ``robust_scale``;
* :mod:`~raypipe.features.steps.numeric`: ``clip``, ``log1p``, ``bucketize``;
* :mod:`~raypipe.features.steps.datetime_parts`: ``datetime_parts``;
* :mod:`~raypipe.features.steps.columns`: ``expression``, ``drop``.

:data:`STEPS` below is the only list of transforms: the config's ``features:`` union
(:data:`FeatureStep`), the names (:data:`FEATURE_TYPES`) and the dispatch of
:func:`make_step` all come from it. A new step is one class triple and one entry here.

An unfitted :class:`Step` says which statistics it needs (:meth:`Step.needs`) and
turns them into a :class:`FittedStep` (:meth:`Step.fit`). A fitted step only holds
numbers and category lists, so it serializes to JSON (:meth:`FittedStep.to_dict`)
and transforms batches of any size with vectorized numpy/pyarrow code
(:meth:`FittedStep.transform`).

Column values inside the pipeline:

* numeric columns (schema ``int``/``float``/``bool`` and every numeric step
  output): float64 numpy arrays, NaN for missing;
* text columns (``category``/``string``): pyarrow string arrays, null for missing;
* ``datetime`` columns: pyarrow timestamp arrays;
* categorical codes (type ``code``, output of ``categorical``): float64 numpy
  arrays of 0..K-1, NaN for missing or unknown; XGBoost feature type ``"c"``.

Semantics worth knowing (each class docstring has the details):

* missing values stay missing (NaN) through every numeric step, except
  ``impute`` and the expression functions ``isnull``/``fillna``;
* unknown categories at transform time never fail: ``one_hot`` gives all zeros
  (or ``<col>=__other__`` when that column exists), ``ordinal`` and
  ``categorical`` give NaN, which XGBoost treats as missing;
* scalers divide by 1 when the training spread is zero (a constant column).

Example:
    >>> import numpy as np
    >>> from raypipe.features.steps import StandardScaleStep, make_step
    >>> step = make_step(StandardScaleStep(type="standard_scale", columns=["x"]), 0, {"x": "float"})
    >>> [r.kind for r in step.needs()]
    ['mean', 'std', 'count', 'null_count']
    >>> fitted = step.fit(dict(zip(step.needs(), [2.0, 0.5, 10, 0])))
    >>> fitted.transform({"x": np.array([1.0, np.nan])})["x"].tolist()
    [-2.0, nan]
"""

from __future__ import annotations

import typing as _typing
from collections.abc import Mapping as _Mapping

from pydantic import Field as _Field

from raypipe.errors import ConfigError as _ConfigError
from raypipe.features.steps.base import (
    CODE_TYPE,
    NUMERIC_TYPES,
    OTHER,
    TEXT_TYPES,
    ColumnStepParams,
    FittedStep,
    Step,
    StepParams,
    feature_type,
)
from raypipe.features.steps.columns import Drop, DropStep, Expression, ExpressionStep
from raypipe.features.steps.datetime_parts import DATETIME_PARTS, DatetimeParts, DatetimePartsStep
from raypipe.features.steps.encoders import Categorical, CategoricalStep, OneHot, OneHotStep, Ordinal, OrdinalStep
from raypipe.features.steps.impute import Impute, ImputeStep
from raypipe.features.steps.numeric import Bucketize, BucketizeStep, Clip, ClipStep, Log1p, Log1pStep
from raypipe.features.steps.scalers import (
    MinMaxScale,
    MinMaxScaleStep,
    RobustScale,
    RobustScaleStep,
    StandardScale,
    StandardScaleStep,
)

__all__ = [
    "STEPS",
    "FEATURE_TYPES",
    "FeatureStep",
    "make_step",
    "Step",
    "FittedStep",
    "StepParams",
    "ColumnStepParams",
    "feature_type",
    "NUMERIC_TYPES",
    "TEXT_TYPES",
    "CODE_TYPE",
    "OTHER",
    "DATETIME_PARTS",
    # the steps, in STEPS order, each after its parameters
    "ImputeStep",
    "Impute",
    "OneHotStep",
    "OneHot",
    "OrdinalStep",
    "Ordinal",
    "CategoricalStep",
    "Categorical",
    "StandardScaleStep",
    "StandardScale",
    "MinMaxScaleStep",
    "MinMaxScale",
    "RobustScaleStep",
    "RobustScale",
    "ClipStep",
    "Clip",
    "Log1pStep",
    "Log1p",
    "BucketizeStep",
    "Bucketize",
    "DatetimePartsStep",
    "DatetimeParts",
    "ExpressionStep",
    "Expression",
    "DropStep",
    "Drop",
]

#: Every transform, in the order the docs and error messages list them.
STEPS: tuple[type[Step], ...] = (
    Impute,
    OneHot,
    Ordinal,
    Categorical,
    StandardScale,
    MinMaxScale,
    RobustScale,
    Clip,
    Log1p,
    Bucketize,
    DatetimeParts,
    Expression,
    Drop,
)

_BY_TYPE: dict[str, type[Step]] = {cls.type: cls for cls in STEPS}

#: The ``type`` names of the transforms.
FEATURE_TYPES: tuple[str, ...] = tuple(_BY_TYPE)

#: One ``features[i]`` entry: the parameter models of :data:`STEPS`, told apart by ``type``.
FeatureStep = _typing.Annotated[
    _typing.Union[tuple(cls.params for cls in STEPS)],  # noqa: UP007 (a Union built from the list)
    _Field(discriminator="type"),
]


def make_step(config: StepParams, index: int, types: _Mapping[str, str]) -> Step:
    """The unfitted :class:`Step` for a step's parameters at position ``index``.

    Raises:
        ConfigError: the ``type`` is not a transform, or as :class:`Step`.
    """
    try:
        cls = _BY_TYPE[config.type]
    except KeyError:
        raise _ConfigError(
            f"features[{index}].type: unknown transform {config.type!r}. "
            f"Expected one of: {', '.join(FEATURE_TYPES)}."
        ) from None
    return cls(config, index, types)
