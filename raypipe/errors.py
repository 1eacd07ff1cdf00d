"""The raypipe exception tree.

Every error a user can cause (a bad config, bad data, a rejected model) is a
:class:`RaypipeError`; the CLI prints its message without a traceback and exits
with :attr:`RaypipeError.exit_code`.

::

    RaypipeError                 exit 1 unless noted
    ├── ConfigError              exit 2: the YAML, an override or a profile is wrong
    ├── DataError                the data does not fit what the config declares
    │   ├── SchemaError          a declared column is missing or has the wrong type
    │   ├── ValidationError      too many rows broke the validation rules
    │   └── NothingToIngest      exit 0: an incremental source has no new rows (a success)
    ├── StageError               a pipeline stage failed (ingest, train, serve, ...)
    ├── GateRejected             a candidate model did not pass its gates
    └── Interrupted              exit 130: stopped by SIGINT or SIGTERM

Messages follow one template: where, then what was expected, then what was got,
then a hint: ``adult.yaml: features[2].type: unknown transform 'standard_scaller'.
Did you mean 'standard_scale'?``
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "RaypipeError",
    "ConfigError",
    "DataError",
    "SchemaError",
    "ValidationError",
    "StageError",
    "GateRejected",
    "NothingToIngest",
    "Interrupted",
    "did_you_mean",
]


class RaypipeError(Exception):
    """Base class of every error raypipe raises on purpose."""

    exit_code = 1


class ConfigError(RaypipeError):
    """The configuration (file, ``--set`` override or profile) is invalid."""

    exit_code = 2


class DataError(RaypipeError):
    """The data does not match what the configuration declares."""


class SchemaError(DataError):
    """A source lacks a declared column, or a column has an unusable type."""


class ValidationError(DataError):
    """More rows broke the validation rules than ``validation.max_invalid_fraction`` allows."""


class StageError(RaypipeError):
    """A pipeline stage failed for a reason other than the user's config or data."""


class GateRejected(RaypipeError):
    """A candidate model failed its promotion gates."""


class NothingToIngest(DataError):
    """An incremental source has no rows above its committed watermark: nothing to do, not a failure."""

    exit_code = 0


class Interrupted(RaypipeError):
    """The work was stopped by SIGINT (Ctrl-C) or SIGTERM before it finished."""

    exit_code = 130


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""`` if none is close.

    >>> did_you_mean("standard_scaller", ["standard_scale", "clip"])
    " Did you mean 'standard_scale'?"
    """
    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{match[0]}'?" if match else ""
