"""CPU time per request of the serving processes: the Ray Serve endpoint against bare FastAPI.

    python benchmarks/serve_cpu.py                       # 3,000 single-row and 750 100-row requests per side
    python benchmarks/serve_cpu.py --requests 1000 --repeats 3 --workdir /tmp/sc   # keep the model for the next run
    python benchmarks/serve_cpu.py --profile /tmp/sc/prof  # also py-spy (raw stacks) of the replica, single-row

Wall-clock latency moves with whatever else runs on the machine; the CPU the server
processes spend on a request does not. This script starts the endpoint as the ``serve``
pair does (``_serving.raypipe_endpoint``: the Adult champion, one replica, the config's
defaults, monitoring off, Serve's fast path) and the bare FastAPI + uvicorn baseline
(``_serving.bare_endpoint``), sends ``--requests`` sequential requests of one row (and a
quarter as many of 100 rows) to each from the load generator process (``_load``, one
client), and reads the user + system CPU time of each server process from
``/proc/<pid>/stat`` (psutil) before and after.

Reported per side and body, in CPU-ms per request: the replica actor process(es)
(``ray::ServeReplica:…``), HAProxy (the ``haproxy`` children of Serve's HAProxyManager),
Serve's other processes (controller, HAProxyManager, fallback proxy) and uvicorn. Each
process's idle rate (its CPU over ``--idle-s`` seconds without requests: health checks,
metrics pushes, the model watcher) times the run's wall time is subtracted, so a slower,
loaded run does not inflate the figure; the raw figure is printed next to it. The p50 of
each run (wall clock, load-dependent) is printed for reference with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run by path: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from benchmarks._common import Context, init_ray
from benchmarks._serving import (
    adult_config,
    adult_rows,
    bare_endpoint,
    champion_path,
    check_same_predictions,
    load,
    raypipe_endpoint,
)


def _title(p: psutil.Process) -> str:
    try:
        cmd = p.cmdline()
        return cmd[0] if cmd else ""
    except psutil.Error:
        return ""


def server_processes(app: str) -> dict[str, list[psutil.Process]]:
    """The server processes under this driver, by role: ``replica``, ``haproxy``, ``serve``
    (controller, HAProxyManager, fallback proxy) and ``uvicorn``."""
    roles: dict[str, list[psutil.Process]] = {"replica": [], "haproxy": [], "serve": [], "uvicorn": []}
    for p in psutil.Process().children(recursive=True):
        title = _title(p)
        try:
            name = p.name()
        except psutil.Error:
            continue
        if title.startswith(f"ray::ServeReplica:{app}:"):
            roles["replica"].append(p)
        elif name == "haproxy":
            roles["haproxy"].append(p)
        elif title.startswith(("ray::ServeController", "ray::HAProxyManager", "ray::ProxyActor")):
            roles["serve"].append(p)
        elif any("uvicorn" in part for part in p.cmdline()[:3]):
            roles["uvicorn"].append(p)
    return roles


def cpu_s(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` (their own, not their children's)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def idle_rates(roles: dict[str, list[psutil.Process]], seconds: float) -> dict[str, float]:
    """CPU seconds per wall second of each role with no requests."""
    before = {role: cpu_s(ps) for role, ps in roles.items()}
    started = time.perf_counter()
    time.sleep(seconds)
    wall = time.perf_counter() - started
    return {role: (cpu_s(ps) - before[role]) / wall for role, ps in roles.items()}


def run_once(url: str, body: Any, requests: int, roles: dict[str, list[psutil.Process]],
             idle: dict[str, float]) -> dict[str, Any]:
    """One latency run of ``requests`` sequential requests; CPU-ms per request per role."""
    before = {role: cpu_s(ps) for role, ps in roles.items()}
    started = time.perf_counter()
    result = load("latency", url, body, requests=requests, warmup=0)
    wall = time.perf_counter() - started
    out: dict[str, Any] = {"p50_ms": result["p50_ms"], "errors": result["errors"], "wall_s": round(wall, 2),
                           "load": os.getloadavg()[0]}
    for role, ps in roles.items():
        if ps:
            delta = cpu_s(ps) - before[role]
            out[role] = round(1000 * (delta - idle[role] * wall) / requests, 3)
            out[f"{role}_raw"] = round(1000 * delta / requests, 3)
    return out


def profile_replica(pid: int, out: Path, url: str, body: Any, requests: int) -> None:
    """py-spy (raw collapsed stacks, 200 Hz, native frames off) of ``pid`` while ``requests`` run."""
    import subprocess

    out.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "200",
                            "--format", "raw", "--output", str(out), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    load("latency", url, body, requests=requests, warmup=0)
    spy.send_signal(2)  # SIGINT: py-spy writes the file and exits
    spy.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/serve_cpu.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="single-row requests per run (100-row: a quarter)")
    parser.add_argument("--warmup", type=int, default=300, help="untimed requests per side and body first")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side and body (the sides take turns); medians")
    parser.add_argument("--idle-s", type=float, default=5.0, help="seconds of no requests to measure idle CPU")
    parser.add_argument("--workdir", type=Path, default=None, help="model and registry here (kept); default a temporary folder")
    parser.add_argument("--profile", type=Path, default=None, help="folder for py-spy raw stacks of the replica (single-row)")
    parser.add_argument("--quick", action="store_true", help="200 requests, 1 s idle: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.warmup, args.idle_s = 200, 20, 1.0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="raypipe-serve-cpu-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(quick=False, repeats=args.repeats, workdir=workdir, cpus=os.cpu_count() or 1)
    init_ray(ctx.cpus)
    cfg = adult_config(ctx, monitor=False)
    bundle = champion_path(cfg)
    bodies = {"1 row": ({"instances": adult_rows(cfg, 1)}, args.requests),
              "100 rows": ({"instances": adult_rows(cfg, 100)}, max(args.requests // 4, 1))}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with raypipe_endpoint(cfg) as served, bare_endpoint(bundle) as bare:
        urls = {"raypipe": served, "baseline": bare}
        for body, _ in bodies.values():
            check_same_predictions(body, *urls.values())
        roles = server_processes(cfg.name)
        assert roles["replica"] and roles["uvicorn"], {k: [p.pid for p in v] for k, v in roles.items()}
        sides = {"raypipe": {k: roles[k] for k in ("replica", "haproxy", "serve")}, "baseline": {"uvicorn": roles["uvicorn"]}}
        for side, url in urls.items():  # warm both, then measure idle CPU with both up
            for body, n in bodies.values():
                load("latency", url, body, requests=args.warmup, warmup=0)
        idle = idle_rates(roles, args.idle_s)
        for label, (body, n) in bodies.items():
            results[label] = {side: [] for side in urls}
            for _ in range(args.repeats):
                for side, url in urls.items():
                    results[label][side].append(run_once(url, body, n, sides[side], idle))
        if args.profile:
            profile_replica(roles["replica"][0].pid, args.profile / "replica-1row.txt", served, bodies["1 row"][0],
                            args.requests)
    print(f"idle CPU (ms per s): " + ", ".join(f"{k} {1000 * v:.1f}" for k, v in idle.items() if roles[k]))
    for label, sides_ in results.items():
        n = bodies[label][1]
        for side, runs in sides_.items():
            figures = []
            for role in sides[side]:
                if role in runs[0]:
                    med, raw = (statistics.median(r[key] for r in runs) for key in (role, f"{role}_raw"))
                    figures.append(f"{role} {med:.3f} (raw {raw:.3f})")
            print(f"{label}, {n} requests x {len(runs)}, {side}: CPU-ms/request " + ", ".join(figures)
                  + f"; p50 {statistics.median(r['p50_ms'] for r in runs):.2f} ms, load {[r['load'] for r in runs]}"
                  + (f", ERRORS {sum(r['errors'] for r in runs)}" if any(r['errors'] for r in runs) else ""))
    print(json.dumps({"idle": idle, "results": results}))


if __name__ == "__main__":
    main()
