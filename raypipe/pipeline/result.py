"""What one run did: :class:`RunResult`, the object ``raypipe run`` prints and ``--json`` dumps."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["RunResult", "STAGES"]

STAGES = ("ingest", "split", "transform", "train", "evaluate", "register")


@dataclasses.dataclass
class RunResult:
    """What one run did: row counts, features, timings, where the report is.

    ``to_dict()`` gives the keys of ``raypipe run --json`` (SPEC).
    """

    run_id: str
    status: str
    rows: dict[str, int]
    quarantine: dict[str, Any]
    features: list[str]
    feature_types: list[str]
    durations_s: dict[str, float]
    report: str
    stages_run: list[str]
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: dict[str, Any] | None = None
    promoted: bool = False
    gate: dict[str, Any] | None = None
    watermarks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serializable form printed by ``raypipe run --json``."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """A short human-readable table for the terminal."""
        r = self.rows
        lines = [f"run {self.run_id}: {self.status}", "", "rows"]
        if self.message:
            lines[1:1] = [self.message]
        for key in ("ingested", "valid", "quarantined", "outside_window", "train", "valid_split", "test"):
            if key in r:
                lines.append(f"  {key:<12} {r[key]:>10,}")
        by_rule = self.quarantine.get("by_rule") or {}
        if by_rule:
            lines.append("quarantined by rule")
            lines.extend(f"  {rule:<20} {n:>8,}" for rule, n in sorted(by_rule.items()))
            if self.quarantine.get("path"):
                lines.append(f"  rows written to {self.quarantine['path']}")
        for wm in self.watermarks:
            moved = "committed" if wm["committed"] else "not committed"
            lines.append(f"watermark {wm['source']}.{wm['column']}: {wm['previous']} -> {wm['current']} ({moved})")
        if self.features:
            lines.append(f"features ({len(self.features)})")
            for name, ftype in zip(self.features, self.feature_types):
                lines.append(f"  {name}{'  [categorical]' if ftype == 'c' else ''}")
        test = (self.metrics or {}).get("test") or {}
        scalars = {k: v for k, v in test.items() if isinstance(v, float)}
        if scalars:
            lines.append("test metrics")
            lines.extend(f"  {k:<12} {v:>10.4f}" for k, v in scalars.items())
        cv = (self.metrics or {}).get("cv") or {}
        if cv:
            lines.append("cross-validation (mean ± std over folds)")
            lines.extend(f"  {k:<16} {m['mean']:>8.4f} ± {m['std']:.4f}" for k, m in cv.items() if k.startswith("valid"))
        if self.model:
            lines.append(f"model {self.model['name']} version {self.model['version']}: {'promoted to champion' if self.promoted else 'not promoted'}")
        if self.gate:
            lines.append(f"gate {'passed' if self.gate['passed'] else 'REJECTED'}")
            lines.extend(f"  {'ok  ' if r['passed'] else 'FAIL'} {r['message']}" for r in self.gate["reasons"])
        lines.append("seconds per stage")
        lines.extend(f"  {stage:<12} {secs:>8.2f}" for stage, secs in self.durations_s.items())
        lines.append(f"report: {self.report}")
        return "\n".join(lines)

