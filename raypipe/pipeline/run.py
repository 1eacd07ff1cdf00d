"""The batch pipeline: stages called in order on one Ray cluster.

``ingest → split → transform → train → evaluate → register`` (the register
stage also applies the promotion gates). Each stage is a plain function call; distribution is Ray's job
(Ray Data for rows, Ray Train for boosting). :class:`Pipeline` times the stages,
collects their counts into a :class:`RunResult` and writes the run report.

Example::

    from raypipe import Pipeline
    result = Pipeline.from_yaml("configs/quickstart.yaml").run()
    result.rows["valid"], result.features
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from raypipe.bundle import ModelBundle
from raypipe.config import PipelineConfig, check_config, load_config
from raypipe.data.ingest import ingest, split
from raypipe.data.validate import schema_section
from raypipe.errors import ConfigError, Interrupted, NothingToIngest, RaypipeError, StageError
from raypipe.evaluate import best_threshold, pr_curve_points, roc_curve_points
from raypipe.evaluate.gates import check_gates
from raypipe.evaluate.report import render_html
from raypipe.features import FeaturePipeline
from raypipe.features.ray_fit import aggregate_stats, fit_on_dataset, transform_dataset
from raypipe.monitor.profile import build_profile, prediction_profile, profile_requests
from raypipe.pipeline.lineage import bundle_schema, lineage
from raypipe.pipeline.preflight import preflight
from raypipe.pipeline.result import STAGES, RunResult
from raypipe.pipeline.scoring import primary_metric, score
from raypipe.registry import ChampionChangedError, ModelRegistry, RegistryError
from raypipe.runtime.cluster import connect
from raypipe.runtime.signals import stop_on_signals, stop_signal
from raypipe.runtime.storage import absolute_uri
from raypipe.train import TrainSpec, cross_validate, train_xgboost, tune_xgboost

log = logging.getLogger(__name__)

#: The row count a stage's progress line shows (rows/s on long stages).
_STAGE_ROWS = {"ingest": "ingested", "split": "valid", "transform": "train", "train": "train", "evaluate": "test"}

__all__ = ["Pipeline"]


def _new_run_id(name: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}-{stamp}-{secrets.token_hex(3)}"


class Pipeline:
    """Runs the stages of one :class:`~raypipe.config.PipelineConfig` in order.

    Args:
        config: the validated configuration.
        config_path: the file it came from (recorded in the report).
        address: Ray address overriding ``cluster.address``.
    """

    def __init__(self, config: PipelineConfig, config_path: str | None = None, address: str | None = None):
        self.config = config
        self.config_path = config_path
        self.address = address

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, profile: str | None = None, overrides: list[str] | tuple = (), address: str | None = None) -> Pipeline:
        """Load ``path`` (see :func:`raypipe.load_config`) into a pipeline."""
        return cls(load_config(path, profile=profile, overrides=overrides), config_path=str(path), address=address)

    def run(self, until: str | None = None, trigger: str | dict = "manual", promote: bool = True) -> RunResult:
        """Run every stage (or those up to ``until``) and write the run report.

        Args:
            until: last stage to run (one of :data:`STAGES`); ``None`` runs all.
            trigger: why this run happens (``manual``, ``drift``, ...) or a dict
                with a ``kind`` and the evidence (the drift report, the window),
                recorded in the lineage manifest and the registry.
            promote: make a candidate that passes its gates champion (else it
                stays a candidate, for a person to promote).

        Raises:
            RaypipeError: a config, data or stage problem; the report is still
                written with status ``failed``.
            Interrupted: SIGINT or SIGTERM stopped the run (report status ``interrupted``).

        An incremental source with no new rows is a success: status ``nothing_new``
        and a ``message`` saying so.
        """
        if until is not None and until not in STAGES:
            raise RaypipeError(f"run(until={until!r}): expected one of {', '.join(STAGES)}.")
        cfg = self.config
        # What can be checked without Ray is checked before Ray starts (as `raypipe run` does).
        check_config(cfg, self.config_path or "<config>")
        run_id = _new_run_id(cfg.name)
        run_dir = Path(cfg.output.uri) / run_id
        state = _RunState(run_id=run_id, run_dir=run_dir, trigger=trigger, promote=promote)
        stages: list[tuple[str, Callable[[PipelineConfig, _RunState], None]]] = [
            ("ingest", _ingest),
            ("split", _split),
            ("transform", _transform),
            ("train", _train),
            ("evaluate", _evaluate),
            ("register", _register),
        ]
        # Before Ray starts and before anything is read: seconds, not a trained model later.
        preflight(cfg)
        connect(self.address, **cfg.cluster.connect_options())
        status, error, message = "succeeded", None, None
        try:
            with stop_on_signals():
                self._run_stages(stages, state, until, run_id)
        except NothingToIngest as exc:
            # A scheduler's incremental run with no new rows did its job.
            status, message = "nothing_new", str(exc)
        except RaypipeError as exc:
            status, error = "failed", exc
            raise
        except (KeyboardInterrupt, SystemExit) as exc:
            # Ctrl-C, SIGTERM, or Ray Train's SIGINT handler (a SystemExit): never "succeeded".
            status = "interrupted"
            # Not recorded by stop_on_signals: Ray Train's own SIGINT handler (SystemExit) took it.
            signame = stop_signal() or "SIGINT"
            error = Interrupted(f"stage {state.current or '?'}: interrupted ({signame}); nothing was promoted"
                                + (f", version {state.model['version']} stays a candidate." if state.model else "."))
            raise error from None
        except Exception as exc:
            status = "failed"
            error = StageError(f"stage {state.current or '?'}: {type(exc).__name__}: {exc}{_path_of(exc)}")
            raise error from exc
        finally:
            result = state.result(status, message)
            self._write_report(result, state, error)
        return result

    def _run_stages(self, stages: list[tuple[str, Callable[[PipelineConfig, _RunState], None]]], state: _RunState,
                    until: str | None, run_id: str) -> None:
        cfg = self.config
        planned = len(stages) if until is None else [n for n, _ in stages].index(until) + 1
        for name, stage in stages:
            started = time.perf_counter()
            log.info("stage %s: start", name, extra={"raypipe_stage": name, "event": "start", "stages": planned})
            try:
                stage(cfg, state)
            finally:
                state.durations[name] = round(time.perf_counter() - started, 3)
            state.stages_run.append(name)
            # The terminal's progress line (raypipe.console renders these records).
            log.info("stage %s: done in %.1f s", name, state.durations[name], extra={
                "raypipe_stage": name, "event": "done", "stages": planned, "seconds": state.durations[name],
                "rows": state.rows.get(_STAGE_ROWS.get(name, ""))})
            if name == until:
                break
        if len(state.stages_run) == len(stages):
            # Incremental sources move on only after the whole run succeeded: a
            # failed or partial (--until) run reads the same rows again next time.
            for watermark in state.watermarks:
                watermark.commit(run_id)

    def _write_report(self, result: RunResult, state: _RunState, error: BaseException | None) -> None:
        """Write report.json and report.html; a failure here never hides the run's own error."""
        try:
            run_dir = Path(result.report).parent
            run_dir.mkdir(parents=True, exist_ok=True)
            body = result.to_dict()
            body["config_path"] = self.config_path
            body["config"] = self.config.model_dump(mode="json", by_alias=True)
            body["evaluation"] = state.evaluation
            if state.schema is not None:
                # The schema the rows were validated against (and the bundle enforces): inferred when no column is declared.
                body["schema"] = {"inferred": not self.config.data.schema_.columns, **schema_section(state.schema)}
            if error is not None:
                body["error"] = {"type": type(error).__name__, "message": str(error)}
            Path(result.report).write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
            (run_dir / "report.html").write_text(render_html(body), encoding="utf-8")
        except OSError as exc:
            problem = f"could not write the run report {result.report}: {type(exc).__name__}: {exc}"
            if error is not None:
                log.warning("%s (the run's own error follows)", problem)
                return  # the first error is the one reported
            raise StageError(f"report: {problem}{_path_of(exc)}") from None


def _path_of(exc: BaseException) -> str:
    """`` (path: ...)`` for an OS error that knows its file and does not name it yet."""
    for e in (exc, exc.__cause__, exc.__context__):
        filename = getattr(e, "filename", None)
        if isinstance(e, OSError) and filename and str(filename) not in str(exc):
            return f" (path: {filename})"
    return ""


@dataclasses.dataclass
class _RunState:
    """What the stages hand to each other within one run."""
    run_id: str
    run_dir: Path
    trigger: str | dict = "manual"
    promote: bool = True
    current: str | None = None
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    quarantine: dict[str, Any] = dataclasses.field(default_factory=dict)
    durations: dict[str, float] = dataclasses.field(default_factory=dict)
    stages_run: list[str] = dataclasses.field(default_factory=list)
    ingested: Any = None  # the IngestResult: valid rows, with their split codes when assigned
    schema: Any = None
    splits: dict[str, Any] = dataclasses.field(default_factory=dict)
    features: Any = None
    transformed: dict[str, Any] = dataclasses.field(default_factory=dict)
    training: Any = None
    bundle: Any = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    evaluation: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: dict[str, Any] | None = None
    promoted: bool = False
    gate: dict[str, Any] | None = None
    watermarks: list[Any] = dataclasses.field(default_factory=list)

    def result(self, status: str, message: str | None = None) -> RunResult:
        return RunResult(
            run_id=self.run_id,
            status=status,
            message=message,
            rows=dict(self.rows),
            quarantine=dict(self.quarantine),
            features=list(self.features.feature_names) if self.features is not None else [],
            feature_types=list(self.features.feature_types) if self.features is not None else [],
            durations_s=dict(self.durations),
            report=str(self.run_dir / "report.json"),
            stages_run=list(self.stages_run),
            metrics=dict(self.metrics),
            model=self.model,
            promoted=self.promoted,
            gate=self.gate,
            watermarks=[w.to_dict() for w in self.watermarks],
        )


def _ingest(cfg: PipelineConfig, state: _RunState) -> None:
    state.current = "ingest"
    quarantine_uri = cfg.data.validation.quarantine_uri or str(state.run_dir / "quarantine")
    result = ingest(cfg, quarantine_uri, assign_split=True)
    state.ingested = result
    state.schema = result.schema
    state.watermarks = result.watermarks
    counts = result.counts
    state.rows.update(ingested=counts["ingested"], valid=counts["valid"], quarantined=counts["quarantined"])
    state.quarantine = {
        "by_rule": dict(counts.get("by_rule", {})),
        "by_column": dict(counts.get("by_column", {})),
        "path": result.quarantine_path,
    }


def _split(cfg: PipelineConfig, state: _RunState) -> None:
    state.current = "split"
    result = split(cfg, state.ingested)
    state.splits = {"train": result.train, "valid": result.valid, "test": result.test}
    state.rows.update(train=result.counts["train"], valid_split=result.counts["valid"], test=result.counts["test"])
    if "outside_window" in result.counts:
        state.rows["outside_window"] = result.counts["outside_window"]


def _transform(cfg: PipelineConfig, state: _RunState) -> None:
    state.current = "transform"
    schema = cfg.data.schema_
    input_types = _input_types(state)
    exclude = [c for c in (schema.weight, schema.id) if c]
    pipeline = FeaturePipeline(
        cfg.features,
        input_types=input_types,
        exclude=exclude,
        label=schema.label,
        task=cfg.model.task,
        positive_class=cfg.model.positive_class,
    )
    state.features = fit_on_dataset(pipeline, state.splits["train"])
    passthrough = [schema.weight] if schema.weight else []
    # Computed once, here: every training worker, fold and trial reads them, and a
    # materialized dataset reaches the workers without a streaming-split coordinator.
    # Evaluation scores the raw test split through the bundle, so it is not transformed here.
    state.transformed = {
        name: transform_dataset(state.features, state.splits[name], passthrough=passthrough, label=True).materialize()
        for name in ("train", "valid")
    }


def _input_types(state: _RunState) -> dict[str, str]:
    """Schema type of every validated column (declared, or inferred at ingest)."""
    return {name: spec.type for name, spec in state.schema.columns.items()}


def _train(cfg: PipelineConfig, state: _RunState) -> None:
    state.current = "train"
    fp = state.features
    has_valid = state.rows.get("valid_split", 0) > 0
    spec = TrainSpec.from_config(
        cfg,
        features=fp.feature_names,
        feature_types=fp.feature_types,
        num_class=len(fp.label_encoder.classes) if cfg.model.task == "multiclass" else None,
        has_valid=has_valid,
        storage_path=absolute_uri(str(state.run_dir / "train")),
    )
    valid = state.transformed["valid"] if has_valid else None
    if cfg.tune.enabled:

        if valid is None:
            raise ConfigError("tune.enabled: tuning scores trials on the validation split, which is empty. Hint: set data.split.valid_fraction > 0.")
        tuned = tune_xgboost(spec, cfg.tune, state.transformed["train"], valid, run_name=state.run_id)
        state.training = tuned.best
        state.evaluation["tune"] = {"metric": tuned.metric, "mode": tuned.mode, "best_params": tuned.best_params, "duration_s": tuned.duration_s}
        state.evaluation["trials"] = tuned.trials
    else:
        state.training = train_xgboost(spec, state.transformed["train"], valid, run_name=state.run_id)
    if cfg.evaluate.cv_folds:

        # The chosen parameters (the best trial's when tuned), scored by k folds of the training split.
        params = {**spec.params, **state.evaluation.get("tune", {}).get("best_params", {})}
        cv = cross_validate(
            dataclasses.replace(spec, params=params),
            state.transformed["train"],
            k=cfg.evaluate.cv_folds,
            seed=cfg.data.split.seed,
            run_name=f"{state.run_id}-cv",
        )
        state.evaluation["cross_validation"] = cv
        state.metrics["cv"] = cv["metrics"]
    state.evaluation["history"] = state.training.history
    state.evaluation["best_iteration"] = state.training.best_iteration
    state.evaluation["num_workers"] = state.training.num_workers
    state.evaluation["worker_rows"] = list(state.training.worker_rows)  # each shard's rows: none empty
    # A worker that died mid-run was restarted from this round's checkpoint (None: never).
    state.evaluation["resumed_from_round"] = state.training.resumed_from_round


def _evaluate(cfg: PipelineConfig, state: _RunState) -> None:
    state.current = "evaluate"
    task = cfg.model.task
    fp = state.features
    primary = primary_metric(cfg)
    input_columns = _input_types(state)
    profile = build_profile(input_columns, aggregate_stats(profile_requests(input_columns), state.splits["train"]))
    bundle = ModelBundle(
        booster=state.training.booster,
        features=fp,
        schema=bundle_schema(cfg, state.schema),
        threshold=0.5,
        profile=profile,
        params={"xgboost": dict(state.training.params), "num_boost_round": cfg.model.num_boost_round,
                "best_iteration": state.training.best_iteration, "num_workers": state.training.num_workers},
        lineage=lineage(cfg, state),
    )
    threshold = cfg.evaluate.threshold
    if task == "binary_classification" and threshold == "tune":
        if not state.rows.get("valid_split"):

            raise ConfigError("evaluate.threshold: 'tune' needs a validation split (data.split.valid_fraction > 0).")
        valid = score(bundle, state.splits["valid"], cfg)
        threshold = best_threshold(valid["y"], valid["scores"], metric="f1")
    bundle.threshold = float(threshold) if task == "binary_classification" else 0.5
    scored = score(bundle, state.splits["test"], cfg)
    state.metrics.update({"test": scored["metrics"], "primary_metric": primary})
    # The reference of prediction drift: the model's output on held-out rows.

    bundle.profile = {**bundle.profile, "predictions": prediction_profile(scored["scores"], task)}
    if scored["slices"]:
        state.metrics["slices"] = scored["slices"]
    state.evaluation["test_rows_scored"] = scored["rows"]
    state.evaluation["threshold"] = bundle.threshold
    if task == "binary_classification" and len(set(scored["y"].tolist())) == 2:
        state.evaluation["roc_curve"] = roc_curve_points(scored["y"], scored["scores"])
        state.evaluation["pr_curve"] = pr_curve_points(scored["y"], scored["scores"])
        # The PR curve's baseline: a model without skill has precision = the positive rate.
        state.evaluation["pr_curve"]["positive_rate"] = float(scored["y"].mean())
    if task == "regression" and len(scored["y"]):
        # Predicted vs actual and residual plots of the report: at most 2,000 evenly spaced test rows.
        step = max(1, len(scored["y"]) // 2000)
        state.evaluation["regression_sample"] = {"actual": scored["y"][::step].astype(float).tolist(),
                                                 "predicted": scored["scores"][::step].astype(float).tolist()}
    if task != "regression":
        state.evaluation["classes"] = [str(c) for c in fp.label_encoder.classes]
    gain = state.training.booster.get_score(importance_type="gain")
    state.evaluation["importance"] = {k: float(v) for k, v in sorted(gain.items(), key=lambda kv: -kv[1])}
    bundle.metrics = {"test": scored["metrics"], "slices": scored["slices"], "primary_metric": primary}
    state.bundle = bundle


def _register(cfg: PipelineConfig, state: _RunState) -> None:

    state.current = "register"
    registry = ModelRegistry(cfg.registry.uri)
    name = cfg.model_name
    candidate = state.metrics["test"]
    scalars = {k: v for k, v in candidate.items() if isinstance(v, (int, float)) or v is None}
    with tempfile.TemporaryDirectory(prefix="raypipe-bundle-") as tmp:
        state.bundle.save(tmp)
        version = registry.register(name, tmp, metrics=scalars, run_id=state.run_id, tags={"trigger": state.trigger if isinstance(state.trigger, str) else state.trigger.get("kind", "")},
                                    awaiting_gate=True)
    state.model = {"name": name, "version": version.version}
    try:
        _gate_and_promote(cfg, state, registry, version.version)
    except BaseException as exc:
        # Registered, never gated: say why in the log, or it stays a silent candidate forever.
        reason = f"abandoned: {type(exc).__name__}: {exc}" if str(exc) else f"abandoned: {type(exc).__name__}"
        try:
            registry.log_event(name, "abandoned", version.version, reason=reason, details={"run_id": state.run_id})
        except Exception as log_exc:  # noqa: BLE001 - the first error is the one reported
            log.warning("could not log the abandoned event of %s@%s: %s", name, version.version, log_exc)
        raise


def _gate_and_promote(cfg: PipelineConfig, state: _RunState, registry: ModelRegistry, number: int) -> None:
    """Gate version ``number`` against the champion, then promote, reject or log it.

    The promotion checks, under the registry lock, that the champion is still the one
    compared with; when another run promoted in between, the gate runs again against
    the new champion (a candidate never replaces a champion it was not compared with).
    """
    name = cfg.model_name
    candidate = state.metrics["test"]
    for _attempt in range(5):
        champion_metrics = None
        try:
            champion_version = registry.get(name, "champion").version
        except RegistryError:
            champion_version = None
        if champion_version is not None:
            champ = ModelBundle.load(registry.local_path(name, champion_version))
            # Re-score the champion on this run's test rows: stale numbers from its own
            # run were measured on other data.
            champion_metrics = score(champ, state.splits["test"], cfg)["metrics"]
        gate = check_gates(candidate, champion_metrics, cfg.evaluate.gates, state.metrics["primary_metric"], cfg.model.task)
        state.gate = gate.to_dict()
        details = {"gate": gate.to_dict(), "champion_version": champion_version, "run_id": state.run_id}
        if gate.passed and state.promote:
            try:
                registry.promote(name, number, reason=gate.explain(), details=details, expected_champion=champion_version)
            except ChampionChangedError as exc:
                log.info("register: %s; gating again", exc)
                continue
            state.promoted = True
        elif gate.passed:
            registry.log_event(name, "alert", number, reason="passed its gates; not promoted (auto_promote is off): "
                               + gate.explain(), details=details)
        else:
            registry.reject(name, number, reason=gate.explain(), details=details)
        return
    raise StageError(f"register: the champion of {name} changed 5 times while version {number} was being gated; "
                     f"it stays a candidate. Hint: promote it by hand after checking it: raypipe models promote.")
