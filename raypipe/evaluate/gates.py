"""Promotion gates: may a candidate model replace the champion?

Pure: compares metric dictionaries. The champion's metrics must come from
re-scoring the champion on the candidate's evaluation data (the pipeline does
that), never from numbers stored when the champion was trained.

>>> from raypipe.config import GatesConfig
>>> r = check_gates({"roc_auc": 0.91}, {"roc_auc": 0.90}, GatesConfig(min={"roc_auc": 0.85}), "roc_auc", "binary_classification")
>>> r.passed, [c["check"] for c in r.reasons]
(True, ['min', 'vs_champion'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raypipe.errors import ConfigError
from raypipe.evaluate.metrics import GREATER_IS_BETTER, resolve_metric

__all__ = ["GateResult", "check_gates"]


@dataclass
class GateResult:
    """The outcome of every gate check, passed or failed, with its numbers."""

    passed: bool
    reasons: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """``{"passed": bool, "reasons": [...]}`` as in ``raypipe run --json``."""
        return {"passed": self.passed, "reasons": list(self.reasons)}

    def explain(self) -> str:
        """A one-line reason for the event log: every check when passed, the failed ones when not."""
        if self.passed:
            return "gates passed: " + "; ".join(r["message"] for r in self.reasons)
        return "gates failed: " + "; ".join(r["message"] for r in self.reasons if not r["passed"])


def _metric(task: str, name: str, where: str) -> str:
    try:
        return resolve_metric(task, name)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_gates(
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    gates: Any,
    primary_metric: str,
    task: str,
) -> GateResult:
    """Check absolute bounds and the champion comparison.

    Args:
        candidate: the candidate's metrics on the evaluation data.
        champion: the champion's metrics re-scored on the same data, or ``None``
            when there is no champion yet (the comparison then passes).
        gates: a :class:`raypipe.config.GatesConfig`.
        primary_metric: the metric of the champion comparison.
        task: the model task (metric names are resolved for it).

    Raises:
        ConfigError: a gate names a metric the task does not have.
    """
    reasons: list[dict[str, Any]] = []
    for check, bounds in (("min", gates.min), ("max", gates.max)):
        for name, bound in bounds.items():
            metric = _metric(task, name, f"evaluate.gates.{check}.{name}")
            value = candidate.get(metric)
            ok = value is not None and (value >= bound if check == "min" else value <= bound)
            op = ">=" if check == "min" else "<="
            reasons.append(
                {
                    "check": check,
                    "metric": metric,
                    "value": value,
                    "threshold": bound,
                    "passed": bool(ok),
                    "message": f"{metric} {value if value is None else round(value, 6)} {op} {bound}: {'passed' if ok else 'failed'}",
                }
            )
    if gates.vs_champion.enabled:
        metric = _metric(task, primary_metric, "evaluate.primary_metric")
        greater = GREATER_IS_BETTER[metric]
        value = candidate.get(metric)
        if champion is None:
            reasons.append(
                {"check": "vs_champion", "metric": metric, "value": value, "champion": None, "min_delta": gates.vs_champion.min_delta,
                 "passed": True, "message": f"no champion yet: {metric} {value} accepted"}
            )
        else:
            best = champion.get(metric)
            delta = gates.vs_champion.min_delta
            # "Not worse than the champion by more than min_delta", in the metric's own direction.
            if value is None or best is None:
                ok = False
            else:
                ok = value >= best - delta if greater else value <= best + delta
            reasons.append(
                {
                    "check": "vs_champion",
                    "metric": metric,
                    "value": value,
                    "champion": best,
                    "min_delta": delta,
                    "passed": bool(ok),
                    "message": (
                        f"{metric} {value if value is None else round(value, 6)} vs champion "
                        f"{best if best is None else round(best, 6)} re-scored on the same data "
                        f"({'higher' if greater else 'lower'} is better, tolerance {delta}): {'passed' if ok else 'failed'}"
                    ),
                }
            )
    return GateResult(passed=all(r["passed"] for r in reasons), reasons=reasons)
