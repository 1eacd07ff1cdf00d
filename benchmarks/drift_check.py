"""Benchmark: check_window on a 10k-row x 30-feature window vs a check that rescans the reference.

Not collected by pytest (no ``test_`` prefix); run by hand:

    python benchmarks/drift_check.py [--rows 10000] [--features 30] [--reference 200000] [--quick]

Prints one JSON line per variant with the median milliseconds of ``--repeat``
runs. ``check_window`` reads only the precomputed profile (deciles, a
501-point sketch, category frequencies), so it costs O(window). The baseline
is the same statistics computed the textbook way from the raw training
sample: ``scipy.stats.ks_2samp`` and a reference histogram per numeric
feature, ``value_counts`` of the reference per categorical one: O(reference).
Target of the monitoring issue: well under 100 ms, ideally < 50 ms, for 10k x 30.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats as sps

from raypipe.features.stats import compute_stats
from raypipe.monitor.drift import ReferenceProfile, check_window, psi
from raypipe.monitor.profile import build_profile, profile_requests


def make_table(rows: int, features: int, seed: int, shift: float = 0.0) -> tuple[pa.Table, dict[str, str]]:
    """A fifth categorical (20 levels), the rest numeric (float with 1 % nulls, and ints)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, pa.Array] = {}
    kinds: dict[str, str] = {}
    for i in range(features):
        name = f"f{i}"
        if i % 5 == 4:
            p = np.arange(1, 21, dtype=float)
            p = p / p.sum()
            cols[name] = pa.array(rng.choice([f"c{k}" for k in range(20)], size=rows, p=p))
            kinds[name] = "category"
        elif i % 5 == 3:
            cols[name] = pa.array(rng.poisson(5 + shift, size=rows))
            kinds[name] = "int"
        else:
            values = rng.normal(shift, 1 + i / 10, size=rows)
            cols[name] = pa.array(values, mask=rng.random(rows) < 0.01)
            kinds[name] = "float"
    return pa.table(cols), kinds


def timed(fn, repeat: int) -> dict[str, float]:
    """Median and min wall milliseconds, and median CPU milliseconds of this process.

    On a shared machine the wall time includes waiting for a core; the CPU time
    and the minimum show what the check itself costs.
    """
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return {"median_ms": round(statistics.median(wall), 2), "min_ms": round(min(wall), 2),
            "median_cpu_ms": round(statistics.median(cpu), 2)}


def rescan_baseline(reference: pa.Table, window: pa.Table, kinds: dict[str, str]) -> None:
    """The same per-feature statistics, recomputed from the raw reference sample each time."""
    for name, kind in kinds.items():
        if kind == "category":
            ref = pc.value_counts(reference.column(name).combine_chunks())
            cur = pc.value_counts(window.column(name).combine_chunks())
            psi(dict(zip(ref.field("values").to_pylist(), ref.field("counts").to_pylist())),
                dict(zip(cur.field("values").to_pylist(), cur.field("counts").to_pylist())))
            continue
        r = pc.cast(reference.column(name), pa.float64()).to_numpy()
        w = pc.cast(window.column(name), pa.float64()).to_numpy()
        r, w = r[~np.isnan(r)], w[~np.isnan(w)]
        sps.ks_2samp(w, r)
        edges = np.r_[-np.inf, np.unique(np.quantile(r, np.arange(1, 10) / 10)), np.inf]
        psi(np.histogram(r, edges)[0], np.histogram(w, edges)[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000, help="window rows")
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--reference", type=int, default=200_000, help="training rows behind the profile")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="CI smoke: small sizes, 3 runs")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.reference, args.repeat = 2_000, 20_000, 3

    reference, kinds = make_table(args.reference, args.features, seed=0)
    window, _ = make_table(args.rows, args.features, seed=1, shift=0.1)
    profile = build_profile(kinds, compute_stats(profile_requests(kinds), reference))
    prepared = ReferenceProfile(profile)
    shape = {"rows": args.rows, "features": args.features, "reference_rows": args.reference}

    results = {}
    for method in ("psi", "ks", "js"):
        results[method] = timed(lambda: check_window(prepared, window, method=method, threshold=0.1), args.repeat)
        print(json.dumps({"variant": f"check_window[{method}]", **results[method], **shape}))
    ms = timed(lambda: check_window(profile, window, method="psi", threshold=0.1), args.repeat)
    print(json.dumps({"variant": "check_window[psi] from the profile dict", **ms, **shape}))
    base = timed(lambda: rescan_baseline(reference, window, kinds), max(3, args.repeat // 3))
    print(json.dumps({"variant": "baseline: rescan the reference (ks_2samp + histograms)", **base, **shape}))
    ratios = {m: round(base["median_cpu_ms"] / r["median_cpu_ms"], 1) for m, r in results.items()}
    print(json.dumps({"ratio_baseline_over_check_window_cpu": ratios}))


if __name__ == "__main__":
    main()
