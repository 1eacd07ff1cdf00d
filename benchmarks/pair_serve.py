"""Pair ``serve``: the Ray Serve endpoint against a bare FastAPI + uvicorn app, same model.

raypipe: the Adult champion (50 rounds) deployed by ``serve_model`` (one replica, the
config's defaults for ``max_ongoing_requests``, ``replica_cpus`` and batching; monitoring
off): HTTP proxy -> replica -> request validation -> ``@serve.batch`` -> ``ModelBundle.predict``.
Baseline: ``_bare_app`` (the same bundle folder, pydantic parsing only, one uvicorn worker).
Both listen on 127.0.0.1 and get the same body (one real Adult row); both must answer it
with the same prediction and probability before anything is timed.

The load comes from a separate process (``_load``, aiohttp, one persistent session), the
sides taking turns each repeat:

- ``p50 latency`` / ``p99 latency`` (ms): sequential single-row requests (concurrency 1),
  2,000 after 200 warm-up (``--quick``: 100 after 20). Ratio <= 1.5 is the target: what
  the proxy hop, validation and the batching wait add to one request.
- ``throughput c=8`` / ``c=32`` (req/s): that many closed-loop clients for 15 s after
  3 s warm-up (``--quick``: 3 s after 1 s). Ratio >= 1.0 at 8, >= 2.0 at 32 (batching
  should beat a server without it).
- ``p50 latency 100 rows`` / ``throughput 100 rows c=8``: the same with a 100-row request
  (the first 100 Adult rows): what validation and the transform cost per row.

Every sample is a whole run's p50/p99/req/s; the figure is their median. Non-2xx answers
are counted and put in the note, never dropped. On a small machine the load generator,
the Ray processes and the server share the cores: the note says how many.
"""

from __future__ import annotations

import os

from benchmarks._common import Context, Figure
from benchmarks._serving import (
    adult_config,
    adult_row,
    adult_rows,
    bare_endpoint,
    champion_path,
    check_same_predictions,
    load_figure,
    measure,
    raypipe_endpoint,
)


def run(ctx: Context) -> list[Figure]:
    cfg = adult_config(ctx, monitor=False)
    bundle = champion_path(cfg)
    body = {"instances": [adult_row(cfg)]}
    requests, warmup = ctx.size(2000, 100), ctx.size(200, 20)
    seconds, warmup_s = ctx.size(15, 3), ctx.size(3, 1)
    s = cfg.serve
    setup = (f"raypipe: {s.autoscaling.max_replicas} replica ({s.replica_cpus} CPU), max_ongoing_requests "
             f"{s.max_ongoing_requests}, batch {s.batching.max_batch_size}/{s.batching.wait_timeout_ms:g} ms; "
             f"baseline: FastAPI + uvicorn, 1 worker; {os.cpu_count()} cores shared with the load generator")
    with raypipe_endpoint(cfg) as served, bare_endpoint(bundle) as bare:
        urls = {"raypipe": served, "baseline": bare}
        check_same_predictions(body, *urls.values())
        latency = measure(urls, ctx.repeats, "latency", body, requests=requests, warmup=warmup)
        throughput = {c: measure(urls, ctx.repeats, "throughput", body, clients=c, seconds=seconds, warmup_s=warmup_s)
                      for c in (8, 32)}
        big = {"instances": adult_rows(cfg, 100)}
        check_same_predictions(big, *urls.values())
        big_latency = measure(urls, ctx.repeats, "latency", big, requests=requests // 4, warmup=warmup // 4)
        big_throughput = measure(urls, ctx.repeats, "throughput", big, clients=8, seconds=seconds, warmup_s=warmup_s)
    lat_note = f"{requests} single-row requests after {warmup} warm-up, 1 client; {setup}"
    figures = [load_figure("serve", "p50 latency", "ms", "p50_ms", latency, "<= 1.5", lat_note),
               load_figure("serve", "p99 latency", "ms", "p99_ms", latency, "<= 1.5", lat_note)]
    for clients, results in throughput.items():
        note = f"{clients} clients, {seconds} s after {warmup_s} s warm-up; {setup}"
        figures.append(load_figure("serve", f"throughput c={clients}", "req/s", "rps", results,
                                   ">= 2.0" if clients >= 32 else ">= 1.0", note))
    note = f"100-row requests (the first 100 Adult rows); {setup}"
    figures.append(load_figure("serve", "p50 latency 100 rows", "ms", "p50_ms", big_latency, "<= 1.5",
                               f"{requests // 4} requests after {warmup // 4} warm-up, 1 client; " + note))
    figures.append(load_figure("serve", "throughput 100 rows c=8", "req/s", "rps", big_throughput, ">= 1.0",
                               f"8 clients, {seconds} s after {warmup_s} s warm-up; " + note))
    return figures
