"""The batch pipeline: :class:`Pipeline` runs the stages of one config in order and
returns a :class:`RunResult`.

Example::

    from raypipe import Pipeline
    result = Pipeline.from_yaml("configs/quickstart.yaml").run()
    print(result.summary())
"""

from raypipe.pipeline.result import STAGES, RunResult
from raypipe.pipeline.run import Pipeline

__all__ = ["Pipeline", "RunResult", "STAGES"]
