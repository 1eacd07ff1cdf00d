"""Pair ``monitor``: what monitoring costs the endpoint, and how fast a drift check is.

- ``serve throughput, monitoring on vs off`` (req/s): the ``serve`` pair's endpoint (same
  champion, one replica) deployed twice by ``serve_model``, with ``monitor.enabled`` off
  (baseline) and on (raypipe: every prediction written to the Parquet prediction log by
  the replica, the monitor actor reading it and checking windows of ``window_rows`` rows),
  each loaded by 8 closed-loop clients of ``_load`` for 15 s after 3 s warm-up
  (``--quick``: 3 s after 1 s). Each repeat redeploys both, off first. Ratio >= 0.95 is the
  target: monitoring may cost at most 5 % of the throughput. The note says how many rows
  the monitor had read and how many windows it had checked when the last run ended.
- ``drift check 10k x 30`` (ms): ``check_window`` (PSI, the config default) of a
  10,000-row window of 30 features (numeric, int with nulls, 20-level categorical) against
  the prepared profile of a 200,000-row reference (``--quick``: 20,000), data from
  ``drift_check.make_table``; median wall time of at least 15 calls (``--quick``: 5) after
  one warm-up. Absolute target < 50 ms (no baseline; ``drift_check.py`` also times KS,
  JS and recomputing the statistics from the raw reference).
"""

from __future__ import annotations

import ray

from benchmarks._common import Context, Figure, median_time
from benchmarks._serving import adult_config, adult_row, champion_path, load, load_figure, raypipe_endpoint
from benchmarks.drift_check import make_table

CLIENTS = 8


def run(ctx: Context) -> list[Figure]:
    return [serve_throughput(ctx), drift_check(ctx)]


def serve_throughput(ctx: Context) -> Figure:
    from raypipe.monitor.actor import monitor_name

    off, on = adult_config(ctx, monitor=False), adult_config(ctx, monitor=True)
    champion_path(off)
    body = {"instances": [adult_row(on)]}
    seconds, warmup_s = ctx.size(15, 3), ctx.size(3, 1)
    results: dict[str, list] = {"raypipe": [], "baseline": []}
    for _ in range(ctx.repeats):
        for side, cfg in (("baseline", off), ("raypipe", on)):
            with raypipe_endpoint(cfg) as url:
                results[side].append(load("throughput", url, body, clients=CLIENTS, seconds=seconds, warmup_s=warmup_s))
                if cfg.monitor.enabled:
                    counts = ray.get(ray.get_actor(monitor_name(cfg.model_name), namespace="raypipe").counts.remote())
    mon = on.monitor
    note = (f"{CLIENTS} clients, {seconds} s after {warmup_s} s warm-up, 1 replica; monitoring on: sample_rate "
            f"{mon.sample_rate:g}, window_rows {mon.window_rows}, flush_s {mon.flush_s:g}, poll_s {mon.poll_s:g}; "
            f"at the end of the last run the monitor had read {counts['logged_rows']} rows, checked {counts['windows']} windows")
    return load_figure("monitor", "serve throughput, monitoring on vs off", "req/s", "rps", results, ">= 0.95", note)


def drift_check(ctx: Context) -> Figure:
    from raypipe.features.stats import compute_stats
    from raypipe.monitor.drift import ReferenceProfile, check_window
    from raypipe.monitor.profile import build_profile, profile_requests

    rows, features, reference_rows = 10_000, 30, ctx.size(200_000, 20_000)
    reference, kinds = make_table(reference_rows, features, seed=0)
    window, _ = make_table(rows, features, seed=1, shift=0.1)
    profile = ReferenceProfile(build_profile(kinds, compute_stats(profile_requests(kinds), reference)))

    def check() -> None:
        check_window(profile, window, method="psi", threshold=0.1)

    check()  # warm-up
    median, samples = median_time(check, max(ctx.repeats, ctx.size(15, 5)))
    ms = [s * 1000 for s in samples]
    note = (f"check_window(psi), {rows:,} rows x {features} features vs the profile of {reference_rows:,} reference rows; "
            f"median of {len(ms)} wall times (min {min(ms):.1f} ms)")
    return Figure("monitor", f"drift check {rows // 1000}k x {features}", "ms", median * 1000, None, "< 50",
                  {"raypipe": ms}, note)
