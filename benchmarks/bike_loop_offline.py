"""Offline check of the closed loop of configs/bike-sharing.yaml with plain XGBoost (no Ray).

Not collected by pytest (no ``test_`` prefix); run by hand:

    python benchmarks/bike_loop_offline.py [--config configs/bike-sharing.yaml] [--threads 1]
        [--data-window 90d] [--cooldown-rows 720] [--window-rows 168] [--valid-share 0.1]
        [--drift real|always] [--sweep] [--json]

Three ways of predicting every hour of 2012 (data/bike-sharing/hour-2012.csv), scored by the
RMSE per calendar month and the mean of the twelve monthly RMSEs:

- ``static``: one model trained on 2011 (hour-2011.csv) with the config's time split
  (train < ``valid_from`` <= early-stopping rows < ``test_from``), never retrained.
- ``loop``: what the served closed loop does. 2012 is walked hour by hour in time order; every
  prediction is labeled right after it is made (the replay sends the true count as
  feedback); every ``monitor.window_rows`` rows a window closes and is checked for drift
  against the reference profile of the serving model's training rows (raypipe's own
  ``check_window``, PSI, ``monitor.drift.threshold``; ``--drift always`` skips the check);
  after ``monitor.drift.consecutive_windows`` drifting windows in a row, and at least
  ``retrain.cooldown_rows`` logged rows after the previous retrain, a model is retrained on
  the configured source (2011) plus every labeled 2012 row so far, limited to the last
  ``retrain.data_window`` of ``dteday``. Sorted by time, the newest ``retrain.gate_fraction``
  of those rows is held out as the gate, the ``retrain.valid_fraction`` before it
  early-stops, the rest trains; the candidate is promoted when its RMSE on the gate rows
  passes ``evaluate.gates.max.rmse`` and is not worse than the champion's on the same rows
  (``--gate-fraction 0``: no gate rows, always promoted). The promoted model serves from
  the next row on (the replay waits for retraining, so no simulated time passes while it
  trains; ``--lag-rows N`` serves it N rows later instead, for a monitor that reads the
  prediction log N rows behind the traffic).
- ``monthly-3m``: the textbook baseline, a model per month of 2012 trained on the three
  calendar months before it (last 10 % by time for early stopping).

The features are those of the config, reimplemented simply: ``dayofyear`` of ``dteday``,
``weathersit`` one-hot (levels 1-4), ``temp * hum`` and the other numeric columns;
``instant`` (the id), ``dteday``, ``casual``/``registered`` (label leak) and ``cnt`` (the
label) are not features. Booster parameters, rounds and early stopping come from the config.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "bike-sharing"
LABEL = "cnt"
NOT_FEATURES = ("instant", "dteday", "casual", "registered", LABEL)
# Input columns the monitor checks for drift (the schema's, less id, time, label and leaks).
DRIFT_COLUMNS = {
    "season": "int", "yr": "int", "mnth": "int", "hr": "int", "holiday": "int", "weekday": "int",
    "workingday": "int", "weathersit": "category", "temp": "float", "atemp": "float", "hum": "float",
    "windspeed": "float",
}


def load(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, skip_blank_lines=True)
    df["dteday"] = pd.to_datetime(df["dteday"], format="%Y-%m-%d")
    df["hr"] = df["hr"].astype(int)
    return df.sort_values(["dteday", "hr"], kind="stable").reset_index(drop=True)


def features(df: pd.DataFrame) -> np.ndarray:
    x = df.drop(columns=[c for c in NOT_FEATURES if c in df.columns]).copy()
    x["dayofyear"] = df["dteday"].dt.day_of_year
    for level in (1, 2, 3, 4):
        x[f"weathersit_{level}"] = (df["weathersit"] == level).astype(np.float32)
    x = x.drop(columns=["weathersit"])
    x["temp_x_hum"] = df["temp"] * df["hum"]
    return x.to_numpy(dtype=np.float32)


@dataclass
class Settings:
    params: dict
    rounds: int
    early_stopping: int
    valid_from: str
    test_from: str
    window_rows: int
    threshold: float
    consecutive: int
    cooldown_rows: int
    data_window: pd.Timedelta
    valid_share: float = 0.1
    gate_share: float = 0.1
    max_rmse: float | None = None
    drift: str = "real"
    threads: int = 1
    seed: int = 0
    lag_rows: int = 0


def parse_window(text: str) -> pd.Timedelta:
    m = re.fullmatch(r"\s*(\d+)\s*([dhm])\s*", str(text))
    if not m:
        raise SystemExit(f"data_window: expected e.g. '90d' or '12h', got {text!r}")
    return pd.Timedelta(int(m.group(1)), unit={"d": "D", "h": "h", "m": "min"}[m.group(2)])


def settings_from(config: Path, args: argparse.Namespace) -> Settings:
    cfg = yaml.safe_load(config.read_text())
    model, split = cfg["model"], cfg["data"]["split"]
    mon, ret = cfg.get("monitor", {}), cfg.get("retrain", {})
    drift = mon.get("drift", {})
    return Settings(
        params=dict(model["params"]),
        rounds=int(model["num_boost_round"]),
        early_stopping=int(model["early_stopping_rounds"]),
        valid_from=split["valid_from"],
        test_from=split["test_from"],
        window_rows=args.window_rows or int(mon.get("window_rows", 168)),
        threshold=float(drift.get("threshold", 0.2)),
        consecutive=args.consecutive or int(drift.get("consecutive_windows", 1)),
        cooldown_rows=args.cooldown_rows if args.cooldown_rows is not None else int(ret.get("cooldown_rows", 0)),
        data_window=parse_window(args.data_window or ret.get("data_window", "90d")),
        valid_share=args.valid_share if args.valid_share is not None else float(ret.get("valid_fraction", 0.1)),
        gate_share=args.gate_share if args.gate_share is not None else float(ret.get("gate_fraction", 0.1)),
        max_rmse=(cfg.get("evaluate", {}).get("gates", {}).get("max") or {}).get("rmse"),
        drift=args.drift,
        threads=args.threads,
        seed=args.seed,
        lag_rows=args.lag_rows,
    )


def fit(s: Settings, train: pd.DataFrame, valid: pd.DataFrame) -> xgb.Booster:
    params = {"objective": "reg:squarederror", "eval_metric": "rmse", "nthread": s.threads, "seed": s.seed, **s.params}
    dtrain = xgb.DMatrix(features(train), label=train[LABEL].to_numpy(np.float32))
    dvalid = xgb.DMatrix(features(valid), label=valid[LABEL].to_numpy(np.float32))
    return xgb.train(params, dtrain, s.rounds, evals=[(dvalid, "valid")],
                     early_stopping_rounds=s.early_stopping, verbose_eval=False)


def predict(booster: xgb.Booster, df: pd.DataFrame) -> np.ndarray:
    return booster.predict(xgb.DMatrix(features(df)), iteration_range=(0, booster.best_iteration + 1))


def split_by_time(df: pd.DataFrame, share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    n_valid = max(1, int(round(len(df) * share)))
    return df.iloc[:-n_valid], df.iloc[-n_valid:]


def rmse(pred: np.ndarray, label: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(label, np.float64)) ** 2)))


def monthly_rmse(months: np.ndarray, pred: np.ndarray, label: np.ndarray) -> dict[int, float]:
    return {int(m): float(np.sqrt(np.mean((pred[months == m] - label[months == m]) ** 2))) for m in np.unique(months)}


def static(s: Settings, y2011: pd.DataFrame, y2012: pd.DataFrame) -> tuple[np.ndarray, xgb.Booster]:
    train = y2011[y2011["dteday"] < s.valid_from]
    valid = y2011[(y2011["dteday"] >= s.valid_from) & (y2011["dteday"] < s.test_from)]
    booster = fit(s, train, valid)
    return predict(booster, y2012), booster


@dataclass
class LoopResult:
    pred: np.ndarray
    versions: np.ndarray
    retrains: list[dict] = field(default_factory=list)
    windows: int = 0
    drifting_windows: int = 0


def _profile(train: pd.DataFrame):
    import pyarrow as pa

    from raypipe.features.stats import compute_stats
    from raypipe.monitor.drift import ReferenceProfile
    from raypipe.monitor.profile import build_profile, profile_requests

    table = _arrow(train)
    return ReferenceProfile(build_profile(DRIFT_COLUMNS, compute_stats(profile_requests(DRIFT_COLUMNS), table))), pa


def _arrow(df: pd.DataFrame):
    import pyarrow as pa

    cols = {}
    for name, kind in DRIFT_COLUMNS.items():
        v = df[name]
        cols[name] = pa.array(v.astype(str)) if kind == "category" else pa.array(v.to_numpy(np.int64 if kind == "int" else np.float64))
    return pa.table(cols)


def loop(s: Settings, y2011: pd.DataFrame, y2012: pd.DataFrame, first: xgb.Booster) -> LoopResult:
    from raypipe.monitor.drift import check_window

    n = len(y2012)
    pred = np.empty(n)
    versions = np.empty(n, dtype=int)
    booster, version = first, 1
    reference = _profile(y2011[y2011["dteday"] < s.valid_from])[0] if s.drift == "real" else None
    res = LoopResult(pred, versions)
    schedule = [(0, first, 1)]         # (first row served, model, version)
    streak, last_retrain_row = 0, None
    for start in range(0, n, s.window_rows):
        end = min(n, start + s.window_rows)
        window = y2012.iloc[start:end]
        if end - start < s.window_rows:
            break                      # a partial window never closes
        res.windows += 1
        if s.drift == "real":
            drifting = check_window(reference, _arrow(window), method="psi", threshold=s.threshold).drift_detected
        else:
            drifting = True
        res.drifting_windows += drifting
        streak = streak + 1 if drifting else 0
        cooled = last_retrain_row is None or end - last_retrain_row >= s.cooldown_rows
        if streak >= s.consecutive and cooled:
            seen = pd.concat([y2011, y2012.iloc[:end]], ignore_index=True)
            now = seen["dteday"].max()
            data = seen[seen["dteday"] > now - s.data_window]
            if s.gate_share > 0:
                rest, gate = split_by_time(data, s.gate_share)
            else:
                rest, gate = data, None
            train, valid = split_by_time(rest, s.valid_share / (1 - s.gate_share))
            t0 = time.perf_counter()
            candidate = fit(s, train, valid)
            event = {"after_row": end, "date": str(now.date()), "rows": len(data),
                     "from": str(data["dteday"].min().date()), "best_round": candidate.best_iteration + 1}
            promoted = True
            if gate is not None:
                y = gate[LABEL].to_numpy(np.float64)
                cand, champ = rmse(predict(candidate, gate), y), rmse(predict(booster, gate), y)
                promoted = cand <= champ and (s.max_rmse is None or cand <= s.max_rmse)
                event.update(gate_rmse={"candidate": round(cand, 1), "champion": round(champ, 1)})
            event.update(promoted=promoted, seconds=round(time.perf_counter() - t0, 2))
            if promoted:
                booster, version = candidate, version + 1
                event["version"] = version
                schedule.append((min(n, end + s.lag_rows), booster, version))
                if s.drift == "real":
                    reference = _profile(train)[0]
            res.retrains.append(event)
            streak, last_retrain_row = 0, end
    for i, (row, model, v) in enumerate(schedule):
        stop = schedule[i + 1][0] if i + 1 < len(schedule) else n
        if stop > row:
            pred[row:stop] = predict(model, y2012.iloc[row:stop])
            versions[row:stop] = v
    return res


def monthly_3m(s: Settings, y2011: pd.DataFrame, y2012: pd.DataFrame) -> np.ndarray:
    both = pd.concat([y2011, y2012], ignore_index=True)
    pred = np.empty(len(y2012))
    for m in range(1, 13):
        start = pd.Timestamp(2012, m, 1)
        data = both[(both["dteday"] >= start - pd.DateOffset(months=3)) & (both["dteday"] < start)]
        train, valid = split_by_time(data, 0.1)
        mask = (y2012["dteday"].dt.month == m).to_numpy()
        pred[mask] = predict(fit(s, train, valid), y2012[mask])
    return pred


def table(columns: dict[str, dict[int, float]]) -> str:
    names = list(columns)
    lines = ["| month (2012) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for m in range(1, 13):
        lines.append(f"| {m:02d} | " + " | ".join(f"{columns[c][m]:.1f}" for c in names) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{np.mean(list(columns[c].values())):.1f}**" for c in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "bike-sharing.yaml")
    ap.add_argument("--threads", type=int, default=1, help="XGBoost threads (default 1).")
    ap.add_argument("--seed", type=int, default=0, help="XGBoost seed (row subsampling).")
    ap.add_argument("--lag-rows", type=int, default=0,
                    help="Rows served by the old model after a retrain was decided (the monitor reading the log behind the traffic).")
    ap.add_argument("--data-window", default=None, help="Override retrain.data_window (e.g. 60d).")
    ap.add_argument("--cooldown-rows", type=int, default=None, help="Override retrain.cooldown_rows.")
    ap.add_argument("--window-rows", type=int, default=None, help="Override monitor.window_rows.")
    ap.add_argument("--consecutive", type=int, default=None, help="Override monitor.drift.consecutive_windows.")
    ap.add_argument("--valid-share", type=float, default=None, help="Share of the retraining rows (before the gate rows) that early-stops (default: retrain.valid_fraction or 0.1).")
    ap.add_argument("--gate-share", type=float, default=None, help="Newest share of the retraining rows held out to gate (default: retrain.gate_fraction or 0.1; 0: no gate).")
    ap.add_argument("--drift", choices=["real", "always"], default="real", help="real: raypipe's check_window on each window; always: every window drifts.")
    ap.add_argument("--sweep", action="store_true", help="Also run the loop over a grid of data windows, cooldowns and valid shares.")
    ap.add_argument("--json", action="store_true", help="Print one JSON object instead of the tables.")
    args = ap.parse_args(argv)
    s = settings_from(args.config, args)
    y2011, y2012 = load(DATA / "hour-2011.csv"), load(DATA / "hour-2012.csv")
    months = y2012["dteday"].dt.month.to_numpy()
    label = y2012[LABEL].to_numpy(np.float64)

    t0 = time.perf_counter()
    static_pred, first = static(s, y2011, y2012)
    lp = loop(s, y2011, y2012, first)
    m3 = monthly_3m(s, y2011, y2012)
    cols = {
        "static (2011 only)": monthly_rmse(months, static_pred, label),
        "loop (served)": monthly_rmse(months, lp.pred, label),
        "monthly, previous 3 months": monthly_rmse(months, m3, label),
    }
    means = {k: float(np.mean(list(v.values()))) for k, v in cols.items()}
    sweep = []
    if args.sweep:
        for dw in ("30d", "60d", "90d", "120d"):
            for cd in (168, 336, 720):
                for gs in (0.0, 0.1):
                    a = argparse.Namespace(**{**vars(args), "data_window": dw, "cooldown_rows": cd, "gate_share": gs})
                    r = loop(settings_from(args.config, a), y2011, y2012, first)
                    sweep.append({"data_window": dw, "cooldown_rows": cd, "gate_share": gs, "retrains": len(r.retrains),
                                  "promoted": sum(e["promoted"] for e in r.retrains),
                                  "mean_monthly_rmse": round(float(np.mean(list(monthly_rmse(months, r.pred, label).values()))), 1)})
    out = {
        "settings": {"params": s.params, "num_boost_round": s.rounds, "early_stopping_rounds": s.early_stopping,
                     "window_rows": s.window_rows, "drift_threshold": s.threshold, "consecutive_windows": s.consecutive,
                     "cooldown_rows": s.cooldown_rows, "data_window": str(s.data_window), "valid_share": s.valid_share,
                     "gate_share": s.gate_share, "max_rmse": s.max_rmse, "drift": s.drift, "lag_rows": s.lag_rows},
        "monthly_rmse": {k: {str(m): round(x, 1) for m, x in v.items()} for k, v in cols.items()},
        "mean_monthly_rmse": {k: round(v, 1) for k, v in means.items()},
        "loop": {"windows": lp.windows, "drifting_windows": lp.drifting_windows, "retrains": lp.retrains},
        "sweep": sweep,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(table(cols))
    print(f"\nloop: {lp.windows} windows of {s.window_rows} rows, {lp.drifting_windows} drifting "
          f"({s.drift}), {len(lp.retrains)} retrains (cooldown {s.cooldown_rows} rows, data window {s.data_window.days}d, "
          f"valid share {s.valid_share}, gate share {s.gate_share}, lag {s.lag_rows} rows):")
    for r in lp.retrains:
        gate = f", gate RMSE {r['gate_rmse']['candidate']} vs champion {r['gate_rmse']['champion']}" if "gate_rmse" in r else ""
        outcome = f"promoted as v{r['version']}" if r["promoted"] else "rejected"
        print(f"  after row {r['after_row']} ({r['date']}): {r['rows']} rows from {r['from']}, {r['best_round']} rounds{gate}: {outcome} ({r['seconds']} s)")
    if sweep:
        print("\n| data_window | cooldown_rows | gate_share | retrains (promoted) | mean monthly RMSE |\n|---|---:|---:|---:|---:|")
        for r in sweep:
            print(f"| {r['data_window']} | {r['cooldown_rows']} | {r['gate_share']} | {r['retrains']} ({r['promoted']}) | {r['mean_monthly_rmse']} |")
    print(f"\n({out['seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
