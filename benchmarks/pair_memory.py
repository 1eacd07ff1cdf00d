"""memory: peak memory of every Ray process of a raypipe run vs the Arrow size of its data.

Each run is a subprocess that starts its own local Ray, so the suite's cluster does not
count. Every 0.2 s the parent sums the memory of the subprocess and all its descendants
(the driver starts gcs_server, raylet, dashboard/monitor/log_monitor; the raylet starts
the agents and the workers), plus any process whose command line names the run's Ray
session without being a descendant (none seen on Linux; counted in the note). Per
process it reads ``/proc/<pid>/smaps_rollup``: RSS, and PSS (shared pages divided
among the processes mapping them: RSS counts plasma's shared memory and the shared
libraries once per process). The figure uses the PSS sum (RSS where PSS is not
readable; the note says which); ``Pss_Shmem`` summed over the processes is the
object store (plasma lives in /dev/shm).

- "peak memory quickstart" (not under ``--quick``): ``raypipe run configs/quickstart.yaml
  --profile test`` (registry and reports under the workdir) against the Arrow size of the Adult files
  read with pyarrow as the config describes (ints, trimmed strings, '?' as null).
- "peak memory train 5M": ``benchmarks/_train_child.py``: ``train_xgboost`` on
  ``ray.data.read_parquet`` of ``higgs_like`` rows written to Parquet by the parent
  (so the driver never holds the data), 100 rounds hist, against the table's Arrow size.
  The note adds the same peak for plain ``xgboost.train`` in one process on the same
  files: the honest comparison (it includes pyarrow's Parquet read buffers, which its
  allocator keeps: read_table of 553 MiB leaves ~1.7 GiB RSS).

How to read it: ratio = peak / Arrow size, target <= 2.5. A ratio far above it on
small data is Ray's fixed footprint (here ~2 GiB PSS: a dozen Ray Python processes of
110-200 MiB each, the Ray Train controller and its helper actors included); the note's
"at peak" line says which processes hold the memory, the log on stderr lists them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from benchmarks._common import Context, Figure, higgs_like

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "configs" / "quickstart.yaml"
MIB = 2**20
INTERVAL_S = 0.2
TIMEOUT_S = 3600
SESSION = re.compile(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_\d+")
SMAPS = os.path.exists("/proc/self/smaps_rollup")  # Linux >= 4.14: PSS readable
ROLES = ("driver", "workers", "raylet", "gcs", "agents")


@dataclasses.dataclass
class Peak:
    """Peak memory of one subprocess tree (MiB)."""

    rss: float  # highest RSS sum seen
    pss: float | None  # highest PSS sum seen; None where smaps_rollup is not readable
    at_peak: list[tuple[str, str, int, float, float | None, float | None]]  # role, name, pid, rss, pss, shmem
    seconds: float
    outsiders: int  # session processes that were not descendants of the subprocess

    @property
    def value(self) -> float:
        return self.rss if self.pss is None else self.pss

    def summary(self) -> str:
        """One line: memory per role at the peak, and plasma (shared memory) in all."""
        col = 3 if self.pss is None else 4
        parts = []
        for role in ROLES:
            rows = [r for r in self.at_peak if r[0] == role]
            if rows:
                parts.append(f"{role} {len(rows)}x {sum(r[col] for r in rows):,.0f}")
        shm = sum(r[5] or 0 for r in self.at_peak)
        return f"at peak ({'RSS' if self.pss is None else 'PSS'} MiB): {', '.join(parts)}; plasma/shm {shm:,.0f}"


def _smaps(pid: int) -> dict[str, float]:
    """Rss, Pss, Pss_Shmem of ``pid`` in MiB ({} where unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = [line.split(":", 1) for line in f if line.startswith(("Rss:", "Pss:", "Pss_Shmem:"))]
    except OSError:
        return {}
    return {k: int(v.split()[0]) / 1024 for k, v in fields}


def _role(name: str, pid: int, root: int) -> str:
    if pid == root:
        return "driver"
    if name in ("gcs_server", "raylet"):
        return name.removesuffix("_server")
    if name.startswith("ray::") and not name.endswith("Agent"):
        return "workers"
    return "agents"  # dashboard, monitor, log_monitor, DashboardAgent, RuntimeEnvAgent


def _tree(root: psutil.Process, session: list[str], outsiders: set[int]) -> list[psutil.Process]:
    """The subprocess, its descendants, and processes of its Ray session (with theirs)."""
    procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
    for p in list(procs.values()) if not session else []:
        try:
            found = SESSION.search(" ".join(p.cmdline()))
        except psutil.Error:
            continue
        if found:
            session.append(found.group())
            break
    for p in psutil.process_iter(["cmdline"]) if session else []:
        if p.pid not in procs and session[0] in " ".join(p.info["cmdline"] or ()):
            try:
                if root.pid not in {q.pid for q in p.parents()}:  # not just started since children()
                    outsiders.add(p.pid)
                procs.update({q.pid: q for q in [p, *p.children(recursive=True)]})
            except psutil.Error:
                continue
    return list(procs.values())


def peak_memory(cmd: list[str], log: Path) -> Peak:
    """Run ``cmd`` (cwd: the repo root) and sample its process tree every 0.2 s."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.perf_counter()
    best: list = []
    best_key, peak_rss, peak_pss, session, outsiders = -1.0, 0.0, None, [], set()
    with open(log, "wb") as out:
        child = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(child.pid)
        while child.poll() is None:
            tick = time.perf_counter()
            if tick - started > TIMEOUT_S:
                child.kill()
                raise RuntimeError(f"{' '.join(cmd)}: still running after {TIMEOUT_S} s")
            rows = []
            try:
                procs = _tree(root, session, outsiders)
            except psutil.Error:
                procs = []  # the subprocess is exiting
            for p in procs:
                try:
                    name = p.name()
                    if name.startswith("python"):  # dashboard.py, monitor.py, log_monitor.py, ...
                        name = next((Path(a).stem for a in p.cmdline()[1:] if a.endswith(".py")), name)
                    mem = _smaps(p.pid) if SMAPS else {"Rss": p.memory_info().rss / MIB}
                except psutil.Error:
                    mem = {}
                if not mem:
                    continue  # ended (or exec'ing) mid-sample
                rows.append((_role(name, p.pid, child.pid), name, p.pid, mem["Rss"],
                             mem.get("Pss"), mem.get("Pss_Shmem")))
            rss = sum(r[3] for r in rows)
            pss = sum(r[4] for r in rows) if rows and all(r[4] is not None for r in rows) else None
            peak_rss = max(peak_rss, rss)
            if pss is not None:
                peak_pss = max(peak_pss or 0.0, pss)
            if (pss if pss is not None else rss) > best_key:
                best_key, best = (pss if pss is not None else rss), rows
            time.sleep(max(0.0, INTERVAL_S - (time.perf_counter() - tick)))
    if child.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)}: exit {child.returncode}; log {log}:\n{tail}")
    peak = Peak(peak_rss, peak_pss, sorted(best, key=lambda r: (ROLES.index(r[0]), -r[3])),
                time.perf_counter() - started, len(outsiders))
    print(f"memory: {' '.join(cmd[1:4])}...: peak RSS {peak.rss:,.0f} MiB, PSS "
          f"{peak.pss or 0:,.0f} MiB; processes at the PSS peak (role name pid rss pss shmem):",
          file=sys.stderr)
    for row in peak.at_peak:
        print("   ", *(f"{v:,.0f}" if isinstance(v, float) else v for v in row), file=sys.stderr)
    return peak


def adult_table() -> pa.Table:
    """The quickstart's Adult files as Arrow, read as its config describes."""
    source = yaml.safe_load(QUICKSTART.read_text())["data"]["source"]
    read = pacsv.ReadOptions(column_names=source["column_names"])
    convert = pacsv.ConvertOptions(null_values=["?", " ?"], strings_can_be_null=True)
    table = pa.concat_tables(pacsv.read_csv(REPO / p, read_options=read, convert_options=convert)
                             for p in source["paths"])
    return pa.table({n: pc.utf8_trim_whitespace(c) if pa.types.is_string(c.type) else c
                     for n, c in zip(table.column_names, table.columns)})


def _repeat(ctx: Context, cmd, name: str) -> list[Peak]:
    # A peak varies little between runs (a few %), unlike a time: at most two runs, as
    # three full runs of the 5M train alone would take half an hour here.
    return [peak_memory(cmd(i), ctx.workdir / f"{name}-{i}.log") for i in range(min(ctx.repeats, 2))]


def _figure(what: str, peaks: list[Peak], arrow_mib: float, note: str,
            extra: dict[str, list[float]] | None = None) -> Figure:
    pss = all(p.pss is not None for p in peaks)
    mid = sorted(peaks, key=lambda p: p.value)[len(peaks) // 2]
    outsiders = max(p.outsiders for p in peaks)
    note = (f"{note}; figure = peak {'PSS' if pss else 'RSS'} sum, RSS sum {mid.rss:,.0f} MiB; "
            f"{mid.summary()}" + (f"; {outsiders} Ray process(es) outside the tree" if outsiders else ""))
    return Figure(
        pair="memory", what=what, unit="MiB", raypipe=statistics.median(p.value for p in peaks),
        baseline=arrow_mib, target="<= 2.5", note=note,
        samples={"peak_pss_mib": [p.pss or 0.0 for p in peaks], "peak_rss_mib": [p.rss for p in peaks],
                 "seconds": [p.seconds for p in peaks], **(extra or {})},
    )


def run(ctx: Context) -> list[Figure]:
    py = sys.executable
    figures = []
    if not ctx.quick:  # the quickstart has one size; --quick measures the small train only
        adult_mib = adult_table().nbytes / MIB
        quick = _repeat(ctx, lambda i: [
            py, "-m", "raypipe.cli", "run", str(QUICKSTART), "--profile", "test",
            "--set", f"registry.uri={ctx.workdir / f'registry-{i}'}",
            "--set", f"output.uri={ctx.workdir / f'runs-{i}'}",
        ], "quickstart")
        figures.append(_figure("peak memory quickstart", quick, adult_mib,
                               "raypipe run configs/quickstart.yaml --profile test (20 rounds, 2 workers); "
                               f"Adult 48,842 rows = {adult_mib:.1f} MiB Arrow"))

    rows, rounds = ctx.size(5_000_000, 200_000), ctx.size(100, 10)
    parquet = ctx.workdir / "higgs-parquet"
    parquet.mkdir()
    table = higgs_like(rows)
    arrow_mib = table.nbytes / MIB
    edges = np.linspace(0, rows, 9).astype(int)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        pq.write_table(table.slice(a, b - a), parquet / f"part-{i}.parquet")
    del table

    def child(side: str):
        return lambda i: [py, "-m", "benchmarks._train_child", str(parquet), str(rounds), str(ctx.cpus),
                          side, str(ctx.workdir / f"train-{side}-{i}")]

    ray_peaks = _repeat(ctx, child("raypipe"), "train-raypipe")
    plain = _repeat(ctx, child("plain"), "train-plain")
    plain_mib = statistics.median(p.value for p in plain)
    return figures + [_figure(
        f"peak memory train {rows / 1e6:g}M", ray_peaks, arrow_mib,
        f"train_xgboost on read_parquet of {rows:,} x 28 higgs_like rows (8 files), {rounds} rounds hist, "
        f"{ctx.cpus} CPUs; Arrow {arrow_mib:,.0f} MiB; plain xgboost.train in one process on the same files: "
        f"peak {plain_mib:,.0f} MiB ({plain_mib / arrow_mib:.2f}x Arrow)",
        {"plain_xgboost_peak_mib": [p.value for p in plain]},
    )]
