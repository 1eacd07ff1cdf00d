"""``python -m benchmarks [--quick] [--only NAME[,NAME]] [--json FILE] [--repeats N]``

Runs each pair (raypipe and its baseline, side by side, same data and threads), prints a
table of medians with the ratio and the target, and writes every sample to JSON.
``--quick`` runs every pair on small data (a smoke run for CI: no timing is asserted).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks._common import Context, Figure, init_ray

#: Pair name -> module under benchmarks/, in the order they run.
PAIRS = {
    "train": "benchmarks.pair_train",
    "ingest": "benchmarks.pair_ingest",
    "predict": "benchmarks.pair_predict",
    "serve": "benchmarks.pair_serve",
    "monitor": "benchmarks.pair_monitor",
    "tune": "benchmarks.pair_tune",
    "memory": "benchmarks.pair_memory",
}


def machine() -> dict:
    """What the figures were measured on."""
    import psutil
    import ray
    import xgboost

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "ray": ray.__version__, "xgboost": xgboost.__version__,
            "os": platform.platform()}


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(figures: list[Figure]) -> str:
    """The Markdown table the README shows."""
    rows = ["| pair | measure | raypipe | baseline | ratio | target | met | spread |", "|---|---|---|---|---|---|---|---|"]
    for f in figures:
        spread = " / ".join(f"{side} {value:.0%}" for side, value in f.spread.items()) or "—"
        if f.unstable:
            spread += " **unstable**"
        rows.append(f"| {f.pair} | {f.what} ({f.unit}) | {_fmt(f.raypipe)} | {_fmt(f.baseline)} | "
                    f"{_fmt(f.ratio)} | {f.target} | {'yes' if f.met else '**no**'} | {spread} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="small data, one repeat: a smoke run (CI)")
    parser.add_argument("--only", default="", help=f"comma-separated pairs: {', '.join(PAIRS)}")
    parser.add_argument("--json", dest="json_path", help="write machine, figures and samples here")
    parser.add_argument("--repeats", type=int, help="runs per side (default 3, 1 with --quick)")
    parser.add_argument("--workdir", help="where generated data goes (default: a temp dir)")
    parser.add_argument("--ingest-rows", type=int, help="rows of the ingest pair's table (default 2,000,000; 50,000 with --quick)")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(PAIRS)
    unknown = [n for n in names if n not in PAIRS]
    if unknown:
        parser.error(f"--only: unknown pair(s) {', '.join(unknown)}; expected some of {', '.join(PAIRS)}")
    repeats = args.repeats or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="raypipe-bench-", dir=args.workdir) as workdir:
        ctx = Context(quick=args.quick, repeats=repeats, workdir=Path(workdir), ingest_rows=args.ingest_rows)
        init_ray(ctx.cpus)
        figures: list[Figure] = []
        failed: dict[str, str] = {}
        seconds: dict[str, float] = {}
        for name in names:
            started = time.perf_counter()
            print(f"== {name}", file=sys.stderr, flush=True)
            try:
                figures.extend(importlib.import_module(PAIRS[name]).run(ctx))
            except Exception:
                failed[name] = traceback.format_exc()
                print(failed[name], file=sys.stderr, flush=True)
            seconds[name] = round(time.perf_counter() - started, 1)
            print(f"== {name}: {seconds[name]} s", file=sys.stderr, flush=True)
    info = machine()
    print(table(figures))
    print(f"\n{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; "
          f"Ray {info['ray']}, XGBoost {info['xgboost']}; repeats {repeats}{' (quick)' if args.quick else ''}")
    for f in figures:
        if f.note:
            print(f"- {f.pair} {f.what}: {f.note}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(
            {"machine": info, "quick": args.quick, "repeats": repeats, "seconds_per_pair": seconds,
             "figures": [f.to_dict() for f in figures], "failed": failed}, indent=2))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
