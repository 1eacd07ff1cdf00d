"""Runtime pieces every floor of raypipe stands on: where files are (:mod:`storage`) and
which Ray cluster runs the work (:mod:`cluster`).

Nothing here knows about configs, models or pipelines; the floors above pass plain values.
"""

from raypipe.runtime.storage import absolute_uri, is_local, join_uri, resolve

__all__ = ["absolute_uri", "is_local", "join_uri", "resolve"]
