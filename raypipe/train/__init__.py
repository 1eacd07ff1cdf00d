"""Training: XGBoost on Ray Train (or one Ray task for one worker), cross-validation.

Public names::

    TrainSpec, TrainResult     what to train / what came out
    train_xgboost              training: one Ray task for one worker, else Ray Train
                               (ray.train.xgboost.XGBoostTrainer)
    cross_validate             k-fold CV, folds by a deterministic row hash
    tune_xgboost, TuneResult   hyperparameter search on Ray Tune (one training run per trial)
    TrainingError              training failed (a raypipe.errors.StageError)
    cpu_fraction, data_reserve how training sizes its CPUs (for runs sized beside
                               other work, e.g. a retrain next to the endpoint)
"""

from raypipe.train._errors import TrainingError
from raypipe.train._resources import cpu_fraction, data_reserve
from raypipe.train.cross_validation import cross_validate
from raypipe.train.spec import TrainResult, TrainSpec
from raypipe.train.tune import TuneResult, tune_xgboost
from raypipe.train.xgboost_trainer import train_xgboost

__all__ = [
    "TrainSpec",
    "TrainResult",
    "TrainingError",
    "train_xgboost",
    "cross_validate",
    "TuneResult",
    "tune_xgboost",
    "cpu_fraction",
    "data_reserve",
]
