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
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from raypipe.config import PipelineConfig, load_config
from raypipe.errors import RaypipeError, StageError

log = logging.getLogger(__name__)

__all__ = ["Pipeline", "RunResult", "STAGES"]

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

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serializable form printed by ``raypipe run --json``."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """A short human-readable table for the terminal."""
        r = self.rows
        lines = [f"run {self.run_id}: {self.status}", "", "rows"]
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


def _new_run_id(name: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}-{stamp}-{secrets.token_hex(3)}"


#: Environment a local Ray started by raypipe gets (a value already set wins). Ray Serve
#: runs the router in its own event loop and each replica's user code in its own thread
#: by default; on the endpoint's hot path both cost a cross-loop hop per request
#: (measured on 2 cores: p50 15.3 -> 12.1 ms, 137 -> 162 req/s at 8 clients). On a
#: cluster, set them where the cluster is started.
LOCAL_RAY_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}


def use_local_ray_env() -> None:
    """Put :data:`LOCAL_RAY_ENV` in this process's environment (values already set win)
    before it starts a local Ray: every Ray process inherits it."""
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)


def connect(cfg: PipelineConfig, address: str | None = None) -> None:
    """Connect to the configured Ray cluster, or start a local one.

    Reuses a Ray already initialized in this process (tests, notebooks). The
    address comes from ``address``, then ``cluster.address``, then ``RAY_ADDRESS``;
    with none a local Ray is started on a random port. Sets this process's Ray Data
    context for raypipe's runs (ordered blocks, block counts sized to the cluster).
    """
    import ray
    import ray.data

    if not ray.is_initialized():
        address = address or cfg.cluster.address or os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"runtime_env": dict(cfg.cluster.runtime_env) or None, "log_to_driver": True}
        if address:
            ray.init(address=address, **kwargs)
        else:
            use_local_ray_env()
            ray.init(num_cpus=cfg.cluster.num_cpus, include_dashboard=False, **kwargs)
        log.info("ray: %s", ray.cluster_resources())
    ctx = ray.data.DataContext.get_current()
    # Block order decides which rows each training worker gets; a fixed order
    # makes the same config, data and seed give the same model bytes.
    ctx.execution_options.preserve_order = True
    # Ray Data cuts every read into at least 200 blocks by default, and each of the
    # pipeline's passes runs one task per block: on 2 CPUs a 2M-row CSV became 486
    # blocks and ingest + split + transform took 110 s instead of 16 s. Two blocks per
    # CPU keep every core busy; large inputs still get more (128 MiB per block at most).
    ctx.read_op_min_num_blocks = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))


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
        """
        if until is not None and until not in STAGES:
            raise RaypipeError(f"run(until={until!r}): expected one of {', '.join(STAGES)}.")
        cfg = self.config
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
        connect(cfg, self.address)
        status, error = "succeeded", None
        try:
            for name, stage in stages:
                started = time.perf_counter()
                log.info("stage %s: start", name)
                try:
                    stage(cfg, state)
                finally:
                    state.durations[name] = round(time.perf_counter() - started, 3)
                state.stages_run.append(name)
                if name == until:
                    break
            if len(state.stages_run) == len(stages):
                # Incremental sources move on only after the whole run succeeded: a
                # failed or partial (--until) run reads the same rows again next time.
                for watermark in state.watermarks:
                    watermark.commit(run_id)
        except RaypipeError as exc:
            status, error = "failed", exc
            raise
        except Exception as exc:
            status = "failed"
            error = StageError(f"stage {state.current or '?'}: {type(exc).__name__}: {exc}")
            raise error from exc
        finally:
            result = state.result(status)
            self._write_report(result, state, error)
        return result

    def _write_report(self, result: RunResult, state: _RunState, error: BaseException | None) -> None:
        from raypipe.evaluate.report import render_html

        run_dir = Path(result.report).parent
        run_dir.mkdir(parents=True, exist_ok=True)
        body = result.to_dict()
        body["config_path"] = self.config_path
        body["config"] = self.config.model_dump(mode="json", by_alias=True)
        body["evaluation"] = state.evaluation
        if error is not None:
            body["error"] = {"type": type(error).__name__, "message": str(error)}
        Path(result.report).write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
        (run_dir / "report.html").write_text(render_html(body), encoding="utf-8")


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
    dataset: Any = None
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

    def result(self, status: str) -> RunResult:
        return RunResult(
            run_id=self.run_id,
            status=status,
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
    from raypipe.data.ingest import ingest

    state.current = "ingest"
    quarantine_uri = cfg.data.validation.quarantine_uri or str(state.run_dir / "quarantine")
    result = ingest(cfg, quarantine_uri)
    state.dataset = result.dataset
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
    from raypipe.data.ingest import split

    state.current = "split"
    result = split(cfg, state.dataset)
    state.splits = {"train": result.train, "valid": result.valid, "test": result.test}
    state.rows.update(train=result.counts["train"], valid_split=result.counts["valid"], test=result.counts["test"])
    if "outside_window" in result.counts:
        state.rows["outside_window"] = result.counts["outside_window"]


def _transform(cfg: PipelineConfig, state: _RunState) -> None:
    from raypipe.features import FeaturePipeline
    from raypipe.features.ray_fit import fit_on_dataset, transform_dataset

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


def infer_schema(cfg: PipelineConfig, address: str | None = None, sample_rows: int = 100_000) -> dict[str, Any]:
    """Infer a ``data.schema`` section from the first ``sample_rows`` rows of the source.

    Every column gets its inferred type and nullability; rules (min, max, allowed)
    are left for a person to add from the observed profile.
    """
    from raypipe.data.ingest import infer_source_schema

    connect(cfg, address)
    inferred = infer_source_schema(cfg.data.source, sample_rows=sample_rows)
    section: dict[str, Any] = {}
    if cfg.data.schema_.label:
        section["label"] = cfg.data.schema_.label
    section["columns"] = {name: dict(col) for name, col in inferred["columns"].items()}
    return section


_DEFAULT_PRIMARY = {"binary_classification": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}


def _primary_metric(cfg: PipelineConfig) -> str:
    from raypipe.evaluate import resolve_metric
    from raypipe.errors import ConfigError

    name = cfg.evaluate.primary_metric or _DEFAULT_PRIMARY[cfg.model.task]
    try:
        return resolve_metric(cfg.model.task, name)
    except ValueError as exc:
        raise ConfigError(f"evaluate.primary_metric: {exc}") from None


def _train(cfg: PipelineConfig, state: _RunState) -> None:
    from raypipe.train import TrainSpec, train_xgboost

    state.current = "train"
    schema, training, fp = cfg.data.schema_, cfg.model.training, state.features
    has_valid = state.rows.get("valid_split", 0) > 0
    spec = TrainSpec(
        task=cfg.model.task,
        label=schema.label,
        features=fp.feature_names,
        feature_types=fp.feature_types,
        params=dict(cfg.model.params),
        num_boost_round=cfg.model.num_boost_round,
        early_stopping_rounds=cfg.model.early_stopping_rounds if has_valid else None,
        num_workers=training.num_workers,
        use_gpu=training.use_gpu,
        cpus_per_worker=training.cpus_per_worker,
        report_every=training.report_every,
        checkpoint_every=training.checkpoint_every,
        max_failures=training.max_failures,
        weight=schema.weight,
        num_class=len(fp.label_encoder.classes) if cfg.model.task == "multiclass" else None,
        seed=cfg.data.split.seed,
        storage_path=_storage_path(state.run_dir / "train"),
    )
    valid = state.transformed["valid"] if has_valid else None
    if cfg.tune.enabled:
        from raypipe.errors import ConfigError
        from raypipe.train import tune_xgboost

        if valid is None:
            raise ConfigError("tune.enabled: tuning scores trials on the validation split, which is empty. Hint: set data.split.valid_fraction > 0.")
        tuned = tune_xgboost(spec, cfg.tune, state.transformed["train"], valid, run_name=state.run_id)
        state.training = tuned.best
        state.evaluation["tune"] = {"metric": tuned.metric, "mode": tuned.mode, "best_params": tuned.best_params, "duration_s": tuned.duration_s}
        state.evaluation["trials"] = tuned.trials
    else:
        state.training = train_xgboost(spec, state.transformed["train"], valid, run_name=state.run_id)
    if cfg.evaluate.cv_folds:
        from raypipe.train import cross_validate

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


def _storage_path(path: Path) -> str:
    text = str(path)
    return text if "://" in text else str(path.resolve())


def _score(bundle: Any, ds: Any, cfg: PipelineConfig) -> dict[str, Any]:
    """Predict ``ds`` with ``bundle`` on Ray Data and compute the metrics on the driver."""
    from raypipe.evaluate import compute_metrics, slice_metrics
    from raypipe.inference import collect, predict_dataset

    schema = cfg.data.schema_
    keep = list(dict.fromkeys([schema.label, *cfg.evaluate.slices, *([schema.weight] if schema.weight else [])]))
    table = collect(predict_dataset(bundle, ds, keep=keep))
    y = bundle.features.encode_label(table.column(schema.label))
    scores = _scores(table)
    weight = table.column(schema.weight).to_numpy(zero_copy_only=False) if schema.weight else None
    task = cfg.model.task
    thr = bundle.threshold if task == "binary_classification" else None
    metrics = compute_metrics(task, y, scores, threshold=thr, sample_weight=weight)
    slices = slice_metrics(
        task,
        y,
        scores,
        {c: table.column(c).to_numpy(zero_copy_only=False) for c in cfg.evaluate.slices},
        threshold=thr,
    ) if cfg.evaluate.slices else {}
    return {"metrics": metrics, "slices": slices, "y": y, "scores": scores, "rows": table.num_rows}


def _scores(table: Any) -> Any:
    import numpy as np

    if "probability" not in table.column_names:
        return table.column("prediction").to_numpy(zero_copy_only=False).astype(np.float64)
    column = table.column("probability").combine_chunks()
    if hasattr(column, "flatten") and hasattr(column.type, "list_size"):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)
    return column.to_numpy(zero_copy_only=False)


def _evaluate(cfg: PipelineConfig, state: _RunState) -> None:
    from raypipe.bundle import ModelBundle
    from raypipe.evaluate import best_threshold, pr_curve_points, roc_curve_points
    from raypipe.features.ray_fit import aggregate_stats
    from raypipe.monitor.profile import build_profile, profile_requests

    state.current = "evaluate"
    task = cfg.model.task
    fp = state.features
    primary = _primary_metric(cfg)
    input_columns = _input_types(state)
    profile = build_profile(input_columns, aggregate_stats(profile_requests(input_columns), state.splits["train"]))
    bundle = ModelBundle(
        booster=state.training.booster,
        features=fp,
        schema=_bundle_schema(cfg, state.schema),
        threshold=0.5,
        profile=profile,
        params={"xgboost": dict(state.training.params), "num_boost_round": cfg.model.num_boost_round,
                "best_iteration": state.training.best_iteration, "num_workers": state.training.num_workers},
        lineage=_lineage(cfg, state),
    )
    threshold = cfg.evaluate.threshold
    if task == "binary_classification" and threshold == "tune":
        if not state.rows.get("valid_split"):
            from raypipe.errors import ConfigError

            raise ConfigError("evaluate.threshold: 'tune' needs a validation split (data.split.valid_fraction > 0).")
        valid = _score(bundle, state.splits["valid"], cfg)
        threshold = best_threshold(valid["y"], valid["scores"], metric="f1")
    bundle.threshold = float(threshold) if task == "binary_classification" else 0.5
    scored = _score(bundle, state.splits["test"], cfg)
    state.metrics.update({"test": scored["metrics"], "primary_metric": primary})
    # The reference of prediction drift: the model's output on held-out rows.
    from raypipe.monitor.profile import prediction_profile

    bundle.profile = {**bundle.profile, "predictions": prediction_profile(scored["scores"], task)}
    if scored["slices"]:
        state.metrics["slices"] = scored["slices"]
    state.evaluation["test_rows_scored"] = scored["rows"]
    state.evaluation["threshold"] = bundle.threshold
    if task == "binary_classification" and len(set(scored["y"].tolist())) == 2:
        state.evaluation["roc_curve"] = roc_curve_points(scored["y"], scored["scores"])
        state.evaluation["pr_curve"] = pr_curve_points(scored["y"], scored["scores"])
    if task != "regression":
        state.evaluation["classes"] = [str(c) for c in fp.label_encoder.classes]
    gain = state.training.booster.get_score(importance_type="gain")
    state.evaluation["importance"] = {k: float(v) for k, v in sorted(gain.items(), key=lambda kv: -kv[1])}
    bundle.metrics = {"test": scored["metrics"], "slices": scored["slices"], "primary_metric": primary}
    state.bundle = bundle


def _bundle_schema(cfg: PipelineConfig, schema: Any) -> dict[str, Any]:
    return {
        "task": cfg.model.task,
        "label": schema.label,
        "weight": schema.weight,
        "id": schema.id,
        "columns": {name: spec.model_dump(mode="json", exclude_none=True) for name, spec in schema.columns.items()},
    }


def _lineage(cfg: PipelineConfig, state: _RunState) -> dict[str, Any]:
    import hashlib
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    import ray

    config = cfg.model_dump(mode="json", by_alias=True)
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    packages = {}
    for pkg in ("raypipe", "ray", "xgboost", "pyarrow", "numpy", "pydantic"):
        try:
            packages[pkg] = version(pkg)
        except PackageNotFoundError:
            packages[pkg] = None
    return {
        "run_id": state.run_id,
        "trigger": state.trigger,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "config": config,
        "config_hash": hashlib.sha256(canonical.encode()).hexdigest(),
        "data_fingerprint": _fingerprint(cfg, state),
        "rows": dict(state.rows),
        "git_commit": commit,
        "packages": packages,
        "python": platform.python_version(),
        "seeds": {"split": cfg.data.split.seed, "xgboost": cfg.data.split.seed},
        "cluster": {k: v for k, v in ray.cluster_resources().items() if not k.startswith("node:")},
        "num_workers": state.training.num_workers,
        "training_rows": dict(state.training.rows),
    }


def _fingerprint(cfg: PipelineConfig, state: _RunState) -> str:
    """Hash of what identifies the input: source files (path, size, mtime) and row counts."""
    import glob
    import hashlib

    from raypipe.config import _local_paths

    h = hashlib.sha256()
    h.update(json.dumps(cfg.data.source.model_dump(mode="json"), sort_keys=True).encode())
    for pattern in _local_paths(cfg.data.source):
        for path in sorted(glob.glob(pattern.removeprefix("file://"), recursive=True)) or [pattern]:
            try:
                st = os.stat(path)
                h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(path.encode())
    h.update(json.dumps(state.rows, sort_keys=True).encode())
    return h.hexdigest()


def _register(cfg: PipelineConfig, state: _RunState) -> None:
    import tempfile

    from raypipe.bundle import ModelBundle
    from raypipe.evaluate.gates import check_gates
    from raypipe.registry import ModelRegistry
    from raypipe.registry._errors import RegistryError

    state.current = "register"
    registry = ModelRegistry(cfg.registry.uri)
    name = cfg.model_name
    candidate = state.metrics["test"]
    scalars = {k: v for k, v in candidate.items() if isinstance(v, (int, float)) or v is None}
    with tempfile.TemporaryDirectory(prefix="raypipe-bundle-") as tmp:
        state.bundle.save(tmp)
        version = registry.register(name, tmp, metrics=scalars, run_id=state.run_id, tags={"trigger": state.trigger if isinstance(state.trigger, str) else state.trigger.get("kind", "")})
    state.model = {"name": name, "version": version.version}

    champion_metrics = None
    champion_version = None
    try:
        champion = registry.get(name, "champion")
    except RegistryError:
        champion = None
    if champion is not None:
        champion_version = champion.version
        champ = ModelBundle.load(registry.local_path(name, champion.version))
        # Re-score the champion on this run's test rows: stale numbers from its own
        # run were measured on other data.
        champion_metrics = _score(champ, state.splits["test"], cfg)["metrics"]
    gate = check_gates(candidate, champion_metrics, cfg.evaluate.gates, state.metrics["primary_metric"], cfg.model.task)
    state.gate = gate.to_dict()
    details = {"gate": gate.to_dict(), "champion_version": champion_version, "run_id": state.run_id}
    if gate.passed and state.promote:
        registry.promote(name, version.version, reason=gate.explain(), details=details)
        state.promoted = True
    elif gate.passed:
        registry.log_event(name, "alert", version.version, reason="passed its gates; not promoted (auto_promote is off): "
                           + gate.explain(), details=details)
    else:
        registry.reject(name, version.version, reason=gate.explain(), details=details)
