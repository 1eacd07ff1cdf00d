"""HTTP load generator of the serving pairs, run in its own process (asyncio + aiohttp).

    python -m benchmarks._load latency URL BODY_JSON --requests 2000 --warmup 200
    python -m benchmarks._load throughput URL BODY_JSON --clients 8 --seconds 15 --warmup-s 3

POSTs the same JSON body again and again over one persistent ``aiohttp`` session and
prints one JSON line: ``latency`` gives ``p50_ms``/``p99_ms`` of sequential requests
(concurrency 1, after the warm-up); ``throughput`` gives ``rps`` of ``--clients``
closed-loop clients over ``--seconds`` (after ``--warmup-s`` of the same load).
Both count ``errors`` (non-2xx answers and failed connections, never retried) and
keep the first one's text in ``first_error``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp

_HEADERS = {"Content-Type": "application/json"}


class _Client:
    def __init__(self, session: aiohttp.ClientSession, url: str, body: bytes):
        self.session, self.url, self.body = session, url, body
        self.errors = 0
        self.first_error: str | None = None

    async def post(self) -> None:
        """One request, body read to the end; a failure is counted, not raised."""
        try:
            async with self.session.post(self.url, data=self.body, headers=_HEADERS) as resp:
                text = await resp.read()
                if resp.status // 100 == 2:
                    return
                error = f"HTTP {resp.status}: {text[:200].decode(errors='replace')}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.errors += 1
        self.first_error = self.first_error or error


async def latency(client: _Client, requests: int, warmup: int) -> dict:
    for _ in range(warmup):
        await client.post()
    client.errors, client.first_error, times = 0, None, []
    for _ in range(requests):
        started = time.perf_counter()
        await client.post()
        times.append((time.perf_counter() - started) * 1000)
    p99 = statistics.quantiles(times, n=100, method="inclusive")[98]
    return {"p50_ms": round(statistics.median(times), 3), "p99_ms": round(p99, 3),
            "mean_ms": round(statistics.fmean(times), 3), "requests": requests}


async def throughput(client: _Client, clients: int, seconds: float, warmup_s: float) -> dict:
    async def loop(until: float) -> int:
        done = 0
        while time.perf_counter() < until:
            await client.post()
            done += 1
        return done

    await asyncio.gather(*(loop(time.perf_counter() + warmup_s) for _ in range(clients)))
    client.errors, client.first_error = 0, None
    started = time.perf_counter()
    done = await asyncio.gather(*(loop(started + seconds) for _ in range(clients)))
    elapsed = time.perf_counter() - started  # the last in-flight requests finish after the deadline
    return {"rps": round(sum(done) / elapsed, 1), "requests": sum(done), "seconds": round(elapsed, 2), "clients": clients}


async def main(args: argparse.Namespace) -> dict:
    connector = aiohttp.TCPConnector(limit=max(args.clients, 1))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        client = _Client(session, args.url, args.body.encode())
        if args.mode == "latency":
            out = await latency(client, args.requests, args.warmup)
        else:
            out = await throughput(client, args.clients, args.seconds, args.warmup_s)
    return {**out, "errors": client.errors, "first_error": client.first_error}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks._load", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["latency", "throughput"])
    parser.add_argument("url", help="the /predict URL")
    parser.add_argument("body", help="the JSON request body")
    parser.add_argument("--requests", type=int, default=2000, help="latency: timed requests")
    parser.add_argument("--warmup", type=int, default=200, help="latency: untimed requests first")
    parser.add_argument("--clients", type=int, default=1, help="throughput: concurrent clients")
    parser.add_argument("--seconds", type=float, default=15.0, help="throughput: timed seconds")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="throughput: untimed seconds first")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
